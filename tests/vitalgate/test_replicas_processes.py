"""Two `vitalgate ingest` and three `vitalgate api` replicas as processes on one PostgreSQL clinic
database, one real influxd and a private Mosquitto, while gateways stream readings of patients whose
stories cross alert thresholds; one ingest and one API replica are killed with SIGKILL mid-stream
(the ingest replica restarted, as systemd would). The ledger at the end:

- every reading published is stored, once (one point per reading id in InfluxDB);
- every expected alert opened once per (patient, rule), and no (patient, rule) has two;
- each notification went to the webhook receiver at most once, every crisis's opening exactly once;
- the live streams of both surviving API replicas carried every alert event, each once;
- the alert sweep ran at most once per interval across the replicas.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from storage.clinic.database import ClinicDatabase
from storage.clinic.models import Alert, AlertEventRecord, GuidelineProfile, MeterKind, UserRole
from testbed.influxdb import InfluxServer, influxd_available
from testbed.postgres import throwaway_database
from tests.alerts.test_channels import SECRET, _Receiver
from tests.fixtures.postgres import postgres_database_url
from tests.ingest.helpers import GatewayClient
from tests.vitalgate.clinic_processes import START_TIMEOUT_S, ClinicCommand, http_get, wait_for
from vitalgate.administration import add_clinic, add_gateway, add_patient, add_user, bind_meter
from vitalgate.mosquitto import BrokerUser, MosquittoBroker, free_port
from vitals.identity import blood_pressure_reading_id
from vitals.readings import BloodPressureReading, DeviceIdentity

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.postgres, pytest.mark.slow]
__all__ = ["postgres_database_url"]

SWEEP_INTERVAL_S = 12.0
RECENT_INTERVAL_S = 4.0
PATIENTS = 6
CRISIS_BEFORE_KILL = (1, 2, 3)  # patients whose crisis comes before the kills
CRISIS_AFTER_KILL = (4, 5)  # ...and after; patient 6 stays in range
PASSWORD = "replicas correct horse battery"
WAIT_S = 60.0
RESEND_AFTER_S = 3.0
INFLUX_DATABASE = "vitalgate_replicas"


def _cuff(i: int) -> DeviceIdentity:
    return DeviceIdentity(manufacturer="Acme Medical", model="BP-7", serial_number=f"REPLICA-{i}")


def _bp(i: int, patient_id: str, at: datetime, systolic: float, diastolic: float) -> BloodPressureReading:
    device_time = at.replace(tzinfo=None)
    cuff = _cuff(i)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            cuff, device_time, 1, systolic=systolic, diastolic=diastolic, mean_arterial=None, pulse_bpm=70.0
        ),
        device=cuff,
        patient_id=patient_id,
        measured_at=at,
        device_time=device_time,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=70.0,
        user_id=1,
    )


@pytest.fixture
def clinic_url(postgres_database_url: str) -> Iterator[str]:
    """A clinic database of this test's own (the replicas migrate it), beside the session's."""
    with throwaway_database("vg_processes") as url:
        yield url


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    if not influxd_available():
        pytest.skip("influxd missing: install the Debian package influxdb")
    with InfluxServer(tmp_path / "influxd") as server:
        yield server


class LiveStream:
    """A doctor's live alert stream on one API replica, in a thread: every event it carried."""

    def __init__(self, port: int, token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port, token), daemon=True)
        self._thread.start()

    def _run(self, port: int, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
        ):
            url = f"http://127.0.0.1:{port}/api/v1/alerts/events"
            with client.stream("GET", url, headers=headers) as response:
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        self.events.append(json.loads(line[len("data: ") :]))
                    if self._stop.is_set():
                        return

    def close(self) -> None:
        self._stop.set()


def _seed(url: str, broker: MosquittoBroker, suffix: str) -> list[tuple[str, str, BrokerUser]]:
    homes = []
    with ClinicDatabase.open(url) as database, database.sessions() as session:
        add_clinic(session, "c1", "Replica Clinic", profile=GuidelineProfile.EU)
        add_user(
            session,
            clinic_id="c1",
            user_id="dr-r",
            email="dr-r@c1.example",
            display_name="Dr R",
            roles=[UserRole.FAMILY_DOCTOR],
            password=PASSWORD,
        )
        for i in range(1, PATIENTS + 1):
            patient_id, gateway_id = f"p-r{i}", f"gw-{suffix}-{i}"
            add_patient(
                session,
                clinic_id="c1",
                patient_id=patient_id,
                given_name="R",
                family_name=f"Patient {i}",
                family_doctor_id="dr-r",
            )
            add_gateway(session, clinic_id="c1", gateway_id=gateway_id)
            bind_meter(
                session,
                gateway_id=gateway_id,
                device=_cuff(i),
                kind=MeterKind.BLOOD_PRESSURE,
                patient_id=patient_id,
            )
            homes.append((patient_id, gateway_id, broker.add_gateway(gateway_id)))
        session.commit()
    return homes


