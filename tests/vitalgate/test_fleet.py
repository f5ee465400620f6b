"""The clinic watches its gateways: status and last will from a real gateway process through a private
Mosquitto into the clinic database, the gateways page and /metrics, decisions sent as commands, and
the two operational alerts (gateway offline, meter battery low) to clinic staff through the alert
lifecycle and channels."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerts.channels.base import Notification
from alerts.engine import AlertEngine
from alerts.operations import GATEWAY_OFFLINE, METER_BATTERY_LOW, OperationalParameters
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from api.app import create_app
from api.deps import ApiServices
from device_drivers.virtual.meter import VirtualMeter
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, add_user, enrol_patient, register_gateway, register_meter
from storage.clinic.models import Alert, AuditLogEntry, MeterKind, UnboundReleaseRecord, UserRole
from storage.clinic.repository import bind_meter
from storage.readings import SqliteReadingStore
from testbed.process_rig import GatewayProcess, MeterHost, gateway_env, run_cli
from tests.api.session_tokens import bearer_headers
from vitalgate.fleet import FleetConfig, FleetService
from vitalgate.mosquitto import MosquittoBroker
from vitalgate.settings import load_settings
from vitals.payload import AppliedCommand, GatewayStatus, UnboundReason, UnboundSummary
from vitals.readings import DeviceIdentity
from vitals.topics import status_topic

pytestmark = pytest.mark.mosquitto

SECRET = "fleet-test-secret-" + "x" * 32
OFFLINE_AFTER = dt.timedelta(seconds=3)
_numbers = itertools.count(1)


class RecordingChannel:
    """A live channel that keeps every notification it is handed (the hub and webhooks see the same)."""

    name = "recording"

    def __init__(self) -> None:
        self.notifications: list[Notification] = []

    async def deliver(self, notification: Notification) -> None:
        self.notifications.append(notification)

    def events(self, rule_id: str, event: str) -> list[Notification]:
        return [n for n in self.notifications if n.event.rule_id == rule_id and n.event.event == event]


@dataclass
class FleetClinic:
    broker: MosquittoBroker
    sessions: sessionmaker[Session]
    service: FleetService
    recorder: RecordingChannel
    client: httpx.AsyncClient
    gateway_id: str
    tmp_path: Path
    _tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, user_id: str) -> dict[str, str]:
        roles = {"admin-1": UserRole.CLINIC_ADMIN, "admin-2": UserRole.CLINIC_ADMIN,
                 "nurse-1": UserRole.CLINIC_STAFF, "dr-1": UserRole.FAMILY_DOCTOR}  # fmt: skip
        clinic = "c2" if user_id == "admin-2" else "c1"
        return bearer_headers(self.sessions, user_id, SECRET, clinic_id=clinic, role=roles[user_id])

    async def fleet(self, user_id: str = "admin-1") -> dict[str, Any]:
        response = await self.client.get("/api/v1/admin/fleet/gateways", headers=self.headers(user_id))
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    async def gateway(self) -> dict[str, Any]:
        [gateway] = [g for g in (await self.fleet())["gateways"] if g["gateway_id"] == self.gateway_id]
        found: dict[str, Any] = gateway
        return found

    def alerts(self, rule_id: str) -> list[Alert]:
        with self.sessions() as session:
            return list(
                session.scalars(select(Alert).where(Alert.patient_id == "p1", Alert.rule_id == rule_id))
            )

    def bind(self, meter: VirtualMeter, kind: MeterKind) -> str:
        device = DeviceIdentity(
            manufacturer=meter.persona.manufacturer,
            model=meter.persona.model,
            serial_number=meter.serial_number,
        )
        with self.sessions() as session, session.begin():
            register_meter(session, clinic_id="c1", device=device, kind=kind)
            bind_meter(session, gateway_id=self.gateway_id, meter_key=device.meter_key, patient_id="p1",
                       at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))  # fmt: skip
        return device.meter_key


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


def seed(url: str, gateway_id: str) -> sessionmaker[Session]:
    upgrade_to_head(url)
    sessions = session_factory(create_clinic_engine(url))
    with sessions() as session, session.begin():
        add_clinic(session, clinic_id="c1", name="Clinic One")
        add_clinic(session, clinic_id="c2", name="Clinic Two")
        for user_id, clinic, role in (
            ("dr-1", "c1", UserRole.FAMILY_DOCTOR),
            ("nurse-1", "c1", UserRole.CLINIC_STAFF),
            ("admin-1", "c1", UserRole.CLINIC_ADMIN),
            ("admin-2", "c2", UserRole.CLINIC_ADMIN),
        ):
            add_user(session, user_id=user_id, clinic_id=clinic, email=f"{user_id}@example.org",
                     display_name=user_id, roles=[role])  # fmt: skip
        enrol_patient(session, patient_id="p1", clinic_id="c1", given_name="A", family_name="B",
                      family_doctor_id="dr-1", staff_ids=["nurse-1"])  # fmt: skip
        enrol_patient(session, patient_id="p-c2", clinic_id="c2", given_name="C", family_name="D")
        register_gateway(session, gateway_id=gateway_id, clinic_id="c1", mqtt_password="unused")
    return sessions


@pytest.fixture
async def fleet_clinic(tmp_path: Path, mqtt_broker: MosquittoBroker) -> AsyncIterator[FleetClinic]:
    gateway_id = f"gw-fleet-{next(_numbers)}"
    mqtt_broker.add_gateway(gateway_id)
    sessions = seed(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", gateway_id)
    store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    recorder = RecordingChannel()
    engine = AlertEngine(
        store, SqlAlertRepository(sessions), SqlPatientDirectory(sessions), Router(live=[recorder])
    )
    username, password = mqtt_broker.credentials("clinic")
    config = FleetConfig(
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        username=username,
        password=password,
        client_id=f"fleet-test-{gateway_id}",
        operational=OperationalParameters(gateway_offline_after=OFFLINE_AFTER),
        check_interval_s=0.3,
    )
    service = FleetService(config, sessions, engine=engine)
    await service.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    assert await asyncio.to_thread(service.subscribed.wait, 10), "fleet service never subscribed"
    services = ApiServices(
        reading_store=store,
        clinic_sessions=sessions,
        jwt_secret=SECRET,
        fleet=service,
        metrics=[service.prometheus_text],
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)), base_url="http://clinic"
    ) as client:
        yield FleetClinic(mqtt_broker, sessions, service, recorder, client, gateway_id, tmp_path)
    stop.set()
    await asyncio.wait_for(runner, 10)
    await service.close()
    store.close()
    sessions.kw["bind"].dispose()


async def _online_then_bound(clinic: FleetClinic, meter: VirtualMeter) -> str:
    """Wait for the gateway to report its synced meter, then bind the meter to p1: from then on p1 is
    expected to measure through this gateway (before, no patient is, and no alert is due)."""
    serial = meter.serial_number

    async def synced() -> bool:
        g = await clinic.gateway()
        return g["state"] == "online" and any(
            m["meter_key"].endswith(f"|{serial}") and m["last_sync_at"] for m in g["meters"]
        )

    await eventually(synced, 90, "the gateway online, its meter synced, on the gateways page")
    return clinic.bind(meter, MeterKind.GLUCOSE)


async def _start_gateway(clinic: FleetClinic, host: MeterHost, meter: VirtualMeter) -> GatewayProcess:
    env = gateway_env(clinic.broker, clinic.tmp_path / "gateway", clinic.gateway_id)
    code, _out, err = await run_cli(
        env, "gateway", "pair", "--virtual-radio", host.transport_spec, "--address", meter.address,
        "--profile", "glucose",
    )  # fmt: skip
    assert code == 0, err
    return await GatewayProcess(env, host.transport_spec, clinic.tmp_path / "gateway.log").start()


async def test_a_killed_gateway_shows_offline_at_once_and_staff_get_one_offline_alert_until_it_is_back(
    fleet_clinic: FleetClinic,
) -> None:
    """kill -9 of a home's gateway: offline on the gateways page via its last will, one alert to staff."""
    clinic = fleet_clinic
    async with MeterHost() as host:
        meter = await host.add_meter("contour-like", "GL-FLEET-1", records=2)
        gateway = await _start_gateway(clinic, host, meter)
        try:
            meter_key = await _online_then_bound(clinic, meter)

            page = await clinic.gateway()
            [shown] = [m for m in page["meters"] if m["meter_key"] == meter_key]
            synced_before = dt.datetime.fromisoformat(shown["last_sync_at"])

            async def online_with_meter_synced_again() -> bool:
                g = await clinic.gateway()
                meters = {m["meter_key"]: m for m in g["meters"]}
                last_sync = meters.get(meter_key, {}).get("last_sync_at")
                return (
                    g["state"] == "online"
                    and last_sync is not None
                    and dt.datetime.fromisoformat(last_sync) > synced_before
                )

            assert shown["battery_percent"] == meter.battery_level_percent
            assert shown["rssi_dbm"] is not None and shown["patient_ids"] == ["p1"]
            assert page["outbox_depth"] is not None and page["last_seen_at"] is not None
            assert clinic.alerts(GATEWAY_OFFLINE) == []

            await gateway.kill9()

            async def offline() -> bool:
                return bool((await clinic.gateway())["state"] == "offline")

            # The broker publishes the last will as soon as the killed process's socket closes.
            await eventually(offline, 10, "the last will to show the gateway offline")
            assert (await clinic.gateway())["offline_since"] is not None

            async def alert_open() -> bool:
                return len(clinic.alerts(GATEWAY_OFFLINE)) == 1

            await eventually(alert_open, 20, "the gateway offline alert")
            for _ in range(3):
                await clinic.service.check()
            [alert] = clinic.alerts(GATEWAY_OFFLINE)
            assert alert.trigger_values["values"]["gateway_ids"] == [clinic.gateway_id]
            [opened] = clinic.recorder.events(GATEWAY_OFFLINE, "opened")
            assert [r.user_id for r in opened.recipients] == ["nurse-1"]  # staff, not the doctor

            gateway = await GatewayProcess(gateway.env, host.transport_spec, gateway.log_path).start()
            await eventually(
                online_with_meter_synced_again,
                60,
                "the restarted gateway online again, its meter synced again",
            )

            async def resolved() -> bool:
                [alert] = clinic.alerts(GATEWAY_OFFLINE)
                return alert.resolved_at is not None

            await eventually(resolved, 20, "the offline alert resolved once the gateway reports again")
            assert len(clinic.recorder.events(GATEWAY_OFFLINE, "opened")) == 1
        finally:
            await gateway.stop()


