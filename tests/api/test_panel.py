"""The doctors' panel (GET /api/v1/patients): urgency order, every column, server-side sort, filters
and paging, and figures that follow committed readings, targets and the clock; over a real migrated
clinic database and a real SQLite reading store."""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts.summary_updater import SummaryUpdater
from storage.clinic.enrolment import add_user, enrol_patient
from storage.clinic.models import (
    Alert,
    CareTeamMember,
    CareTeamRole,
    Gateway,
    GatewayStatusRecord,
    MeterKind,
    UserRole,
)
from storage.readings.protocol import AnyReading
from vitalgate.administration import add_gateway, bind_meter
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.payload import AlertSeverity, AlertState
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseReading, SensorStatus

from .conftest import PASSWORD, ClinicApi

CUFF = DeviceIdentity(manufacturer="Acme", model="BP-1", serial_number="SN-1")
METER = DeviceIdentity(manufacturer="Acme", model="GL-1", serial_number="SN-2")
_ids = itertools.count()
PANEL = "/api/v1/patients"


def bp(patient_id: str, at: datetime, systolic: float, diastolic: float) -> BloodPressureReading:
    device_time = at.replace(tzinfo=None, microsecond=0)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            CUFF,
            device_time,
            next(_ids) % 250,
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial=None,
            pulse_bpm=70,
        ),
        device=CUFF,
        patient_id=patient_id,
        measured_at=at,
        device_time=device_time,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=70.0,
    )


def glucose(
    patient_id: str, at: datetime, mg_dl: float, sensor_status: frozenset[SensorStatus] = frozenset()
) -> GlucoseReading:
    number = next(_ids) % 65536
    return GlucoseReading(
        reading_id=glucose_reading_id(METER, number, at.replace(tzinfo=None)),
        device=METER,
        patient_id=patient_id,
        measured_at=at,
        sequence_number=number,
        glucose=mg_dl,
        sensor_status=sensor_status,
    )


def home_week(
    patient_id: str, systolic: float, diastolic: float, now: datetime
) -> list[BloodPressureReading]:
    """Four readings on each of the last 7 days, today's before `now` (ESH: enough for a sufficient
    7-day mean)."""
    return [
        bp(patient_id, day_at(now, n, k / 10), systolic, diastolic) for n in range(7) for k in (1, 2, 3, 4)
    ]


def day_at(now: datetime, days_back: int, fraction: float) -> datetime:
    """A time `days_back` calendar days (UTC, the patients' zone) before today's, `fraction` of the way
    through that day; today's is `fraction` of the way from midnight to `now`. Readings placed at
    fixed hours before `now` would fall on the day before when a test runs after midnight."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    span = (now - midnight) if days_back == 0 else timedelta(days=1)
    return midnight - timedelta(days=days_back) + span * fraction


def add_patients(api: ClinicApi, *names: tuple[str, str, str], doctor: str = "dr-a") -> None:
    with api.services.clinic_sessions() as session:
        for patient_id, given, family in names:
            enrol_patient(
                session,
                patient_id=patient_id,
                clinic_id="c1",
                given_name=given,
                family_name=family,
                family_doctor_id=doctor,
            )
        session.commit()


def add_alert(
    api: ClinicApi,
    patient_id: str,
    rule_id: str,
    severity: AlertSeverity,
    state: AlertState,
    opened: datetime,
    **extra: Any,
) -> None:
    with api.services.clinic_sessions() as session:
        session.add(
            Alert(
                alert_id=f"a-{next(_ids)}",
                patient_id=patient_id,
                clinic_id="c1",
                rule_id=rule_id,
                severity=severity,
                state=state,
                opened_at=opened,
                updated_at=opened,
                **extra,
            )
        )
        session.commit()


_HEADERS: weakref.WeakKeyDictionary[TestClient, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()


def signed_in(api: ClinicApi, email: str) -> dict[str, str]:
    """The user's bearer header, signing in once per test (a password hash costs a fraction of a second)."""
    known = _HEADERS.setdefault(api.client, {})
    if email not in known:
        known[email] = api.auth(email)
    return known[email]


def panel(api: ClinicApi, email: str = "a@c1.example", **params: Any) -> dict[str, Any]:
    response = api.client.get(PANEL, params=params, headers=signed_in(api, email))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [row["patient_id"] for row in body["patients"]]


def write(api: ClinicApi, readings: Sequence[AnyReading]) -> None:
    api.services.reading_store.write_batch(list(readings))


