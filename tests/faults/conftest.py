"""Fixtures of the fault scenarios: one shared pipeline of real processes for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.influxdb import influxd_available
from tests.faults.rig import Pipeline, pipeline

# Ingest's own fixtures (a seeded clinic database, a SQLite store, a gateway client), for the
# scenario that kills `vitalgate ingest` alone (test_ingest_crash.py).
from tests.ingest.conftest import clinic_sessions, gateway, gateway_id, store_path  # noqa: F401


@pytest.fixture(scope="session")
def shared_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Broker, proxy, influxd, clinic server and observer, shared by the scenarios (each scenario
    adds a home of its own). Scenarios may stop, kill and restart its parts, and leave them running."""
    if not influxd_available():
        pytest.skip("influxd missing: install the Debian package influxdb")
    with pipeline(tmp_path_factory.mktemp("faults")) as shared:
        yield shared


@pytest.fixture
def faults(shared_pipeline: Pipeline) -> Iterator[Pipeline]:
    """The shared pipeline, every part running again after the scenario (whatever it stopped)."""
    yield shared_pipeline
    shared_pipeline.proxy.heal()
    if not shared_pipeline.broker.running:
        shared_pipeline.broker.start()
    if not shared_pipeline.influx.running:
        shared_pipeline.influx.start()
    if not shared_pipeline.clinic.running:
        shared_pipeline.clinic.start()
