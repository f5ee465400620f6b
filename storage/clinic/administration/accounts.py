"""User accounts: creating and changing them, roles, deactivation, lock-outs and one-time password
reset codes. A clinic always keeps an active administrator."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.clinic import enrolment
from storage.clinic.administration.clinic import own_clinic
from storage.clinic.administration.common import (
    EMAIL_PATTERN,
    PHONE_PATTERN,
    Actor,
    audit_change,
    change_time,
    checked_id,
    checked_optional,
    checked_text,
    conflict,
    invalid,
    new_id,
    not_found,
)
from storage.clinic.models import PasswordResetCode, User, UserRole, UserRoleGrant

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


def own_user(session: Session, actor: Actor, user_id: str, field: str = "user_id") -> User:
    """A user of the actor's clinic, or `admin.not_found`."""
    user = session.get(User, user_id)
    if user is None or user.clinic_id != actor.clinic_id:
        raise not_found("user", user_id, field)
    return user


def list_accounts(session: Session, actor: Actor) -> list[User]:
    return list(
        session.scalars(select(User).where(User.clinic_id == actor.clinic_id).order_by(User.display_name))
    )


def _roles(roles: Iterable[UserRole]) -> list[UserRole]:
    chosen = sorted(set(roles))
    if not chosen:
        raise invalid("admin.roles_required", "an account needs at least one role", "roles")
    return chosen


def _free_email(session: Session, email: str, user_id: str | None = None) -> str:
    email = email.strip().lower()  # logins compare lower-cased e-mail addresses
    if len(email) > 254 or not EMAIL_PATTERN.fullmatch(email):
        raise invalid("admin.invalid_field", "email is not an e-mail address", "email")
    holder = session.scalar(select(User.user_id).where(User.email == email))
    if holder is not None and holder != user_id:
        raise conflict("admin.email_taken", "another account uses that e-mail address", "email")
    return email


def check_password(password: str, field: str = "password") -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise invalid(
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
    own_clinic(session, actor)
    user_id = checked_id(user_id, "user_id") if user_id else new_id("u")
    if session.get(User, user_id) is not None:
        raise conflict("admin.user_exists", f"user {user_id} exists already", "user_id")
    chosen = _roles(roles)
    email = _free_email(session, email)
    display_name = checked_text(display_name, "display_name", 200)
    phone = checked_optional(phone, "phone", PHONE_PATTERN, "a phone number")
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
    audit_change(
        session,
        actor,
        "create_account",
        "user",
        user_id,
        {"roles": [r.value for r in chosen], "password_set": password is not None},
    )
    code = None if password is not None else _issue_reset_code(session, actor, user, change_time(now))
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
    user = own_user(session, actor, user_id)
    new: dict[str, Any] = {}
    if display_name is not None:
        new["display_name"] = checked_text(display_name, "display_name", 200)
    if email is not None:
        new["email"] = _free_email(session, email, user_id)
    if phone is not None:
        new["phone"] = checked_optional(phone, "phone", PHONE_PATTERN, "a phone number")
    changed = sorted(column for column, value in new.items() if getattr(user, column) != value)
    for column in changed:
        setattr(user, column, new[column])
    session.flush()
    audit_change(session, actor, "update_account", "user", user_id, {"changed": changed})
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
        raise conflict("admin.last_admin", "the clinic's last active administrator must stay one", "user_id")


def set_roles(session: Session, actor: Actor, user_id: str, roles: Iterable[UserRole]) -> User:
    """Replace an account's roles. The clinic keeps at least one active administrator."""
    user = own_user(session, actor, user_id)
    chosen = _roles(roles)
    before = sorted(user.role_set)
    if UserRole.CLINIC_ADMIN not in chosen:
        _keep_an_administrator(session, user)
    kept = [grant for grant in user.roles if grant.role in chosen]
    kept += [UserRoleGrant(role=role) for role in chosen if role not in {g.role for g in kept}]
    user.roles = kept
    session.flush()
    audit_change(
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
    user = own_user(session, actor, user_id)
    if not user.active:
        raise conflict("admin.account_inactive", f"user {user_id} is already inactive", "user_id")
    if user_id == actor.user_id:
        raise conflict("admin.own_account", "administrators cannot deactivate their own account", "user_id")
    _keep_an_administrator(session, user)
    user.active = False
    session.flush()
    audit_change(session, actor, "deactivate_account", "user", user_id)
    return user


def reactivate_account(session: Session, actor: Actor, user_id: str) -> User:
    user = own_user(session, actor, user_id)
    if user.active:
        raise conflict("admin.account_active", f"user {user_id} is active", "user_id")
    user.active = True
    session.flush()
    audit_change(session, actor, "reactivate_account", "user", user_id)
    return user


def unlock_account(session: Session, actor: Actor, user_id: str) -> int:
    """Clear an account's consecutive failed logins (api.routes.auth locks it at 100). Returns how
    many there were."""
    user = own_user(session, actor, user_id)
    failed = user.failed_logins
    user.failed_logins = 0
    session.flush()
    audit_change(session, actor, "unlock_account", "user", user_id, {"failed_logins": failed})
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
    audit_change(
        session, actor, "issue_password_reset", "user", user.user_id, {"expires_at": expires_at.isoformat()}
    )
    return IssuedResetCode(user.user_id, code, expires_at)


def issue_password_reset(
    session: Session, actor: Actor, user_id: str, *, now: datetime | None = None
) -> IssuedResetCode:
    """A one-time code (24 h, single use) with which the account's holder sets a new password."""
    user = own_user(session, actor, user_id)
    if not user.active:
        raise conflict(
            "admin.account_inactive", f"user {user_id} is inactive; reactivate it first", "user_id"
        )
    return _issue_reset_code(session, actor, user, change_time(now))


def reset_password_with_code(
    session: Session, *, code: str, new_password: str, now: datetime | None = None
) -> User:
    """Set the password of the account a valid code was issued for, and use the code up. A code that
    is unknown, used, expired, or of an inactive account is refused alike (`admin.reset_code_invalid`),
    and so is a password outside the length bounds (checked first: the code stays usable). Clears the
    account's failed logins: whoever was locked out has a new password now. Audited under the
    account's holder."""
    check_password(new_password, "new_password")
    when = change_time(now)
    row = session.scalar(select(PasswordResetCode).where(PasswordResetCode.code_hash == _code_hash(code)))
    user = session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or row.used_at is not None or row.expires_at <= when or not user.active:
        raise invalid(
            "admin.reset_code_invalid",
            "this code is not valid: it may be mistyped, used or expired; ask an administrator for a new one",
            "code",
        )
    row.used_at = when
    user.password_hash = enrolment.hash_secret(new_password)
    user.failed_logins = 0
    session.flush()
    audit_change(session, Actor(user.user_id, user.clinic_id), "reset_password", "user", user.user_id)
    return user
