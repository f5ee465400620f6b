"""Clinic administration: the clinic's settings, accounts, patients, gateways and meter bindings, as
a clinic administrator changes them (through the API, the web app or `vitalgate admin`).

Every change is made on behalf of an `Actor` and only inside the actor's clinic: an object of
another clinic is reported as absent (`admin.not_found`), as if it did not exist (OWASP API1). Every
change adds its audit entry to the caller's session, so the change and its entry commit together
(no trail, no change). A refused change raises `AdministrationError` before anything is written;
its `code` ("admin.meter_already_bound", ...) is what the API and the CLI report, and the caller
records the refusal as a denied audit entry.

Audit entries name people and records by opaque id only. A patient's or user's name, birth date,
phone or e-mail address never goes into an entry, an error message or a log: where such a field
changes, the entry lists which fields changed, not their values.

The caller owns the transaction and commits; functions flush so that database constraints are met
before the caller's commit.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.clinic import enrolment, repository
from storage.clinic.audit import record_audit
from storage.clinic.models import (
    ANY_DEVICE_USER,
    CareTeamMember,
    CareTeamRole,
    Clinic,
    Gateway,
    GuidelineProfile,
    Meter,
    MeterBinding,
    MeterKind,
    PasswordResetCode,
    Patient,
    User,
    UserRole,
    UserRoleGrant,
    utcnow,
)
from vitals.readings import DeviceIdentity
from vitals.topics import ID_PATTERN
from vitals.units import GlucoseUnit

# A one-time password reset code lasts a day and opens one password change.
RESET_CODE_LIFETIME: Final = timedelta(hours=24)
# 20 symbols of Crockford's base32 (no I, L, O, U: nothing to misread when read out): 100 bits.
RESET_CODE_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RESET_CODE_SYMBOLS: Final = 20
RESET_CODE_GROUP: Final = 5
# Passwords: at least 12 characters (as `vitalgate admin add-user`); NIST SP 800-63B §5.1.1.2 asks
# for at least 8 and allows at least 64; argon2 hashes any length, the cap keeps hashing cheap.
MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 256
# Cuff user slots: the Blood Pressure Measurement "User ID" field, 0-254; 0xFF means "unknown user"
# and stands for "every slot" in a binding (ble-health-profiles.md §2.2, field 7).
MAX_DEVICE_USER: Final = ANY_DEVICE_USER - 1
PHONE_PATTERN: Final = re.compile(r"^\+?[0-9][0-9 ()-]{2,38}$")
EMAIL_PATTERN: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
EARLIEST_BIRTH_DATE: Final = date(1900, 1, 1)


class AdminErrorKind(enum.StrEnum):
    """What kind of refusal: the API answers 404, 409 and 422 for these."""

    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"


class AdministrationError(ValueError):
    """A change that cannot be made; nothing was changed. `code` names the reason for programs (the
    web app shows its own text for it), the message says it in words (ids only, never a name)."""

    def __init__(self, code: str, message: str, *, kind: AdminErrorKind, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.field = field


def _not_found(what: str, ident: str, field: str | None = None) -> AdministrationError:
    return AdministrationError(
        "admin.not_found", f"no {what} {ident} in this clinic", kind=AdminErrorKind.NOT_FOUND, field=field
    )


def _conflict(code: str, message: str, field: str | None = None) -> AdministrationError:
    return AdministrationError(code, message, kind=AdminErrorKind.CONFLICT, field=field)


def _invalid(code: str, message: str, field: str | None = None) -> AdministrationError:
    return AdministrationError(code, message, kind=AdminErrorKind.INVALID, field=field)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and the clinic they act in. `actor_id` is a user id, or "cli:<os user>"
    for an operator at a shell who names no account (`vitalgate admin`)."""

    actor_id: str
    clinic_id: str

    @property
    def user_id(self) -> str | None:
        """The actor's account, when it is one (a foreign key may name it)."""
        return None if self.actor_id.startswith("cli:") else self.actor_id


