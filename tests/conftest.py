"""Shared fixtures. Service fixtures live in tests/fixtures/ and are registered here as plugins."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
import stamina

pytest_plugins = ["tests.fixtures.mosquitto"]

# As every vitalgate process runs (vitalgate.logs.configure_logging): each retry site logs its own
# failed attempts, and stamina adds no log lines of its own.
stamina.instrumentation.set_on_retry_hooks(())

# Tests marked with a real service skip with a clear reason where the service is absent; with
# VITALGATE_REQUIRE_SERVICES=1 (set by `./dev test` in CI) such a skip is a failure instead, so CI
# cannot pass while silently leaving out PostgreSQL, influxd, Mosquitto or Chromium.
SERVICE_MARKERS = ("postgres", "influxdb", "mosquitto", "browser")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("VITALGATE_REQUIRE_SERVICES") != "1" or not report.skipped:
        return
    needed = [m for m in SERVICE_MARKERS if item.get_closest_marker(m) is not None]
    if needed:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"required service missing ({', '.join(needed)}): {reason}"