def test_default_order_is_urgency_then_oldest_unhandled_alert_then_name(clinic_api: ClinicApi) -> None:
    """Triage order: highest active severity first; among equals the oldest alert nobody has
    acknowledged or snoozed; then the name. Resolved alerts do not count."""
    now = datetime.now(UTC)
    add_patients(
        clinic_api,
        ("p-2", "Li", "Zhao"),
        ("p-3", "Na", "Chen"),
        ("p-4", "Fang", "Liu"),
        ("p-5", "Min", "Huang"),
        ("p-6", "Jun", "Ai"),
    )
    add_alert(
        clinic_api, "p-2", "GLU-HYPO-2", AlertSeverity.URGENT, AlertState.OPEN, now - timedelta(minutes=5)
    )
    add_alert(
        clinic_api, "p-3", "BP-CRIT-2", AlertSeverity.URGENT, AlertState.ESCALATED, now - timedelta(hours=2)
    )
    # p-4: urgent but acknowledged long ago, and an open warning: it ranks after the unhandled urgents.
    add_alert(
        clinic_api, "p-4", "BP-CRIT-2", AlertSeverity.URGENT, AlertState.ACKNOWLEDGED, now - timedelta(days=1)
    )
    add_alert(
        clinic_api, "p-4", "BP-CTRL-1", AlertSeverity.WARNING, AlertState.OPEN, now - timedelta(minutes=1)
    )
    add_alert(clinic_api, "p-5", "BP-CTRL-1", AlertSeverity.WARNING, AlertState.OPEN, now - timedelta(days=3))
    add_alert(
        clinic_api, "p-6", "GLU-HYPO-2", AlertSeverity.URGENT, AlertState.RESOLVED, now - timedelta(days=2)
    )

    body = panel(clinic_api)
    assert ids(body) == ["p-3", "p-2", "p-4", "p-5", "p-6", "p-1"]  # p-6 (Ai) and p-1 (Wang): by name
    rows = {row["patient_id"]: row for row in body["patients"]}
    assert rows["p-4"]["alerts"] == {
        "highest_severity": "urgent",
        "counts": {"info": 0, "warning": 1, "urgent": 1},
        "active": 2,
        "oldest_unhandled_at": rows["p-4"]["alerts"]["oldest_unhandled_at"],
        "needs_signoff": 0,
    }
    assert datetime.fromisoformat(rows["p-4"]["alerts"]["oldest_unhandled_at"]) == pytest.approx(
        now - timedelta(minutes=1), abs=timedelta(seconds=1)
    )
    assert rows["p-6"]["alerts"]["highest_severity"] is None and rows["p-6"]["alerts"]["active"] == 0
    assert body["total"] == 6 and body["offset"] == 0 and body["limit"] == 100
    assert ids(panel(clinic_api, order="asc"))[:2] == ["p-6", "p-1"]  # least urgent first


def test_every_column_comes_from_the_summaries_and_an_error_reading_is_never_a_value(
    clinic_api: ClinicApi,
) -> None:
    """The row's 7-day mean and category, latest valid glucose (a later meter error is not it), time in
    range, days with data, last reading time and the gateway's state."""
    now = datetime.now(UTC)
    write(clinic_api, home_week("p-1", 142.0, 88.0, now))
    write(
        clinic_api,
        [glucose("p-1", day_at(now, n, 0.5), 60.0 if n == 0 else 150.0) for n in range(10)],
    )
    error_at = day_at(now, 0, 0.9)
    write(clinic_api, [glucose("p-1", error_at, 0.0, frozenset({SensorStatus.STRIP_INSERTION_ERROR}))])
    with clinic_api.services.clinic_sessions() as session:
        add_gateway(session, clinic_id="c1", gateway_id="gw-1")
        bind_meter(session, gateway_id="gw-1", device=CUFF, kind=MeterKind.BLOOD_PRESSURE, patient_id="p-1")
        gateway = session.get(Gateway, "gw-1")
        assert gateway is not None
        gateway.last_seen_at = now - timedelta(minutes=1)
        session.add(GatewayStatusRecord(gateway_id="gw-1", online=True, reported_at=now, received_at=now))
        session.commit()

    (row,) = panel(clinic_api)["patients"]
    assert row["given_name"] == "Wei" and row["family_name"] == "Wang" and row["timezone"] == "UTC"
    assert row["blood_pressure"] == {
        "mean_systolic_mmhg": 142.0,
        "mean_diastolic_mmhg": 88.0,
        "readings": 24,  # day 1 of the 7 discarded (ESH)
        "days": 6,
        "category": "above_target",  # CN profile goal 135/85
        "target_systolic_mmhg": 135.0,
        "target_diastolic_mmhg": 85.0,
    }
    glucose_row = row["glucose"]
    assert glucose_row["latest_mg_dl"] == 60.0  # the strip error after it is not a value
    assert datetime.fromisoformat(glucose_row["latest_at"]) < error_at
    assert glucose_row["time_in_range_percent"] == 90.0 and glucose_row["readings_14d"] == 10
    assert row["days_with_data_30"] == 10
    assert datetime.fromisoformat(row["last_reading_at"]) == error_at.replace(
        microsecond=error_at.microsecond
    )
    assert row["gateway"]["gateway_id"] == "gw-1" and row["gateway"]["state"] == "online"
    assert row["summary_current"] is True

    with clinic_api.services.clinic_sessions() as session:
        gateway = session.get(Gateway, "gw-1")
        assert gateway is not None
        gateway.last_seen_at = now - timedelta(minutes=30)  # silent, and no last will came
        session.commit()
    assert panel(clinic_api)["patients"][0]["gateway"]["state"] == "offline"
    with clinic_api.services.clinic_sessions() as session:
        status = session.get(GatewayStatusRecord, "gw-1")
        assert status is not None
        session.delete(status)
        session.commit()
    assert panel(clinic_api)["patients"][0]["gateway"]["state"] == "unknown"