def _audit(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    record_audit(
        session,
        actor=actor.actor_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        clinic_id=actor.clinic_id,
        details=details,
    )


def _now(now: datetime | None) -> datetime:
    when = now or utcnow()
    if when.tzinfo is None:
        raise ValueError("naive datetime: administration times must be timezone-aware")
    return when.astimezone(UTC)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def _checked_id(value: str, field: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise _invalid("admin.invalid_id", f"{field} must be 1-64 letters, digits, '_' or '-'", field)
    return value


def _text(value: str, field: str, max_length: int) -> str:
    value = value.strip()
    if not value or len(value) > max_length:
        raise _invalid("admin.invalid_field", f"{field} must have 1-{max_length} characters", field)
    return value


def _optional(value: str | None, field: str, pattern: re.Pattern[str], what: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not pattern.fullmatch(value):
        raise _invalid("admin.invalid_field", f"{field} is not {what}", field)
    return value


def _birth_date(value: str | None, today: date) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        born = date.fromisoformat(value.strip())
    except ValueError as exc:
        raise _invalid(
            "admin.invalid_field", "date_of_birth must be a date, YYYY-MM-DD", "date_of_birth"
        ) from exc
    if not EARLIEST_BIRTH_DATE <= born <= today:
        raise _invalid("admin.invalid_field", "date_of_birth must be a past date", "date_of_birth")
    return born.isoformat()


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())  # reads the tz database once


def check_timezone(name: str, field: str = "timezone") -> str:
    """An IANA zone name of the tz database (zoneinfo), or `admin.unknown_timezone`."""
    if name not in _zones():
        raise _invalid(
            "admin.unknown_timezone", "timezone must be an IANA time zone name, e.g. Asia/Shanghai", field
        )
    return name


# -- clinic ---------------------------------------------------------------------------------------


def _clinic(session: Session, actor: Actor) -> Clinic:
    clinic = session.get(Clinic, actor.clinic_id)
    if clinic is None:
        raise _not_found("clinic", actor.clinic_id)
    return clinic


def clinic_settings(session: Session, actor: Actor) -> Clinic:
    return _clinic(session, actor)


def add_clinic(
    session: Session,
    *,
    actor_id: str,
    clinic_id: str,
    name: str,
    profile: GuidelineProfile,
    timezone: str = "UTC",
    glucose_unit: GlucoseUnit | None = None,
) -> Clinic:
    """Enrol a clinic (an operator's step before the clinic has an administrator)."""
    _checked_id(clinic_id, "clinic_id")
    name = _text(name, "name", 200)
    check_timezone(timezone)
    if session.get(Clinic, clinic_id) is not None:
        raise _conflict("admin.clinic_exists", f"clinic {clinic_id} exists already", "clinic_id")
    clinic = enrolment.add_clinic(session, clinic_id=clinic_id, name=name, profile=profile)
    clinic.timezone = timezone
    if glucose_unit is not None:
        clinic.glucose_unit = glucose_unit
    session.flush()
    _audit(
        session,
        Actor(actor_id, clinic_id),
        "add_clinic",
        "clinic",
        clinic_id,
        {"guideline_profile": profile.value, "timezone": timezone, "glucose_unit": clinic.glucose_unit.value},
    )
    return clinic


def update_clinic_settings(
    session: Session,
    actor: Actor,
    *,
    name: str | None = None,
    guideline_profile: GuidelineProfile | None = None,
    timezone: str | None = None,
    glucose_unit: GlucoseUnit | None = None,
) -> Clinic:
    """Change the given settings (None: unchanged); audited with each changed setting, from and to."""
    clinic = _clinic(session, actor)
    new: dict[str, Any] = {}
    if name is not None:
        new["name"] = _text(name, "name", 200)
    if guideline_profile is not None:
        new["default_profile"] = guideline_profile
    if timezone is not None:
        new["timezone"] = check_timezone(timezone)
    if glucose_unit is not None:
        new["glucose_unit"] = glucose_unit
    changed: dict[str, Any] = {}
    for column, value in new.items():
        before = getattr(clinic, column)
        if before != value:
            setattr(clinic, column, value)
            changed[column] = {"from": _plain(before), "to": _plain(value)}
    session.flush()
    _audit(session, actor, "update_clinic_settings", "clinic", clinic.clinic_id, {"changed": changed})
    return clinic


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


# -- accounts -------------------------------------------------------------------------------------


def _user(session: Session, actor: Actor, user_id: str, field: str = "user_id") -> User:
    user = session.get(User, user_id)
    if user is None or user.clinic_id != actor.clinic_id:
        raise _not_found("user", user_id, field)
    return user


def list_accounts(session: Session, actor: Actor) -> list[User]:
    return list(
        session.scalars(select(User).where(User.clinic_id == actor.clinic_id).order_by(User.display_name))
    )


def _roles(roles: Iterable[UserRole]) -> list[UserRole]:
    chosen = sorted(set(roles))
    if not chosen:
        raise _invalid("admin.roles_required", "an account needs at least one role", "roles")
    return chosen


def _free_email(session: Session, email: str, user_id: str | None = None) -> str:
    email = email.strip().lower()  # logins compare lower-cased e-mail addresses
    if len(email) > 254 or not EMAIL_PATTERN.fullmatch(email):
        raise _invalid("admin.invalid_field", "email is not an e-mail address", "email")
    holder = session.scalar(select(User.user_id).where(User.email == email))
    if holder is not None and holder != user_id:
        raise _conflict("admin.email_taken", "another account uses that e-mail address", "email")
    return email


def check_password(password: str, field: str = "password") -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise _invalid(
            "admin.password_length",
            f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            field,
        )
    return password


@dataclass(frozen=True, slots=True)
class IssuedResetCode:
    """A one-time code, shown once to the administrator who passes it on; only its hash is kept."""

    user_id: str
    code: str
    expires_at: datetime


def create_account(
    session: Session,
    actor: Actor,
    *,
    email: str,
    display_name: str,
    roles: Iterable[UserRole],
    user_id: str | None = None,
    phone: str | None = None,
    password: str | None = None,
    now: datetime | None = None,
) -> tuple[User, IssuedResetCode | None]:
    """Create an account in the actor's clinic. Without a password, the account gets a one-time code
    with which its holder sets their own (the administrator never learns it)."""
    _clinic(session, actor)
    user_id = _checked_id(user_id, "user_id") if user_id else _new_id("u")
    if session.get(User, user_id) is not None:
        raise _conflict("admin.user_exists", f"user {user_id} exists already", "user_id")
    chosen = _roles(roles)
    email = _free_email(session, email)
    display_name = _text(display_name, "display_name", 200)
    phone = _optional(phone, "phone", PHONE_PATTERN, "a phone number")
    if password is not None:
        check_password(password)
    user = enrolment.add_user(
        session,
        user_id=user_id,
        clinic_id=actor.clinic_id,
        email=email,
        display_name=display_name,
        roles=chosen,
        password=password,
    )
    user.phone = phone
    session.flush()
    _audit(
        session,
        actor,
        "create_account",
        "user",
        user_id,
        {"roles": [r.value for r in chosen], "password_set": password is not None},
    )
    code = None if password is not None else _issue_reset_code(session, actor, user, _now(now))
    return user, code


def update_account(
    session: Session,
    actor: Actor,
    user_id: str,
    *,
    display_name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> User:
    """Change the given contact fields (None: unchanged; "" clears the phone). The audit entry names
    the fields that changed, not their values (personal data stays in `users`)."""
    user = _user(session, actor, user_id)
    new: dict[str, Any] = {}
    if display_name is not None:
        new["display_name"] = _text(display_name, "display_name", 200)
    if email is not None:
        new["email"] = _free_email(session, email, user_id)
    if phone is not None:
        new["phone"] = _optional(phone, "phone", PHONE_PATTERN, "a phone number")
    changed = sorted(column for column, value in new.items() if getattr(user, column) != value)
    for column in changed:
        setattr(user, column, new[column])
    session.flush()
    _audit(session, actor, "update_account", "user", user_id, {"changed": changed})
    return user


def _other_active_admins(session: Session, clinic_id: str, user_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(User)
            .join(UserRoleGrant, UserRoleGrant.user_id == User.user_id)
            .where(
                User.clinic_id == clinic_id,
                User.active.is_(True),
                User.user_id != user_id,
                UserRoleGrant.role == UserRole.CLINIC_ADMIN,
            )
        )
        or 0
    )


def _keep_an_administrator(session: Session, user: User) -> None:
    if (
        user.active
        and user.has_role(UserRole.CLINIC_ADMIN)
        and _other_active_admins(session, user.clinic_id, user.user_id) == 0
    ):
        raise _conflict("admin.last_admin", "the clinic's last active administrator must stay one", "user_id")


def set_roles(session: Session, actor: Actor, user_id: str, roles: Iterable[UserRole]) -> User:
    """Replace an account's roles. The clinic keeps at least one active administrator."""
    user = _user(session, actor, user_id)
    chosen = _roles(roles)
    before = sorted(user.role_set)
    if UserRole.CLINIC_ADMIN not in chosen:
        _keep_an_administrator(session, user)
    kept = [grant for grant in user.roles if grant.role in chosen]
    kept += [UserRoleGrant(role=role) for role in chosen if role not in {g.role for g in kept}]
    user.roles = kept
    session.flush()
    _audit(
        session,
        actor,
        "set_roles",
        "user",
        user_id,
        {"from": [r.value for r in before], "to": [r.value for r in chosen]},
    )
    return user


def deactivate_account(session: Session, actor: Actor, user_id: str) -> User:
    """An inactive account cannot sign in, and its tokens stop working at once (api.deps)."""
    user = _user(session, actor, user_id)
    if not user.active:
        raise _conflict("admin.account_inactive", f"user {user_id} is already inactive", "user_id")
    if user_id == actor.user_id:
        raise _conflict("admin.own_account", "administrators cannot deactivate their own account", "user_id")
    _keep_an_administrator(session, user)
    user.active = False
    session.flush()
    _audit(session, actor, "deactivate_account", "user", user_id)
    return user


def reactivate_account(session: Session, actor: Actor, user_id: str) -> User:
    user = _user(session, actor, user_id)
    if user.active:
        raise _conflict("admin.account_active", f"user {user_id} is active", "user_id")
    user.active = True
    session.flush()
    _audit(session, actor, "reactivate_account", "user", user_id)
    return user


def unlock_account(session: Session, actor: Actor, user_id: str) -> int:
    """Clear an account's consecutive failed logins (api.routes.auth locks it at 100). Returns how
    many there were."""
    user = _user(session, actor, user_id)
    failed = user.failed_logins
    user.failed_logins = 0
    session.flush()
    _audit(session, actor, "unlock_account", "user", user_id, {"failed_logins": failed})
    return failed


_MISREAD: Final = str.maketrans("OIL", "011")


def normalise_reset_code(code: str) -> str:
    """The code as issued, from what a person typed: case, spaces and dashes do not matter, and
    letters that read like digits (O, I, L) count as those digits (Crockford's base32)."""
    plain = "".join(code.split()).replace("-", "").upper()
    return plain.translate(_MISREAD)


def _code_hash(code: str) -> str:
    return hashlib.sha256(normalise_reset_code(code).encode()).hexdigest()


def _issue_reset_code(session: Session, actor: Actor, user: User, now: datetime) -> IssuedResetCode:
    # A new code replaces any the account still holds: only the latest one opens a change.
    session.execute(
        delete(PasswordResetCode).where(
            PasswordResetCode.user_id == user.user_id, PasswordResetCode.used_at.is_(None)
        )
    )
    symbols = "".join(secrets.choice(RESET_CODE_ALPHABET) for _ in range(RESET_CODE_SYMBOLS))
    code = "-".join(symbols[i : i + RESET_CODE_GROUP] for i in range(0, RESET_CODE_SYMBOLS, RESET_CODE_GROUP))
    expires_at = now + RESET_CODE_LIFETIME
    session.add(
        PasswordResetCode(
            user_id=user.user_id,
            code_hash=_code_hash(code),
            issued_at=now,
            issued_by=actor.actor_id,
            expires_at=expires_at,
        )
    )
    session.flush()
    _audit(
        session, actor, "issue_password_reset", "user", user.user_id, {"expires_at": expires_at.isoformat()}
    )
    return IssuedResetCode(user.user_id, code, expires_at)


def issue_password_reset(
    session: Session, actor: Actor, user_id: str, *, now: datetime | None = None
) -> IssuedResetCode:
    """A one-time code (24 h, single use) with which the account's holder sets a new password."""
    user = _user(session, actor, user_id)
    if not user.active:
        raise _conflict(
            "admin.account_inactive", f"user {user_id} is inactive; reactivate it first", "user_id"
        )
    return _issue_reset_code(session, actor, user, _now(now))


def reset_password_with_code(
    session: Session, *, code: str, new_password: str, now: datetime | None = None
) -> User:
    """Set the password of the account a valid code was issued for, and use the code up. A code that
    is unknown, used, expired, or of an inactive account is refused alike (`admin.reset_code_invalid`),
    and so is a password outside the length bounds (checked first: the code stays usable). Clears the
    account's failed logins: whoever was locked out has a new password now. Audited under the
    account's holder."""
    check_password(new_password, "new_password")
    when = _now(now)
    row = session.scalar(select(PasswordResetCode).where(PasswordResetCode.code_hash == _code_hash(code)))
    user = session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or row.used_at is not None or row.expires_at <= when or not user.active:
        raise _invalid(
            "admin.reset_code_invalid",
            "this code is not valid: it may be mistyped, used or expired; ask an administrator for a new one",
            "code",
        )
    row.used_at = when
    user.password_hash = enrolment.hash_secret(new_password)
    user.failed_logins = 0
    session.flush()
    _audit(session, Actor(user.user_id, user.clinic_id), "reset_password", "user", user.user_id)
    return user


# -- patients -------------------------------------------------------------------------------------


def _patient(session: Session, actor: Actor, patient_id: str, field: str = "patient_id") -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None or patient.clinic_id != actor.clinic_id:
        raise _not_found("patient", patient_id, field)
    return patient


def get_patient(session: Session, actor: Actor, patient_id: str) -> Patient:
    return _patient(session, actor, patient_id)


def list_patients(session: Session, actor: Actor, *, include_discharged: bool = True) -> list[Patient]:
    query = select(Patient).where(Patient.clinic_id == actor.clinic_id)
    if not include_discharged:
        query = query.where(Patient.active.is_(True))
    return list(session.scalars(query.order_by(Patient.family_name, Patient.given_name, Patient.patient_id)))


def _clinician(session: Session, actor: Actor, user_id: str, team_role: CareTeamRole, field: str) -> User:
    """A user of the clinic who may hold `team_role` on a care team: an active family doctor for the
    family doctor's place; a family doctor or clinic staff for a staff place."""
    user = _user(session, actor, user_id, field)
    allowed = (
        {UserRole.FAMILY_DOCTOR}
        if team_role is CareTeamRole.FAMILY_DOCTOR
        else {UserRole.FAMILY_DOCTOR, UserRole.CLINIC_STAFF}
    )
    if not user.active or not allowed & user.role_set:
        raise _invalid(
            "admin.not_clinician",
            f"user {user_id} cannot be on a care team as {team_role.value} (role or inactive account)",
            field,
        )
    return user


def enrol_patient(
    session: Session,
    actor: Actor,
    *,
    given_name: str,
    family_name: str,
    family_doctor_id: str,
    staff_ids: Sequence[str] = (),
    patient_id: str | None = None,
    date_of_birth: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    now: datetime | None = None,
) -> Patient:
    """Enrol a patient in the actor's clinic under a family doctor, with staff in escalation order."""
    when = _now(now)
    _clinic(session, actor)
    patient_id = _checked_id(patient_id, "patient_id") if patient_id else _new_id("p")
    if session.get(Patient, patient_id) is not None:
        raise _conflict("admin.patient_exists", f"patient {patient_id} exists already", "patient_id")
    given_name = _text(given_name, "given_name", 100)
    family_name = _text(family_name, "family_name", 100)
    born = _birth_date(date_of_birth, when.date())
    phone = _optional(phone, "phone", PHONE_PATTERN, "a phone number")
    email = _optional(email, "email", EMAIL_PATTERN, "an e-mail address")
    _clinician(session, actor, family_doctor_id, CareTeamRole.FAMILY_DOCTOR, "family_doctor_id")
    if len(set(staff_ids)) != len(staff_ids) or family_doctor_id in staff_ids:
        raise _invalid("admin.already_on_care_team", "each member joins a care team once", "staff_ids")
    for staff_id in staff_ids:
        _clinician(session, actor, staff_id, CareTeamRole.CLINIC_STAFF, "staff_ids")
    patient = enrolment.enrol_patient(
        session,
        patient_id=patient_id,
        clinic_id=actor.clinic_id,
        given_name=given_name,
        family_name=family_name,
        family_doctor_id=family_doctor_id,
        staff_ids=staff_ids,
    )
    patient.date_of_birth, patient.phone, patient.email = born, phone, email
    patient.enrolled_at = when
    session.flush()
    _audit(
        session,
        actor,
        "enrol_patient",
        "patient",
        patient_id,
        {"family_doctor_id": family_doctor_id, "staff_ids": list(staff_ids)},
    )
    return patient


def update_patient(
    session: Session,
    actor: Actor,
    patient_id: str,
    *,
    given_name: str | None = None,
    family_name: str | None = None,
    date_of_birth: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    now: datetime | None = None,
) -> Patient:
    """Change the given fields (None: unchanged; "" clears an optional one). The audit entry names the
    fields that changed, never their values."""
    patient = _patient(session, actor, patient_id)
    new: dict[str, Any] = {}
    if given_name is not None:
        new["given_name"] = _text(given_name, "given_name", 100)
    if family_name is not None:
        new["family_name"] = _text(family_name, "family_name", 100)
    if date_of_birth is not None:
        new["date_of_birth"] = _birth_date(date_of_birth, _now(now).date())
    if phone is not None:
        new["phone"] = _optional(phone, "phone", PHONE_PATTERN, "a phone number")
    if email is not None:
        new["email"] = _optional(email, "email", EMAIL_PATTERN, "an e-mail address")
    changed = sorted(column for column, value in new.items() if getattr(patient, column) != value)
    for column in changed:
        setattr(patient, column, new[column])
    session.flush()
    _audit(session, actor, "update_patient", "patient", patient_id, {"changed": changed})
    return patient


def add_care_team_member(
    session: Session, actor: Actor, patient_id: str, *, user_id: str, team_role: CareTeamRole
) -> CareTeamMember:
    """Add a member at the end of the escalation order (notified after everyone already there)."""
    patient = _patient(session, actor, patient_id)
    _clinician(session, actor, user_id, team_role, "user_id")
    if any(member.user_id == user_id for member in patient.care_team):
        raise _conflict("admin.already_on_care_team", f"user {user_id} is on this care team", "user_id")
    order = max((m.escalation_order for m in patient.care_team), default=-1) + 1
    member = CareTeamMember(user_id=user_id, team_role=team_role, escalation_order=order)
    patient.care_team.append(member)
    session.flush()
    _audit(
        session,
        actor,
        "add_care_team_member",
        "patient",
        patient_id,
        {"user_id": user_id, "team_role": team_role.value, "escalation_order": order},
    )
    return member


def remove_care_team_member(session: Session, actor: Actor, patient_id: str, *, user_id: str) -> None:
    """Take a member off the care team; a patient keeps at least one family doctor."""
    patient = _patient(session, actor, patient_id)
    member = next((m for m in patient.care_team if m.user_id == user_id), None)
    if member is None:
        raise _not_found("care team member", user_id, "user_id")
    doctors = [m for m in patient.care_team if m.team_role is CareTeamRole.FAMILY_DOCTOR]
    if member.team_role is CareTeamRole.FAMILY_DOCTOR and len(doctors) == 1:
        raise _conflict(
            "admin.care_team_needs_doctor",
            "a patient keeps a family doctor: add another before removing this one",
            "user_id",
        )
    patient.care_team.remove(member)
    session.flush()
    _audit(
        session,
        actor,
        "remove_care_team_member",
        "patient",
        patient_id,
        {"user_id": user_id, "team_role": member.team_role.value},
    )


@dataclass(frozen=True, slots=True)
class Discharge:
    patient: Patient
    ended_bindings: list[MeterBinding]

    @property
    def gateway_ids(self) -> list[str]:
        """The gateways whose configuration changed (their retained config is published again)."""
        return sorted({b.gateway_id for b in self.ended_bindings})


def discharge_patient(
    session: Session, actor: Actor, patient_id: str, *, now: datetime | None = None
) -> Discharge:
    """Discharge a patient: no longer on any panel, no meter bound to them from now on. Every reading,
    alert and audit entry of theirs is kept. Their active meter bindings end now."""
    when = _now(now)
    patient = _patient(session, actor, patient_id)
    if not patient.active:
        raise _conflict("admin.patient_discharged", f"patient {patient_id} is discharged", "patient_id")
    ended = list(
        session.scalars(
            select(MeterBinding).where(MeterBinding.patient_id == patient_id, MeterBinding.active.is_(True))
        )
    )
    for binding in ended:
        binding.active = False
        binding.unbound_at = max(when, binding.bound_at)
    patient.active = False
    patient.discharged_at = when
    session.flush()
    _audit(
        session,
        actor,
        "discharge_patient",
        "patient",
        patient_id,
        {"bindings_ended": [b.binding_id for b in ended]},
    )
    return Discharge(patient, ended)


def readmit_patient(session: Session, actor: Actor, patient_id: str) -> Patient:
    """Re-admit a discharged patient, with their care team and data as they were (meters are bound
    again separately)."""
    patient = _patient(session, actor, patient_id)
    if patient.active:
        raise _conflict("admin.patient_active", f"patient {patient_id} is not discharged", "patient_id")
    discharged_at = patient.discharged_at
    patient.active = True
    patient.discharged_at = None
    session.flush()
    _audit(
        session,
        actor,
        "readmit_patient",
        "patient",
        patient_id,
        {"discharged_at": discharged_at.isoformat() if discharged_at else None},
    )
    return patient


# -- gateways -------------------------------------------------------------------------------------


def _gateway(session: Session, actor: Actor, gateway_id: str, field: str = "gateway_id") -> Gateway:
    gateway = session.get(Gateway, gateway_id)
    if gateway is None or gateway.clinic_id != actor.clinic_id:
        raise _not_found("gateway", gateway_id, field)
    return gateway


def get_gateway(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    return _gateway(session, actor, gateway_id)


def list_gateways(session: Session, actor: Actor) -> list[Gateway]:
    return list(
        session.scalars(
            select(Gateway).where(Gateway.clinic_id == actor.clinic_id).order_by(Gateway.gateway_id)
        )
    )


def check_new_gateway_id(
    session: Session, actor: Actor, gateway_id: str, *, reserved: Iterable[str] = ()
) -> str:
    """A gateway id that can be provisioned: well formed, free in every clinic (it is the gateway's
    broker username and client id), and none of `reserved` (the clinic services' broker accounts)."""
    _clinic(session, actor)
    _checked_id(gateway_id, "gateway_id")
    if gateway_id in set(reserved):
        raise _invalid("admin.invalid_id", f"{gateway_id} is a reserved broker account name", "gateway_id")
    if session.get(Gateway, gateway_id) is not None:
        raise _conflict("admin.gateway_exists", f"gateway {gateway_id} exists already", "gateway_id")
    return gateway_id


def register_gateway(
    session: Session,
    actor: Actor,
    *,
    gateway_id: str,
    mqtt_password: str,
    reserved: Iterable[str] = (),
) -> Gateway:
    """Record a provisioned gateway; its broker password is kept only as a hash."""
    check_new_gateway_id(session, actor, gateway_id, reserved=reserved)
    gateway = enrolment.register_gateway(
        session, gateway_id=gateway_id, clinic_id=actor.clinic_id, mqtt_password=mqtt_password
    )
    _audit(session, actor, "provision_gateway", "gateway", gateway_id)
    return gateway


def check_gateway_active(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    """The actor's clinic's gateway, if it is active (`admin.gateway_inactive` if not)."""
    gateway = _gateway(session, actor, gateway_id)
    if not gateway.active:
        raise _conflict("admin.gateway_inactive", f"gateway {gateway_id} is inactive", "gateway_id")
    return gateway


def deactivate_gateway(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    """Mark a gateway inactive (the caller disables its broker account in the same step)."""
    gateway = _gateway(session, actor, gateway_id)
    if not gateway.active:
        raise _conflict("admin.gateway_inactive", f"gateway {gateway_id} is already inactive", "gateway_id")
    gateway.active = False
    session.flush()
    _audit(session, actor, "deactivate_gateway", "gateway", gateway_id)
    return gateway


def reactivate_gateway(session: Session, actor: Actor, gateway_id: str) -> Gateway:
    gateway = _gateway(session, actor, gateway_id)
    if gateway.active:
        raise _conflict("admin.gateway_active", f"gateway {gateway_id} is active", "gateway_id")
    gateway.active = True
    session.flush()
    _audit(session, actor, "reactivate_gateway", "gateway", gateway_id)
    return gateway


def record_rotated_credentials(
    session: Session, actor: Actor, gateway_id: str, *, mqtt_password: str
) -> Gateway:
    """Keep the hash of a gateway's new broker password (the old one no longer works)."""
    gateway = _gateway(session, actor, gateway_id)
    if not gateway.active:
        raise _conflict("admin.gateway_inactive", f"gateway {gateway_id} is inactive", "gateway_id")
    gateway.mqtt_credential_hash = enrolment.hash_secret(mqtt_password)
    session.flush()
    _audit(session, actor, "rotate_gateway_credentials", "gateway", gateway_id)
    return gateway


# -- meters and bindings --------------------------------------------------------------------------


def _meter(session: Session, actor: Actor, meter_key: str, field: str = "meter_key") -> Meter:
    meter = session.get(Meter, meter_key)
    if meter is None or meter.clinic_id != actor.clinic_id:
        raise _not_found("meter", meter_key, field)
    return meter


def list_meters(session: Session, actor: Actor) -> list[Meter]:
    return list(
        session.scalars(select(Meter).where(Meter.clinic_id == actor.clinic_id).order_by(Meter.meter_key))
    )


def list_bindings(
    session: Session, actor: Actor, *, active_only: bool = False, patient_id: str | None = None
) -> list[MeterBinding]:
    """The clinic's bindings (through its meters), newest first."""
    query = (
        select(MeterBinding)
        .join(Meter, Meter.meter_key == MeterBinding.meter_key)
        .where(Meter.clinic_id == actor.clinic_id)
    )
    if active_only:
        query = query.where(MeterBinding.active.is_(True))
    if patient_id is not None:
        query = query.where(MeterBinding.patient_id == patient_id)
    return list(session.scalars(query.order_by(MeterBinding.binding_id.desc())))


def register_meter(
    session: Session,
    actor: Actor,
    *,
    kind: MeterKind,
    manufacturer: str,
    model: str,
    serial_number: str | None = None,
    address: str | None = None,
) -> Meter:
    """Register a meter by its Device Information (serial number, or BLE address when it reports none)."""
    _clinic(session, actor)
    try:
        device = DeviceIdentity(
            manufacturer=manufacturer.strip(),
            model=model.strip(),
            serial_number=(serial_number or "").strip() or None,
            address=(address or "").strip() or None,
        )
    except ValueError as exc:
        raise _invalid(
            "admin.invalid_meter",
            "a meter needs a manufacturer and model (1-64 characters) and a serial number or address",
            "serial_number",
        ) from exc
    if session.get(Meter, device.meter_key) is not None:
        raise _conflict(
            "admin.meter_exists", f"meter {device.meter_key} is registered already", "serial_number"
        )
    meter = enrolment.register_meter(session, clinic_id=actor.clinic_id, device=device, kind=kind)
    _audit(session, actor, "register_meter", "meter", meter.meter_key, {"kind": kind.value})
    return meter


def _slot(meter: Meter, device_user_id: int | None) -> int:
    if device_user_id is None:
        return ANY_DEVICE_USER
    if meter.kind is not MeterKind.BLOOD_PRESSURE:
        raise _invalid(
            "admin.slot_not_supported", "only blood pressure cuffs have user slots", "device_user_id"
        )
    if not 0 <= device_user_id <= MAX_DEVICE_USER:
        raise _invalid("admin.invalid_slot", f"a cuff user slot is 0 to {MAX_DEVICE_USER}", "device_user_id")
    return device_user_id


def _binding(session: Session, actor: Actor, binding_id: int) -> MeterBinding:
    binding = session.get(MeterBinding, binding_id)
    if binding is None:
        raise _not_found("binding", str(binding_id), "binding_id")
    _meter(session, actor, binding.meter_key)  # tenancy: through the meter's clinic
    return binding


def _binding_details(binding: MeterBinding, **extra: Any) -> dict[str, Any]:
    return {
        "binding_id": binding.binding_id,
        "gateway_id": binding.gateway_id,
        "patient_id": binding.patient_id,
        "device_user_id": None if binding.device_user_id == ANY_DEVICE_USER else binding.device_user_id,
        "bound_at": binding.bound_at.isoformat(),
        "prior_memory_belongs": binding.prior_memory_belongs,
        **extra,
    }


def bind_meter(
    session: Session,
    actor: Actor,
    *,
    meter_key: str,
    gateway_id: str,
    patient_id: str,
    device_user_id: int | None = None,
    prior_memory_belongs: bool = False,
    now: datetime | None = None,
) -> MeterBinding:
    """Bind a meter (or one user slot of a cuff) to a patient through a gateway, from now on.

    `prior_memory_belongs`: whether the readings the meter already holds, measured before now, are
    this patient's. No by default: a reused or loaner meter's memory is its earlier owner's, and a
    glucose meter sends its whole memory at the first sync. Refused when the meter (slot) is bound
    already, to anyone: unbind or move it first."""
    when = _now(now)
    meter = _meter(session, actor, meter_key)
    gateway = _gateway(session, actor, gateway_id)
    patient = _patient(session, actor, patient_id)
    slot = _slot(meter, device_user_id)
    if not gateway.active:
        raise _conflict("admin.gateway_inactive", f"gateway {gateway_id} is inactive", "gateway_id")
    if not patient.active:
        raise _conflict("admin.patient_discharged", f"patient {patient_id} is discharged", "patient_id")
    for held in session.scalars(
        select(MeterBinding).where(MeterBinding.meter_key == meter_key, MeterBinding.active.is_(True))
    ):
        if ANY_DEVICE_USER in (held.device_user_id, slot) or held.device_user_id == slot:
            raise _conflict(
                "admin.meter_already_bound",
                f"meter {meter_key} is bound already (binding {held.binding_id}, patient {held.patient_id});"
                " unbind or move it first",
                "meter_key",
            )
    binding = repository.bind_meter(
        session,
        gateway_id=gateway_id,
        meter_key=meter_key,
        patient_id=patient_id,
        device_user_id=None if slot == ANY_DEVICE_USER else slot,
        bound_by=actor.user_id,
        at=when,
        prior_memory_belongs=prior_memory_belongs,
    )
    _audit(session, actor, "bind_meter", "meter", meter_key, _binding_details(binding))
    return binding


def unbind_meter(
    session: Session,
    actor: Actor,
    *,
    binding_id: int,
    unbound_at: datetime | None = None,
    now: datetime | None = None,
    moved: bool = False,
) -> MeterBinding:
    """End a binding at `unbound_at` (default now; not before it began, not in the future). Readings
    measured before then stay the patient's; readings measured after belong to nobody."""
    when = _now(now)
    binding = _binding(session, actor, binding_id)
    if not binding.active:
        raise _conflict("admin.binding_ended", f"binding {binding_id} has ended already", "binding_id")
    end = when if unbound_at is None else _now(unbound_at)
    if end < binding.bound_at:
        raise _invalid(
            "admin.unbind_before_bind",
            f"the unbind time is before the meter was bound ({binding.bound_at.isoformat()})",
            "unbound_at",
        )
    if end > when:
        raise _invalid("admin.time_in_future", "the unbind time is in the future", "unbound_at")
    binding.active = False
    binding.unbound_at = end
    session.flush()
    details = _binding_details(binding, unbound_at=end.isoformat())
    if moved:
        details["moved"] = True
    _audit(session, actor, "unbind_meter", "meter", binding.meter_key, details)
    return binding


def move_meter(
    session: Session,
    actor: Actor,
    *,
    binding_id: int,
    patient_id: str,
    gateway_id: str | None = None,
    device_user_id: int | None = None,
    prior_memory_belongs: bool = False,
    now: datetime | None = None,
) -> tuple[MeterBinding, MeterBinding]:
    """Move a bound meter (slot) to another patient, and gateway when given: the binding ends now and
    a new one begins now, in one transaction. Returns (ended, new)."""
    when = _now(now)
    old = _binding(session, actor, binding_id)
    if old.active and old.patient_id == patient_id and (gateway_id or old.gateway_id) == old.gateway_id:
        raise _conflict(
            "admin.meter_already_bound", f"binding {binding_id} is this patient's already", "patient_id"
        )
    ended = unbind_meter(session, actor, binding_id=binding_id, now=when, moved=True)
    new = bind_meter(
        session,
        actor,
        meter_key=ended.meter_key,
        gateway_id=gateway_id or ended.gateway_id,
        patient_id=patient_id,
        device_user_id=device_user_id,
        prior_memory_belongs=prior_memory_belongs,
        now=when,
    )
    return ended, new
