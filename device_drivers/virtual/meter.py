"""The common part of every virtual meter: a bumble peripheral with DIS, Battery, a clock and bonds.

A :class:`VirtualMeter` is a real GATT server: a bumble ``Device`` whose controller sits on a
``LocalLink`` (in-process, or in the simulator process) or on a USB Bluetooth controller through
bumble's transports (``attach_transport("usb:0")``), where a real gateway with BlueZ can reach it.

What every meter has (reference/ble-health-profiles.md §2.1, §2.6):

* Device Information 0x180A: manufacturer, model, serial, hardware and firmware revision;
* Battery 0x180F: Battery Level 0x2A19 (read, notify);
* a clock the collector can read and set: Current Time Service 0x1805 (Current Time 0x2A2B read,
  write, notify; Local Time Information 0x2A0F read), or Date Time 0x2A08 inside the measurement
  service (Roche), or none (TaiDoc) — per persona (these services: :mod:`.meter_services`);
* a bond policy from its persona: pairing method, bonds kept, pairing mode;
* an advertising policy from its persona.

Subclasses add the measurement service and the record transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable
from typing import Any, Required, TypedDict

from bumble import att, hci, pairing
from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import (
    GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
    Characteristic,
    Descriptor,
    Service,
)
from bumble.host import Host
from bumble.keys import MemoryKeyStore
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.controller import STOP_TIMEOUT_S, VirtualController
from device_drivers.virtual.meter_services import MeterClock, StandardServices
from device_drivers.virtual.personas import (
    AdvertisingPolicy,
    PairingMethod,
    Persona,
    TimeCharacteristic,
)

logger = logging.getLogger(__name__)

# AD structures (Core Supplement Part A 1.3 flags: LE General Discoverable, BR/EDR not supported).
AD_FLAGS_LE_GENERAL_NO_BREDR = 0x06
#: Advertising interval on the virtual link (ms): real meters use 100 ms to 1 s; every controller on
#: the link handles every advertising PDU, so shorter intervals cost CPU with many meters.
ADVERTISING_INTERVAL_MS = 100.0
PASSKEY_LIMIT = 1_000_000

ATT_ERROR_INSUFFICIENT_ENCRYPTION = 0x0F


class MeterOptions(TypedDict, total=False):
    """Keyword arguments every meter takes besides its persona (see :class:`VirtualMeter`)."""

    clock: Required[SimulationClock]
    serial_number: Required[str]
    address: str | None
    fixed_passkey: int | None
    utc_offset: dt.timedelta
    clock_drift: dt.timedelta


class VirtualMeterError(Exception):
    """A virtual meter was used wrongly (started twice, not attached...)."""


class _MeterPairingDelegate(pairing.PairingDelegate):
    def __init__(self, meter: VirtualMeter, connection: Connection) -> None:
        io = (
            pairing.PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY
            if meter.persona.pairing is PairingMethod.PASSKEY_DISPLAY
            else pairing.PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT
        )
        super().__init__(io_capability=io)
        self._meter = meter
        self._connection = connection

    async def accept(self) -> bool:
        return await self._meter._accept_pairing(self._connection)

    async def generate_passkey(self) -> int:
        passkey = self._meter.displayed_passkey
        if passkey is None:  # pragma: no cover - chosen in accept()
            passkey = secrets.randbelow(PASSKEY_LIMIT)
            self._meter.displayed_passkey = passkey
        return passkey

    async def display_number(self, number: int, digits: int) -> None:
        self._meter.displayed_passkey = number


class VirtualMeter(StandardServices):
    """Base class of the virtual cuff and glucose meter."""

    def __init__(
        self,
        persona: Persona,
        *,
        clock: SimulationClock,
        serial_number: str,
        address: str | None = None,
        fixed_passkey: int | None = None,
        utc_offset: dt.timedelta = dt.timedelta(0),
        clock_drift: dt.timedelta = dt.timedelta(0),
    ) -> None:
        self.persona = persona
        self.simulation_clock = clock
        self.clock = MeterClock(clock, utc_offset=utc_offset, drift=clock_drift)
        self.serial_number = serial_number
        self.address = (address or str(hci.Address.generate_static_address())).upper().split("/")[0]
        self.fixed_passkey = fixed_passkey
        #: The PIN on the meter's display during passkey pairing (what the user reads off).
        self.displayed_passkey: int | None = None
        #: Omron "-P-": new pairings accepted, an old bond may be replaced.
        self.pairing_mode = False
        self.battery_level_percent = persona.battery_level_percent
        self.device: Device | None = None
        self._transport: Transport | None = None
        self._advertising_until: dt.datetime | None = None
        self._advertising_task: asyncio.Task[None] | None = None
        self._time_written: set[int] = set()
        self._started = False
        self._listeners: list[Callable[[str], None]] = []
        self._pending_updates: set[asyncio.Task[None]] = set()
        self._ending: set[int] = set()
        self._advertising_lock = asyncio.Lock()
        self._on_link: tuple[LocalLink, VirtualController] | None = None
        #: Real seconds an advertising window lasts at least (see :meth:`advertising_window_s`).
        self.minimum_advertising_window_real_s = 0.0
        #: Per connection, in order: real seconds from the link coming up to the central's first ATT
        #: request (the A&D settle delay is judged here, where the cuff would see it).
        self.first_request_after_s: list[float] = []
        self._connected_at: dict[int, float] = {}

    # -- wiring ------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.persona.local_name

    def attach(self, link: LocalLink) -> None:
        """Give the meter a controller on an in-process link."""
        controller = VirtualController(f"meter-{self.serial_number}", link=link)
        self._on_link = (link, controller)
        host = Host(controller, AsyncPipeSink(controller))
        self.device = Device(name=self.name, address=hci.Address(self.address), host=host)

    async def attach_transport(self, transport_spec: str) -> None:
        """Run the meter on a controller reached through a bumble transport, e.g. ``usb:0``.

        The meter then advertises on the real radio with its static random address, and a gateway
        with BlueZ can scan, pair and sync with it (docs/virtual-meters.md, "Real radio").
        """
        self._transport = await open_transport(transport_spec)
        host = Host(self._transport.source, self._transport.sink)
        self.device = Device(name=self.name, address=hci.Address(self.address), host=host)

    def _require_device(self) -> Device:
        if self.device is None:
            raise VirtualMeterError("attach the meter to a link or transport first")
        return self.device

    async def start(self) -> None:
        device = self._require_device()
        if self._started:
            return
        device.keystore = MemoryKeyStore()
        device.pairing_config_factory = self._pairing_config
        device.add_services(self._build_services(device))
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        device.l2cap_channel_manager.register_fixed_channel(att.ATT_CID, self._on_att_pdu)
        await device.power_on()
        self._started = True
        await self.update_advertising()

    async def stop(self) -> None:
        if self._advertising_task is not None:
            self._advertising_task.cancel()
            self._advertising_task = None
        device = self.device
        was_started, self._started = self._started, False
        # Let in-flight HCI commands finish: a command cancelled mid-way leaves bumble's host
        # waiting on a response future that is already cancelled.
        if self._pending_updates:
            await asyncio.wait(list(self._pending_updates), timeout=STOP_TIMEOUT_S)
        if device is not None and was_started:
            # Each HCI step is bounded: a link whose central is already gone never answers a
            # disconnect (bumble's link raises in the controller's callback instead), and a
            # switched-off meter must not hang whoever stops it.
            with contextlib.suppress(Exception):
                if device.is_advertising:
                    await asyncio.wait_for(device.stop_advertising(), STOP_TIMEOUT_S)
            for connection in list(device.connections.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.disconnect(), STOP_TIMEOUT_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(device.power_off(), STOP_TIMEOUT_S)
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        if self._on_link is not None:
            link, controller = self._on_link
            link.remove_controller(controller)
            self._on_link = None

    # -- services ----------------------------------------------------------------------------------

    def _build_services(self, device: Device) -> list[Service]:
        services = [self._device_information_service(), self._battery_service(device)]
        if self.persona.time_characteristic is TimeCharacteristic.CURRENT_TIME:
            services.append(self._current_time_service(device))
        services.extend(self.measurement_services(device))
        return services

    def measurement_services(self, device: Device) -> list[Service]:
        """The Blood Pressure or Glucose service (subclasses)."""
        raise NotImplementedError

    def advertised_service_uuid(self) -> int:
        raise NotImplementedError

    def protected_permissions(self, *, write: bool = False) -> att.Attribute.Permissions:
        """Read (or write) permission of measurement data: encryption required when bonding is."""
        permissions = att.Attribute.Permissions.READABLE
        if write:
            permissions |= att.Attribute.Permissions.WRITEABLE
        if self.persona.require_bonding:
            permissions |= att.Attribute.Permissions.READ_REQUIRES_ENCRYPTION
            if write:
                permissions |= att.Attribute.Permissions.WRITE_REQUIRES_ENCRYPTION
        return permissions

    def protect_cccd(self, device: Device, characteristic: Characteristic[Any]) -> None:
        """Give ``characteristic`` a CCCD that refuses an unencrypted link when bonding is required.

        bumble adds an open CCCD unless the characteristic already has one (gatt_server.add_service).
        """
        characteristic.descriptors = [
            Descriptor(
                GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                self.protected_permissions(write=True),
                device.gatt_server.make_descriptor_value(characteristic),
            )
        ]

    # -- connections, bonds, pairing ---------------------------------------------------------------

    def _on_att_pdu(self, connection_handle: int, pdu: bytes) -> None:
        """Every ATT PDU reaches the GATT server through here; the first request is timed."""
        is_request = bool(pdu) and not pdu[0] & 1  # even op codes go client -> server
        connected_at = self._connected_at.pop(connection_handle, None) if is_request else None
        if connected_at is not None:
            self.first_request_after_s.append(asyncio.get_running_loop().time() - connected_at)
        self._require_device().on_gatt_pdu(connection_handle, pdu)

    def _on_connection(self, connection: Connection) -> None:
        self._connected_at[connection.handle] = asyncio.get_running_loop().time()
        self._emit("connected")
        connection.on(Connection.EVENT_PAIRING, lambda _keys: self._on_paired())
        connection.on(
            Connection.EVENT_DISCONNECTION, lambda reason: self._on_disconnection(connection, reason)
        )
        self.on_connected(connection)

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        self._time_written.discard(connection.handle)
        self._connected_at.pop(connection.handle, None)
        self.on_disconnected(connection)
        self._emit("disconnected")
        if self._started:
            task = asyncio.get_running_loop().create_task(self.update_advertising())
            task.add_done_callback(_log_task_error)
            self._pending_updates.add(task)
            task.add_done_callback(self._pending_updates.discard)

    def _on_paired(self) -> None:
        self._emit("paired")
        if self.persona.pairing_requires_mode and self.pairing_mode:
            # The "-P-" mode ends once a host has bonded (hass-omron troubleshooting, §2.7).
            self.pairing_mode = False

    def on_connected(self, connection: Connection) -> None:
        """Hook for subclasses."""

    def on_disconnected(self, connection: Connection) -> None:
        """Hook for subclasses."""

    def is_encrypted(self, connection: Connection) -> bool:
        return bool(connection.is_encrypted)

    def link_allowed(self, connection: Connection) -> bool:
        """Whether measurement data may flow on ``connection`` (bonded and encrypted if required)."""
        return not self.persona.require_bonding or self.is_encrypted(connection)

    def _pairing_config(self, connection: Connection) -> pairing.PairingConfig:
        return pairing.PairingConfig(
            sc=True,
            mitm=self.persona.pairing is PairingMethod.PASSKEY_DISPLAY,
            bonding=True,
            delegate=_MeterPairingDelegate(self, connection),
        )

    async def bonded_hosts(self) -> list[str]:
        keystore = self._require_device().keystore
        if keystore is None:
            return []
        return [name for name, _keys in await keystore.get_all()]

    async def _accept_pairing(self, connection: Connection) -> bool:
        persona = self.persona
        if persona.pairing is PairingMethod.NONE:
            logger.info("pairing refused: meter does not pair", extra={"meter_serial": self.serial_number})
            return False
        if persona.pairing_requires_mode and not self.pairing_mode:
            logger.info("pairing refused: not in pairing mode", extra={"meter_serial": self.serial_number})
            return False
        hosts = await self.bonded_hosts()
        peer = str(connection.peer_address)
        if persona.max_bonds is not None and peer not in hosts and len(hosts) >= persona.max_bonds:
            if not self.pairing_mode:
                logger.info("pairing refused: bond table full", extra={"meter_serial": self.serial_number})
                return False
            keystore = self._require_device().keystore
            assert keystore is not None
            for old in hosts[: len(hosts) - persona.max_bonds + 1]:
                await keystore.delete(old)
                self.on_bond_removed(old)
        if persona.pairing is PairingMethod.PASSKEY_DISPLAY:
            self.displayed_passkey = (
                self.fixed_passkey if self.fixed_passkey is not None else secrets.randbelow(PASSKEY_LIMIT)
            )
        return True

    def on_bond_removed(self, host: str) -> None:
        """Hook: a bond was dropped to make room for a new host."""

    async def enter_pairing_mode(self) -> None:
        """Hold the BT button: accept a new bond and advertise (Omron "-P-", §2.7)."""
        self.pairing_mode = True
        await self.update_advertising(force_window=True)

    async def leave_pairing_mode(self) -> None:
        self.pairing_mode = False
        await self.update_advertising()

    async def end_link(self, connection: Connection) -> None:
        """The meter ends ``connection`` itself (after a transfer, or a fault injected mid-way).

        The task doing this must not be cancelled by the disconnection it causes: an HCI command
        cancelled mid-way leaves bumble's host with a dangling response future.
        """
        self._ending.add(connection.handle)
        try:
            await connection.disconnect()
        finally:
            self._ending.discard(connection.handle)

    def ending_link(self, connection: Connection) -> bool:
        return connection.handle in self._ending

    async def drop_links(self) -> None:
        """The meter walks out of range: every link ends now."""
        device = self._require_device()
        for connection in list(device.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()

    # -- advertising -------------------------------------------------------------------------------

    def holds_records(self) -> bool:
        raise NotImplementedError

    def advertising_data(self) -> bytes:
        uuid_16 = self.advertised_service_uuid()
        return bytes(
            AdvertisingData(
                [
                    (AdvertisingData.FLAGS, bytes([AD_FLAGS_LE_GENERAL_NO_BREDR])),
                    (
                        AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                        uuid_16.to_bytes(2, "little"),
                    ),
                    (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
                ]
            )
        )

    def should_advertise(self) -> bool:
        policy = self.persona.advertising
        if self.pairing_mode:
            return True
        if policy is AdvertisingPolicy.ALWAYS:
            return True
        if policy is AdvertisingPolicy.WHEN_HOLDING_RECORDS:
            return self.holds_records()
        until = self._advertising_until
        return until is not None and self.simulation_clock.now() < until

    async def update_advertising(self, *, force_window: bool = False) -> None:
        """Start or stop advertising per the persona (called after measurements and links)."""
        async with self._advertising_lock:
            await self._update_advertising(force_window=force_window)

    async def _update_advertising(self, *, force_window: bool) -> None:
        device = self.device
        if device is None or not self._started:
            return
        if force_window:
            self._open_advertising_window()
        connected = bool(device.connections)
        want = self.should_advertise() and not connected
        # bumble drops the legacy advertising set from its table when a connection ends it, but
        # keeps the reference; restarting would then fail on the stale set.
        stale = device.legacy_advertising_set
        if stale is not None and stale.advertising_handle not in device.extended_advertising_sets:
            device.legacy_advertising_set = None
        if want and not device.is_advertising:
            await device.start_advertising(
                advertising_data=self.advertising_data(),
                advertising_interval_min=ADVERTISING_INTERVAL_MS,
                advertising_interval_max=ADVERTISING_INTERVAL_MS,
            )
            self._emit("advertising")
        elif not want and device.is_advertising:
            await device.stop_advertising()
            self._emit("silent")

    def advertising_window_s(self) -> float:
        """Simulated seconds the radio stays on: the persona's window, or longer on a fast clock.

        A gateway scans in real time; at 3600x a 120 s window would last 33 ms, shorter than one
        advertising interval. ``minimum_advertising_window_real_s`` keeps it reachable.
        """
        floor = self.minimum_advertising_window_real_s * self.simulation_clock.speed
        return max(self.persona.advertising_window_s, floor)

    def _open_advertising_window(self) -> None:
        window_s = self.advertising_window_s()
        self._advertising_until = self.simulation_clock.now() + dt.timedelta(seconds=window_s)
        if self._advertising_task is not None:
            self._advertising_task.cancel()
        self._advertising_task = asyncio.get_running_loop().create_task(self._close_window_later(window_s))

    async def _close_window_later(self, window_s: float) -> None:
        await self.simulation_clock.sleep(window_s)
        self._advertising_until = None
        await self.update_advertising()

    async def close_advertising_window(self) -> None:
        """The radio goes back to sleep now: an open advertising window ends early."""
        if self._advertising_task is not None:
            self._advertising_task.cancel()
            self._advertising_task = None
        self._advertising_until = None
        await self.update_advertising()

    async def measurement_taken(self) -> None:
        """Called after a new record: AFTER_MEASUREMENT personas switch their radio on for a while."""
        if self.persona.advertising is AdvertisingPolicy.AFTER_MEASUREMENT:
            self._open_advertising_window()
        self._emit("measurement")
        await self.update_advertising()

    # -- observation -------------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(event)`` for "connected", "disconnected", "advertising", "silent", "transfer_done"..."""
        self._listeners.append(listener)

    def _emit(self, event: str) -> None:
        for listener in list(self._listeners):
            listener(event)


def _log_task_error(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.error("virtual meter background task failed", exc_info=error)
