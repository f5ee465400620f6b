"""The alerts API: inbox per care team, ack/snooze/resolve, patient reports, SSE live events, and
404 for anything outside the user's clinic or care team (OWASP API1, reliability.md §5.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from alerts.catalogue import RULES
from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.model import Outcome, OutcomeStatus
from alerts.repository import SqlAlertRepository
from api.deps import ApiServices
from api.errors import install_error_handlers
from api.routes import alerts as alert_routes
from api.services import AlertApi
from storage.clinic.models import UserRole
from storage.readings.sqlite import SqliteReadingStore
from tests.alerts.conftest import START, Clock, bp_reading, glucose_reading
from tests.api.session_tokens import bearer_headers

SECRET = "jwt-test-secret-0123456789abcdef0123456789"


# The running test's clinic database (set by the `client` fixture), where `_token` signs users in.
_clinic: list[sessionmaker[Session]] = []


def _token(
    user_id: str, clinic_id: str = "clinic-a", role: UserRole = UserRole.FAMILY_DOCTOR
) -> dict[str, str]:
    return bearer_headers(_clinic[-1], user_id, SECRET, clinic_id=clinic_id, role=role)


@pytest.fixture
async def client(
    alert_engine: AlertEngine,
    reading_store: SqliteReadingStore,
    clinic_sessions: sessionmaker[Session],
    hub: EventHub,
    clock: Clock,
) -> AsyncIterator[httpx.AsyncClient]:
    _clinic[:] = [clinic_sessions]
    app = FastAPI()
    app.state.services = ApiServices(
        reading_store=reading_store,
        clinic_sessions=clinic_sessions,
        jwt_secret=SECRET,
        alerts=AlertApi(alert_engine, SqlAlertRepository(clinic_sessions), hub),
    )
    app.include_router(alert_routes.router)
    install_error_handlers(app)
    batch = [bp_reading("pt-1", START, 186, 100), bp_reading("pt-1", START + timedelta(minutes=3), 184, 98)]
    reading_store.write_batch(batch)
    clock.now = START + timedelta(minutes=5)
    await alert_engine.on_readings_committed(batch)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as c:
        yield c


async def _crisis_id(client: httpx.AsyncClient) -> str:
    r = await client.get("/api/v1/alerts", headers=_token("dr-li"))
    assert r.status_code == 200
    [crisis] = [a for a in r.json() if a["rule_id"] == "BP-CRIT-2"]
    return str(crisis["alert_id"])


async def test_inbox_shows_the_care_teams_alerts_only(client: httpx.AsyncClient) -> None:
    mine = (await client.get("/api/v1/alerts", headers=_token("dr-li"))).json()
    assert {a["rule_id"] for a in mine} == {"BP-CRIT-2"}
    assert mine[0]["citation"] == "[1][4][17]" and mine[0]["values"]["systolic_mmhg"] == 184.0
    assert (await client.get("/api/v1/alerts", headers=_token("dr-chen"))).json() == []
    admin = await client.get("/api/v1/alerts", headers=_token("admin-a", role=UserRole.CLINIC_ADMIN))
    assert len(admin.json()) == 1
    assert (await client.get("/api/v1/alerts", headers=_token("dr-other", "clinic-b"))).json() == []
    assert (await client.get("/api/v1/alerts")).status_code == 401


async def test_acknowledge_snooze_resolve(client: httpx.AsyncClient) -> None:
    alert_id = await _crisis_id(client)
    ack = await client.post(
        f"/api/v1/alerts/{alert_id}/ack", headers=_token("nurse-wang", role=UserRole.CLINIC_STAFF)
    )
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == "nurse-wang"
    snooze = await client.post(
        f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 30}, headers=_token("dr-li")
    )
    assert snooze.status_code == 200 and snooze.json()["state"] == "snoozed"
    too_long = await client.post(
        f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 100_000}, headers=_token("dr-li")
    )
    assert too_long.status_code == 422
    empty = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": ""}, headers=_token("dr-li")
    )
    assert empty.status_code == 422
    done = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve",
        json={"note": "called patient, adjusted"},
        headers=_token("dr-li"),
    )
    assert done.status_code == 200 and done.json()["state"] == "resolved"
    again = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": "x"}, headers=_token("dr-li")
    )
    assert again.status_code == 409
    detail = (await client.get(f"/api/v1/alerts/{alert_id}", headers=_token("dr-li"))).json()
    assert [(e["event"], e["actor"]) for e in detail["events"]] == [
        ("opened", "system"),
        ("acknowledged", "nurse-wang"),
        ("snoozed", "dr-li"),
        ("resolved", "dr-li"),
    ]
    assert detail["events"][-1]["details"] == {"note": "called patient, adjusted"}


async def test_other_team_or_clinic_gets_404(client: httpx.AsyncClient) -> None:
    alert_id = await _crisis_id(client)
    for headers in (_token("dr-chen"), _token("dr-other", "clinic-b")):
        assert (await client.get(f"/api/v1/alerts/{alert_id}", headers=headers)).status_code == 404
        assert (await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=headers)).status_code == 404
    assert (await client.get("/api/v1/alerts/al_nope", headers=_token("dr-li"))).status_code == 404


async def test_report_from_the_care_team_raises_crisis_with_symptoms(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    body = {
        "patient_id": "pt-1",
        "kind": "symptoms",
        "symptoms": ["chest_pain"],
        "reported_at": (START + timedelta(minutes=4)).isoformat(),
    }
    r = await client.post("/api/v1/alerts/reports", json=body, headers=_token("dr-li"))
    assert r.status_code == 202
    # BP-CRIT-3 opens and supersedes the confirmed-crisis alert ([4][9][17][19]).
    states = {a["rule_id"]: a["state"] for a in r.json()}
    assert states == {"BP-CRIT-2": "resolved", "BP-CRIT-3": "open"}
    other = await client.post("/api/v1/alerts/reports", json=body, headers=_token("dr-chen"))
    assert other.status_code == 404


async def test_sse_stream_carries_the_acknowledgement_to_every_listener(
    client: httpx.AsyncClient, hub: EventHub
) -> None:
    alert_id = await _crisis_id(client)

    async def listen(user: str, role: UserRole) -> list[dict[str, object]]:
        r = await client.get("/api/v1/alerts/events", params={"limit": 1}, headers=_token(user, role=role))
        assert r.headers["content-type"].startswith("text/event-stream")
        return [
            json.loads(line[len("data: ") :]) for line in r.text.splitlines() if line.startswith("data: ")
        ]

    doctor = asyncio.create_task(listen("dr-li", UserRole.FAMILY_DOCTOR))
    admin = asyncio.create_task(listen("admin-a", UserRole.CLINIC_ADMIN))
    await hub.wait_for_subscribers(2, timeout_s=10)
    await client.post(
        f"/api/v1/alerts/{alert_id}/ack", headers=_token("nurse-wang", role=UserRole.CLINIC_STAFF)
    )
    async with asyncio.timeout(10):
        got = await asyncio.gather(doctor, admin)
    for events in got:
        assert [(e["alert_id"], e["event"], e["actor"]) for e in events] == [
            (alert_id, "acknowledged", "nurse-wang")
        ]


async def test_a_report_dated_in_the_future_is_refused(client: httpx.AsyncClient) -> None:
    body = {
        "patient_id": "pt-1",
        "kind": "severe_hypo_event",
        "reported_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }
    r = await client.post("/api/v1/alerts/reports", json=body, headers=_token("dr-li"))
    assert r.status_code == 422
    assert "future" in r.text


def _nurse(user: str = "nurse-zhao") -> dict[str, str]:
    return _token(user, role=UserRole.CLINIC_STAFF)


async def _commit(engine: AlertEngine, store: SqliteReadingStore, clock: Clock, batch: list[Any]) -> None:
    store.write_batch(batch)
    clock.now = max(r.measured_at for r in batch) + timedelta(minutes=1)
    await engine.on_readings_committed(batch)


async def _hypo_resolved_unseen(engine: AlertEngine, store: SqliteReadingStore, clock: Clock) -> None:
    """A level-2 hypo (48 mg/dL) for pt-1 that resolves by itself on 2 in-range readings."""
    await _commit(engine, store, clock, [glucose_reading("pt-1", START + timedelta(minutes=30), 48, 1)])
    await _commit(
        engine,
        store,
        clock,
        [
            glucose_reading("pt-1", START + timedelta(minutes=50), 110, 2),
            glucose_reading("pt-1", START + timedelta(minutes=70), 120, 3),
        ],
    )


async def test_active_inbox_is_most_severe_first_then_oldest_with_patient_names(
    client: httpx.AsyncClient, alert_engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock
) -> None:
    """The inbox puts urgent before warning and the oldest first, naming the patient for the team."""
    await _commit(
        alert_engine,
        reading_store,
        clock,
        [
            glucose_reading("pt-1", START + timedelta(minutes=10), 262, 1),
            glucose_reading("pt-1", START + timedelta(minutes=20), 271, 2),
        ],
    )  # GLU-HIGH-1: > 250 mg/dL twice, warning [32][40]
    await _commit(
        alert_engine, reading_store, clock, [glucose_reading("pt-1", START + timedelta(minutes=30), 48, 3)]
    )
    r = await client.get("/api/v1/alerts", params={"view": "active"}, headers=_nurse())
    assert r.status_code == 200
    listed = r.json()
    ranks = {"urgent": 0, "warning": 1, "info": 2}
    keys = [(ranks[a["severity"]], a["opened_at"]) for a in listed]
    assert keys == sorted(keys)
    assert [a["rule_id"] for a in listed][:2] == ["BP-CRIT-2", "GLU-HYPO-2"]
    assert "GLU-HIGH-1" in {a["rule_id"] for a in listed}
    assert {(a["patient_given_name"], a["patient_family_name"]) for a in listed} == {("Mei", "Zhang")}
    assert len({a["alert_id"] for a in listed}) == len(listed)
    assert listed[1]["values"]["glucose_mg_dl"] == 48.0


async def test_a_nurse_signs_off_an_urgent_hypo_that_closed_unseen(
    client: httpx.AsyncClient, alert_engine: AlertEngine, reading_store: SqliteReadingStore, clock: Clock
) -> None:
    """The hypo that closed by itself is in needs_signoff until the nurse signs it off, with her name."""
    await _hypo_resolved_unseen(alert_engine, reading_store, clock)
    waiting = (await client.get("/api/v1/alerts", params={"view": "needs_signoff"}, headers=_nurse())).json()
    [hypo] = waiting
    assert (hypo["rule_id"], hypo["state"], hypo["needs_signoff"]) == ("GLU-HYPO-2", "resolved", True)
    assert (hypo["resolved_by"], hypo["patient_family_name"]) == (None, "Zhang")
    assert "GLU-HYPO-2" not in {
        a["rule_id"] for a in (await client.get("/api/v1/alerts", headers=_nurse())).json()
    }

    # someone outside the care team cannot see it, nor sign it off
    outsider = await client.post(f"/api/v1/alerts/{hypo['alert_id']}/signoff", headers=_token("dr-chen"))
    assert (outsider.status_code, outsider.json()["code"]) == (404, "alert.not_found")

    clock.advance(timedelta(hours=6))
    signed = await client.post(
        f"/api/v1/alerts/{hypo['alert_id']}/signoff", json={"note": "phoned: fine, ate"}, headers=_nurse()
    )
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert (body["needs_signoff"], body["signed_off_by"], body["signed_off_by_name"]) == (
        False,
        "nurse-zhao",
        "nurse-zhao",
    )
    assert datetime.fromisoformat(body["signed_off_at"]) == clock.now
    assert (
        await client.get("/api/v1/alerts", params={"view": "needs_signoff"}, headers=_nurse())
    ).json() == []
    recent = (await client.get("/api/v1/alerts", params={"view": "recent"}, headers=_token("dr-li"))).json()
    assert hypo["alert_id"] in {a["alert_id"] for a in recent}

    detail = (await client.get(f"/api/v1/alerts/{hypo['alert_id']}", headers=_token("dr-li"))).json()
    timeline = [(e["event"], e["actor"], e["actor_name"]) for e in detail["events"]]
    assert timeline == [
        ("opened", "system", None),
        ("auto_resolved", "system", None),
        ("signed_off", "nurse-zhao", "nurse-zhao"),
    ]
    assert detail["events"][1]["details"] == {"needs_signoff": True}
    assert detail["events"][2]["details"] == {"note": "phoned: fine, ate"}

    again = await client.post(f"/api/v1/alerts/{hypo['alert_id']}/signoff", headers=_token("dr-li"))
    assert (again.status_code, again.json()["code"]) == (409, "alert.invalid_transition")


async def test_a_nurse_on_the_care_team_acknowledges_snoozes_and_resolves(client: httpx.AsyncClient) -> None:
    """Every action is open to clinic staff on the team, and the alert keeps who resolved it and why."""
    alert_id = await _crisis_id(client)
    nurse = _nurse()
    assert (await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=nurse)).json()[
        "acknowledged_by_name"
    ] == ("nurse-zhao")
    snoozed = await client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 15}, headers=nurse)
    assert snoozed.json()["state"] == "snoozed"
    done = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": "  rechecked 142/88  "}, headers=nurse
    )
    assert done.status_code == 200
    assert (done.json()["resolved_by"], done.json()["resolved_by_name"], done.json()["resolution_note"]) == (
        "nurse-zhao",
        "nurse-zhao",
        "rechecked 142/88",
    )
    assert done.json()["needs_signoff"] is False


async def test_snooze_presets_and_notes_are_checked_with_codes(client: httpx.AsyncClient) -> None:
    """Only the snooze presets are taken; a resolve note is required and bounded; each refusal is coded."""
    alert_id = await _crisis_id(client)
    odd = await client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 45}, headers=_nurse())
    assert odd.status_code == 422
    assert (odd.json()["code"], odd.json()["field"]) == ("validation", "minutes")
    assert odd.json()["errors"] == [{"field": "minutes", "code": "literal_error", "limit": None}]
    blank = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "   "}, headers=_nurse())
    assert [e["code"] for e in blank.json()["errors"]] == ["string_too_short"]
    long = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": "x" * 1001}, headers=_nurse()
    )
    assert long.json()["errors"] == [{"field": "note", "code": "string_too_long", "limit": 1000}]
    assert isinstance(long.json()["detail"], list)  # FastAPI's list, kept for scripts
    state = (await client.get(f"/api/v1/alerts/{alert_id}", headers=_nurse())).json()["state"]
    assert state == "open"  # nothing changed


async def test_one_patients_alerts_and_another_teams_patient(client: httpx.AsyncClient) -> None:
    """patient_id narrows the inbox to one patient; a patient outside the user's teams is not found."""
    mine = await client.get("/api/v1/alerts", params={"patient_id": "pt-1"}, headers=_token("dr-li"))
    assert [a["rule_id"] for a in mine.json()] == ["BP-CRIT-2"]
    other = await client.get("/api/v1/alerts", params={"patient_id": "pt-1"}, headers=_token("dr-chen"))
    assert (other.status_code, other.json()["code"], other.json()["field"]) == (
        404,
        "patient.not_found",
        "patient_id",
    )
    assert (
        await client.get("/api/v1/alerts", params={"patient_id": "pt-2"}, headers=_token("dr-chen"))
    ).json() == []


