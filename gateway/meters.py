"""Discovery and connections: one scanner with a watchdog, one task per paired meter.

Reliability techniques from the Home Assistant Bluetooth stack (peers.md §1.6), because Theengs and
ThingsBoard gateway users lost meters for hours until a reboot (peers.md §1.3-1.4):
- a scanner watchdog: scanning restarts when no advertisement arrived for ``scanner_watchdog_s``
  (habluetooth restarts after 90 s of silence);
- backoff chosen by error type (bleak-retry-connector: 0.25 s for a transient abort, 4 s when the
  adapter is out of connection slots), a cap on concurrent connections per adapter, and a deadline on
  every wait: connect, the whole session (hass-omron uses 3 minutes because bleak/BlueZ has none),
  scanner start and stop, disconnect. Each deadline is an ``asyncio.timeout`` block: Python 3.11's
  ``asyncio.wait_for`` drops a cancellation that arrives as the awaited call completes (CPython
  gh-86296), and a stop must reach every session;
- a fresh ``BleakClient`` for every connection (HA guidance: never reuse one).

The scanner and client classes are injected (bleak's ``backend=`` argument), so tests and the demo
run the same bleak calls against the virtual meters (device_drivers.virtual) as a Raspberry Pi runs
against BlueZ.

Only meters paired with this gateway are acted on (:class:`gateway.bindings.Bindings` registry); other
devices advertising the Blood Pressure (0x1810) or Glucose (0x1808) service are counted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from device_drivers.procedures.connect import connect_meter, quirks_from_advertisement
from device_drivers.profiles.uuids import BLOOD_PRESSURE_SERVICE, GLUCOSE_SERVICE
from gateway.adapter import (
    AdapterRecovery,
    BluezAdapter,
    NoAdapterControl,
    RecoveryStep,
    bluez_link_security,
    bond_security_of,
    kernel_link_encrypted,
)
from gateway.bindings import Bindings, PairedMeter
from gateway.bond_security import BondSecurity
from gateway.health import GatewayHealth
from gateway.meter_session import Collector as Collector
from gateway.meter_session import MeterSession as MeterSession
from gateway.meter_session import ReadingsSink as ReadingsSink
from gateway.meter_session import SyncPositionLookup as SyncPositionLookup
from gateway.outbox import OutboxFullError, OutboxStats
from gateway.session_failures import (
    LOGGED_AS_ERRORS,
    BondLostError,
    ErrorKind,
    SpoofedMeterError,
    backoff_s,
    classify,
    refuse_weaker_bond,
)

logger = logging.getLogger(__name__)

HEALTH_SERVICE_UUIDS = [BLOOD_PRESSURE_SERVICE, GLUCOSE_SERVICE]
#: A meter's health-report note while the level its bond was paired with cannot be compared.
BOND_LEVEL_UNREADABLE = "bond level unreadable: check not made"

BondReader = Callable[[BleakClient], Awaitable[BondSecurity | None]]


@dataclass(frozen=True, slots=True)
class BleConfig:
    max_concurrent_connections: int = 3  # per adapter; BlueZ/controllers have few LE slots
    scanner_watchdog_s: float = 120.0
    watchdog_check_s: float = 5.0
    scanner_start_timeout_s: float = 15.0  # habluetooth's scanner start timeout
    connect_timeout_s: float = 20.0  # bleak-retry-connector BLEAK_TIMEOUT; BlueZ resolves services
    session_timeout_s: float = 180.0  # hass-omron's 3-minute session deadline
    disconnect_timeout_s: float = 10.0
    resync_after_s: float = 60.0  # after a good sync, ignore the meter's adverts this long
    max_backoff_s: float = 600.0
    #: BlueZ: how long a bonded meter's link may take to be encrypted with the bond after connecting.
    encryption_wait_s: float = 10.0


def scanner_options(backend: type[BaseBleakScanner] | None) -> dict[str, Any]:
    """BlueZ (bleak's own backend on Linux): report every advertisement, not only changes.

    With bleak's default (``DuplicateData`` false) bluetoothd signals a device it already knows (a
    paired meter) only when its RSSI moves by 8 dB or more or its data changes, so a meter waking up
    where it always sits, or advertising without pause, can go unreported for a whole window.
    """
    if backend is not None:
        return {}
    return {"bluez": {"filters": {"DuplicateData": True}}}


def link_encrypted(client: BleakClient) -> bool | None:
    """Whether the link to the meter is encrypted (with the bond), or None where bleak cannot tell.

    The virtual backend exposes its bumble connection. bleak's BlueZ backend does not expose link
    encryption: on BlueZ the gateway asks BlueZ and the kernel instead (:func:`check_bluez_link`).
    """
    backend = getattr(client, "_backend", None)
    connection = getattr(backend, "connection", None)
    if connection is not None and hasattr(connection, "is_encrypted"):
        return bool(connection.is_encrypted)
    return None


async def check_bluez_link(adapter: BluezAdapter, address: str, wait_s: float) -> None:
    """Refuse a meter link that BlueZ has not encrypted with the stored bond.

    BlueZ encrypts a bonded LE device's link with the stored key as it connects; a device at a
    paired address that lacks the key cannot, and BlueZ does not pair again on its own (no agent
    runs outside ``vitalgate gateway pair``; ``JustWorksRepairing`` defaults to never). A device
    BlueZ holds no bond for is refused before any protected read could make BlueZ pair it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        security = await bluez_link_security(adapter, address)
        if security.bonded is False:
            raise BondLostError(f"BlueZ holds no bond for the meter at {address}: pair it again")
        if security.encrypted is not False or loop.time() >= deadline:
            break
        await asyncio.sleep(0.25)
    if security.encrypted is False:
        raise SpoofedMeterError(f"device at {address} did not encrypt the link with the stored bond")


