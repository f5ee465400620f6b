"""The alerts API: inbox per care team, ack/snooze/resolve, patient reports, SSE live events, and
404 for anything outside the user's clinic or care team (OWASP API1, reliability.md §5.2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository
from api.auth import Principal, issue_token
from api.deps import ApiServices
from api.routes import alerts as alert_routes
from storage.clinic.models import UserRole
from storage.readings.sqlite import SqliteReadingStore
from tests.alerts.conftest import START, Clock, bp_reading

SECRET = "jwt-test-secret-0123456789abcdef0123456789"


def _token(
    user_id: str, clinic_id: str = "clinic-a", role: UserRole = UserRole.FAMILY_DOCTOR
) -> dict[str, str]:
    token = issue_token(Principal(user_id, clinic_id, frozenset({role})), SECRET, 3600)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(
    alert_engine: AlertEngine,
    reading_store: SqliteReadingStore,
    clinic_sessions: sessionmaker[Session],
    hub: EventHub,
    clock: Clock,
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.services = ApiServices(
        reading_store=reading_store,
        clinic_sessions=clinic_sessions,
        jwt_secret=SECRET,
        extras={"alerts": alert_routes.AlertApi(alert_engine, SqlAlertRepository(clinic_sessions), hub)},
    )
    app.include_router(alert_routes.router)
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
