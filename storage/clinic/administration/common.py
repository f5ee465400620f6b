"""What every administrative change shares: the `Actor` it is made for, `AdministrationError` when it
is refused, its audit entry, and the checks of ids, names, phone numbers, e-mail addresses, birth
dates and time zones."""

from __future__ import annotations

import enum
import re
import secrets
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Final

from sqlalchemy.orm import Session

from storage.clinic.audit import record_audit
from storage.clinic.models import utcnow
from vitals.topics import ID_PATTERN

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


def not_found(what: str, ident: str, field: str | None = None) -> AdministrationError:
    """`admin.not_found`: no such object in the actor's clinic (objects of other clinics included)."""
    return AdministrationError(
        "admin.not_found", f"no {what} {ident} in this clinic", kind=AdminErrorKind.NOT_FOUND, field=field
    )


def conflict(code: str, message: str, field: str | None = None) -> AdministrationError:
    """A refusal because of the state of the records (the API answers 409)."""
    return AdministrationError(code, message, kind=AdminErrorKind.CONFLICT, field=field)


def invalid(code: str, message: str, field: str | None = None) -> AdministrationError:
    """A refusal because of a value given (the API answers 422)."""
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


def audit_change(
    session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add the change's audit entry, filed under the actor's clinic, to the caller's session."""
    record_audit(
        session,
        actor=actor.actor_id,
        action=action,
        object_type=object_type,
        object_id=object_id,
        clinic_id=actor.clinic_id,
        details=details,
    )


def change_time(now: datetime | None) -> datetime:
    """When a change takes effect: `now` (timezone-aware) or the current time, in UTC."""
    when = now or utcnow()
    if when.tzinfo is None:
        raise ValueError("naive datetime: administration times must be timezone-aware")
    return when.astimezone(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def checked_id(value: str, field: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise invalid("admin.invalid_id", f"{field} must be 1-64 letters, digits, '_' or '-'", field)
    return value


def checked_text(value: str, field: str, max_length: int) -> str:
    value = value.strip()
    if not value or len(value) > max_length:
        raise invalid("admin.invalid_field", f"{field} must have 1-{max_length} characters", field)
    return value


def checked_optional(value: str | None, field: str, pattern: re.Pattern[str], what: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not pattern.fullmatch(value):
        raise invalid("admin.invalid_field", f"{field} is not {what}", field)
    return value


def checked_birth_date(value: str | None, today: date) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        born = date.fromisoformat(value.strip())
    except ValueError as exc:
        raise invalid(
            "admin.invalid_field", "date_of_birth must be a date, YYYY-MM-DD", "date_of_birth"
        ) from exc
    if not EARLIEST_BIRTH_DATE <= born <= today:
        raise invalid("admin.invalid_field", "date_of_birth must be a past date", "date_of_birth")
    return born.isoformat()


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())  # reads the tz database once


def check_timezone(name: str, field: str = "timezone") -> str:
    """An IANA zone name of the tz database (zoneinfo), or `admin.unknown_timezone`."""
    if name not in _zones():
        raise invalid(
            "admin.unknown_timezone", "timezone must be an IANA time zone name, e.g. Asia/Shanghai", field
        )
    return name
