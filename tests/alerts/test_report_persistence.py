"""Patient reports recorded by the care team are kept in the clinic database: a restart of the clinic
server does not forget an assisted hypo (GLU-HYPO-3) or red-flag symptoms (BP-CRIT-3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.model import PatientReport, ReportKind
from alerts.repository import SqlReportStore
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, enrol_patient

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_reports_survive_a_new_store_and_are_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'clinic.sqlite3'}"
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session:
        add_clinic(session, clinic_id="c1", name="Clinic")
        enrol_patient(session, patient_id="p-1", clinic_id="c1", given_name="W", family_name="W")
        session.commit()
    hypo = PatientReport(patient_id="p-1", report_id="r1", reported_at=T0, kind=ReportKind.SEVERE_HYPO_EVENT)
    symptoms = PatientReport(
        patient_id="p-1",
        report_id="r2",
        reported_at=T0 + timedelta(hours=1),
        kind=ReportKind.SYMPTOMS,
        symptoms=frozenset({"chest_pain", "dyspnoea"}),
    )
    store = SqlReportStore(sessions)
    assert store.add(hypo) is True
    assert store.add(symptoms) is True
    assert store.add(hypo) is False  # the same report again changes nothing

    restarted = SqlReportStore(session_factory(create_clinic_engine(url)))
    found = restarted.for_patient("p-1", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert found == [hypo, symptoms]
    assert restarted.for_patient("p-1", T0 + timedelta(minutes=30), T0 + timedelta(days=1)) == [symptoms]
    assert restarted.for_patient("p-2", T0 - timedelta(days=1), T0 + timedelta(days=1)) == []