def _publish_until_acked(gateway: GatewayClient, readings: list[BloodPressureReading], what: str) -> None:
    """Publish, and again every RESEND_AFTER_S, until every reading is acked as stored (a gateway
    resends what was not acknowledged)."""
    ids = {r.reading_id for r in readings}
    deadline = time.monotonic() + WAIT_S
    while True:
        gateway.publish(readings, wait=False)
        try:
            wait_for(lambda: ids <= gateway.stored_acked(), RESEND_AFTER_S, what)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def test_replicas_survive_kills_with_every_reading_alert_notification_and_live_event_once(
    tmp_path: Path, clinic_url: str, influx: InfluxServer, mosquitto_broker: MosquittoBroker
) -> None:
    """Two ingest and three API replicas, one of each killed mid-stream: the ledger balances."""
    suffix = uuid.uuid4().hex[:6]
    homes = _seed(clinic_url, mosquitto_broker, suffix)
    receiver = _Receiver([])
    ingest_user, ingest_password = mosquitto_broker.credentials("ingest")
    clinic_user, clinic_password = mosquitto_broker.credentials("clinic")
    common: dict[str, Any] = {
        "mqtt": {
            "host": mosquitto_broker.host,
            "port": mosquitto_broker.port,
            "username": ingest_user,
            "password": ingest_password,
        },
        "storage": {
            "clinic_database_url": clinic_url,
            "reading_store": "influxdb",
            "influx_url": influx.url,
            "influx_database": INFLUX_DATABASE,
        },
        "alerts": {
            "mqtt_username": clinic_user,
            "mqtt_password": clinic_password,
            "webhook_urls": [receiver.url],
            "webhook_secret": SECRET.decode(),
            "sweep_interval_s": SWEEP_INTERVAL_S,
            "recent_interval_s": RECENT_INTERVAL_S,
            "web_base_url": "https://clinic.test",
        },
        "api": {"jwt_secret": "r" * 48},
        "retention": {"readings_days": None},
    }

    def ingest(n: int) -> ClinicCommand:
        settings = {
            **common,
            "data_dir": str(tmp_path / f"ingest-{n}"),
            "ingest": {
                "client_id": f"ingest-{suffix}-{n}",
                "shared_group": f"ingest-{suffix}",
                "session_expiry_s": 600,
            },
        }
        return ClinicCommand(["ingest", "--stats-interval", "0"], settings, tmp_path / f"ingest-{n}.log")

    ports = [free_port() for _ in range(3)]

    def api(n: int) -> ClinicCommand:
        settings = {**common, "data_dir": str(tmp_path / f"api-{n}")}
        return ClinicCommand(
            ["api", "--no-ingest", "--port", str(ports[n - 1])], settings, tmp_path / f"api-{n}.log"
        )

    processes = {
        "ingest-1": ingest(1),
        "ingest-2": ingest(2),
        "api-1": api(1),
        "api-2": api(2),
        "api-3": api(3),
    }
    gateways = [
        GatewayClient(mosquitto_broker.host, mosquitto_broker.port, user.username, user.password, gateway_id)
        for _, gateway_id, user in homes
    ]
    streams: list[LiveStream] = []
    published: list[BloodPressureReading] = []
    try:
        for process in processes.values():
            process.start()
        for n, port in enumerate(ports, start=1):
            server = processes[f"api-{n}"]
            wait_for(functools.partial(_healthy, port, server), START_TIMEOUT_S, f"api-{n} to serve")
        started = time.monotonic()
        token = _token(ports[0])
        streams = [LiveStream(ports[0], token), LiveStream(ports[1], token)]
        for stream in streams:
            assert stream.connected.wait(WAIT_S)
        now = datetime.now(UTC).replace(microsecond=0)

        def normal(i: int, k: int) -> BloodPressureReading:
            return _bp(i, f"p-r{i}", now - timedelta(hours=3) + timedelta(minutes=k), 124.0 + k % 5, 79.0)

        def crisis(i: int) -> list[BloodPressureReading]:
            return [
                _bp(i, f"p-r{i}", now - timedelta(minutes=6), 186.0, 100.0),
                _bp(i, f"p-r{i}", now - timedelta(minutes=3), 184.0, 98.0),
            ]

        # Before the kills: normal readings for everyone, a crisis for three patients.
        for i, gateway in enumerate(gateways, start=1):
            batch = [normal(i, k) for k in range(4)] + (crisis(i) if i in CRISIS_BEFORE_KILL else [])
            published += batch
            _publish_until_acked(gateway, batch, f"patient {i}'s first readings")
        wait_for(
            lambda: _opened_webhooks(receiver) >= set(CRISIS_BEFORE_KILL),
            WAIT_S,
            "the first crises' webhooks",
        )

        # Mid-stream: one ingest and one API replica killed; ingest restarted (systemd's Restart=always).
        processes["ingest-1"].kill9()
        processes["api-3"].kill9()
        during: list[BloodPressureReading] = []
        for i, gateway in enumerate(gateways, start=1):
            batch = [normal(i, k) for k in range(4, 10)] + (crisis(i) if i in CRISIS_AFTER_KILL else [])
            during += batch
            gateway.publish(batch, wait=False)
        published += during
        # The stream goes on while a replica is down: the other ingest replica acks some of it.
        wait_for(
            lambda: any(r.reading_id in g.stored_acked() for g in gateways for r in during),
            WAIT_S,
            "the surviving ingest replica to ack readings",
        )
        processes["ingest-1"].start()
        for i, gateway in enumerate(gateways, start=1):
            batch = [r for r in published if r.patient_id == f"p-r{i}"]
            _publish_until_acked(gateway, batch, f"patient {i}'s readings after the kills")
        expected = set(CRISIS_BEFORE_KILL + CRISIS_AFTER_KILL)
        wait_for(lambda: _opened_webhooks(receiver) >= expected, WAIT_S, "every crisis's webhook")
        # Two more sweep intervals, so turns were taken with a replica gone.
        wait_for(
            lambda: time.monotonic() - started > 3 * SWEEP_INTERVAL_S,
            4 * SWEEP_INTERVAL_S,
            "three sweep intervals",
        )
        with ClinicDatabase.open(clinic_url, migrate=False) as database, database.sessions() as session:
            alerts = [(a.patient_id, a.rule_id, a.alert_id) for a in session.scalars(select(Alert))]
            events = [(e.alert_id, e.event) for e in session.scalars(select(AlertEventRecord))]
        wait_for(
            lambda: all(len({(e["alert_id"], e["event"]) for e in s.events}) >= len(events) for s in streams),
            WAIT_S,
            "the live streams",
        )
        elapsed = time.monotonic() - started
    finally:
        for stream in streams:
            stream.close()
        for gateway in gateways:
            gateway.close()
        for process in processes.values():
            with contextlib.suppress(Exception):
                process.stop()
        receiver.close()

    # Every reading stored, once.
    stored = Counter(_influx_reading_ids(influx))
    assert set(stored) == {r.reading_id for r in published}
    assert max(stored.values()) == 1
    # Every expected alert opened once per (patient, rule); never two for one (patient, rule).
    per_rule = Counter((patient, rule) for patient, rule, _ in alerts)
    assert max(per_rule.values()) == 1, per_rule
    assert {int(p.removeprefix("p-r")) for p, r, _ in alerts if r == "BP-CRIT-2"} == expected
    # Each notification at most once; each crisis's opening exactly once.
    deliveries = Counter(json.loads(body)["event_id"] for _, body in receiver.requests)
    assert max(deliveries.values()) == 1, deliveries
    opened = Counter(
        json.loads(body)["patient_id"]
        for _, body in receiver.requests
        if json.loads(body)["event"] == "opened" and json.loads(body)["rule_id"] == "BP-CRIT-2"
    )
    assert opened == {f"p-r{i}": 1 for i in expected}
    # Both surviving API replicas' live streams carried every alert event, each once.
    for stream in streams:
        carried = Counter((e["alert_id"], e["event"]) for e in stream.events)
        assert set(carried) == set(events)
        assert max(carried.values()) == 1
    # The sweep ran at most once per interval across the replicas, and kept running after the kill.
    sweeps = sorted(_log_times(processes.values(), "alert sweep"))
    gaps = [b - a for a, b in itertools.pairwise(sweeps)]
    assert len(sweeps) >= int(elapsed // SWEEP_INTERVAL_S) - 1, sweeps
    assert all(gap >= SWEEP_INTERVAL_S - 2.0 for gap in gaps), gaps


def _healthy(port: int, process: ClinicCommand) -> bool:
    if not process.running:
        raise AssertionError(f"vitalgate api exited:\n{process.log_tail()}")
    with contextlib.suppress(OSError):
        return http_get(port, "/healthz")[0] == 200
    return False


def _token(port: int) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/auth/token",
        data={"username": "dr-r@c1.example", "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _opened_webhooks(receiver: _Receiver) -> set[int]:
    bodies = [json.loads(body) for _, body in list(receiver.requests)]
    return {
        int(b["patient_id"].removeprefix("p-r"))
        for b in bodies
        if b["event"] == "opened" and b["rule_id"] == "BP-CRIT-2"
    }


def _influx_reading_ids(influx: InfluxServer) -> list[str]:
    answer: Any = influx.query('SELECT "reading_id" FROM "blood_pressure"', database=INFLUX_DATABASE)
    return [
        values[1]
        for result in answer["results"]
        for series in result.get("series", [])
        for values in series["values"]
    ]


def _log_times(processes: Any, message: str) -> list[float]:
    times = []
    for process in processes:
        for record in process.log_lines():
            if record.get("msg") == message:
                times.append(datetime.fromisoformat(str(record["at"])).timestamp())
    return times
