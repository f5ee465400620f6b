"""One path to an alert: a standalone `vitalgate ingest` process evaluates the readings it commits at
once, as `vitalgate api` does, instead of leaving them to the periodic poll.

Real parts: `vitalgate ingest` as its own process (pipeline process on, as deployed), a private
Mosquitto, the SQLite clinic database and reading store in the data directory, a webhook receiver,
readings published as a gateway publishes them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.clinic.models import Alert
from tests.alerts.test_channels import SECRET, _Receiver
from tests.ingest.helpers import CUFF, GatewayClient, seed_clinic
from tests.vitalgate.clinic_processes import START_TIMEOUT_S, ClinicCommand, wait_for
from vitalgate.clinic import build_clinic_server
from vitalgate.mosquitto import MosquittoBroker
from vitalgate.settings import load_settings
from vitalgate.wiring import open_clinic_database
from vitals.identity import blood_pressure_reading_id
from vitals.readings import BloodPressureReading

pytestmark = pytest.mark.mosquitto

# Far beyond the test: only the listener path can open the alert in time.
POLL_S = 3600
ALERT_WITHIN_S = 10.0


def crisis(now: datetime) -> list[BloodPressureReading]:
    """BP-CRIT-2: two readings >= 180 mmHg systolic within 15 min ([1][4][17]), urgent."""
    out = []
    for minutes_ago, systolic in ((6, 186.0), (2, 184.0)):
        measured_at = (now - timedelta(minutes=minutes_ago)).replace(microsecond=0)
        device_time = measured_at.replace(tzinfo=None)
        out.append(
            BloodPressureReading(
                reading_id=blood_pressure_reading_id(
                    CUFF,
                    device_time,
                    1,
                    systolic=systolic,
                    diastolic=100.0,
                    mean_arterial=None,
                    pulse_bpm=70.0,
                ),
                device=CUFF,
                patient_id="p1",
                measured_at=measured_at,
                device_time=device_time,
                systolic=systolic,
                diastolic=100.0,
                pulse_bpm=70.0,
                user_id=1,
            )
        )
    return out


def clinic_settings(data_dir: Path, broker: MosquittoBroker, webhook_url: str) -> dict[str, object]:
    ingest_user, ingest_password = broker.credentials("ingest")
    clinic_user, clinic_password = broker.credentials("clinic")
    return {
        "data_dir": str(data_dir),
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "username": ingest_user,
            "password": ingest_password,
        },
        "ingest": {"client_id": f"ingest-{data_dir.name[-20:]}", "session_expiry_s": 300},
        "alerts": {
            "mqtt_username": clinic_user,
            "mqtt_password": clinic_password,
            "webhook_urls": [webhook_url],
            "webhook_secret": SECRET.decode(),
            "recent_interval_s": POLL_S,
            "sweep_interval_s": POLL_S,
        },
    }


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver([])
    yield r
    r.close()


def opened_alerts(settings_dict: dict[str, object]) -> list[tuple[str, str, str]]:
    settings = load_settings(None, **settings_dict)
    with open_clinic_database(settings, migrate=False) as database, database.sessions() as session:
        return [(a.patient_id, a.rule_id, a.severity.value) for a in session.scalars(select(Alert))]


def webhook_events(receiver: _Receiver) -> list[tuple[str, str]]:
    return [(json.loads(body)["rule_id"], json.loads(body)["event"]) for _, body in receiver.requests]


def test_standalone_ingest_opens_the_alert_as_it_commits_the_reading(
    tmp_path: Path, mosquitto_broker: MosquittoBroker, receiver: _Receiver
) -> None:
    """A crisis stored by `vitalgate ingest` alone is an open alert and a webhook within seconds."""
    gateway_id = f"gw-{tmp_path.name[-12:]}"
    data_dir = tmp_path / "clinic"
    data_dir.mkdir()
    seed_clinic(f"sqlite:///{data_dir / 'clinic.sqlite3'}", [gateway_id]).kw["bind"].dispose()
    user = mosquitto_broker.add_gateway(gateway_id)
    settings = clinic_settings(data_dir, mosquitto_broker, receiver.url)
    ingest = ClinicCommand(["ingest", "--stats-interval", "0"], settings, tmp_path / "ingest.log").start()
    gateway = GatewayClient(
        mosquitto_broker.host, mosquitto_broker.port, user.username, user.password, gateway_id
    )
    try:
        readings = crisis(datetime.now(UTC))

        # Until ingest has subscribed the broker keeps nothing for it: publish until the ack comes.
        def stored() -> bool:
            if not ingest.running:
                raise AssertionError(f"vitalgate ingest exited:\n{ingest.log_tail()}")
            if {r.reading_id for r in readings} <= gateway.stored_acked():
                return True
            gateway.publish(readings)
            return False

        wait_for(stored, START_TIMEOUT_S, "ingest to store and ack the readings", interval_s=1.0)
        acked_at = datetime.now(UTC)
        wait_for(lambda: bool(receiver.requests), ALERT_WITHIN_S, "the alert's webhook")
        assert (datetime.now(UTC) - acked_at).total_seconds() < ALERT_WITHIN_S
        assert opened_alerts(settings) == [("p1", "BP-CRIT-2", "urgent")]
        assert webhook_events(receiver) == [("BP-CRIT-2", "opened")]
        assert ingest.stop() == 0
    finally:
        gateway.close()
        ingest.stop()


@pytest.mark.parametrize("pipeline_process", [True, False], ids=["pipeline-process", "one-process"])
async def test_ingest_alone_opens_the_same_alerts_as_the_clinic_server(
    tmp_path: Path, mosquitto_broker: MosquittoBroker, receiver: _Receiver, pipeline_process: bool
) -> None:
    """The same readings through `vitalgate api`'s own ingest (its pipeline in a child process, or
    in the API's process) open the same alert and notification."""
    gateway_id = f"gw-{tmp_path.name[-12:]}"
    data_dir = tmp_path / "clinic"
    data_dir.mkdir()
    seed_clinic(f"sqlite:///{data_dir / 'clinic.sqlite3'}", [gateway_id]).kw["bind"].dispose()
    user = mosquitto_broker.add_gateway(gateway_id)
    settings_dict = clinic_settings(data_dir, mosquitto_broker, receiver.url)
    settings = load_settings(None, **settings_dict)
    settings.ingest.pipeline_process = pipeline_process
    server = await build_clinic_server(settings, jwt_secret="x" * 32)
    assert (server.ingest_pipeline is not None) is pipeline_process
    stop = asyncio.Event()
    await server.start_background(stop)
    gateway = GatewayClient(
        mosquitto_broker.host, mosquitto_broker.port, user.username, user.password, gateway_id
    )
    try:
        readings = crisis(datetime.now(UTC))
        assert server.ingest is not None
        assert await asyncio.to_thread(server.ingest.wait_subscribed, START_TIMEOUT_S)
        gateway.publish(readings)
        await asyncio.to_thread(
            wait_for, lambda: bool(receiver.requests), START_TIMEOUT_S, "the alert's webhook"
        )
    finally:
        stop.set()
        gateway.close()
        await server.close()
    assert opened_alerts(settings_dict) == [("p1", "BP-CRIT-2", "urgent")]
    assert webhook_events(receiver) == [("BP-CRIT-2", "opened")]
