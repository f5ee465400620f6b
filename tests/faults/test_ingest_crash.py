"""`vitalgate ingest` as a process: kill -9 with readings in flight loses nothing, stores nothing twice.

reliability.md §(a) 1: kill -9 the ingest while 10,000 readings are in flight, restart it with the
same client id (clean_start false, session expiry > 0); pass = every reading present exactly once.
Counted, not inferred from distinct rows: the store's table gets an append-only write log (a trigger
the test adds), so a reading written twice shows as two writes whatever the table's key keeps.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage.readings.protocol import AnyReading
from storage.readings.sqlite import SqliteReadingStore
from tests.faults.ledger import Ledger
from tests.ingest.helpers import (
    GatewayClient,
    batch_json,
    bp_reading,
    glucose_reading,
    stored_count,
    stored_ids,
    wait_until,
)
from vitalgate.mosquitto import MosquittoBroker

pytestmark = [pytest.mark.faults, pytest.mark.mosquitto, pytest.mark.slow]

READINGS = 10_000
READINGS_PER_MESSAGE = 50
PROCESS_START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 180.0
SHUTDOWN_TIMEOUT_S = 30.0


class IngestProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self._log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vitalgate.cli", "ingest", "--stats-interval", "0"],
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(SHUTDOWN_TIMEOUT_S)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(SHUTDOWN_TIMEOUT_S)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(SHUTDOWN_TIMEOUT_S)


def add_write_log(path: Path) -> None:
    """The store's schema, plus a write log: one row per INSERT or UPDATE of a reading, ever."""
    SqliteReadingStore(path).close()
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE write_log (reading_id TEXT NOT NULL, operation TEXT NOT NULL);
            CREATE TRIGGER readings_insert_log AFTER INSERT ON readings
                BEGIN INSERT INTO write_log VALUES (new.reading_id, 'insert'); END;
            CREATE TRIGGER readings_update_log AFTER UPDATE ON readings
                BEGIN INSERT INTO write_log VALUES (new.reading_id, 'update'); END;
            """
        )


def counted(path: Path, sql: str) -> Counter[str]:
    with sqlite3.connect(path, timeout=10) as db:
        return Counter({row[0]: row[1] for row in db.execute(sql)})


@pytest.fixture
def ingest_process(
    tmp_path: Path,
    mosquitto_broker: MosquittoBroker,
    clinic_sessions: sessionmaker[Session],
    store_path: Path,
    gateway_id: str,
) -> Iterator[IngestProcess]:
    username, password = mosquitto_broker.credentials("ingest")
    env = {
        **os.environ,
        "VITALGATE_DATA_DIR": str(tmp_path / "data"),
        "VITALGATE_LOG_FORMAT": "json",
        "VITALGATE_MQTT__HOST": mosquitto_broker.host,
        "VITALGATE_MQTT__PORT": str(mosquitto_broker.port),
        "VITALGATE_MQTT__USERNAME": username,
        "VITALGATE_MQTT__PASSWORD": password,
        "VITALGATE_STORAGE__READING_STORE": "sqlite",
        "VITALGATE_STORAGE__SQLITE_PATH": str(store_path),
        "VITALGATE_STORAGE__CLINIC_DATABASE_URL": f"sqlite:///{tmp_path / 'clinic.sqlite3'}",
        "VITALGATE_INGEST__CLIENT_ID": f"ingest-kill-{gateway_id}",
        "VITALGATE_INGEST__SESSION_EXPIRY_S": "600",
    }
    process = IngestProcess(env, tmp_path / "ingest.log")
    yield process
    process.cleanup()


def test_kill_9_with_10000_readings_in_flight_then_restart_stores_each_exactly_once(
    ingest_process: IngestProcess,
    gateway: GatewayClient,
    store_path: Path,
    tmp_path: Path,
) -> None:
    """kill -9 of `vitalgate ingest` (and so of its pipeline process) with 10,000 readings in flight,
    then a restart on the same persistent session: every reading stored and acked, none written twice."""
    add_write_log(store_path)
    ingest_process.start()
    probe = glucose_reading(0)

    def probe_acked() -> bool:
        # Until ingest has subscribed there is no session to queue for: resend, as a gateway does.
        if probe.reading_id in gateway.stored_acked():
            return True
        gateway.publish([probe])
        return wait_until(lambda: probe.reading_id in gateway.stored_acked(), 1.0)

    assert wait_until(probe_acked, PROCESS_START_TIMEOUT_S), (tmp_path / "ingest.log").read_text()

    readings = [bp_reading(i) for i in range(READINGS)]
    infos = [
        gateway.publish_raw(gateway_payload, wait=False)
        for gateway_payload in (
            _payload(gateway, readings[i : i + READINGS_PER_MESSAGE])
            for i in range(0, READINGS, READINGS_PER_MESSAGE)
        )
    ]
    # Kill as soon as the stream is being stored: a drain of the whole 10,000 takes about a second.
    assert wait_until(lambda: stored_count(store_path) > 1, DRAIN_TIMEOUT_S, interval_s=0.002)
    assert ingest_process.process is not None
    children = _children(ingest_process.process.pid)
    assert children, "vitalgate ingest validates and stores in a pipeline process of its own"
    ingest_process.kill()
    # The pipeline process reads end-of-file from its pipe and exits: nothing writes without a consumer.
    assert wait_until(lambda: not any(_running(pid) for pid in children), SHUTDOWN_TIMEOUT_S)
    stored_at_kill = len(stored_ids(store_path))
    print(f"stored at kill: {stored_at_kill}")
    assert stored_at_kill < 1 + READINGS, "nothing was in flight at the kill; the test proves nothing"

    for info in infos:
        info.wait_for_publish(DRAIN_TIMEOUT_S)  # the broker has every message (queued for ingest)
    ingest_process.start()
    expected = {r.reading_id for r in readings} | {probe.reading_id}
    assert wait_until(lambda: gateway.stored_acked() >= expected, DRAIN_TIMEOUT_S), (
        f"{len(expected - gateway.stored_acked())} readings never acked; stored at kill: {stored_at_kill}"
    )
    assert ingest_process.terminate() == 0, "SIGTERM must shut ingest down cleanly"
    acked: Counter[str] = Counter()
    for ack in gateway.acks:
        acked.update(ack.stored)
    ledger = Ledger(
        scenario="ingest kill -9 with 10,000 readings in flight",
        measured=expected,
        published=Counter({rid: 1 for rid in expected}),  # each published once by the gateway
        acked=acked,
        store_rows=counted(store_path, "SELECT reading_id, count(*) FROM readings GROUP BY reading_id"),
        store_writes=counted(store_path, "SELECT reading_id, count(*) FROM write_log GROUP BY reading_id"),
        check_alerts=False,  # `vitalgate ingest` alone: the alert engine runs in the clinic server
    )
    ledger.notes.append(
        f"stored at the kill: {stored_at_kill}; acks after the restart: {sum(acked.values())}"
    )
    ledger.check()


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (from /proc/<n>/stat: pid (comm) state ppid ...)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _payload(gateway: GatewayClient, readings: Sequence[AnyReading]) -> bytes:
    return batch_json(gateway.gateway_id, readings)
