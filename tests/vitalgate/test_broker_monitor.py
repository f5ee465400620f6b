"""The broker monitor (vitalgate/broker_monitor.py) against deploy/mosquitto as shipped, on a private
broker: a queue overflowed past the broker's limits shows on /metrics and opens one operational
alert for the clinic staff, however many messages are dropped."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from storage.clinic.models import Alert
from storage.readings import SqliteReadingStore
from tests.fixtures.mosquitto import DeployedRig
from tests.ingest.helpers import seed_clinic, wait_until
from vitalgate.broker_monitor import BROKER_DROPS, BrokerMonitor, BrokerMonitorConfig
from vitalgate.fleet import FleetConfig

GATEWAY = "gw-monitored"
VICTIM = "vitalgate-overflowed-service"  # a clinic service's persistent session, away
TOPIC = "vitalgate/v1/clinic/c1/overflow-check"
MAX_QUEUED_MESSAGES = 100_000  # deploy/mosquitto/vitalgate.conf
SYS_WAIT_S = 40.0
PUBLISH_PER_CONNECTION = 10_000  # $SYS is republished every sys_interval (10 s)

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto_pub not installed")


@dataclass
class Watch:
    rig: DeployedRig
    monitor: BrokerMonitor
    sessions: sessionmaker[Session]

    def publish(self, count: int) -> None:
        """`count` QoS 1 messages on the clinic listener with the clinic's certificate (mosquitto_pub),
        in connections of PUBLISH_PER_CONNECTION: Debian's 2.0.11 disconnects one sender that floods
        100,000 messages at once ("out of memory": a PUBACK it could not queue)."""
        broker = self.rig.broker
        cert = broker.clinic_certificate("vitalgate-clinic")
        command = [
            "mosquitto_pub", "-h", broker.host, "-p", str(broker.clinic_port),
            "--cafile", str(broker.server_tls.ca_file), "--cert", str(cert.cert_file),
            "--key", str(cert.key_file), "-i", "overflow-sender", "-t", TOPIC, "-q", "1", "-l",
        ]  # fmt: skip
        for first in range(0, count, PUBLISH_PER_CONNECTION):
            lines = "".join(f"{i}\n" for i in range(first, min(count, first + PUBLISH_PER_CONNECTION)))
            subprocess.run(command, input=lines.encode(), check=True, timeout=120)

    def alerts(self) -> list[Alert]:
        with self.sessions() as session:
            return list(session.scalars(select(Alert).where(Alert.rule_id == BROKER_DROPS)))


async def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Whether `condition` (set by paho's network thread, which has no event to await) comes true."""
    return await asyncio.to_thread(wait_until, condition, timeout_s)