async def test_a_meter_reporting_15_percent_battery_opens_the_battery_alert_once(
    fleet_clinic: FleetClinic,
) -> None:
    """A meter at 15 % battery: one alert and one notification to staff, however often it reports."""
    clinic = fleet_clinic
    async with MeterHost() as host:
        meter = await host.add_meter("contour-like", "GL-FLEET-BATT", records=1)
        meter.battery_level_percent = 15
        gateway = await _start_gateway(clinic, host, meter)
        try:
            meter_key = await _online_then_bound(clinic, meter)

            async def alert_open() -> bool:
                return len(clinic.alerts(METER_BATTERY_LOW)) == 1

            await eventually(alert_open, 90, "the battery alert")
            before = clinic.service.statuses_recorded
            await eventually(
                lambda: _true(clinic.service.statuses_recorded >= before + 2), 20, "two more status reports"
            )
            for _ in range(3):
                await clinic.service.check()
            [alert] = clinic.alerts(METER_BATTERY_LOW)
            assert alert.trigger_values["values"]["meters"] == [
                {"meter_key": meter_key, "battery_percent": 15}
            ]
            [opened] = clinic.recorder.events(METER_BATTERY_LOW, "opened")
            assert (
                len([n for n in clinic.recorder.notifications if n.event.rule_id == METER_BATTERY_LOW]) == 1
            )
            assert [r.user_id for r in opened.recipients] == ["nurse-1"]
            assert clinic.alerts(GATEWAY_OFFLINE) == []  # it reports: nothing offline
            [shown] = [m for m in (await clinic.gateway())["meters"] if m["meter_key"] == meter_key]
            assert shown["battery_percent"] == 15
        finally:
            await gateway.stop()


