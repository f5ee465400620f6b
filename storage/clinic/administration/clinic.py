"""The clinic itself: enrolling a clinic and changing its settings (name, guideline profile, time
zone, glucose unit, its own retention of readings)."""

from __future__ import annotations

import enum
from typing import Any, Final

from sqlalchemy.orm import Session

from storage.clinic import enrolment
from storage.clinic.administration.common import (
    Actor,
    audit_change,
    check_timezone,
    checked_id,
    checked_text,
    conflict,
    invalid,
    not_found,
)
from storage.clinic.models import Clinic, GuidelineProfile
from vitals.units import GlucoseUnit

# A clinic's own readings retention: at least what the alert rules (45 days) and the default charts
# (90 days) read (docs/scaling.md, Retention; the deployment's setting has the same floor), at most a
# century, which InfluxDB's retention durations hold.
MIN_READINGS_RETENTION_DAYS: Final = 90
MAX_READINGS_RETENTION_DAYS: Final = 36_500


class Keep(enum.Enum):
    """A setting left as it is, where None is a value (the deployment's period)."""

    UNCHANGED = "unchanged"


def own_clinic(session: Session, actor: Actor) -> Clinic:
    """The actor's clinic, or `admin.not_found`."""
    clinic = session.get(Clinic, actor.clinic_id)
    if clinic is None:
        raise not_found("clinic", actor.clinic_id)
    return clinic


def clinic_settings(session: Session, actor: Actor) -> Clinic:
    return own_clinic(session, actor)


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
    checked_id(clinic_id, "clinic_id")
    name = checked_text(name, "name", 200)
    check_timezone(timezone)
    if session.get(Clinic, clinic_id) is not None:
        raise conflict("admin.clinic_exists", f"clinic {clinic_id} exists already", "clinic_id")
    clinic = enrolment.add_clinic(session, clinic_id=clinic_id, name=name, profile=profile)
    clinic.timezone = timezone
    if glucose_unit is not None:
        clinic.glucose_unit = glucose_unit
    session.flush()
    audit_change(
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
    readings_retention_days: int | Keep | None = Keep.UNCHANGED,
    readings_retention_max_days: int | None = None,
) -> Clinic:
    """Change the given settings (None: unchanged); audited with each changed setting, from and to.
    `readings_retention_days`: the clinic's own period, or None for the deployment's
    (`retention.readings_days`); Keep.UNCHANGED leaves it. `readings_retention_max_days`: the
    operator's ceiling on it (`retention.clinic_readings_max_days`; None: none below
    MAX_READINGS_RETENTION_DAYS)."""
    clinic = own_clinic(session, actor)
    new: dict[str, Any] = {}
    if name is not None:
        new["name"] = checked_text(name, "name", 200)
    if guideline_profile is not None:
        new["default_profile"] = guideline_profile
    if timezone is not None:
        new["timezone"] = check_timezone(timezone)
    if glucose_unit is not None:
        new["glucose_unit"] = glucose_unit
    if not isinstance(readings_retention_days, Keep):
        new["readings_retention_days"] = check_readings_retention(
            readings_retention_days, readings_retention_max_days
        )
    changed: dict[str, Any] = {}
    for column, value in new.items():
        before = getattr(clinic, column)
        if before != value:
            setattr(clinic, column, value)
            changed[column] = {"from": _plain(before), "to": _plain(value)}
    session.flush()
    audit_change(session, actor, "update_clinic_settings", "clinic", clinic.clinic_id, {"changed": changed})
    return clinic


def readings_retention_bounds(max_days: int | None) -> tuple[int, int]:
    """The shortest and longest period a clinic may set under the operator's ceiling `max_days`."""
    longest = MAX_READINGS_RETENTION_DAYS if max_days is None else min(max_days, MAX_READINGS_RETENTION_DAYS)
    return MIN_READINGS_RETENTION_DAYS, longest


def check_readings_retention(days: int | None, max_days: int | None = None) -> int | None:
    """None (the deployment's period), or whole days within the bounds, the longest being the
    operator's ceiling `max_days`; else `admin.invalid_field`."""
    if days is None:
        return None
    shortest, longest = readings_retention_bounds(max_days)
    if isinstance(days, bool) or not shortest <= days <= longest:
        ceiling = (
            ""
            if max_days is None
            else f"; the deployment's ceiling (retention.clinic_readings_max_days) is {longest}"
        )
        raise invalid(
            "admin.invalid_field",
            f"readings_retention_days must be {shortest}-{longest} days, or null for the deployment's "
            f"retention: the alert rules look back 45 days and the charts 90{ceiling}",
            "readings_retention_days",
        )
    return days


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value
