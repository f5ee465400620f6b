"""The BlueZ tier's scenarios, run as root inside the QEMU guest (tests/bluez/guest.sh starts this).

One boot runs every scenario in order, each building on the state the previous one left (the bonds
BlueZ keeps, the gateway's outbox and sync positions), as one home lives through them:

    adapter_ready -> pair_passkey -> pair_just_works -> first_sync -> sleepy_discovery
    -> bonds_across_restart -> adapter_power_off -> bluetoothd_restart -> impostor_refused

What runs here, for real: the kernel's Bluetooth stack with a controller on /dev/vhci (hci_vhci),
dbus-daemon, bluetoothd, the virtual meters on the project's VirtualRadio serving that controller, a
private Mosquitto, the real ingest into a SQLite reading store, and ``vitalgate gateway pair`` and
``vitalgate gateway run`` as processes on bleak's BlueZ backend (forked from a preloaded interpreter,
tests/bluez/zygote.py). Each scenario writes ``results/<name>.json`` into the shared folder; the
tests on the host assert on those files. A scenario that cannot run because an earlier one failed
says so in its file.

    python -m tests.bluez.guest_runner --work /shared/folder [--only name,name]
"""

from __future__ import annotations

# The preload: everything the forked commands and this runner need, imported once (see zygote.py).
import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bleak.backends.bluezdbus.client
import bleak.backends.bluezdbus.manager
import bleak.backends.bluezdbus.scanner  # noqa: F401
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

import gateway.bluez_agent
import gateway.collect
import gateway.pairing  # noqa: F401
import vitalgate.cli
import vitalgate.commands.gateway
from device_drivers.virtual.blood_pressure_cuff import VirtualBloodPressureCuff
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.factory import make_meter
from device_drivers.virtual.glucose_meter import VirtualGlucoseMeter
from device_drivers.virtual.meter import VirtualMeter
from device_drivers.virtual.radio import VirtualRadio
from gateway.adapter import kernel_link_encrypted
from ingest import IngestConfig, IngestConsumer
from storage.clinic.database import create_clinic_engine, session_factory
from storage.clinic.repository import ClinicRepository
from storage.readings import SqliteReadingStore
from tests.bluez.home import (
    CLINIC_DATABASE,
    CUFF,
    GATEWAY_ID,
    GLUCOSE_METER,
    PASSKEY,
    SCENARIOS,
    MeterSpec,
)
from tests.bluez.zygote import Spawned, Zygote
from vitalgate.mosquitto import MosquittoBroker

logger = logging.getLogger("bluez-tier")

BLUEZ = "org.bluez"
ADAPTER_PATH = "/org/bluez/hci0"
BLUETOOTHD = "/usr/sbin/bluetoothd"
#: The public address of the controller served on /dev/vhci (VirtualRadio.serve_controller says why
#: Linux needs one).
ADAPTER_ADDRESS = "C0:FF:EE:00:01:00"
STATE = Path("/tmp/vitalgate-bluez")  # guest tmpfs: SQLite wants a local file system
GLUCOSE_CLOCK_DRIFT = dt.timedelta(minutes=15)
CUFF_CLOCK_DRIFT = dt.timedelta(minutes=-7)
FIRST_GLUCOSE_RECORDS = 5
FIRST_CUFF_RECORDS = 3
#: Emulated CPUs are slow: generous deadlines for each wait, never a bare sleep.
PAIR_TIMEOUT_S = 150.0
SYNC_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 40.0
#: Many status intervals (VITALGATE_GATEWAY__STATUS_INTERVAL_S in Rig.gateway_env).
STATUS_REPORT_WAIT_S = 30.0


class ScenarioFailed(Exception):
    """A scenario's step did not happen; the message says which."""


@dataclass
class Outcome:
    name: str
    ok: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str) -> float:
    """Poll ``predicate`` until true; return the seconds it took. Raises ScenarioFailed on timeout."""
    start = time.monotonic()
    while True:
        value = predicate()
        if not isinstance(value, bool):
            value = await value
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise ScenarioFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.5)


