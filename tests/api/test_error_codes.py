"""Every error the API answers carries a code the web app words in the user's language: each code is
reached here through a real request, and every body has the documented shape (api/errors.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from api.auth import Principal, issue_token
from api.errors import ErrorBody, ErrorCode, ValidationErrorBody
from api.login_throttle import LoginThrottle
from api.routes.auth import LOCK_AFTER_FAILED_LOGINS
from storage.clinic.models import User, UserRole
from storage.readings.influxdb.connection import InfluxConfig
from storage.readings.influxdb.store import InfluxReadingStore
from tests.api.conftest import PASSWORD, ClinicApi
from tests.api.test_audit import _open_alert, _with_alerts
from tests.api.test_targets import DIABETES_TARGETS, _add_nurse
from vitalgate.mosquitto import free_port

TOKEN_URL = "/api/v1/auth/token"
DOCTOR = "a@c1.example"


@dataclass(frozen=True)
class Case:
    status: int
    field: str | None
    send: Callable[[ClinicApi], httpx.Response]


def _login(api: ClinicApi, password: str, email: str = DOCTOR) -> httpx.Response:
    response: httpx.Response = api.client.post(TOKEN_URL, data={"username": email, "password": password})
    return response


def _locked(api: ClinicApi) -> httpx.Response:
    with api.services.clinic_sessions() as session:
        session.get_one(User, "dr-a").failed_logins = LOCK_AFTER_FAILED_LOGINS
        session.commit()
    return _login(api, PASSWORD)


def _throttled(api: ClinicApi) -> httpx.Response:
    api.services.login_throttle = LoginThrottle(account_threshold=2)
    for _ in range(2):
        assert _login(api, "wrong").status_code == 401
    return _login(api, PASSWORD)


def _expired(api: ClinicApi) -> httpx.Response:
    old = datetime.now(UTC) - timedelta(days=2)
    token = issue_token(
        Principal("dr-a", "c1", frozenset({UserRole.FAMILY_DOCTOR})), api.services.jwt_secret, 60, old
    )
    response: httpx.Response = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    return response


def _twice_resolved(api: ClinicApi) -> httpx.Response:
    _with_alerts(api)
    doctor = api.auth(DOCTOR)
    alert_id = _open_alert(api, doctor)
    first = api.client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": "seen"}, headers=doctor)
    assert first.status_code == 200
    response: httpx.Response = api.client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"note": "again"}, headers=doctor
    )
    return response


def _unknown_alert(api: ClinicApi) -> httpx.Response:
    _with_alerts(api)
    response: httpx.Response = api.client.get("/api/v1/alerts/al_nope", headers=api.auth(DOCTOR))
    return response


def _store_down(api: ClinicApi) -> httpx.Response:
    # A real InfluxDB client against a port nobody listens on: refused, retried, given up.
    down = InfluxReadingStore(
        InfluxConfig(
            url=f"http://127.0.0.1:{free_port()}", database="vg", timeout_s=1.0, retry_backoff_s=0.05
        )
    )
    headers = api.auth(DOCTOR)
    try:
        with TestClient(create_app(replace(api.services, reading_store=down))) as client:
            response: httpx.Response = client.get("/api/v1/patients/p-1/readings", headers=headers)
            return response
    finally:
        down.close()


def _internal(api: ClinicApi) -> httpx.Response:
    headers = api.auth(DOCTOR)
    store = api.services.reading_store

    def broken(*_args: object, **_kwargs: object) -> list[object]:
        raise RuntimeError("a bug, with a secret inside: 127.0.0.1")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "query_range", broken)
        with TestClient(create_app(api.services), raise_server_exceptions=False) as client:
            response: httpx.Response = client.get("/api/v1/patients/p-1/readings", headers=headers)
            return response


def _malformed_form(api: ClinicApi) -> httpx.Response:
    response: httpx.Response = api.client.post(
        TOKEN_URL,
        content=b"--x\r\nContent-Disposition: form-data\r\n\r\nno name, no end",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    return response


def _too_large(api: ClinicApi) -> httpx.Response:
    body = b"{" + b" " * api.services.max_request_body_bytes + b"}"
    response: httpx.Response = api.client.put(
        "/api/v1/me/preferences",
        content=body,
        headers={**api.auth(DOCTOR), "Content-Type": "application/json"},
    )
    return response


def _nurse_changes_targets(api: ClinicApi) -> httpx.Response:
    _add_nurse(api)  # clinic staff on p-1's care team
    url = "/api/v1/patients/p-1/targets"
    response: httpx.Response = api.client.put(
        url, json=DIABETES_TARGETS, headers=api.auth("nurse@c1.example")
    )
    return response


CASES: dict[ErrorCode, Case] = {
    ErrorCode.AUTH_INVALID_CREDENTIALS: Case(401, None, lambda api: _login(api, "wrong")),
    ErrorCode.AUTH_LOCKED: Case(403, None, _locked),
    ErrorCode.AUTH_THROTTLED: Case(429, None, _throttled),
    ErrorCode.AUTH_EXPIRED: Case(401, None, _expired),
    ErrorCode.AUTH_REQUIRED: Case(401, None, lambda api: api.client.get("/api/v1/me")),
    ErrorCode.FORBIDDEN: Case(
        403, None, lambda api: api.client.get("/api/v1/audit", headers=api.auth(DOCTOR))
    ),
    ErrorCode.NOT_FOUND: Case(
        404, None, lambda api: api.client.get("/api/v1/nowhere", headers=api.auth(DOCTOR))
    ),
    ErrorCode.PATIENT_NOT_FOUND: Case(
        404, None, lambda api: api.client.get("/api/v1/patients/p-none/readings", headers=api.auth(DOCTOR))
    ),
    ErrorCode.ALERT_NOT_FOUND: Case(404, None, _unknown_alert),
    ErrorCode.TARGETS_NOT_FAMILY_DOCTOR: Case(403, None, _nurse_changes_targets),
    ErrorCode.ALERT_INVALID_TRANSITION: Case(409, None, _twice_resolved),
    ErrorCode.VALIDATION: Case(
        422,
        "limit",
        lambda api: api.client.get("/api/v1/patients/p-1/readings?limit=0", headers=api.auth(DOCTOR)),
    ),
    ErrorCode.BAD_REQUEST: Case(400, None, _malformed_form),
    ErrorCode.METHOD_NOT_ALLOWED: Case(
        405, None, lambda api: api.client.delete("/api/v1/me", headers=api.auth(DOCTOR))
    ),
    ErrorCode.REQUEST_TOO_LARGE: Case(413, None, _too_large),
    ErrorCode.STORE_UNAVAILABLE: Case(503, None, _store_down),
    ErrorCode.SERVICE_UNAVAILABLE: Case(
        503, None, lambda api: api.client.get("/api/v1/alerts", headers=api.auth(DOCTOR))
    ),
    ErrorCode.INTERNAL: Case(500, None, _internal),
}
# Codes this module does not reach with a request of its own, and why.
RAISED_ELSEWHERE = {
    ErrorCode.TARGETS_CHANGED_MEANWHILE: "two first target changes committed at the same instant",
    ErrorCode.CONFLICT: "a plain 409 from a route without a code of its own",
}
ADMINISTRATION = "admin."  # the clinic administration's codes: tests/api/test_admin_*.py


def test_every_code_is_reached_here_or_said_where_it_is_raised() -> None:
    """A new code cannot be added without a request that reaches it (or a reason)."""
    codes = {c for c in ErrorCode if not c.value.startswith(ADMINISTRATION)}
    assert set(CASES) | set(RAISED_ELSEWHERE) == codes
    assert not set(CASES) & set(RAISED_ELSEWHERE)


@pytest.mark.parametrize("code", list(CASES), ids=str)
def test_each_error_answers_with_its_code_in_the_documented_shape(
    clinic_api: ClinicApi, code: ErrorCode
) -> None:
    """The web app words the code; scripts read `detail`; both always present, nothing else leaks."""
    case = CASES[code]
    response = case.send(clinic_api)
    assert response.status_code == case.status, response.text
    body = response.json()
    assert (body["code"], body["field"]) == (code.value, case.field)
    if case.status == 422:
        ValidationErrorBody.model_validate(body)
        assert set(body) == {"detail", "code", "field", "errors"}
        assert body["errors"] == [{"field": "limit", "code": "greater_than_equal", "limit": 1}]
        assert body["detail"][0]["loc"] == ["query", "limit"]  # FastAPI's list, for scripts
    else:
        ErrorBody.model_validate(body)
        assert set(body) == {"detail", "code", "field"} and body["detail"]
        with pytest.raises(ValidationError):
            ValidationErrorBody.model_validate(body)
    assert "127.0.0.1" not in response.text and "Wang" not in response.text


def test_refusals_keep_their_headers(clinic_api: ClinicApi) -> None:
    """A throttled login says when to retry; a refused token says which scheme to use."""
    assert _expired(clinic_api).headers["WWW-Authenticate"] == "Bearer"
    assert _store_down(clinic_api).headers["Retry-After"] == "5"
    throttled = _throttled(clinic_api)
    assert int(throttled.headers["Retry-After"]) > 0
