"""Patient-reported input (symptoms, events, ketones, medication changes) kept in the clinic database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from alerts.model import PatientReport, ReportKind
from storage.clinic.models import (
    PatientReportRecord,
)


class SqlReportStore:
    """Patient reports in the clinic database (`patient_reports`), so symptoms, assisted hypos and
    ketones recorded by the care team survive a restart. Idempotent on `report_id`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, report: PatientReport) -> bool:
        """False if this report was already stored."""
        with self._sessions() as session:
            if session.get(PatientReportRecord, report.report_id) is not None:
                return False
            session.add(
                PatientReportRecord(
                    report_id=report.report_id,
                    patient_id=report.patient_id,
                    kind=report.kind.value,
                    reported_at=report.reported_at,
                    symptoms=sorted(report.symptoms),
                    ketones_mmol_l=report.ketones_mmol_l,
                    seated_systolic_mmhg=report.seated_systolic_mmhg,
                    standing_systolic_mmhg=report.standing_systolic_mmhg,
                )
            )
            try:
                session.commit()
            except IntegrityError:  # stored meanwhile by another request: the same report
                session.rollback()
                return False
        return True

    def for_patient(self, patient_id: str, start: datetime, end: datetime) -> list[PatientReport]:
        with self._sessions() as session:
            rows = session.scalars(
                select(PatientReportRecord)
                .where(
                    PatientReportRecord.patient_id == patient_id,
                    PatientReportRecord.reported_at >= start,
                    PatientReportRecord.reported_at <= end,
                )
                .order_by(PatientReportRecord.reported_at)
            )
            return [
                PatientReport(
                    patient_id=row.patient_id,
                    report_id=row.report_id,
                    reported_at=row.reported_at,
                    kind=ReportKind(row.kind),
                    symptoms=frozenset(row.symptoms),
                    ketones_mmol_l=row.ketones_mmol_l,
                    seated_systolic_mmhg=row.seated_systolic_mmhg,
                    standing_systolic_mmhg=row.standing_systolic_mmhg,
                )
                for row in rows
            ]
