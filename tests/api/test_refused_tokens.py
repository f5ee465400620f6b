"""Refused bearer tokens are counted on /metrics and logged, rate-limited and without the token; the
clinic database is not touched (api/refused_tokens.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from api.auth import Principal, issue_token
from api.refused_tokens import LOG_INTERVAL_S, RefusedTokens
from storage.clinic.models import AuditLogEntry, UserRole

from .conftest import ClinicApi

DR_A = Principal("dr-a", "c1", frozenset({UserRole.FAMILY_DOCTOR}))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_log_gets_a_line_a_minute_per_reason_with_what_it_left_out() -> None:
    clock = FakeClock()
    refused = RefusedTokens(clock=clock)
    assert refused.record("invalid") == 1  # the first one is logged at once
    assert [refused.record("invalid") for _ in range(5)] == [0] * 5
    assert refused.record("expired") == 1  # each reason on its own
    clock.now += LOG_INTERVAL_S
    assert refused.record("invalid") == 6  # the five held back, and this one
    assert refused.record("something else") == 0  # counted as invalid, within the minute
    assert refused.totals() == {"expired": 1, "invalid": 8}


def test_expired_forged_and_malformed_tokens_are_counted_logged_and_never_written_down(
    clinic_api: ClinicApi, caplog: pytest.LogCaptureFixture
) -> None:
    secret = clinic_api.services.jwt_secret
    expired = issue_token(DR_A, secret, 3600, now=datetime.now(UTC) - timedelta(days=2))
    forged = issue_token(DR_A, "not-the-clinic-secret-" + "y" * 32, 3600)
    malformed = "not.a.token"
    with caplog.at_level(logging.WARNING, logger="api.deps"):
        for token, code in (
            (expired, "auth.expired"),
            (forged, "auth.required"),
            (malformed, "auth.required"),
        ):
            response = clinic_api.client.get("/api/v1/patients", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
            # says no more than whether the session ran out (the web app signs the user in again)
            assert response.json() == {"detail": "invalid or expired token", "code": code, "field": None}

    metrics = clinic_api.client.get("/metrics").text
    assert "vitalgate_api_expired_tokens_refused_total 1\n" in metrics
    assert "vitalgate_api_invalid_tokens_refused_total 2\n" in metrics
    lines = [r for r in caplog.records if r.getMessage() == "bearer tokens refused"]
    assert [(r.reason, r.count) for r in lines] == [("expired", 1), ("invalid", 1)]  # type: ignore[attr-defined]
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for token in (expired, forged, malformed):
        assert token not in logged
    with clinic_api.services.clinic_sessions() as session:
        assert session.query(AuditLogEntry).count() == 0  # no account to name, nothing written