def test_every_column_sorts_on_the_server_with_missing_values_last(clinic_api: ClinicApi) -> None:
    """Sort by name, last seen, 7-day mean, latest glucose, time in range, days with data; ascending and
    descending; a patient without the figure comes last either way."""
    now = datetime.now(UTC)
    add_patients(clinic_api, ("p-2", "Li", "Zhao"), ("p-3", "Na", "Chen"))
    write(clinic_api, home_week("p-2", 150.0, 90.0, now) + home_week("p-3", 125.0, 75.0, now))
    write(clinic_api, [glucose("p-2", day_at(now, n, 0.5), 200.0) for n in range(3)])
    write(clinic_api, [glucose("p-3", day_at(now, n, 0.5), 100.0) for n in range(1, 12)])
    write(clinic_api, [glucose("p-3", day_at(now, 0, 0.9), 110.0)])
    expected = {
        ("name", None): ["p-3", "p-1", "p-2"],  # Chen, Wang, Zhao
        ("name", "desc"): ["p-2", "p-1", "p-3"],
        ("last_seen", None): ["p-3", "p-2", "p-1"],
        ("last_seen", "asc"): ["p-2", "p-3", "p-1"],
        ("bp_mean", None): ["p-2", "p-3", "p-1"],
        ("bp_mean", "asc"): ["p-3", "p-2", "p-1"],
        ("glucose_latest", None): ["p-2", "p-3", "p-1"],
        ("time_in_range", "asc"): ["p-2", "p-3", "p-1"],
        ("days_with_data", None): ["p-3", "p-2", "p-1"],
    }
    for (sort, order), want in expected.items():
        params = {"sort": sort} | ({"order": order} if order else {})
        assert ids(panel(clinic_api, **params)) == want, (sort, order)