async def _true(value: bool) -> bool:
    return value


def _status(gateway_id: str, **fields: Any) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return (
        GatewayStatus(gateway_id=gateway_id, online=True, reported_at=now, **fields)
        .model_dump_json()
        .encode()
    )


async def test_the_fleet_pages_are_for_the_clinics_own_administrators_and_every_call_is_audited(
    fleet_clinic: FleetClinic,
) -> None:
    """Staff are refused and another clinic's administrator sees nothing of this clinic's gateways."""
    clinic = fleet_clinic
    now = dt.datetime.now(dt.UTC)
    await clinic.service.handle(status_topic(clinic.gateway_id), _status(clinic.gateway_id, outbox_depth=7),
                                retained=False, received_at=now)  # fmt: skip

    refused = await clinic.client.get("/api/v1/admin/fleet/gateways", headers=clinic.headers("nurse-1"))
    assert refused.status_code == 403
    other = await clinic.fleet("admin-2")
    assert other["gateways"] == []
    [mine] = (await clinic.fleet())["gateways"]
    assert (mine["state"], mine["outbox_depth"]) == ("online", 7)

    await clinic.service.refresh_gauges()
    metrics = (await clinic.client.get("/metrics")).text
    assert 'vitalgate_fleet_gateways{clinic_id="c1",state="online"} 1' in metrics
    assert 'vitalgate_fleet_outbox_depth_max{clinic_id="c1"} 7' in metrics
    with clinic.sessions() as session:
        entries = {(e.actor, e.action, e.outcome) for e in session.scalars(select(AuditLogEntry))}
    assert ("nurse-1", "read_fleet", "denied") in entries
    assert ("admin-1", "read_fleet", "allowed") in entries
    assert ("admin-2", "read_fleet", "allowed") in entries


