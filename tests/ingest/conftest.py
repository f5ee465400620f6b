"""Fixtures for ingest tests: a seeded clinic database, a SQLite reading store, gateway clients."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ingest import IngestConfig, IngestConsumer
from ingest.consumer import ReadingsListener
from storage.clinic.repository import ClinicRepository
from storage.readings import SqliteReadingStore
from tests.ingest.helpers import WAIT_S, GatewayClient, seed_clinic
from vitalgate.mosquitto import MosquittoBroker

_numbers = itertools.count(1)


@pytest.fixture
def gateway_id() -> str:
    """A gateway id of the test's own, so tests sharing the session broker never see each other."""
    return f"gw-t{next(_numbers)}"


@pytest.fixture
def clinic_sessions(tmp_path: Path, gateway_id: str) -> Iterator[sessionmaker[Session]]:
    sessions = seed_clinic(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", [gateway_id])
    yield sessions
    bind = sessions.kw["bind"]
    bind.dispose()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "readings.sqlite3"


@pytest.fixture
def reading_store(store_path: Path) -> Iterator[SqliteReadingStore]:
    store = SqliteReadingStore(store_path)
    yield store
    store.close()


def ingest_config(broker: MosquittoBroker, **overrides: object) -> IngestConfig:
    username, password = broker.credentials("ingest")
    options: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "username": username,
        "password": password,
        "client_id": f"ingest-test-{next(_numbers)}",
        "session_expiry_s": 300,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
    }
    options.update(overrides)
    return IngestConfig(**options)  # type: ignore[arg-type]


@pytest.fixture
def start_ingest(
    mosquitto_broker: MosquittoBroker,
    reading_store: SqliteReadingStore,
    clinic_sessions: sessionmaker[Session],
) -> Iterator[Callable[..., IngestConsumer]]:
    """Start an ingest consumer on the session broker; every consumer is stopped afterwards."""
    started: list[IngestConsumer] = []

    def start(
        *, listeners: tuple[ReadingsListener, ...] = (), store: object = None, **overrides: object
    ) -> IngestConsumer:
        consumer = IngestConsumer(
            ingest_config(mosquitto_broker, **overrides),
            store or reading_store,  # type: ignore[arg-type]
            ClinicRepository(clinic_sessions),
            listeners=listeners,
        )
        consumer.start()
        started.append(consumer)
        assert consumer.wait_subscribed(WAIT_S), "ingest did not subscribe"
        return consumer

    yield start
    for consumer in started:
        consumer.stop()


@pytest.fixture
def gateway(mosquitto_broker: MosquittoBroker, gateway_id: str) -> Iterator[GatewayClient]:
    user = mosquitto_broker.add_gateway(gateway_id)
    client = GatewayClient(
        mosquitto_broker.host, mosquitto_broker.port, user.username, user.password, gateway_id
    )
    yield client
    client.close()