def test_filters_and_paging(clinic_api: ClinicApi) -> None:
    """Name search (given, family, or both), alert state, "no data for N days", and pages with the
    total of every match."""
    now = datetime.now(UTC)
    add_patients(clinic_api, ("p-2", "Li", "Zhao"), ("p-3", "Na", "Chen"), ("p-4", "Wei", "Zhang"))
    write(
        clinic_api,
        [bp("p-2", now - timedelta(days=10), 130.0, 80.0), bp("p-3", now - timedelta(hours=3), 130.0, 80.0)],
    )
    add_alert(
        clinic_api, "p-3", "BP-CTRL-1", AlertSeverity.WARNING, AlertState.SNOOZED, now - timedelta(days=1)
    )
    add_alert(
        clinic_api,
        "p-4",
        "GLU-HYPO-2",
        AlertSeverity.URGENT,
        AlertState.RESOLVED,
        now - timedelta(hours=1),
        needs_signoff=True,
        resolved_at=now,
    )
    assert sorted(ids(panel(clinic_api, q="wei"))) == ["p-1", "p-4"]
    # Either order of the names, with or without a space (Chinese names: family name first).
    assert ids(panel(clinic_api, q="Zhao Li")) == ids(panel(clinic_api, q="Li Zhao")) == ["p-2"]
    assert ids(panel(clinic_api, q="ZhaoLi")) == ["p-2"]
    assert ids(panel(clinic_api, q="%")) == []  # a literal percent sign, not a wildcard
    assert ids(panel(clinic_api, alert_state="active")) == ["p-3"]
    assert sorted(ids(panel(clinic_api, alert_state="none"))) == ["p-1", "p-2", "p-4"]
    signoff = panel(clinic_api, alert_state="needs_signoff")
    assert ids(signoff) == ["p-4"] and signoff["patients"][0]["alerts"]["needs_signoff"] == 1
    assert sorted(ids(panel(clinic_api, no_data_days=7))) == ["p-1", "p-2", "p-4"]
    assert sorted(ids(panel(clinic_api, no_data_days=11))) == ["p-1", "p-4"]

    page = panel(clinic_api, sort="name", limit=2, offset=1)
    assert (
        page["total"] == 4 and page["limit"] == 2 and ids(page) == ["p-1", "p-4"]
    )  # Chen | Wang, Zhang | Zhao
    beyond = panel(clinic_api, sort="name", offset=10)
    assert beyond["total"] == 4 and beyond["patients"] == []
    too_many = clinic_api.client.get(
        PANEL, params={"limit": 501}, headers=signed_in(clinic_api, "a@c1.example")
    )
    assert too_many.status_code == 422 and too_many.json()["code"] == "validation"
    assert too_many.json()["errors"][0] == {"field": "limit", "code": "less_than_equal", "limit": 500.0}


def test_each_user_sees_their_care_teams_patients_and_administrators_the_clinic(
    clinic_api: ClinicApi,
) -> None:
    """A nurse sees the patients of her care teams; another doctor none of p-1's; the administrator the
    whole clinic; the other clinic's administrator nothing of it."""
    add_patients(clinic_api, ("p-2", "Li", "Zhao"), doctor="dr-b")
    with clinic_api.services.clinic_sessions() as session:
        add_user(
            session,
            user_id="n-1",
            clinic_id="c1",
            email="nurse@c1.example",
            display_name="Nurse",
            roles=[UserRole.CLINIC_STAFF],
            password=PASSWORD,
        )
        session.add(CareTeamMember(patient_id="p-2", user_id="n-1", team_role=CareTeamRole.CLINIC_STAFF))
        session.commit()
    assert ids(panel(clinic_api, "nurse@c1.example")) == ["p-2"]
    assert ids(panel(clinic_api, "b@c1.example")) == ["p-2"]
    assert sorted(ids(panel(clinic_api, "admin@c1.example"))) == ["p-1", "p-2"]
    assert panel(clinic_api, "admin@c2.example") == {"total": 0, "offset": 0, "limit": 100, "patients": []}


def test_the_category_follows_a_target_change_at_once(clinic_api: ClinicApi) -> None:
    """The family doctor lowers the goal to 130/80: 132/82 turns from at target to above target in the
    panel without waiting for the next reading."""
    now = datetime.now(UTC)
    write(clinic_api, home_week("p-1", 132.0, 82.0, now))
    doctor = signed_in(clinic_api, "a@c1.example")
    assert panel(clinic_api)["patients"][0]["blood_pressure"]["category"] == "at_target"
    current = clinic_api.client.get("/api/v1/patients/p-1/targets", headers=doctor).json()
    changed = {
        k: current[k] for k in ("guideline_profile", "older_adult", "bp_titration", "on_insulin", "timezone")
    }
    changed |= {"bp_goal_systolic_mmhg": 130.0, "bp_goal_diastolic_mmhg": 80.0}
    assert (
        clinic_api.client.put("/api/v1/patients/p-1/targets", json=changed, headers=doctor).status_code == 200
    )
    bp_row = panel(clinic_api)["patients"][0]["blood_pressure"]
    assert bp_row["category"] == "above_target"
    assert (bp_row["target_systolic_mmhg"], bp_row["target_diastolic_mmhg"]) == (130.0, 80.0)