async def test_each_change_reaches_each_listener_once_and_the_inbox_lists_each_alert_once(
    client: httpx.AsyncClient, hub: EventHub, clinic_sessions: sessionmaker[Session]
) -> None:
    """After a nurse acknowledges, every listener gets that change once (an off-duty nurse on the team
    too) and the inbox still lists the alert once."""
    from storage.clinic.models import CareTeamMember

    with clinic_sessions() as session:
        member = session.query(CareTeamMember).filter_by(user_id="nurse-zhao", patient_id="pt-1").one()
        member.on_duty = False
        session.commit()
    alert_id = await _crisis_id(client)

    async def listen(headers: dict[str, str]) -> list[tuple[str, str]]:
        r = await client.get("/api/v1/alerts/events", params={"limit": 2}, headers=headers)
        data = [
            json.loads(line[len("data: ") :]) for line in r.text.splitlines() if line.startswith("data: ")
        ]
        ids = [line[len("id: ") :] for line in r.text.splitlines() if line.startswith("id: ")]
        assert len(set(ids)) == len(ids) == 2
        assert all(d["needs_signoff"] is False for d in data)
        return [(d["alert_id"], d["event"]) for d in data]

    listeners = [asyncio.create_task(listen(h)) for h in (_token("dr-li"), _nurse("nurse-wang"), _nurse())]
    await hub.wait_for_subscribers(3, timeout_s=10)
    assert (
        await client.post(f"/api/v1/alerts/{alert_id}/ack", headers=_nurse("nurse-wang"))
    ).status_code == 200
    inbox = (await client.get("/api/v1/alerts", headers=_nurse("nurse-wang"))).json()
    assert [a["alert_id"] for a in inbox] == [alert_id]
    await client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 30}, headers=_token("dr-li"))
    async with asyncio.timeout(10):
        got = await asyncio.gather(*listeners)
    for events in got:
        assert events == [(alert_id, "acknowledged"), (alert_id, "snoozed")]