async def test_decisions_on_unbound_readings_are_checked_audited_and_sent_until_carried_out(
    fleet_clinic: FleetClinic,
) -> None:
    """Bad decisions change nothing; a good one goes out as a retained command and is dropped once done."""
    clinic = fleet_clinic
    meter_key = "acme|gl-2|LOANER-7"
    first = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)
    summary = UnboundSummary(meter_key=meter_key, reason=UnboundReason.OUTSIDE_BINDING, count=12,
                             first_measured_at=first, last_measured_at=first + dt.timedelta(days=5))  # fmt: skip
    topic = status_topic(clinic.gateway_id)
    payload = _status(clinic.gateway_id, unbound_readings=12, unbound=(summary,))
    await clinic.service.handle(topic, payload, retained=False, received_at=dt.datetime.now(dt.UTC))
    url = f"/api/v1/admin/fleet/gateways/{clinic.gateway_id}/unbound"

    listing = await clinic.client.get("/api/v1/admin/fleet/unbound", headers=clinic.headers("admin-1"))
    [group] = listing.json()["groups"]
    assert (group["meter_key"], group["count"], group["reasons"]) == (meter_key, 12, {"outside_binding": 12})

    cases = [
        ("admin-2", {"meter_key": meter_key, "patient_id": "p-c2"}, 404),  # another clinic's gateway
        ("admin-1", {"meter_key": meter_key, "patient_id": "p-c2"}, 422),  # another clinic's patient
        ("admin-1", {"meter_key": "no|such|meter", "patient_id": "p1"}, 404),  # nothing reported for it
        ("nurse-1", {"meter_key": meter_key, "patient_id": "p1"}, 403),
    ]
    for user_id, body, expected in cases:
        response = await clinic.client.post(f"{url}/adopt", json=body, headers=clinic.headers(user_id))
        assert response.status_code == expected, (user_id, body, response.text)
    with clinic.sessions() as session:
        assert session.scalar(select(func.count()).select_from(UnboundReleaseRecord)) == 0
        denied = session.scalar(
            select(func.count()).where(
                AuditLogEntry.action == "adopt_unbound_readings", AuditLogEntry.outcome == "denied"
            )
        )
    assert denied == 4

    adopted = await clinic.client.post(f"{url}/adopt", json={"meter_key": meter_key, "patient_id": "p1"},
                                       headers=clinic.headers("admin-1"))  # fmt: skip
    assert adopted.status_code == 202, adopted.text
    decision = adopted.json()
    assert (decision["readings"], decision["delivery"], decision["patient_id"]) == (12, "published", "p1")
    again = await clinic.client.post(
        f"{url}/discard", json={"meter_key": meter_key}, headers=clinic.headers("admin-1")
    )
    assert again.status_code == 409  # the first decision still waits for the gateway

    commands = await _retained_commands(clinic)
    assert [c["command_id"] for c in commands] == [decision["command_id"]]

    done = _status(
        clinic.gateway_id, applied_commands=(AppliedCommand(command_id=decision["command_id"], readings=11),)
    )
    await clinic.service.handle(topic, done, retained=False, received_at=dt.datetime.now(dt.UTC))
    assert await _retained_commands(clinic) == []  # nothing left to do: the retained message is cleared
    with clinic.sessions() as session:
        [record] = session.scalars(select(UnboundReleaseRecord))
        assert (record.applied_at is not None, record.readings) == (True, 11)  # as the gateway counted
        [entry] = session.scalars(
            select(AuditLogEntry).where(
                AuditLogEntry.action == "adopt_unbound_readings", AuditLogEntry.outcome == "allowed"
            )
        )
    assert (entry.actor, entry.object_id, entry.details["patient_id"]) == ("admin-1", clinic.gateway_id, "p1")


