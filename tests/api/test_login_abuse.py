"""The login throttle against a client that forges X-Forwarded-For, and against a flood: a real uvicorn
server as `vitalgate api` runs it (vitalgate.clinic.api_server), requests over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.deps import ApiServices
from api.login_throttle import LoginThrottle
from storage.clinic.models import AuditLogEntry
from vitalgate.clinic import api_server
from vitalgate.mosquitto import free_port

from .conftest import ClinicApi

ADDRESS_THRESHOLD = 3


@contextlib.contextmanager
def serving(services: ApiServices) -> Iterator[str]:
    port = free_port()
    server = api_server(create_app(services), host="127.0.0.1", port=port)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()


def _services(api: ClinicApi, **changes: object) -> ApiServices:
    throttle = LoginThrottle(account_threshold=1000, client_address_threshold=ADDRESS_THRESHOLD)
    return replace(api.services, login_throttle=throttle, **changes)  # type: ignore[arg-type]


def _attempts(url: str, forwarded: Sequence[str | None]) -> list[int]:
    statuses = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for i, address in enumerate(forwarded):
            headers = {"X-Forwarded-For": address} if address else {}
            response = client.post(
                "/api/v1/auth/token",
                data={"username": f"nobody{i}@c1.example", "password": "x"},
                headers=headers,
            )
            statuses.append(response.status_code)
    return statuses


def test_a_forged_x_forwarded_for_does_not_dodge_the_per_address_throttle(clinic_api: ClinicApi) -> None:
    """With no proxy configured, a client naming a new address each time is still one address."""
    forged = [f"203.0.113.{i}" for i in range(10)]
    with serving(_services(clinic_api)) as url:
        statuses = _attempts(url, forged)
    assert statuses == [401] * ADDRESS_THRESHOLD + [429] * (len(forged) - ADDRESS_THRESHOLD)


def test_the_forwarded_address_counts_when_it_comes_from_a_configured_proxy(clinic_api: ClinicApi) -> None:
    """Behind the clinic's reverse proxy each client is counted under its own address."""
    clients = [f"203.0.113.{i}" for i in range(10)]
    with serving(_services(clinic_api, trusted_proxies=("127.0.0.1",))) as url:
        assert _attempts(url, clients) == [401] * len(clients)
        assert _attempts(url, ["198.51.100.7"] * 5)[-1] == 429  # one client is still throttled


def test_a_throttled_flood_writes_one_audit_entry_and_one_log_line_per_window(
    clinic_api: ClinicApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused attempts cost an attacker nothing: they must not cost the audit log a row each."""
    with serving(_services(clinic_api)) as url, caplog.at_level(logging.WARNING, logger="api.routes.auth"):
        statuses = _attempts(url, [None] * 40)
    assert statuses.count(429) == 40 - ADDRESS_THRESHOLD
    with clinic_api.services.clinic_sessions() as session:
        throttled = [
            e
            for e in session.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "login"))
            if e.details.get("reason") == "throttled"
        ]
    assert len(throttled) == 1 and throttled[0].details["scope"] == "client_address"
    assert [r.getMessage() for r in caplog.records].count("login throttled") == 1