def test_the_schema_names_every_rule_severity_state_and_snooze_preset() -> None:
    """The web app's rule titles, severities and states are type-checked against these enums."""
    from alerts.catalogue import RULES
    from api.openapi_schema import openapi_schema

    schemas = openapi_schema()["components"]["schemas"]
    assert set(schemas["RuleId"]["enum"]) == set(RULES)
    assert schemas["AlertOut"]["properties"]["rule_id"] == {"$ref": "#/components/schemas/RuleId"}
    assert set(schemas["AlertSeverity"]["enum"]) == {"info", "warning", "urgent"}
    assert set(schemas["AlertState"]["enum"]) == {"open", "acknowledged", "snoozed", "resolved", "escalated"}
    assert schemas["SnoozeIn"]["properties"]["minutes"]["enum"] == [15, 30, 60, 120, 240, 480, 1440]
    assert schemas["InboxView"]["enum"] == ["active", "needs_signoff", "recent"]


async def test_equipment_alerts_reach_the_nurse_and_stay_out_of_the_doctors_inbox(
    client: httpx.AsyncClient, alert_engine: AlertEngine, clock: Clock
) -> None:
    """A gateway-offline alert is in the nurse's and the administrator's inbox, not the family doctor's."""
    offline = Outcome(
        rule_id="OPS-GW-OFFLINE",
        patient_id="pt-1",
        status=OutcomeStatus.FIRING,
        severity=RULES["OPS-GW-OFFLINE"].severity,
        values={"silent_hours": 13},
        episode_key="gw-1",
    )
    await alert_engine.apply_outcomes({"pt-1": [offline]}, clock.now)
    nurse = {a["rule_id"] for a in (await client.get("/api/v1/alerts", headers=_nurse())).json()}
    admin_token = _token("admin-a", role=UserRole.CLINIC_ADMIN)
    admin = {a["rule_id"] for a in (await client.get("/api/v1/alerts", headers=admin_token)).json()}
    doctor = {a["rule_id"] for a in (await client.get("/api/v1/alerts", headers=_token("dr-li"))).json()}
    assert "OPS-GW-OFFLINE" in nurse and "OPS-GW-OFFLINE" in admin
    assert doctor == {"BP-CRIT-2"}
