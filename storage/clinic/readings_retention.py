"""How long each patient's readings are kept: the deployment's `retention.readings_days`, or the
patient's clinic's own period (`clinics.readings_retention_days`), for a clinic under a jurisdiction
or contract that asks for a shorter or longer one (docs/scaling.md, Retention).

The reading stores apply it: SQLite prunes patient by patient with each patient's cut-off; InfluxDB
keeps the longest period in use as its retention policy (or bucket duration), and the daily prune
deletes the older readings of the patients whose clinic keeps them for less.

The operator's ceiling (`retention.clinic_readings_max_days`) bounds every clinic's period here too,
so a clinic row written before the ceiling was lowered never lengthens the retention policy past it:
such a clinic's readings are kept for the ceiling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage.clinic.models import Clinic, Patient

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadingsRetention:
    """The deployment's period (None: for ever) and the clinics' own, by clinic and by patient."""

    default_days: int | None
    clinic_days: dict[str, int] = field(default_factory=dict)
    patient_days: dict[str, int] = field(default_factory=dict)
    """Patients of the clinics in `clinic_days`: their clinic's period."""
    patients_on_default: tuple[str, ...] = ()
    """Every other patient of the clinic database: the deployment's period."""

    @property
    def longest_days(self) -> int | None:
        """The longest period in use (None: for ever), which InfluxDB's retention policy keeps."""
        if self.default_days is None:
            return None
        return max([self.default_days, *self.clinic_days.values()])

    def cutoffs(self, now: datetime) -> tuple[datetime | None, dict[str, datetime]]:
        """(the cut-off of patients on the deployment's period and of readings of no patient, None:
        none; each patient of a clinic with its own period: theirs)."""
        default = None if self.default_days is None else now - timedelta(days=self.default_days)
        return default, {pid: now - timedelta(days=days) for pid, days in self.patient_days.items()}

    def cutoffs_shorter_than_longest(self, now: datetime) -> dict[str | None, datetime]:
        """The cut-off of every patient (None: readings of no patient) whose period is shorter than
        the longest: what a store keeping the longest period everywhere must still delete."""
        longest = self.longest_days
        found: dict[str | None, datetime] = {}
        if self.default_days is not None and (longest is None or self.default_days < longest):
            at = now - timedelta(days=self.default_days)
            found[None] = at
            found.update(dict.fromkeys(self.patients_on_default, at))
        for pid, days in self.patient_days.items():
            if longest is None or days < longest:
                found[pid] = now - timedelta(days=days)
        return found


def readings_retention(
    sessions: sessionmaker[Session], default_days: int | None, *, ceiling_days: int | None
) -> ReadingsRetention:
    """Read the clinics' own periods, each at most `ceiling_days` (None: no ceiling), and their
    patients (discharged ones too: their readings stay under their clinic's period)."""
    with sessions() as session:
        clinic_days: dict[str, int] = {}
        for clinic_id, days in session.execute(select(Clinic.clinic_id, Clinic.readings_retention_days)):
            if days is None:
                continue
            if ceiling_days is not None and days > ceiling_days:
                logger.warning(
                    "clinic readings retention above the ceiling; the ceiling applies",
                    extra={"clinic_id": clinic_id, "days": days, "ceiling_days": ceiling_days},
                )
                days = ceiling_days
            clinic_days[clinic_id] = days
        patient_days: dict[str, int] = {}
        on_default: list[str] = []
        for patient_id, clinic_id in session.execute(select(Patient.patient_id, Patient.clinic_id)):
            days = clinic_days.get(clinic_id)
            if days is None:
                on_default.append(patient_id)
            else:
                patient_days[patient_id] = days
    return ReadingsRetention(default_days, clinic_days, patient_days, tuple(on_default))
