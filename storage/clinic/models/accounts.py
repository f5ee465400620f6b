"""The clinic and its accounts: clinics, users and their roles, password reset codes, sign-in sessions
and refresh tokens. A change of an account's activity or roles ends its sessions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, event, inspect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE

from storage.clinic.models.base import HASH_LENGTH, OPAQUE_ID_LENGTH, Base, str_enum, utcnow
from vitals.units import GlucoseUnit


class UserRole(enum.StrEnum):
    FAMILY_DOCTOR = "family_doctor"
    CLINIC_STAFF = "clinic_staff"
    CLINIC_ADMIN = "clinic_admin"


class GuidelineProfile(enum.StrEnum):
    """Locale profile for rule thresholds (clinical-rules.md §7: parameters in braces {US|EU|CN})."""

    CN = "cn"
    US = "us"
    EU = "eu"


class Clinic(Base):
    __tablename__ = "clinics"

    clinic_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    default_profile: Mapped[GuidelineProfile] = mapped_column(
        str_enum(GuidelineProfile, 8), default=GuidelineProfile.EU
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", doc="IANA zone for day boundaries")
    glucose_unit: Mapped[GlucoseUnit] = mapped_column(
        str_enum(GlucoseUnit, 8),
        default=lambda context: default_glucose_unit(context.get_current_parameters().get("default_profile")),
        server_default=GlucoseUnit.MMOL_L.value,
        doc="unit glucose is shown in (stored values stay mg/dL); a user may override it",
    )
    readings_retention_days: Mapped[int | None] = mapped_column(
        Integer,
        doc="days the clinic's patients' readings are kept; NULL: the deployment's retention.readings_days "
        "(docs/scaling.md, Retention)",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def default_glucose_unit(profile: object) -> GlucoseUnit:
    """mg/dL where US practice reads it (profile us), mmol/L elsewhere (EU, China)."""
    return GlucoseUnit.MG_DL if profile == GuidelineProfile.US.value else GlucoseUnit.MMOL_L


class User(Base):
    """A clinic account: family doctor, clinic staff or administrator (roles in `user_roles`)."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.clinic_id", ondelete="RESTRICT"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(
        String(HASH_LENGTH), doc="argon2 hash in PHC string form (pwdlib); never the password"
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="consecutive failed logins; the account locks at api.routes.auth.LOCK_AFTER_FAILED_LOGINS",
    )
    phone: Mapped[str | None] = mapped_column(String(40), doc="for pushed alerts (SMS/voice channels)")
    glucose_unit_override: Mapped[GlucoseUnit | None] = mapped_column(
        str_enum(GlucoseUnit, 8), doc="the user's glucose display unit; NULL: the clinic's"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    session_version: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="raised whenever the account is deactivated or reactivated or its roles change: every "
        "session signed in under an older version ends (api.sessions; the events below)",
    )

    roles: Mapped[list[UserRoleGrant]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    def has_role(self, role: UserRole) -> bool:
        return any(grant.role is role for grant in self.roles)

    @property
    def role_set(self) -> frozenset[UserRole]:
        return frozenset(grant.role for grant in self.roles)


class UserRoleGrant(Base):
    """One role held by a user; a doctor may also administer the clinic."""

    __tablename__ = "user_roles"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[UserRole] = mapped_column(str_enum(UserRole), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="roles")


class PasswordResetCode(Base):
    """A one-time code an administrator issues so that a user sets a new password (or a first one).

    Only the code's SHA-256 is kept: the code is 100 random bits, so a fast hash cannot be reversed by
    guessing (OWASP Forgot Password Cheat Sheet: store reset tokens hashed, single use, expiring).
    """

    __tablename__ = "password_reset_codes"
    __table_args__ = (Index("ix_password_reset_codes_user_id", "user_id"),)

    reset_code_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="hex SHA-256 of the code")
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), doc="audit actor who issued it")
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class UserSession(Base):
    """One sign-in (api/sessions.py): its access tokens name it (`sid`) and its refresh tokens
    belong to it. Revoked at sign-out, when a refresh token is used twice (RFC 9700 §4.14.2), or by
    the account's session_version moving on; it never outlives `expires_at`."""

    __tablename__ = "user_sessions"

    session_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    session_version: Mapped[int] = mapped_column(Integer, doc="users.session_version when signed in")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    """A refresh token of a session, kept only as its SHA-256 (the token is 256 random bits, so a
    plain hash suffices): whoever reads this table cannot use it. Each refresh marks the token used
    and issues the next; a used token presented again revokes the whole session."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("user_sessions.session_id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


# Every change of an account's activity or roles raises its session_version, whichever code makes it
# (the API, `vitalgate admin`, a script): the sessions signed in before it end at their next request
# or live-event check (api.deps, api.sessions).
def _next_session_version(user: User) -> None:
    user.session_version = (user.session_version or 0) + 1


@event.listens_for(User.active, "set", active_history=True)
def _active_changed(user: User, value: bool, old: object, _initiator: object) -> None:
    if old is not NO_VALUE and old is not NEVER_SET and value != old:
        _next_session_version(user)


@event.listens_for(User.roles, "append")
@event.listens_for(User.roles, "remove")
def _roles_changed(user: User, _grant: UserRoleGrant, _initiator: object) -> None:
    if inspect(user).persistent:
        _next_session_version(user)
