"""The whole gateway in-process: virtual meters -> outbox -> Mosquitto, with bindings and health."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio
from gateway.app import Gateway, GatewayOptions
from gateway.bindings import Bindings, MeterProfile, PairedMeter
from gateway.meters import BleConfig
from gateway.outbox import Outbox, SyncPosition
from gateway.pairing import pair
from gateway.uplink import ForwarderConfig, UplinkConfig
from testbed.acker import Acker
from testbed.gateway_proc import burst_collector
from tests.gateway.helpers import wait_until
from vitalgate.mosquitto import MosquittoBroker
from vitals.payload import GatewayStatus
from vitals.topics import status_topic

pytestmark = pytest.mark.mosquitto

GW = "gw-app"


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as radio:
        yield radio


def options(broker: MosquittoBroker, state: Path, *, capacity: int = 10_000) -> GatewayOptions:
    username, password = broker.credentials(GW)
    return GatewayOptions(
        gateway_id=GW,
        state_dir=state,
        uplink=UplinkConfig(
            gateway_id=GW,
            host=broker.host,
            port=broker.port,
            username=username,
            password=password,
            allow_plain_mqtt=True,  # the test broker listens on loopback
        ),
        outbox_capacity=capacity,
        status_interval_s=0.5,
        forwarder=ForwarderConfig(ack_timeout_s=5, batch_size=50),
        ble=BleConfig(resync_after_s=0.5, scanner_watchdog_s=30, connect_timeout_s=10),
    )


async def paired_meter(
    radio: VirtualRadio, state: Path, serial: str, patient_id: str | None
) -> tuple[VirtualMeter, PairedMeter]:
    """A virtual glucose meter holding one record, on `radio`, paired with the gateway of `state`."""
    meter = make_meter("contour-like", clock=SimulationClock(), serial_number=serial)
    meter.add_record(taken_at=dt.datetime.now(dt.UTC), glucose_mg_dl=120)  # type: ignore[attr-defined]
    await radio.add_meter(meter)
    bindings = Bindings(state / "bindings.json", GW).load()
    paired = await pair(
        bindings,
        meter.address,
        profile=MeterProfile.GLUCOSE,
        patient_id=patient_id,
        client_backend=radio.client_backend,
    )
    return meter, paired


def gateway_on(radio: VirtualRadio, options: GatewayOptions, per_session: int) -> Gateway:
    """The gateway reading `per_session` records a session from the meters on `radio`."""
    return Gateway(
        options,
        burst_collector(per_session, per_session),
        scanner_backend=radio.scanner_backend,
        client_backend=radio.client_backend,
    )


class StatusWatcher:
    def __init__(self, broker: MosquittoBroker) -> None:
        self.reports: list[GatewayStatus] = []
        username, password = broker.credentials("clinic")
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.client.on_message = lambda _c, _u, m: self.reports.append(
            GatewayStatus.model_validate_json(m.payload)
        )
        self.client.on_connect = lambda c, *_a: c.subscribe(status_topic(GW), qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_full_outbox_stops_pulling_reports_it_and_loses_nothing(
    tmp_path: Path, mqtt_broker: MosquittoBroker, radio: VirtualRadio, caplog: pytest.LogCaptureFixture
) -> None:
    mqtt_broker.add_gateway(GW)
    state = tmp_path / "state"
    _meter, paired = await paired_meter(radio, state, "GL-FULL", "p-full")
    watcher = StatusWatcher(mqtt_broker)
    # No acker yet: nothing is acked, so the outbox (capacity 100) fills with 20-reading sessions.
    gateway = gateway_on(radio, options(mqtt_broker, state, capacity=100), 20)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    acker: Acker | None = None
    try:
        await wait_until(lambda: any(r.outbox_full for r in watcher.reports), 60, "outbox full on status")
        full_report = next(r for r in watcher.reports if r.outbox_full)
        assert full_report.outbox_depth == 100
        assert full_report.last_error is not None
        assert "outbox full" in caplog.text
        held = gateway.outbox.held_ids()
        assert len(held) == 100
        # not one record past what is held
        assert gateway.outbox.sync_position(paired.meter_key) == SyncPosition(paired.meter_key, 100)
        sessions_when_full = gateway.meters.sessions_ok  # type: ignore[union-attr]
        # The clinic comes back: everything held is delivered and the meter is read again.
        acker = Acker(mqtt_broker).start()
        assert await asyncio.to_thread(acker.wait_for, held, 30)
        await wait_until(lambda: gateway.meters.sessions_ok > sessions_when_full, 30, "pulling resumed")  # type: ignore[union-attr]
        await wait_until(lambda: not watcher.reports[-1].outbox_full, 30, "status no longer full")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        watcher.stop()
        if acker is not None:
            acker.stop()
    assert not watcher.reports[-1].online  # a clean stop says offline on the retained status
    assert set(acker.received.values()) == {1}


async def test_readings_of_an_unbound_meter_are_kept_aside_and_reported_not_published(
    tmp_path: Path, mqtt_broker: MosquittoBroker, radio: VirtualRadio
) -> None:
    mqtt_broker.add_gateway(GW)
    state = tmp_path / "state"
    meter, _paired = await paired_meter(radio, state, "GL-NOBODY", None)
    watcher = StatusWatcher(mqtt_broker)
    acker = Acker(mqtt_broker).start()
    gateway = gateway_on(radio, options(mqtt_broker, state), 5)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:

        def synced(r: GatewayStatus) -> bool:
            return r.unbound_readings >= 5 and bool(r.meters) and r.meters[0].last_sync_at is not None

        await wait_until(lambda: any(synced(r) for r in watcher.reports), 60, "unbound on status")
        report = next(r for r in watcher.reports if synced(r))
        assert report.outbox_depth == 0
        assert report.meters and report.meters[0].last_sync_at is not None
        assert report.meters[0].battery_percent == meter.battery_level_percent
        assert report.software_version
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        watcher.stop()
        acker.stop()
    assert acker.batches == 0  # nothing published as anyone's


async def test_a_restarted_gateway_reports_each_meters_last_sync_from_its_first_report(
    tmp_path: Path, mqtt_broker: MosquittoBroker, radio: VirtualRadio
) -> None:
    """After a restart, the first status report already says when each meter last synced, before
    the meter syncs again (the fleet page does not fall back to "never synced")."""
    mqtt_broker.add_gateway(GW)
    state = tmp_path / "state"
    _meter, paired = await paired_meter(radio, state, "GL-RESTART", None)
    watcher = StatusWatcher(mqtt_broker)
    try:
        first = gateway_on(radio, options(mqtt_broker, state), 3)
        stop = asyncio.Event()
        task = asyncio.create_task(first.run(stop))
        try:
            await wait_until(
                lambda: any(m.last_sync_at for r in watcher.reports for m in r.meters), 60, "a sync on status"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        await wait_until(lambda: not watcher.reports[-1].online, 30, "the first run's final status")
        synced_at = first.health.meters[paired.meter_key].last_sync_at
        assert synced_at is not None
        seen = len(watcher.reports)
        # The second run's radio does not carry the meter: it cannot sync again.
        async with VirtualRadio() as quiet:
            second = gateway_on(quiet, options(mqtt_broker, state), 3)
            stop = asyncio.Event()
            task = asyncio.create_task(second.run(stop))
            try:
                await wait_until(lambda: any(r.online for r in watcher.reports[seen:]), 30, "online again")
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        watcher.stop()
    report = next(r for r in watcher.reports[seen:] if r.online)
    assert [(m.meter_key, m.last_sync_at) for m in report.meters] == [(paired.meter_key, synced_at)]


async def test_a_last_sync_still_being_written_when_the_gateway_stops_is_kept(
    tmp_path: Path, mqtt_broker: MosquittoBroker, radio: VirtualRadio
) -> None:
    """A meter's last sync whose write is still under way when the gateway is stopped is in the
    outbox after the stop (the stop lets it land before closing the outbox)."""
    mqtt_broker.add_gateway(GW)
    gateway = gateway_on(radio, options(mqtt_broker, tmp_path / "state"), 3)
    under_way, release = threading.Event(), threading.Event()
    record_syncs = gateway.outbox.record_syncs

    def held_write(synced: Mapping[str, dt.datetime]) -> None:
        under_way.set()
        release.wait(30)
        record_syncs(synced)

    gateway.outbox.record_syncs = held_write  # type: ignore[method-assign]
    when = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        gateway.health.meter("meter-a").last_sync_at = when
        await wait_until(under_way.is_set, 30, "the last sync's write under way")
    finally:
        stop.set()
        threading.Timer(1.0, release.set).start()  # the stop goes on meanwhile
        await asyncio.wait_for(task, 30)
    with Outbox(gateway.options.effective_outbox_path) as box:
        assert [(s.meter_key, s.last_sync_at) for s in box.meter_syncs()] == [("meter-a", when)]