def test_figures_computed_before_midnight_are_recomputed_after_it(clinic_api: ClinicApi) -> None:
    """The 7-day window moves at the patient's midnight: a row computed yesterday is not shown as today's."""
    now = datetime.now(UTC)
    write(clinic_api, home_week("p-1", 140.0, 90.0, now))
    updater = SummaryUpdater(clinic_api.services.reading_store, clinic_api.services.clinic_sessions)
    updater.refresh(["p-1"], now - timedelta(days=2))  # as of two days ago: 2 days of readings, one discarded
    assert updater.stale(["p-1"], now) == ["p-1"]
    row = panel(clinic_api)["patients"][0]
    assert row["summary_current"] is True
    assert datetime.fromisoformat(row["summary_computed_at"]) >= now
    assert row["blood_pressure"]["days"] == 6 and row["blood_pressure"]["readings"] == 24


def test_expired_figures_beyond_the_requests_budget_are_marked_not_current(
    clinic_api: ClinicApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A panel request recomputes expired figures only while its time budget lasts (here: one patient)
    and says which of the rest are not current, instead of showing yesterday's window as today's."""
    import api.routes.patients

    now = datetime.now(UTC)
    add_patients(clinic_api, ("p-2", "Li", "Zhao"), ("p-3", "Na", "Chen"))
    updater = SummaryUpdater(clinic_api.services.reading_store, clinic_api.services.clinic_sessions)
    updater.refresh(["p-1", "p-2", "p-3"], now - timedelta(days=2))
    monkeypatch.setattr(api.routes.patients, "INLINE_REFRESH_BUDGET_S", 0.0)
    rows = panel(clinic_api, sort="name")["patients"]
    assert sorted(row["summary_current"] for row in rows) == [False, False, True]
    assert updater.refresh_within(["p-1", "p-2", "p-3"], now, budget_s=0.0) == ["p-1"]


async def test_committed_batches_update_the_figures(clinic_api: ClinicApi) -> None:
    """Ingest hands committed batches to the updater as to the alert engine: the patient's row shows the
    new reading after the updater's pass, with no panel request doing the work."""
    updater = SummaryUpdater(clinic_api.services.reading_store, clinic_api.services.clinic_sessions)
    await asyncio.to_thread(updater.refresh_stale)
    stop = asyncio.Event()
    task = asyncio.create_task(updater.run(stop, interval_s=3600))
    try:
        await asyncio.wait_for(updater.passed.wait(), timeout=30)  # the pass at start
        updater.passed.clear()
        now = datetime.now(UTC)
        batch = [glucose("p-1", now - timedelta(minutes=2), 123.0)]
        clinic_api.services.reading_store.write_batch(batch)
        listener = updater.threadsafe_listener(asyncio.get_running_loop())
        await asyncio.to_thread(listener, batch)  # from ingest's worker thread
        await asyncio.wait_for(updater.passed.wait(), timeout=30)
        assert updater.stale(["p-1"]) == []
        with clinic_api.services.clinic_sessions() as session:
            from storage.clinic.models import PatientSummaryRow

            row = session.get(PatientSummaryRow, "p-1")
            assert row is not None and row.glucose_latest_mg_dl == 123.0 and row.days_with_data_30 == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def test_the_updater_recomputes_figures_when_they_expire(clinic_api: ClinicApi) -> None:
    """The updater's pass comes at the first expiry (a patients' midnight), not a minute later."""
    from sqlalchemy import update

    from storage.clinic.models import PatientSummaryRow

    updater = SummaryUpdater(clinic_api.services.reading_store, clinic_api.services.clinic_sessions)
    await asyncio.to_thread(updater.refresh_stale)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    with clinic_api.services.clinic_sessions() as session:
        session.execute(update(PatientSummaryRow).values(valid_until=soon))
        session.commit()
    stop = asyncio.Event()
    task = asyncio.create_task(updater.run(stop, interval_s=3600))
    try:
        await asyncio.wait_for(updater.passed.wait(), timeout=30)  # the first pass, at start
        updater.passed.clear()
        await asyncio.wait_for(updater.passed.wait(), timeout=30)  # the pass at the expiry
        next_midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            days=1
        )
        with clinic_api.services.clinic_sessions() as session:
            row = session.get(PatientSummaryRow, "p-1")
            assert row is not None and row.valid_until == next_midnight
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def test_the_panel_is_one_audit_entry_with_a_count(clinic_api: ClinicApi) -> None:
    """One entry per listing, with how many patients were returned, never which."""
    from storage.clinic.models import AuditLogEntry

    panel(clinic_api, sort="name", limit=1)
    with clinic_api.services.clinic_sessions() as session:
        from sqlalchemy import select

        entries = list(session.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "read_panel")))
    assert [(e.object_type, e.object_id, e.details) for e in entries] == [
        ("patient_panel", None, {"count": 1})
    ]