def _raise_if_stopping() -> None:
    """End the calling meter task if it was cancelled (the gateway stops), even where a library it
    awaited dropped the cancellation (Python 3.11's asyncio.wait_for, CPython gh-86296): a session
    that returns after a stop must not lead to another sync after the gateway has stopped."""
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError


@dataclass
class _MeterSlot:
    meter: PairedMeter
    advertised: asyncio.Event = field(default_factory=asyncio.Event)
    device: BLEDevice | None = None
    #: The meter's latest advertisement: what its connection quirks are keyed on.
    advertisement: AdvertisementData | None = None
    task: asyncio.Task[None] | None = None
    in_session: bool = False


class MeterManager:
    """Runs the scanner and a task per paired meter until cancelled."""

    def __init__(
        self,
        config: BleConfig,
        bindings: Bindings,
        health: GatewayHealth,
        collector: Collector,
        sink: ReadingsSink,
        sync_position: SyncPositionLookup,
        *,
        outbox_stats: Callable[[], Awaitable[OutboxStats]] | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        adapter: BluezAdapter | None = None,
        bond_reader: BondReader | None = None,
    ) -> None:
        self.config = config
        self.bindings = bindings
        self.health = health
        self.collector = collector
        self.sink = sink
        self.sync_position = sync_position
        self.outbox_stats = outbox_stats
        self.scanner_backend = scanner_backend
        self.client_backend = client_backend
        self._monotonic = monotonic
        self._slots_sem = asyncio.Semaphore(config.max_concurrent_connections)
        self._meters: dict[str, _MeterSlot] = {}
        self.last_advertisement_at = monotonic()
        self.scanner_restarts = 0
        self.ignored_devices: set[str] = set()
        self.active_connections = 0
        self.max_active_connections = 0
        self.sessions_ok = 0
        #: The BlueZ adapter (None with another backend, e.g. the virtual radio: nothing to recover).
        self.adapter = adapter
        #: Reads the security level of the bond protecting a link now; None where it cannot be read.
        self.read_bond: BondReader = bond_reader or self._read_bond
        self._scan_restart = asyncio.Event()
        self.recovery = AdapterRecovery(
            adapter if adapter is not None else NoAdapterControl(), self._adapter_step, self._scan_restart.set
        )

    # -- scanning --------------------------------------------------------------------------------

    def _on_advertisement(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        self.last_advertisement_at = self._monotonic()
        address = device.address.upper()
        slot = self._meters.get(address)
        if slot is None:
            meter = self.bindings.meter_at(address)
            if meter is None:
                if address not in self.ignored_devices:
                    self.ignored_devices.add(address)
                    logger.info("unpaired health device ignored", extra={"peer_address": address})
                return
            slot = self._start_meter(meter)
        slot.device = device
        slot.advertisement = advertisement
        self.health.meter(slot.meter.meter_key).rssi_dbm = advertisement.rssi
        slot.advertised.set()

    def _adapter_step(self, step: RecoveryStep, detail: str) -> None:
        self.health.error(f"bluetooth adapter: {step.value} ({detail})")

    async def _watch_linked_meters(self) -> None:
        """BlueZ: a paired meter whose link is still up (kept by the kernel after another process's
        session, or connected by BlueZ itself) does not advertise; start its session without waiting
        for an advertisement that will not come."""
        while True:
            await asyncio.sleep(self.recovery.config.watch_interval_s)
            for meter in self.bindings.meters:
                slot = self._meters.get(meter.address)
                if slot is not None and (slot.advertised.is_set() or self._busy(slot)):
                    continue
                if await asyncio.to_thread(kernel_link_encrypted, meter.address) is None:
                    continue
                logger.info(
                    "paired meter linked without advertising: syncing it",
                    extra={"peer_address": meter.address},
                )
                if slot is None:
                    slot = self._start_meter(meter)
                slot.advertised.set()

    @staticmethod
    def _busy(slot: _MeterSlot) -> bool:
        return slot.in_session

    async def run(self) -> None:
        watch = None
        linked = None
        if self.adapter is not None:
            watch = asyncio.create_task(self.recovery.watch(), name="adapter")
            linked = asyncio.create_task(self._watch_linked_meters(), name="linked-meters")
        try:
            await self._scan_forever()
        finally:
            for task in (watch, linked):
                if task is not None:
                    task.cancel()
            for slot in self._meters.values():
                if slot.task is not None:
                    slot.task.cancel()
            tasks = [s.task for s in self._meters.values() if s.task is not None]
            if tasks:
                # A session ends within disconnect_timeout_s of its cancellation; a radio stack that
                # never answers (a connect cancelled mid-way) must not keep the gateway from stopping.
                _, stuck = await asyncio.wait(tasks, timeout=self.config.disconnect_timeout_s + 1.0)
                for task in stuck:
                    logger.error("meter session did not stop; leaving it", extra={"task": task.get_name()})

    async def _scan_forever(self) -> None:
        failures = 0
        while True:
            scanner = BleakScanner(
                self._on_advertisement,
                service_uuids=HEALTH_SERVICE_UUIDS,
                backend=self.scanner_backend,
                **scanner_options(self.scanner_backend),
            )
            try:
                async with asyncio.timeout(self.config.scanner_start_timeout_s):
                    await scanner.start()
            except (TimeoutError, BleakError, OSError) as exc:
                failures += 1
                delay = min(self.config.max_backoff_s, 2.0**failures)
                self.health.error(f"scanner start failed: {type(exc).__name__}")
                logger.error(
                    "scanner start failed",
                    extra={"error": type(exc).__name__, "failures": failures, "retry_in_s": delay},
                )
                try:
                    await self.recovery.failed("scan start")
                except Exception as error:  # the adapter could not be recovered now: try again later
                    logger.error("adapter recovery failed", extra={"error": str(error)[:200]})
                if self._scan_restart.is_set():
                    self._scan_restart.clear()
                    continue  # the adapter was brought back: start scanning at once
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._scan_restart.clear()
            self.last_advertisement_at = self._monotonic()
            logger.info("scanning for blood pressure and glucose meters")
            try:
                await self._watch(scanner)
            finally:
                with contextlib.suppress(TimeoutError, BleakError, OSError):
                    async with asyncio.timeout(self.config.scanner_start_timeout_s):
                        await scanner.stop()
            self.scanner_restarts += 1

    async def _watch(self, _scanner: BleakScanner) -> None:
        """Return when no advertisement arrived for ``scanner_watchdog_s`` (then scanning restarts)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.watchdog_check_s):
                    await self._scan_restart.wait()
            if self._scan_restart.is_set():
                logger.warning("restarting the scanner after adapter recovery")
                return
            silent_s = self._monotonic() - self.last_advertisement_at
            if silent_s >= self.config.scanner_watchdog_s:
                logger.warning(
                    "no advertisement for a while: restarting the scanner",
                    extra={"silent_s": round(silent_s, 1), "restarts": self.scanner_restarts + 1},
                )
                return

    # -- per meter -------------------------------------------------------------------------------

    def _start_meter(self, meter: PairedMeter) -> _MeterSlot:
        slot = _MeterSlot(meter)
        self._meters[meter.address] = slot
        slot.task = asyncio.get_running_loop().create_task(
            self._meter_loop(slot), name=f"meter-{meter.address}"
        )
        return slot

    async def _meter_loop(self, slot: _MeterSlot) -> None:
        meter = slot.meter
        state = self.health.meter(meter.meter_key)
        attempt = 0
        while True:
            await slot.advertised.wait()
            slot.advertised.clear()
            state.sessions += 1
            try:
                stats = None if self.outbox_stats is None else await self.outbox_stats()
                if stats is not None and stats.full:
                    # Do not even connect: the records stay on the meter, its cursor stays put.
                    raise OutboxFullError("outbox", stats.depth, stats.capacity, 0)
                async with self._slots_sem, asyncio.timeout(self.config.session_timeout_s):
                    slot.in_session = True
                    try:
                        await self._session(slot)
                    finally:
                        slot.in_session = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is classified, logged and retried
                _raise_if_stopping()
                attempt += 1
                kind = classify(exc)
                delay = backoff_s(kind, attempt, self.config.max_backoff_s)
                state.failures += 1
                # The meter's own error: the gateway's (adapter, scanner, MQTT) is not overwritten
                # by it, so a Bluetooth adapter's recovery stays in the report.
                state.last_error = f"{kind.value}: {type(exc).__name__}"
                log = logger.error if kind in LOGGED_AS_ERRORS else logger.warning
                log(
                    "meter session failed",
                    extra={
                        "meter_key": meter.meter_key,
                        "peer_address": meter.address,
                        "error_kind": kind.value,
                        "error": type(exc).__name__,
                        "detail": str(exc)[:200],
                        "attempt": attempt,
                        "retry_in_s": delay,
                    },
                )
                # A busy adapter ("operation already in progress") is waited out, not reset.
                if kind in (ErrorKind.TIMEOUT, ErrorKind.TRANSIENT):
                    try:
                        await self.recovery.failed("connect")
                    except Exception as error:  # the adapter could not be recovered now
                        logger.error("adapter recovery failed", extra={"error": str(error)[:200]})
                await asyncio.sleep(delay)
                continue
            _raise_if_stopping()
            self.recovery.succeeded()
            attempt = 0
            self.sessions_ok += 1
            state.last_error = None
            state.last_sync_at = datetime.now(UTC)
            await asyncio.sleep(self.config.resync_after_s)
            slot.advertised.clear()  # adverts from the sync just done are not a new measurement

    async def _session(self, slot: _MeterSlot) -> None:
        meter = slot.meter
        target: BLEDevice | str = slot.device if slot.device is not None else meter.address
        disconnected = asyncio.Event()
        client = BleakClient(
            target,
            disconnected_callback=lambda _client: disconnected.set(),
            timeout=self.config.connect_timeout_s,
            backend=self.client_backend,
        )
        settle_s = quirks_from_advertisement(slot.advertisement).settle_delay_after_connect_s
        async with asyncio.timeout(self.config.connect_timeout_s + settle_s):
            await connect_meter(client, slot.advertisement)
        self.active_connections += 1
        self.max_active_connections = max(self.max_active_connections, self.active_connections)
        try:
            if link_encrypted(client) is False:
                raise SpoofedMeterError(f"device at {meter.address} could not encrypt with the stored bond")
            if self.adapter is not None:
                await check_bluez_link(self.adapter, meter.address, self.config.encryption_wait_s)
            if meter.security is not None:  # no level recorded at pairing: nothing to compare with
                current = await self.read_bond(client)
                self._bond_level_read(meter, current is not None)
                refuse_weaker_bond(meter.address, meter.security, current)
            since = await self.sync_position(meter.meter_key)
            bound_users = self.bindings.bound_user_slots(meter.meter_key)
            session = MeterSession(meter, since, self.sink, self.health, disconnected, bound_users)
            await self.collector(client, session)
            logger.info(
                "meter synced",
                extra={
                    "meter_key": meter.meter_key,
                    "committed": session.committed,
                    "duplicates": session.duplicates,
                    "last_sequence_number": session.since_sequence_number,
                },
            )
        finally:
            self.active_connections -= 1
            with contextlib.suppress(TimeoutError, BleakError, OSError):
                async with asyncio.timeout(self.config.disconnect_timeout_s):
                    await client.disconnect()

    async def _read_bond(self, client: BleakClient) -> BondSecurity | None:
        return await bond_security_of(client, self.adapter)

    def _bond_level_read(self, meter: PairedMeter, readable: bool) -> None:
        """Say, once until it can be read again, that a meter's recorded bond level cannot be read
        now, so its downgrade check is not made (BlueZ keeps the level root-only: docs/gateway.md)."""
        state = self.health.meter(meter.meter_key)
        if readable:
            state.bond_unchecked = None
            return
        if state.bond_unchecked is None:
            logger.error(
                "bond level unreadable: downgrade check not made", extra={"meter_key": meter.meter_key}
            )
        state.bond_unchecked = BOND_LEVEL_UNREADABLE

    def snapshot(self) -> dict[str, Any]:
        return {
            "meters": len(self._meters),
            "scanner_restarts": self.scanner_restarts,
            "ignored_devices": len(self.ignored_devices),
            "max_active_connections": self.max_active_connections,
            "sessions_ok": self.sessions_ok,
        }