class Bluez:
    """The few BlueZ D-Bus calls the rig makes itself (the gateway makes its own)."""

    def __init__(self) -> None:
        self.bus: MessageBus | None = None

    async def connect(self) -> None:
        self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()

    async def _call(self, message: Message) -> Message:
        assert self.bus is not None
        reply = await self.bus.call(message)
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise ScenarioFailed(f"D-Bus {message.member} failed: {reply.error_name} {reply.body}")
        return reply

    async def objects(self) -> dict[str, dict[str, dict[str, Any]]]:
        reply = await self._call(
            Message(
                destination=BLUEZ,
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
        return {
            path: {iface: {k: v.value for k, v in props.items()} for iface, props in ifaces.items()}
            for path, ifaces in reply.body[0].items()
        }

    async def adapter(self) -> dict[str, Any] | None:
        try:
            return (await self.objects()).get(ADAPTER_PATH, {}).get("org.bluez.Adapter1")
        except ScenarioFailed:
            return None  # bluetoothd not on the bus

    async def device(self, address: str) -> dict[str, Any] | None:
        for _path, interfaces in (await self.objects()).items():
            props = interfaces.get("org.bluez.Device1")
            if props is not None and props.get("Address", "").upper() == address.upper():
                return props
        return None

    async def set_powered(self, powered: bool) -> None:
        await self._call(
            Message(
                destination=BLUEZ,
                path=ADAPTER_PATH,
                interface="org.freedesktop.DBus.Properties",
                member="Set",
                signature="ssv",
                body=["org.bluez.Adapter1", "Powered", Variant("b", powered)],
            )
        )


class Rig:
    def __init__(self, work: Path, zygote: Zygote) -> None:
        self.work = work
        self.zygote = zygote
        self.results = work / "results"
        self.logs = work / "logs"
        self.results.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.data_dir = STATE / "data"
        self.clock = SimulationClock()
        self.radio = VirtualRadio()
        self.meters: dict[str, VirtualMeter] = {}
        self.events: dict[str, list[str]] = {}
        #: The true time of each glucose record, by sequence number (the meter stamps its own clock).
        self.glucose_taken_at: dict[int, dt.datetime] = {}
        self.bluez = Bluez()
        self.bluetoothd: asyncio.subprocess.Process | None = None
        self.bluetoothd_starts = 0
        self.broker: MosquittoBroker | None = None
        self.ingest: IngestConsumer | None = None
        self.store: SqliteReadingStore | None = None
        self.gateway: Spawned | None = None
        self.gateway_runs = 0
        self.spawned: list[Spawned] = []

    # -- the parts -------------------------------------------------------------------------------

    async def start_bluetoothd(self) -> None:
        self.bluetoothd_starts += 1
        log = (self.logs / f"bluetoothd-{self.bluetoothd_starts}.log").open("wb")
        self.bluetoothd = await asyncio.create_subprocess_exec(BLUETOOTHD, "-n", stdout=log, stderr=log)
        log.close()

    async def stop_bluetoothd(self) -> None:
        if self.bluetoothd is not None and self.bluetoothd.returncode is None:
            self.bluetoothd.terminate()
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.bluetoothd.wait()

    def meter(self, spec: MeterSpec) -> VirtualMeter:
        return self.meters[spec.serial_number]

    async def add_meter(self, spec: MeterSpec, drift: dt.timedelta, records: int) -> VirtualMeter:
        meter = make_meter(
            spec.persona,
            clock=self.clock,
            serial_number=spec.serial_number,
            address=spec.address,
            fixed_passkey=PASSKEY if spec.persona == "accu-chek-like" else None,
            clock_drift=drift,
        )
        now = dt.datetime.now(dt.UTC)
        for i in range(records):
            self.record(meter, now - dt.timedelta(minutes=10 * (records - i)), i)
        events = self.events.setdefault(spec.serial_number, [])
        meter.add_listener(events.append)
        await self.radio.add_meter(meter)
        self.meters[spec.serial_number] = meter
        return meter

    def record(self, meter: VirtualMeter, taken_at: dt.datetime, i: int) -> None:
        if isinstance(meter, VirtualGlucoseMeter):
            meter.add_record(taken_at=taken_at, glucose_mg_dl=95 + i)
            self.glucose_taken_at[meter.records[-1].measurement.sequence_number] = taken_at
        elif isinstance(meter, VirtualBloodPressureCuff):
            meter.add_record(
                taken_at=taken_at, systolic_mmhg=121 + i, diastolic_mmhg=79, pulse_bpm=66, user_id=1
            )

    def start_ingest(self) -> None:
        self.broker = MosquittoBroker(STATE / "mosquitto")
        self.broker.add_gateway(GATEWAY_ID)
        self.broker.start()
        clinic = STATE / CLINIC_DATABASE
        shutil.copyfile(self.work / CLINIC_DATABASE, clinic)
        sessions = session_factory(create_clinic_engine(f"sqlite:///{clinic}"))
        self.store = SqliteReadingStore(STATE / "readings.sqlite3")
        username, password = self.broker.credentials("ingest")
        self.ingest = IngestConsumer(
            IngestConfig(
                host=self.broker.host,
                port=self.broker.port,
                username=username,
                password=password,
                client_id="ingest-bluez",
                session_expiry_s=3600,
            ),
            self.store,
            ClinicRepository(sessions),
        )
        self.ingest.start()
        if not self.ingest.wait_subscribed(120):
            raise ScenarioFailed("ingest did not subscribe to the broker")

    def gateway_env(self) -> dict[str, str]:
        assert self.broker is not None
        username, password = self.broker.credentials(GATEWAY_ID)
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": "/root",
            "PYTHONDONTWRITEBYTECODE": "1",
            "VITALGATE_DATA_DIR": str(self.data_dir),
            "VITALGATE_GATEWAY__GATEWAY_ID": GATEWAY_ID,
            "VITALGATE_MQTT__HOST": self.broker.host,
            "VITALGATE_MQTT__PORT": str(self.broker.port),
            "VITALGATE_MQTT__USERNAME": username,
            "VITALGATE_MQTT__PASSWORD": password,
            "VITALGATE_MQTT__ALLOW_PLAIN_MQTT": "true",  # a broker on the guest's loopback
            "VITALGATE_GATEWAY__ACK_TIMEOUT_S": "15",
            "VITALGATE_GATEWAY__STATUS_INTERVAL_S": "2",
            "VITALGATE_GATEWAY__RESYNC_AFTER_S": "20",
            # Emulated CPUs: BlueZ's service discovery alone takes seconds.
            "VITALGATE_GATEWAY__CONNECT_TIMEOUT_S": "60",
            "VITALGATE_GATEWAY__SESSION_TIMEOUT_S": "240",
            "VITALGATE_LOG_LEVEL": "INFO",
        }

    def spawn(self, name: str, argv: list[str]) -> Spawned:
        spawned = self.zygote.spawn(
            ["--log-format", "json", *argv], self.gateway_env(), self.logs / f"{name}.log"
        )
        self.spawned.append(spawned)
        return spawned

    async def run_command(self, name: str, argv: list[str], timeout_s: float) -> tuple[int, str]:
        command = self.spawn(name, argv)
        await wait_for(lambda: not command.running(), timeout_s, f"`vitalgate {' '.join(argv[:2])}` to end")
        code = command.exit_code()
        return (-1 if code is None else code), command.log_path.read_text(errors="replace")

    async def start_gateway(self) -> Spawned:
        self.gateway_runs += 1
        self.gateway = self.spawn(f"gateway-run-{self.gateway_runs}", ["gateway", "run"])
        return self.gateway

    async def stop_gateway(self) -> int | None:
        gateway = self.gateway
        if gateway is None:
            return None
        gateway.signal(signal.SIGTERM)
        await wait_for(lambda: not gateway.running(), STOP_TIMEOUT_S, "the gateway to stop on SIGTERM")
        self.gateway = None
        return gateway.exit_code()

    # -- what the scenarios look at ------------------------------------------------------------------

    def stored(self, spec: MeterSpec) -> list[dict[str, Any]]:
        path = STATE / "readings.sqlite3"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "SELECT reading_id, patient_id, measured_at, device_time, clock_offset_s, sequence_number,"
                " user_id, systolic_mmhg, glucose_mg_dl FROM readings WHERE meter_key = ?",
                (spec.meter_key,),
            ).fetchall()
        return [dict(row) for row in rows]

    def outbox_depth(self) -> int | None:
        path = self.data_dir / "gateway" / "outbox.sqlite3"
        if not path.exists():
            return None
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def status(self) -> dict[str, Any] | None:
        path = self.data_dir / "gateway" / "status.json"
        try:
            return dict(json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def gateway_log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for path in sorted(self.logs.glob("gateway-run-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    entry = json.loads(line)
                    if isinstance(entry, dict):
                        entries.append(entry)
        return entries

    def stored_once(self, spec: MeterSpec) -> dict[str, Any]:
        """What the store holds of this meter against what the meter holds: each record once?"""
        meter = self.meter(spec)
        rows = self.stored(spec)
        held: list[Any]
        got: list[Any]
        if isinstance(meter, VirtualGlucoseMeter):
            held = sorted(r.measurement.sequence_number for r in meter.records)
            got = sorted(int(r["sequence_number"]) for r in rows)
        else:
            assert isinstance(meter, VirtualBloodPressureCuff)
            held = sorted(
                m.timestamp.to_datetime().isoformat()  # type: ignore[union-attr]
                for m in (r.measurement for r in meter.records)
            )
            got = sorted(
                dt.datetime.fromisoformat(r["device_time"]).replace(tzinfo=None).isoformat() for r in rows
            )
        return {
            "held_by_meter": len(held),
            "stored": len(rows),
            "distinct_stored": len({r["reading_id"] for r in rows}),
            "missing": len(set(held) - set(got)),
            "unexpected": len(set(got) - set(held)),
            "patients": sorted({str(r["patient_id"]) for r in rows}),
        }

    async def diagnosis(self) -> dict[str, Any]:
        """What a failed scenario's file carries to explain itself."""
        meters = {}
        for serial, meter in self.meters.items():
            meters[serial] = {
                "advertising": bool(meter.device and meter.device.is_advertising),
                "connections": len(meter.device.connections) if meter.device else 0,
                "last_events": self.events.get(serial, [])[-12:],
            }
        devices = {}
        for spec in (GLUCOSE_METER, CUFF):
            props = await self.bluez.device(spec.address) or {}
            devices[spec.serial_number] = {
                k: props.get(k) for k in ("Paired", "Bonded", "Connected", "ServicesResolved", "RSSI")
            }
        adapter = await self.bluez.adapter() or {}
        return {
            "meters": meters,
            "bluez_devices": devices,
            "adapter": {k: adapter.get(k) for k in ("Powered", "Discovering")},
            "gateway_running": self.gateway is not None and self.gateway.running(),
            "gateway_status": self.status(),
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    async def close(self) -> None:
        for spawned in self.spawned:
            if spawned.running():
                spawned.signal(signal.SIGKILL)
        if self.ingest is not None:
            self.ingest.stop()
        if self.store is not None:
            self.store.close()
        if self.broker is not None:
            self.broker.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(20):
                await self.radio.close()
        with contextlib.suppress(Exception):
            await self.stop_bluetoothd()


# -- scenarios ---------------------------------------------------------------------------------------


async def adapter_ready(rig: Rig, facts: dict[str, Any]) -> None:
    """bluetoothd sees the vhci controller the virtual radio plays, and powers it."""
    await rig.start_bluetoothd()
    await rig.bluez.connect()
    await rig.radio.start()
    await rig.radio.serve_controller("vhci", public_address=ADAPTER_ADDRESS)

    async def present() -> bool:
        return await rig.bluez.adapter() is not None

    waited = await wait_for(present, 120, "hci0 on BlueZ's D-Bus")

    async def powered() -> bool:
        adapter = await rig.bluez.adapter()
        return bool(adapter and adapter.get("Powered"))

    # bluetoothd powers a new adapter itself (AutoEnable); `bluetoothctl power on` where it does not.
    with contextlib.suppress(ScenarioFailed):
        await wait_for(powered, 30, "hci0 powered by bluetoothd")
    if not await powered():
        await rig.bluez.set_powered(True)
        await wait_for(powered, 60, "hci0 powered")
    adapter = await rig.bluez.adapter() or {}
    facts.update(
        adapter_seen_after_s=round(waited, 1),
        adapter_powered=bool(adapter.get("Powered")),
        adapter_address=adapter.get("Address"),
    )
    await rig.add_meter(GLUCOSE_METER, GLUCOSE_CLOCK_DRIFT, FIRST_GLUCOSE_RECORDS)
    cuff = await rig.add_meter(CUFF, CUFF_CLOCK_DRIFT, FIRST_CUFF_RECORDS)
    facts["cuff_advertising_before_measurement"] = bool(cuff.device and cuff.device.is_advertising)
    rig.start_ingest()


async def _pair(rig: Rig, spec: MeterSpec, facts: dict[str, Any], extra: list[str]) -> None:
    argv = [
        "gateway",
        "pair",
        "--address",
        spec.address,
        "--profile",
        spec.profile,
        "--patient",
        spec.patient_id,
    ]
    if spec.user_slot is not None:
        argv += ["--user-slot", str(spec.user_slot)]
    events_before = len(rig.events[spec.serial_number])
    code, output = await rig.run_command(f"pair-{spec.profile}", argv + extra, PAIR_TIMEOUT_S)
    facts["exit_code"] = code
    paired_line = next((line for line in output.splitlines() if line.startswith('{"paired"')), None)
    facts["paired"] = None if paired_line is None else json.loads(paired_line)
    device = await rig.bluez.device(spec.address) or {}
    facts["kernel_link_after_pair"] = kernel_link_encrypted(spec.address)
    meter_ = rig.meter(spec)
    facts["meter_links_after_pair"] = len(meter_.device.connections) if meter_.device else 0
    facts["bluez_paired"] = bool(device.get("Paired"))
    facts["bluez_bonded"] = bool(device.get("Bonded", device.get("Paired")))
    meter = rig.meter(spec)
    facts["meter_bonded_hosts"] = len(await meter.bonded_hosts())
    facts["meter_paired_events"] = rig.events[spec.serial_number][events_before:].count("paired")
    agent = [
        json.loads(line).get("msg")
        for line in output.splitlines()
        if line.startswith("{") and "gateway.bluez_agent" in line
    ]
    facts["agent_requests"] = agent
    if code != 0:
        raise ScenarioFailed(f"vitalgate gateway pair exited {code}: {output[-2000:]}")


async def pair_passkey(rig: Rig, facts: dict[str, Any]) -> None:
    """`vitalgate gateway pair --passkey` bonds the Accu-Chek-like meter through the BlueZ agent."""
    await _pair(rig, GLUCOSE_METER, facts, ["--passkey", str(PASSKEY)])


async def pair_just_works(rig: Rig, facts: dict[str, Any]) -> None:
    """`vitalgate gateway pair` bonds the Omron-like cuff (Just Works) in its pairing mode."""
    cuff = rig.meter(CUFF)
    await cuff.enter_pairing_mode()
    try:
        await _pair(rig, CUFF, facts, [])
    finally:
        await cuff.close_advertising_window()


async def first_sync(rig: Rig, facts: dict[str, Any]) -> None:
    """The gateway process syncs the glucose meter over RACP, corrects and sets its clock, and every
    record reaches ingest's store once and leaves the outbox on the application ack."""
    meter = rig.meter(GLUCOSE_METER)
    assert isinstance(meter, VirtualGlucoseMeter)
    await rig.start_gateway()
    took = await wait_for(
        lambda: len(rig.stored(GLUCOSE_METER)) >= FIRST_GLUCOSE_RECORDS, SYNC_TIMEOUT_S, "glucose stored"
    )
    await wait_for(lambda: rig.outbox_depth() == 0, 60, "the outbox emptied by ingest's acks")
    facts["stored_after_s"] = round(took, 1)
    facts.update(rig.stored_once(GLUCOSE_METER))
    facts["outbox_depth"] = rig.outbox_depth()
    rows = rig.stored(GLUCOSE_METER)
    taken = rig.glucose_taken_at
    facts["max_measured_error_s"] = max(
        abs((dt.datetime.fromisoformat(r["measured_at"]) - taken[int(r["sequence_number"])]).total_seconds())
        for r in rows
    )
    facts["clock_offsets_s"] = sorted({round(float(r["clock_offset_s"] or 0)) for r in rows})
    facts["meter_clock_drift_after_s"] = round(meter.clock.drift.total_seconds(), 1)


async def sleepy_discovery(rig: Rig, facts: dict[str, Any]) -> None:
    """The sleepy cuff is found only in the window it advertises after a measurement; its
    indications (stored readings and the new one) reach the store once."""
    cuff = rig.meter(CUFF)
    assert isinstance(cuff, VirtualBloodPressureCuff)
    events = rig.events[CUFF.serial_number]
    before = len(events)
    facts["advertising_before_measurement"] = bool(cuff.device and cuff.device.is_advertising)
    facts["connections_while_asleep"] = events[before:].count("connected")
    rig.record(cuff, dt.datetime.now(dt.UTC), FIRST_CUFF_RECORDS)
    measured = time.monotonic()
    await cuff.measurement_taken()
    await wait_for(
        lambda: "connected" in events[before:], SYNC_TIMEOUT_S, "the gateway to connect to the cuff"
    )
    facts["connected_after_measurement_s"] = round(time.monotonic() - measured, 1)
    await wait_for(
        lambda: len(rig.stored(CUFF)) >= FIRST_CUFF_RECORDS + 1, SYNC_TIMEOUT_S, "cuff readings stored"
    )
    await wait_for(lambda: rig.outbox_depth() == 0, 60, "the outbox emptied by ingest's acks")
    await cuff.close_advertising_window()
    facts.update(rig.stored_once(CUFF))
    facts["outbox_depth"] = rig.outbox_depth()
    rows = rig.stored(CUFF)
    facts["clock_offsets_s"] = sorted({round(float(r["clock_offset_s"] or 0)) for r in rows})
    facts["meter_clock_drift_after_s"] = round(cuff.clock.drift.total_seconds(), 1)


async def bonds_across_restart(rig: Rig, facts: dict[str, Any]) -> None:
    """After a gateway restart both meters sync again on the bonds BlueZ kept: no pairing, only the
    new readings travel, each stored once."""
    glucose = rig.meter(GLUCOSE_METER)
    cuff = rig.meter(CUFF)
    facts["gateway_exit_code"] = await rig.stop_gateway()
    hosts_before = {s.serial_number: await rig.meter(s).bonded_hosts() for s in (GLUCOSE_METER, CUFF)}
    marks = {serial: len(events) for serial, events in rig.events.items()}
    now = dt.datetime.now(dt.UTC)
    for i in range(2):
        rig.record(glucose, now - dt.timedelta(minutes=2 - i), FIRST_GLUCOSE_RECORDS + i)
    await glucose.measurement_taken()
    await rig.start_gateway()
    rig.record(cuff, now, FIRST_CUFF_RECORDS + 1)
    await cuff.measurement_taken()
    await wait_for(
        lambda: (
            len(rig.stored(GLUCOSE_METER)) >= FIRST_GLUCOSE_RECORDS + 2
            and len(rig.stored(CUFF)) >= FIRST_CUFF_RECORDS + 2
        ),
        SYNC_TIMEOUT_S,
        "the new readings of both meters stored",
    )
    await wait_for(lambda: rig.outbox_depth() == 0, 60, "the outbox emptied by ingest's acks")
    await cuff.close_advertising_window()
    facts["glucose"] = rig.stored_once(GLUCOSE_METER)
    facts["cuff"] = rig.stored_once(CUFF)
    facts["pairings_after_restart"] = sum(
        rig.events[serial][marks[serial] :].count("paired") for serial in marks
    )
    facts["connections_after_restart"] = sum(
        rig.events[serial][marks[serial] :].count("connected") for serial in marks
    )
    facts["bonds_unchanged"] = [
        await rig.meter(s).bonded_hosts() == hosts_before[s.serial_number] for s in (GLUCOSE_METER, CUFF)
    ] == [True, True]
    devices = [await rig.bluez.device(s.address) or {} for s in (GLUCOSE_METER, CUFF)]
    facts["bluez_paired"] = [bool(d.get("Paired")) for d in devices]


async def _glucose_transfer_interrupted(
    rig: Rig, facts: dict[str, Any], records: int, interrupt: Callable[[], Awaitable[None]]
) -> None:
    """The glucose meter gets ``records`` new readings; once the gateway's RACP transfer of them is
    under way, ``interrupt`` strikes; the sync must then complete with nothing lost or doubled."""
    meter = rig.meter(GLUCOSE_METER)
    assert isinstance(meter, VirtualGlucoseMeter)
    stored_before = len(rig.stored(GLUCOSE_METER))
    now = dt.datetime.now(dt.UTC)
    for i in range(records):
        rig.record(meter, now - dt.timedelta(seconds=records - i), 100 + i)
    sent_before = meter.records_sent_total
    await meter.measurement_taken()
    await wait_for(
        lambda: meter.records_sent_total - sent_before >= 10, SYNC_TIMEOUT_S, "the RACP transfer under way"
    )
    facts["records_sent_before_interruption"] = meter.records_sent_total - sent_before
    log_mark = len(rig.gateway_log())
    await interrupt()
    last_errors: set[str] = set()

    def note_status_error() -> None:
        status = rig.status() or {}
        if status.get("last_error"):
            last_errors.add(str(status["last_error"]))

    def all_stored() -> bool:
        note_status_error()
        return len(rig.stored(GLUCOSE_METER)) >= stored_before + records

    def adapter_reported() -> bool:
        note_status_error()
        return any("bluetooth adapter" in error for error in last_errors)

    took = await wait_for(all_stored, SYNC_TIMEOUT_S, "every record of the interrupted sync stored")
    await wait_for(lambda: rig.outbox_depth() == 0, 60, "the outbox emptied by ingest's acks")
    # The status file is rewritten every status interval: a recovery and sync quicker than that is
    # reported by the next one. The test judges what was seen.
    with contextlib.suppress(ScenarioFailed):
        await wait_for(
            adapter_reported, STATUS_REPORT_WAIT_S, "the adapter's recovery in the gateway's status"
        )
    facts["completed_after_s"] = round(took, 1)
    facts.update(rig.stored_once(GLUCOSE_METER))
    facts["outbox_depth"] = rig.outbox_depth()
    entries = rig.gateway_log()[log_mark:]
    facts["recovery_steps"] = [e.get("step") for e in entries if e.get("msg") == "bluetooth adapter recovery"]
    facts["status_errors_seen"] = sorted(last_errors)
    adapter = await rig.bluez.adapter() or {}
    facts["adapter_powered_after"] = bool(adapter.get("Powered"))
    facts["gateway_running"] = rig.gateway is not None and rig.gateway.running()


async def adapter_power_off(rig: Rig, facts: dict[str, Any]) -> None:
    """The controller is powered off in the middle of a RACP sync: the gateway powers it on again
    and the sync completes, nothing lost or doubled."""

    async def power_off() -> None:
        await rig.bluez.set_powered(False)

    await _glucose_transfer_interrupted(rig, facts, 120, power_off)


async def bluetoothd_restart(rig: Rig, facts: dict[str, Any]) -> None:
    """bluetoothd is restarted in the middle of a RACP sync (as systemd restarts it): the gateway
    waits for the adapter to come back and the sync completes, nothing lost or doubled."""

    async def restart() -> None:
        await rig.stop_bluetoothd()
        await rig.start_bluetoothd()

    await _glucose_transfer_interrupted(rig, facts, 120, restart)


async def impostor_refused(rig: Rig, facts: dict[str, Any]) -> None:
    """A device at the paired glucose meter's address, claiming its identity without its bond, is
    refused and logged; nothing it sends is stored and it gets no bond."""
    genuine = rig.meter(GLUCOSE_METER)
    stored_before = len(rig.stored(GLUCOSE_METER))
    await genuine.stop()  # the genuine meter is away; the impostor takes its address
    impostor = make_meter(
        GLUCOSE_METER.persona,
        clock=rig.clock,
        serial_number=GLUCOSE_METER.serial_number,
        address=GLUCOSE_METER.address,
        fixed_passkey=PASSKEY,
    )
    assert isinstance(impostor, VirtualGlucoseMeter)
    impostor.add_record(taken_at=dt.datetime.now(dt.UTC), glucose_mg_dl=250)
    events: list[str] = []
    impostor.add_listener(events.append)
    log_mark = len(rig.gateway_log())
    await rig.radio.add_meter(impostor)

    def refusals() -> list[dict[str, Any]]:
        return [
            e
            for e in rig.gateway_log()[log_mark:]
            if e.get("msg") == "meter session failed" and e.get("meter_key") == GLUCOSE_METER.meter_key
        ]

    await wait_for(
        lambda: "connected" in events and len(refusals()) >= 1, SYNC_TIMEOUT_S, "the impostor refused"
    )
    found = refusals()
    facts["impostor_connections"] = events.count("connected")
    facts["impostor_paired_events"] = events.count("paired")
    facts["impostor_bonded_hosts"] = len(await impostor.bonded_hosts())
    facts["refusals"] = [
        {k: e.get(k) for k in ("level", "error_kind", "error", "detail", "peer_address")} for e in found
    ]
    facts["stored_from_impostor"] = len(rig.stored(GLUCOSE_METER)) - stored_before
    device = await rig.bluez.device(GLUCOSE_METER.address) or {}
    facts["bluez_still_paired"] = bool(device.get("Paired"))
    facts["records_sent_by_impostor"] = impostor.records_sent_total
    await impostor.stop()


SCENARIO_STEPS: dict[str, Callable[[Rig, dict[str, Any]], Awaitable[None]]] = {
    "adapter_ready": adapter_ready,
    "pair_passkey": pair_passkey,
    "pair_just_works": pair_just_works,
    "first_sync": first_sync,
    "sleepy_discovery": sleepy_discovery,
    "bonds_across_restart": bonds_across_restart,
    "adapter_power_off": adapter_power_off,
    "bluetoothd_restart": bluetoothd_restart,
    "impostor_refused": impostor_refused,
}


async def run_all(work: Path, zygote: Zygote, only: set[str] | None) -> None:
    rig = Rig(work, zygote)
    broken: str | None = None
    try:
        for name in SCENARIOS:
            outcome = Outcome(name)
            start = time.monotonic()
            if only is not None and name not in only and name != "adapter_ready":
                outcome.error = "not selected (--only)"
            elif broken is not None:
                outcome.error = f"not run: {broken} failed before it"
            else:
                logger.info("scenario %s", name)
                try:
                    await SCENARIO_STEPS[name](rig, outcome.facts)
                    outcome.ok = True
                except Exception as error:
                    outcome.error = f"{type(error).__name__}: {error}"
                    with contextlib.suppress(Exception):
                        outcome.facts["diagnosis"] = await rig.diagnosis()
                    logger.error("scenario %s failed\n%s", name, traceback.format_exc())
                    broken = name
            outcome.seconds = round(time.monotonic() - start, 1)
            path = rig.results / f"{name}.json"
            path.write_text(json.dumps(outcome.__dict__, indent=2, default=str))
            logger.info(
                "scenario %s: %s in %.1f s", name, "ok" if outcome.ok else outcome.error, outcome.seconds
            )
    finally:
        await rig.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--only", default=None, help="comma-separated scenario names (development)")
    args = parser.parse_args(argv)
    vitalgate.cli.build_parser()  # imports every subcommand module into the preload
    zygote = Zygote.start()  # before any thread or event loop
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[logging.FileHandler(args.work / "runner.log"), logging.StreamHandler(sys.stdout)],
    )
    logging.getLogger("bumble").setLevel(logging.WARNING)
    logging.getLogger("device_drivers.virtual.controller").setLevel(logging.DEBUG)
    STATE.mkdir(parents=True, exist_ok=True)
    only = None if args.only is None else set(args.only.split(","))
    try:
        asyncio.run(run_all(args.work, zygote, only))
    finally:
        zygote.close()
    (args.work / "runner.done").write_text("done\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
