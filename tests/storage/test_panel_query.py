"""The panel query (storage.clinic.panel) on SQLite and PostgreSQL: the same order, filters, totals
and gateway states from the same rows, whatever the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from storage.clinic.database import session_factory
from storage.clinic.enrolment import add_clinic, add_user, enrol_patient
from storage.clinic.fleet import GatewayState
from storage.clinic.models import (
    Alert,
    Gateway,
    GatewayStatusRecord,
    Meter,
    MeterBinding,
    MeterKind,
    UserRole,
)
from storage.clinic.panel import (
    AlertStateFilter,
    PanelQuery,
    PanelSort,
    SortOrder,
    panel_page,
    patient_gateway,
    visible_patients,
)
from storage.clinic.summaries import stale_summaries, upsert_summaries
from tests.fixtures.postgres import clinic_engine, clinic_url, postgres_database_url
from vitals.payload import AlertSeverity, AlertState

__all__ = ["clinic_engine", "clinic_url", "postgres_database_url"]

NOW = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
DOCTOR = frozenset({UserRole.FAMILY_DOCTOR})


def _summary(patient_id: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "patient_id": patient_id,
        "summary_version": 1,
        "computed_at": NOW - timedelta(minutes=1),
        "valid_until": NOW + timedelta(hours=12),
        "last_reading_at": None,
        "bp_mean_systolic_mmhg": None,
        "bp_mean_diastolic_mmhg": None,
        "bp_readings": None,
        "bp_days": None,
        "bp_category": None,
        "bp_target_systolic_mmhg": None,
        "bp_target_diastolic_mmhg": None,
        "glucose_latest_mg_dl": None,
        "glucose_latest_at": None,
        "glucose_time_in_range_percent": None,
        "glucose_readings_14d": None,
        "days_with_data_30": 0,
    }
    return row | values


@pytest.fixture
def session(clinic_engine: Engine) -> Any:
    sessions = session_factory(clinic_engine)
    with sessions() as s:
        add_clinic(s, clinic_id="c1", name="Clinic One")
        add_user(
            s,
            user_id="dr",
            clinic_id="c1",
            email="dr@c1.example",
            display_name="Dr",
            roles=[UserRole.FAMILY_DOCTOR],
        )
        for patient_id, given, family in [
            ("p1", "Wei", "Wang"),
            ("p2", "Li", "Zhao"),
            ("p3", "Na", "Chen"),
            ("p4", "Min", "Wu"),
        ]:
            enrol_patient(
                s,
                patient_id=patient_id,
                clinic_id="c1",
                given_name=given,
                family_name=family,
                family_doctor_id="dr",
            )
        for i, (patient_id, severity, state, hours) in enumerate(
            [
                ("p2", AlertSeverity.WARNING, AlertState.OPEN, 30),
                ("p3", AlertSeverity.URGENT, AlertState.ESCALATED, 1),
                ("p4", AlertSeverity.WARNING, AlertState.OPEN, 3),
                ("p1", AlertSeverity.URGENT, AlertState.RESOLVED, 2),
            ]
        ):
            s.add(
                Alert(
                    alert_id=f"a{i}",
                    patient_id=patient_id,
                    clinic_id="c1",
                    rule_id="BP-CTRL-1",
                    severity=severity,
                    state=state,
                    opened_at=NOW - timedelta(hours=hours),
                    updated_at=NOW,
                )
            )
        for i, (patient_id, seen, online) in enumerate([("p1", 1, True), ("p2", 60, True), ("p3", 1, False)]):
            s.add(
                Gateway(
                    gateway_id=f"g{i}",
                    clinic_id="c1",
                    mqtt_username=f"g{i}",
                    mqtt_credential_hash="x",
                    last_seen_at=NOW - timedelta(minutes=seen),
                )
            )
            s.add(
                Meter(
                    meter_key=f"m{i}",
                    clinic_id="c1",
                    kind=MeterKind.BLOOD_PRESSURE,
                    manufacturer="A",
                    model="B",
                )
            )
            s.add(GatewayStatusRecord(gateway_id=f"g{i}", online=online, reported_at=NOW, received_at=NOW))
            s.flush()
            s.add(MeterBinding(gateway_id=f"g{i}", meter_key=f"m{i}", patient_id=patient_id))
        upsert_summaries(
            s,
            [
                _summary(
                    "p1",
                    bp_mean_systolic_mmhg=150.0,
                    last_reading_at=NOW - timedelta(hours=1),
                    days_with_data_30=20,
                ),
                _summary(
                    "p2",
                    bp_mean_systolic_mmhg=128.0,
                    last_reading_at=NOW - timedelta(days=9),
                    days_with_data_30=5,
                ),
                _summary("p3", valid_until=NOW - timedelta(minutes=5), days_with_data_30=12),
            ],
        )
        s.commit()
        yield s


def _ids(session: Session, **query: Any) -> list[str]:
    page = panel_page(session, user_id="dr", clinic_id="c1", roles=DOCTOR, query=PanelQuery(**query), now=NOW)
    return [e.patient_id for e in page.entries]


def test_urgency_sorts_and_filters_the_same_on_both_engines(session: Session) -> None:
    """Urgent before warning, the older unhandled warning first, then name; filters and totals."""
    assert _ids(session) == ["p3", "p2", "p4", "p1"]
    assert _ids(session, sort=PanelSort.BP_MEAN) == ["p1", "p2", "p3", "p4"]  # no mean: last
    assert _ids(session, sort=PanelSort.BP_MEAN, order=SortOrder.ASC) == ["p2", "p1", "p3", "p4"]
    assert _ids(session, sort=PanelSort.DAYS_WITH_DATA) == ["p1", "p3", "p2", "p4"]
    assert _ids(session, alert_state=AlertStateFilter.NONE) == ["p1"]
    assert sorted(_ids(session, no_data_days=7)) == ["p2", "p3", "p4"]
    assert _ids(session, name_contains="wu min") == ["p4"]
    page = panel_page(
        session,
        user_id="dr",
        clinic_id="c1",
        roles=DOCTOR,
        query=PanelQuery(sort=PanelSort.NAME, offset=1, limit=2),
        now=NOW,
    )
    assert page.total == 4 and [e.patient_id for e in page.entries] == ["p1", "p4"]


def test_gateway_states_and_their_order(session: Session) -> None:
    """Online while heard from within 5 minutes; offline after a last will or silence; none for p4."""
    page = panel_page(session, user_id="dr", clinic_id="c1", roles=DOCTOR, query=PanelQuery(), now=NOW)
    states = {e.patient_id: e.gateway_state for e in page.entries}
    assert states == {
        "p1": GatewayState.ONLINE,
        "p2": GatewayState.OFFLINE,
        "p3": GatewayState.OFFLINE,
        "p4": None,
    }
    assert _ids(session, sort=PanelSort.GATEWAY) == ["p2", "p3", "p1", "p4"]  # longest silent first
    found = patient_gateway(
        session, patient_id="p1", clinic_id="c1", now=NOW, silent_after=timedelta(minutes=5)
    )
    assert found is not None and found.state is GatewayState.ONLINE


def test_missing_and_expired_figures_are_stale(session: Session) -> None:
    """p3's figures expired, p4 has none: both are recomputed before they are shown as current."""
    scope = visible_patients("dr", "c1", DOCTOR)
    assert stale_summaries(session, scope, now=NOW, version=1) == ["p3", "p4"]
    assert stale_summaries(session, scope, now=NOW, version=2) == ["p1", "p2", "p3", "p4"]
