"""The audit trail (HIPAA §164.312(b), reliability.md scenario 13) and login throttling (OWASP API2/API4).

Real parts: the API over a clinic database migrated by Alembic (SQLite) and a SQLite reading store,
the alert engine as the clinic server wires it, and the `vitalgate` command line as an operator runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from api.login_throttle import ACCOUNT_LOCKOUT_THRESHOLD
from api.services import AlertApi
from storage.clinic.models import AuditLogEntry, User
from vitalgate.cli import main

from .conftest import PASSWORD, ClinicApi
from .test_auth_and_readings import cuff_reading

TOKEN_URL = "/api/v1/auth/token"
# Every e-mail address, name and password the fixture and these tests use.
PERSONAL_DATA = (
    "a@c1.example",
    "b@c1.example",
    "admin@c1.example",
    "admin@c2.example",
    "nobody@c1.example",
    "@",
    "Wei",
    "Wang",
    PASSWORD,
    "wrong password",
)


def _entries(api: ClinicApi, **where: Any) -> list[AuditLogEntry]:
    with api.services.clinic_sessions() as session:
        query = select(AuditLogEntry).order_by(AuditLogEntry.audit_id)
        for name, value in where.items():
            query = query.where(getattr(AuditLogEntry, name) == value)
        return list(session.scalars(query))


def _whole_table_text(api: ClinicApi) -> str:
    with api.services.clinic_sessions() as session:
        rows = session.execute(text("SELECT * FROM audit_log")).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def _login(client: TestClient, email: str, password: str) -> Any:
    return client.post(TOKEN_URL, data={"username": email, "password": password})


def _with_alerts(api: ClinicApi) -> None:
    """The alert engine and its repositories, as vitalgate/clinic.py wires them."""
    services = api.services
    repository = SqlAlertRepository(services.clinic_sessions)
    engine = AlertEngine(
        services.reading_store,
        repository,
        SqlPatientDirectory(services.clinic_sessions, "cn"),
        Router(live=[EventHub()]),
    )
    services.alerts = AlertApi(engine, repository, EventHub())


def _open_alert(api: ClinicApi, headers: dict[str, str]) -> str:
    """A severe hypo reported for p-1 (GLU-HYPO-3): an open alert."""
    response = api.client.post(
        "/api/v1/alerts/reports", json={"patient_id": "p-1", "kind": "severe_hypo_event"}, headers=headers
    )
    assert response.status_code == 202, response.text
    alert_id: str = response.json()[0]["alert_id"]
    return alert_id


@pytest.mark.parametrize(
    ("email", "actor", "clinic"), [("admin@c2.example", "admin-2", "c2"), ("b@c1.example", "dr-b", "c1")]
)
def test_a_patient_the_user_may_not_see_is_a_404_and_a_denied_entry(
    clinic_api: ClinicApi, email: str, actor: str, clinic: str
) -> None:
    headers = clinic_api.auth(email)
    response = clinic_api.client.get("/api/v1/patients/p-1/readings", headers=headers)
    assert response.status_code == 404
    [entry] = _entries(clinic_api, outcome="denied")
    assert (entry.actor, entry.action, entry.object_type, entry.object_id) == (
        actor,
        "read_readings",
        "patient",
        "p-1",
    )
    # Filed under the asking user's clinic: nothing tells another clinic's administrator that p-1 exists.
    assert entry.clinic_id == clinic
    assert entry.details == {}
    assert not _entries(clinic_api, action="read_readings", outcome="allowed")


def test_reads_of_a_patient_are_one_allowed_entry_each(clinic_api: ClinicApi) -> None:
    clinic_api.services.reading_store.write_batch([cuff_reading(5, 150)])
    headers = clinic_api.auth("a@c1.example")
    assert clinic_api.client.get("/api/v1/patients/p-1/readings", headers=headers).status_code == 200
    assert clinic_api.client.get("/api/v1/patients/p-1/readings/daily", headers=headers).status_code == 200
    panel = clinic_api.client.get("/api/v1/patients", headers=headers)
    assert panel.status_code == 200 and len(panel.json()["patients"]) == 1

    reads = [
        (e.actor, e.action, e.object_type, e.object_id, e.clinic_id, e.outcome, e.details)
        for e in _entries(clinic_api)
        if e.action != "login"
    ]
    assert reads == [
        ("dr-a", "read_readings", "patient", "p-1", "c1", "allowed", {}),
        ("dr-a", "read_daily_aggregates", "patient", "p-1", "c1", "allowed", {}),
        # The panel: how many patients, not which.
        ("dr-a", "read_panel", "patient_panel", None, "c1", "allowed", {"count": 1}),
    ]


def test_logins_are_audited_without_the_e_mail_address(clinic_api: ClinicApi) -> None:
    assert _login(clinic_api.client, "a@c1.example", PASSWORD).status_code == 200
    assert _login(clinic_api.client, "A@C1.example ", "wrong password").status_code == 401
    assert _login(clinic_api.client, "nobody@c1.example", "wrong password").status_code == 401

    logins = [(e.actor, e.object_id, e.clinic_id, e.outcome, e.details) for e in _entries(clinic_api)]
    assert logins == [
        ("dr-a", "dr-a", "c1", "allowed", {}),
        # Whoever typed a wrong password was not signed in: not dr-a's activity, but about dr-a's account.
        ("unknown", "dr-a", "c1", "denied", {"reason": "wrong_password"}),
        ("unknown", None, None, "denied", {"reason": "unknown_account"}),
    ]
    with clinic_api.services.clinic_sessions() as session:
        user = session.get(User, "dr-a")
        assert user is not None and user.last_login_at is not None


def test_thirty_wrong_logins_lock_the_account_even_for_the_right_password(clinic_api: ClinicApi) -> None:
    answers = [_login(clinic_api.client, "a@c1.example", f"wrong password {i}") for i in range(30)]
    statuses = [a.status_code for a in answers]
    assert statuses == [401] * ACCOUNT_LOCKOUT_THRESHOLD + [429] * (30 - ACCOUNT_LOCKOUT_THRESHOLD)
    refused = _login(clinic_api.client, "a@c1.example", PASSWORD)
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 15 * 60
    assert "access_token" not in refused.json()

    # Throttled attempts cost nothing to send: one entry for the window, however many came.
    throttled = [e for e in _entries(clinic_api, action="login") if e.details.get("reason") == "throttled"]
    assert len(throttled) == 1
    assert {(e.actor, e.object_id, e.outcome, e.details["scope"]) for e in throttled} == {
        ("unknown", "dr-a", "denied", "account")
    }
    # Nobody else is locked out by one account's lockout.
    assert _login(clinic_api.client, "b@c1.example", PASSWORD).status_code == 200


def test_a_successful_login_resets_the_account_counter(clinic_api: ClinicApi) -> None:
    for _round in range(3):
        for i in range(ACCOUNT_LOCKOUT_THRESHOLD - 1):
            assert _login(clinic_api.client, "a@c1.example", f"wrong {i}").status_code == 401
        assert _login(clinic_api.client, "a@c1.example", PASSWORD).status_code == 200
    assert not [e for e in _entries(clinic_api) if e.details.get("reason") == "throttled"]


def test_a_token_of_a_deactivated_account_is_a_denied_entry(clinic_api: ClinicApi) -> None:
    headers = clinic_api.auth("a@c1.example")
    with clinic_api.services.clinic_sessions() as session:
        user = session.get(User, "dr-a")
        assert user is not None
        user.active = False
        session.commit()
    assert clinic_api.client.get("/api/v1/patients/p-1/readings", headers=headers).status_code == 401
    [entry] = _entries(clinic_api, action="use_token")
    assert (entry.actor, entry.object_type, entry.object_id, entry.clinic_id, entry.outcome) == (
        "dr-a",
        "user",
        "dr-a",
        "c1",
        "denied",
    )
    assert entry.details == {"reason": "account_inactive"}


def test_alerts_reads_actions_and_denials_are_audited(clinic_api: ClinicApi) -> None:
    _with_alerts(clinic_api)
    doctor = clinic_api.auth("a@c1.example")
    alert_id = _open_alert(clinic_api, doctor)

    assert clinic_api.client.get(f"/api/v1/alerts/{alert_id}", headers=doctor).status_code == 200
    assert clinic_api.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=doctor).status_code == 200
    snooze = clinic_api.client.post(f"/api/v1/alerts/{alert_id}/snooze", json={"minutes": 30}, headers=doctor)
    assert snooze.status_code == 200
    resolved = clinic_api.client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": "seen by Dr Wang at home"}, headers=doctor
    )
    assert resolved.status_code == 200
    # Resolving twice: the lifecycle refuses, and the trail says so.
    again = clinic_api.client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": "again"}, headers=doctor
    )
    assert again.status_code == 409
    # Another doctor of the clinic, not on p-1's team, and another clinic's administrator.
    for email in ("b@c1.example", "admin@c2.example"):
        other = clinic_api.auth(email)
        assert clinic_api.client.get(f"/api/v1/alerts/{alert_id}", headers=other).status_code == 404
        assert clinic_api.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=other).status_code == 404

    on_alert = [
        (e.actor, e.action, e.outcome, e.details)
        for e in _entries(clinic_api, object_type="alert", object_id=alert_id)
    ]
    assert on_alert == [
        ("dr-a", "read_alert", "allowed", {"patient_id": "p-1"}),
        ("dr-a", "acknowledge_alert", "allowed", {"patient_id": "p-1"}),
        ("dr-a", "snooze_alert", "allowed", {"patient_id": "p-1"}),
        ("dr-a", "resolve_alert", "allowed", {"patient_id": "p-1"}),
        ("dr-a", "resolve_alert", "allowed", {"patient_id": "p-1"}),
        ("dr-a", "resolve_alert", "error", {"reason": "invalid_transition"}),
        ("dr-b", "read_alert", "denied", {}),
        ("dr-b", "acknowledge_alert", "denied", {}),
        ("admin-2", "read_alert", "denied", {}),
        ("admin-2", "acknowledge_alert", "denied", {}),
    ]
    [report] = _entries(clinic_api, action="add_patient_report")
    assert (report.object_type, report.object_id, report.details) == (
        "patient",
        "p-1",
        {"kind": "severe_hypo_event"},
    )
    # The resolve note is free text (here it names someone): it stays out of the trail.
    assert "Wang" not in _whole_table_text(clinic_api)


def test_the_alert_inbox_and_its_live_stream_are_audited_with_counts(clinic_api: ClinicApi) -> None:
    _with_alerts(clinic_api)
    doctor = clinic_api.auth("a@c1.example")
    _open_alert(clinic_api, doctor)
    inbox = clinic_api.client.get("/api/v1/alerts", headers=doctor)
    assert inbox.status_code == 200 and len(inbox.json()) == 1
    with clinic_api.client.stream("GET", "/api/v1/alerts/events?limit=1", headers=doctor) as stream:
        assert stream.status_code == 200
        assert next(stream.iter_lines()) == ": connected"

    listed = [
        (e.actor, e.action, e.object_type, e.object_id, e.outcome, e.details)
        for e in _entries(clinic_api, object_type="clinic")
    ]
    assert listed == [
        ("dr-a", "read_alert_inbox", "clinic", "c1", "allowed", {"count": 1}),
        ("dr-a", "subscribe_alert_events", "clinic", "c1", "allowed", {}),
    ]


def _page(api: ClinicApi, headers: dict[str, str], **params: Any) -> Any:
    return api.client.get("/api/v1/audit", params=params, headers=headers)


def test_the_audit_endpoint_is_for_clinic_administrators_of_their_own_clinic(clinic_api: ClinicApi) -> None:
    doctor = clinic_api.auth("a@c1.example")
    clinic_api.client.get("/api/v1/patients/p-1/readings", headers=doctor)
    clinic_api.client.get("/api/v1/patients/p-1/readings", headers=clinic_api.auth("admin@c2.example"))

    refused = _page(clinic_api, doctor)
    assert refused.status_code == 403
    [denial] = _entries(clinic_api, action="read_audit")
    assert (denial.actor, denial.outcome, denial.object_type) == ("dr-a", "denied", "audit_log")

    admin = clinic_api.auth("admin@c1.example")
    page = _page(clinic_api, admin)
    assert page.status_code == 200
    entries = page.json()["entries"]
    assert entries and {e["clinic_id"] for e in entries} == {"c1"}  # admin-2's denial is c2's
    assert [e["audit_id"] for e in entries] == sorted((e["audit_id"] for e in entries), reverse=True)
    assert "admin-2" not in {e["actor"] for e in entries}

    about_p1 = _page(clinic_api, admin, patient_id="p-1")
    assert [(e["actor"], e["action"], e["outcome"]) for e in about_p1.json()["entries"]] == [
        ("dr-a", "read_readings", "allowed")
    ]
    denied = _page(clinic_api, admin, outcome="denied")
    assert [(e["actor"], e["action"]) for e in denied.json()["entries"]] == [("dr-a", "read_audit")]
    by_actor = _page(clinic_api, admin, actor="dr-a", since="2000-01-01T00:00:00Z")
    assert {e["actor"] for e in by_actor.json()["entries"]} == {"dr-a"}

    # Paging: newest first, then on from the last id of a page.
    first = _page(clinic_api, admin, limit=2).json()
    assert len(first["entries"]) == 2 and first["next_before_audit_id"] == first["entries"][-1]["audit_id"]
    second = _page(clinic_api, admin, limit=2, before_audit_id=first["next_before_audit_id"]).json()
    assert max(e["audit_id"] for e in second["entries"]) < first["next_before_audit_id"]
    # The page cap.
    assert _page(clinic_api, admin, limit=501).status_code == 422
    # Reading the trail is itself in the trail.
    assert [e.outcome for e in _entries(clinic_api, action="read_audit", actor="admin-1")] == ["allowed"] * 6


def test_the_admin_audit_command_prints_json_lines_newest_first(
    clinic_api: ClinicApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = clinic_api.auth("a@c1.example")
    clinic_api.client.get("/api/v1/patients/p-1/readings", headers=headers)
    clinic_api.client.get("/api/v1/patients/p-1/readings/daily", headers=headers)
    clinic_api.client.get("/api/v1/patients/p-1/readings", headers=clinic_api.auth("b@c1.example"))
    capsys.readouterr()

    # The operator's shell: settings from the environment, the same data directory as the server.
    monkeypatch.setenv("VITALGATE_DATA_DIR", str(tmp_path))
    assert main(["--log-format", "text", "admin", "audit", "--patient-id", "p-1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["actor"], e["action"], e["outcome"]) for e in lines] == [
        ("dr-b", "read_readings", "denied"),
        ("dr-a", "read_daily_aggregates", "allowed"),
        ("dr-a", "read_readings", "allowed"),
    ]
    assert set(lines[0]) == {
        "audit_id",
        "at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "clinic_id",
        "outcome",
        "details",
    }

    assert main(["admin", "audit", "--clinic-id", "c1", "--outcome", "denied", "--limit", "1"]) == 0
    [denied] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (denied["actor"], denied["object_id"]) == ("dr-b", "p-1")

    assert main(["admin", "audit", "--actor", "dr-a", "--since", "2000-01-01"]) == 0
    assert {json.loads(line)["actor"] for line in capsys.readouterr().out.splitlines()} == {"dr-a"}

    assert main(["admin", "audit", "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_no_e_mail_address_name_or_password_anywhere_in_the_audit_log(clinic_api: ClinicApi) -> None:
    _with_alerts(clinic_api)
    client = clinic_api.client
    _login(client, "nobody@c1.example", "wrong password")
    for i in range(ACCOUNT_LOCKOUT_THRESHOLD + 3):
        _login(client, "b@c1.example", f"wrong password {i}")
    doctor = clinic_api.auth("a@c1.example")
    client.get("/api/v1/patients", headers=doctor)
    client.get("/api/v1/patients/p-1/readings", headers=doctor)
    client.get("/api/v1/patients/p-1/readings", headers=clinic_api.auth("admin@c2.example"))
    alert_id = _open_alert(clinic_api, doctor)
    client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "Wei Wang a@c1.example"}, headers=doctor)
    _page(clinic_api, clinic_api.auth("admin@c1.example"))

    table = _whole_table_text(clinic_api)
    assert "throttled" in table and "read_panel" in table  # the scenario did write the trail
    for personal in PERSONAL_DATA:
        assert personal.lower() not in table.lower(), personal


def test_without_a_trail_reads_fail_closed_and_denials_stand(
    clinic_api: ClinicApi, caplog: pytest.LogCaptureFixture
) -> None:
    doctor = clinic_api.auth("a@c1.example")
    other = clinic_api.auth("admin@c2.example")
    # The audit table is gone (a broken migration, a full disk on that table's tablespace...).
    with clinic_api.services.clinic_sessions() as session:
        session.execute(text("DROP TABLE audit_log"))
        session.commit()

    read = clinic_api.client.get("/api/v1/patients/p-1/readings", headers=doctor)
    assert read.status_code == 503  # no trail, no readings
    assert "readings" not in read.json()
    assert clinic_api.client.get("/api/v1/patients", headers=doctor).status_code == 503
    assert _login(clinic_api.client, "a@c1.example", PASSWORD).status_code == 503  # no token either
    # Logins that reached no verdict are not failures: retrying through the outage never locks out.
    retries = [_login(clinic_api.client, "a@c1.example", PASSWORD).status_code for _ in range(12)]
    assert retries == [503] * 12
    # A refusal is still the same refusal.
    assert clinic_api.client.get("/api/v1/patients/p-1/readings", headers=other).status_code == 404
    assert _login(clinic_api.client, "a@c1.example", "wrong password").status_code == 401

    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert "audit entry" in logged
    for personal in PERSONAL_DATA:
        assert personal not in logged, personal