@pytest.fixture
async def watch(own_deployed_broker: DeployedRig, tmp_path: Path) -> AsyncIterator[Watch]:
    rig = own_deployed_broker
    sessions = seed_clinic(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", [GATEWAY])  # p1 measures through it
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    engine = AlertEngine(
        store, SqlAlertRepository(sessions), SqlPatientDirectory(sessions), Router(live=[EventHub()])
    )
    cert = rig.broker.clinic_certificate("vitalgate-clinic")
    connection = FleetConfig(
        host=rig.broker.host,
        port=rig.broker.clinic_port,
        username="vitalgate-clinic",
        password=None,
        client_id="unused",
        tls_ca_file=str(rig.broker.server_tls.ca_file),
        tls_cert_file=str(cert.cert_file),
        tls_key_file=str(cert.key_file),
    )
    monitor = BrokerMonitor(BrokerMonitorConfig(connection), sessions, engine=engine)
    await monitor.start()
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        assert await asyncio.to_thread(monitor.subscribed.wait, 20), "the clinic account may not read $SYS"
        assert await _until(lambda: monitor.counts.dropped_total is not None, SYS_WAIT_S)
        yield Watch(rig, monitor, sessions)
    finally:
        stop.set()
        await task
        await monitor.close()
        store.close()


def _leave_a_persistent_session(rig: DeployedRig) -> None:
    victim = rig.probe(
        rig.clinic("vitalgate-clinic"), "clinic", client_id=VICTIM, clean_start=False, session_expiry_s=600
    )
    assert victim.connect(), victim.failure
    assert victim.subscribe(TOPIC) == 1
    victim.close()


async def test_an_overflowing_queue_is_counted_and_opens_one_alert_for_the_clinic_staff(watch: Watch) -> None:
    """Past max_queued_messages the broker drops silently; the monitor sees it and tells the staff once."""
    _leave_a_persistent_session(watch.rig)
    assert watch.alerts() == []
    await asyncio.to_thread(watch.publish, MAX_QUEUED_MESSAGES + 50)

    assert await _until(lambda: watch.monitor.counts.dropped_seen >= 50, SYS_WAIT_S)
    assert await _until(lambda: len(watch.alerts()) == 1, 10)
    [alert] = watch.alerts()
    assert (alert.patient_id, alert.state.value, alert.severity.value) == ("p1", "open", "warning")
    assert watch.monitor.counts.dropping_clients[VICTIM] >= 1  # the log named whose queue it was

    metrics = watch.monitor.prometheus_text()
    assert "vitalgate_broker_monitor_connected 1\n" in metrics
    seen = watch.monitor.counts.dropped_seen
    assert f"vitalgate_broker_messages_dropped_seen_total {seen}\n" in metrics
    assert f'vitalgate_broker_dropping_client_episodes_total{{client_id="{VICTIM}"}}' in metrics
    assert "vitalgate_broker_clients_connected " in metrics

    # More drops in the same episode: the same alert, not a second one.
    await asyncio.to_thread(watch.publish, 20)
    assert await _until(lambda: watch.monitor.counts.dropped_seen >= seen + 20, SYS_WAIT_S)
    await watch.monitor.check()
    assert [a.alert_id for a in watch.alerts()] == [alert.alert_id]


async def test_a_refused_login_is_counted(watch: Watch) -> None:
    """A wrong gateway password is refused at the broker and shows on /metrics."""
    credentials = await asyncio.to_thread(watch.rig.gateway, "gw-wrong-password")
    intruder = watch.rig.probe(
        type(credentials)(credentials.username, "not-the-password"), "gateway", client_id="gw-wrong-password"
    )
    assert not intruder.connect()
    intruder.close()
    assert await _until(lambda: watch.monitor.counts.logins_refused >= 1, 10)
    assert "vitalgate_broker_logins_refused_total 1\n" in watch.monitor.prometheus_text()
    assert watch.alerts() == []  # a refused login is no drop


async def test_a_restarted_monitor_keeps_the_drop_alert_until_it_has_seen_the_broker_quiet(
    tmp_path: Path,
) -> None:
    """A clinic process restart does not clear the staff's broker-drop alert; a quiet drop_clear_after does."""
    from datetime import UTC, datetime, timedelta

    from alerts.model import Outcome, OutcomeStatus
    from vitals.payload import AlertSeverity

    sessions = seed_clinic(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", [GATEWAY])
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    engine = AlertEngine(
        store, SqlAlertRepository(sessions), SqlPatientDirectory(sessions), Router(live=[EventHub()])
    )
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    firing = Outcome(
        rule_id=BROKER_DROPS,
        patient_id="p1",
        status=OutcomeStatus.FIRING,
        severity=AlertSeverity.WARNING,
        values={"dropped_messages": 50},
        episode_key="broker-drops|earlier",
    )
    await engine.apply_outcomes({"p1": [firing]}, now)  # opened by the run before the restart
    clock = [now + timedelta(minutes=1)]
    connection = FleetConfig(host="127.0.0.1", port=1, username=None, password=None, client_id="unused")
    config = BrokerMonitorConfig(connection, drop_clear_after=timedelta(minutes=30))
    monitor = BrokerMonitor(config, sessions, engine=engine, clock=lambda: clock[0])
    try:
        assert [*await monitor.check(), *await monitor.check()] == []
        with sessions() as session:
            assert [a.state.value for a in session.scalars(select(Alert))] == ["open"]
        clock[0] = now + timedelta(minutes=31)
        cleared_by = [*await monitor.check(), *await monitor.check()]  # ESC-1: clear twice in a row
        [cleared] = cleared_by
        assert (cleared.record.rule_id, cleared.event.event) == (BROKER_DROPS, "auto_resolved")
    finally:
        store.close()