async def _retained_commands(clinic: FleetClinic) -> list[dict[str, Any]]:
    """What a gateway finds retained on its commands topic when it subscribes."""
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from vitals.topics import commands_topic

    got: list[bytes] = []
    subscribed = asyncio.Event()
    loop = asyncio.get_running_loop()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5,
                         client_id=f"probe-{next(_numbers)}")  # fmt: skip
    client.username_pw_set(*clinic.broker.credentials(clinic.gateway_id))
    client.on_connect = lambda c, *_a: c.subscribe(commands_topic(clinic.gateway_id), qos=1)

    def on_subscribe(*_args: object) -> None:
        loop.call_soon_threadsafe(subscribed.set)

    client.on_subscribe = on_subscribe
    client.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    client.connect(clinic.broker.host, clinic.broker.port)
    client.loop_start()
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        # The broker sends retained messages while it handles the SUBSCRIBE: the PUBACK of a later QoS 1
        # publish on the same connection comes after them (an empty, unretained status is ignored).
        info = client.publish(status_topic(clinic.gateway_id), b"", qos=1)
        await asyncio.to_thread(info.wait_for_publish, 5)
    finally:
        client.disconnect()
        client.loop_stop()
    return [c for p in got if p for c in json.loads(p)["commands"]]


def test_the_status_consumer_reads_with_a_clinic_account_and_never_with_ingests_own() -> None:
    """vitalgate ingest watches the fleet only with the clinic account configured for it."""
    ingest_only = load_settings(None, mqtt={"username": "ingest", "password": "pw-ingest"})
    assert FleetConfig.from_settings(ingest_only, role="ingest", process_account=False) is None
    api = FleetConfig.from_settings(ingest_only, role="api")
    assert api is not None and (api.username, api.password) == ("ingest", "pw-ingest")
    with_fleet = load_settings(
        None,
        mqtt={"username": "ingest", "password": "pw-ingest"},
        fleet={"mqtt_username": "clinic", "mqtt_password": "pw-clinic", "gateway_offline_after_s": 60,
               "battery_low_percent": 25},
    )  # fmt: skip
    config = FleetConfig.from_settings(with_fleet, role="ingest", process_account=False)
    assert config is not None
    assert (config.username, config.password) == ("clinic", "pw-clinic")
    assert config.operational == OperationalParameters(dt.timedelta(seconds=60), 25)
