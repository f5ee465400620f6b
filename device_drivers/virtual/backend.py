"""bleak backends over a bumble central: ``BleakScanner(backend=...)`` / ``BleakClient(..., backend=...)``.

bleak's facades take a backend *class* (bleak ``__init__.py``: ``backend: type[BaseBleakClient]``),
so a :class:`~device_drivers.virtual.radio.VirtualRadio` hands out subclasses bound to its
:class:`~device_drivers.virtual.central.VirtualCentral` (``radio.scanner_backend``,
``radio.client_backend``). The backends implement bleak 3.x's ``BaseBleakScanner`` and
``BaseBleakClient`` contracts (bleak/backends/scanner.py, client.py of the installed version):

* discovery fills ``seen_devices`` and calls the detection callbacks with ``AdvertisementData``
  decoded from the real advertising PDUs;
* ``connect(pair, settle_delay_s=0.0)`` opens an LE connection, waits ``settle_delay_s`` before the
  first ATT request (the A&D settle, device_drivers.quirks.ConnectionQuirks), exchanges the ATT MTU, re-encrypts with the stored bond
  (as BlueZ does for a bonded device) or pairs when asked, and discovers the whole GATT database into
  a ``BleakGATTServiceCollection``;
* reads, writes, notifications and indications go over ATT; ATT errors become
  ``BleakGATTProtocolError`` with the ATT error code, a link lost mid-request becomes ``BleakError``.

Differences from BlueZ, on purpose: pairing happens only when asked (``pair=True`` or
``client.pair()``), never implicitly on an "insufficient encryption" error, so a test can see a meter
refuse an unbonded client. Passkeys come from the radio's agent or ``client.pair(passkey=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble import att, core
from bumble.core import UUID
from bumble.device import Connection, Peer
from bumble.gatt_client import CharacteristicProxy, ServiceProxy
from bumble.hci import HCI_Error

from device_drivers.virtual.central import SeenAdvertisement, VirtualCentral

logger = logging.getLogger(__name__)

#: The ATT MTU the virtual central asks for (BlueZ asks for 517; meters answer with theirs).
REQUESTED_ATT_MTU = 247
#: ATT header bytes in a Write Command (opcode + handle): payload = MTU - 3 (Core Vol 3 Part F 3.4.5.3).
ATT_WRITE_HEADER_LENGTH = 3
#: bumble's connection timeout when the facade gives none.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: How long a disconnect may take before the link is considered gone.
DISCONNECT_TIMEOUT_S = 5.0
#: A bumble-level pairing wait (SMP allows 30 s per transaction, Core Vol 3 Part H 3.4).
PAIRING_TIMEOUT_S = 30.0

_T = TypeVar("_T")


def bumble_uuid_to_str(uuid: UUID) -> str:
    """bleak's UUID form: lower-case, dashed, 128-bit."""
    little_endian = uuid.to_bytes(force_128=True)
    hex_be = bytes(reversed(little_endian)).hex()
    return f"{hex_be[0:8]}-{hex_be[8:12]}-{hex_be[12:16]}-{hex_be[16:20]}-{hex_be[20:32]}"


def _properties(flags: int) -> list[CharacteristicPropertyName]:
    return [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if flags & bit]


class VirtualDeviceDetails:
    """``BLEDevice.details`` for devices found by the virtual scanner."""

    def __init__(self, advertisement: SeenAdvertisement) -> None:
        self.advertisement = advertisement

    def __repr__(self) -> str:
        return f"VirtualDeviceDetails({self.advertisement.address})"


class VirtualBleakScanner(BaseBleakScanner):
    """``BaseBleakScanner`` over the virtual central. Use ``VirtualRadio.scanner_backend``."""

    _central: ClassVar[VirtualCentral | None] = None

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._scanning_mode = scanning_mode
        self._remove_listener: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def _require_central(cls) -> VirtualCentral:
        if cls._central is None:
            raise BleakError("use VirtualRadio.scanner_backend: this backend class is not bound to a radio")
        return cls._central

    async def start(self) -> None:
        central = self._require_central()
        self.seen_devices = {}
        if self._remove_listener is None:
            task = asyncio.current_task()
            requested = _cancellations_requested(task)
            self._remove_listener = await central.add_advertisement_listener(self._on_advertisement)
            if _cancellation_dropped(task, requested):
                # Stopped as the adapter confirmed the scan: a caller that sees start fail never
                # stops this scanner, so it is stopped here before the stop goes on.
                await self.stop()
                raise asyncio.CancelledError

    async def stop(self) -> None:
        remove, self._remove_listener = self._remove_listener, None
        if remove is not None:
            task = asyncio.current_task()
            requested = _cancellations_requested(task)
            await remove()
            _raise_dropped_cancellation(task, requested)

    def _on_advertisement(self, seen: SeenAdvertisement) -> None:
        service_uuids = list(seen.service_uuids)
        if not self.is_allowed_uuid(service_uuids):
            return
        advertisement_data = AdvertisementData(
            local_name=seen.local_name,
            manufacturer_data=dict(seen.manufacturer_data),
            service_data=dict(seen.service_data),
            service_uuids=service_uuids,
            tx_power=seen.tx_power,
            rssi=seen.rssi,
            platform_data=(seen,),
        )
        device = self.create_or_update_device(
            seen.address, seen.address, seen.local_name, VirtualDeviceDetails(seen), advertisement_data
        )
        self.call_detection_callbacks(device, advertisement_data)


class VirtualBleakClient(BaseBleakClient):
    """``BaseBleakClient`` over the virtual central. Use ``VirtualRadio.client_backend``."""

    _central: ClassVar[VirtualCentral | None] = None

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        services: set[str] | None = None,
        timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self.address = self.address.upper()
        self._device_name: str | None = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._service_filter = services
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._disconnecting = False
        self._disconnected = asyncio.Event()
        self._subscriptions: dict[int, Callable[[bytes], None]] = {}

    @classmethod
    def _require_central(cls) -> VirtualCentral:
        if cls._central is None:
            raise BleakError("use VirtualRadio.client_backend: this backend class is not bound to a radio")
        return cls._central

    # -- properties --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        if self._device_name:
            return self._device_name
        central = self._central
        seen = central.last_seen(self.address) if central is not None else None
        if seen is not None and seen.local_name:
            return seen.local_name
        return self.address

    @property
    def mtu_size(self) -> int:
        peer = self._require_peer()
        mtu: int = peer.gatt_client.mtu
        return mtu

    @property
    def is_connected(self) -> bool:
        return self._connection is not None and not self._disconnected.is_set()

    @property
    def connection(self) -> Connection | None:
        """The bumble connection (for tests that need to look below bleak)."""
        return self._connection

    # -- connectivity ------------------------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        central = self._require_central()
        if self.is_connected:
            return
        task = asyncio.current_task()
        requested = _cancellations_requested(task)
        try:
            connection = await central.connect(self.address, timeout_s=self._timeout)
        except core.TimeoutError as error:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found (not advertising)"
            ) from error
        except core.BaseBumbleError as error:
            raise BleakError(f"connection to {self.address} failed: {error}") from error
        self._connection = connection
        self._disconnected = asyncio.Event()
        self._disconnecting = False
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        if connection.device.connections.get(connection.handle) is not connection:
            # The meter hung up in the loop turns between the link coming up and the listener above:
            # bumble announced that disconnection to no one (Device.on_disconnection drops the
            # connection from Device.connections as it emits it).
            self._disconnected.set()
        self._peer = Peer(connection)
        try:
            # A stop that met the adapter's answer to the connection request: the link is released
            # below instead of being used.
            _raise_dropped_cancellation(task, requested)
            if self._disconnected.is_set():
                raise BleakError(f"{self.address}: disconnected while connecting")
            settle_delay_s = float(kwargs.get("settle_delay_s", 0.0))
            if settle_delay_s > 0:
                await asyncio.sleep(settle_delay_s)
            await self._gatt(self._peer.request_mtu(REQUESTED_ATT_MTU))
            if await central.is_bonded(self.address):
                await self._encrypt_with_bond()
            elif pair:
                await self._pair_connection()
            await self._discover()
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None or self._disconnected.is_set():
            self._connection = None
            return
        task = asyncio.current_task()
        requested = _cancellations_requested(task)
        self._disconnecting = True
        # The request and the wait for its event share one bound: for a link it no longer knows,
        # bumble's controller answers "pending" and sends no Disconnection Complete
        # (bumble/controller.py on_hci_disconnect_command), and bumble's Device.disconnect waits
        # for that event with no timeout (bumble/device.py).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                with contextlib.suppress(core.BaseBumbleError, HCI_Error):
                    await connection.disconnect()
                # A cancellation bumble's HCI wait dropped (the bound's own, or the caller's, raised
                # below) ends the wait here: nothing would cancel it again.
                if not _cancellation_dropped(task, requested):
                    await self._disconnected.wait()
        self._connection = None
        _raise_dropped_cancellation(task, requested)

    def _on_disconnection(self, reason: int) -> None:
        self._disconnected.set()
        self._subscriptions.clear()
        logger.info("virtual link closed", extra={"peer_address": self.address, "reason": reason})
        if not self._disconnecting and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, passkey: int | None = None, **kwargs: Any) -> None:
        """Pair and bond. ``passkey``: what the user types when the meter shows a PIN."""
        central = self._require_central()
        connection = self._require_connection()
        if passkey is not None:
            central.offer_passkey(self.address, passkey)
        if connection.is_encrypted and await central.is_bonded(self.address):
            return
        await self._pair_connection()

    async def unpair(self) -> None:
        central = self._require_central()
        await central.forget(self.address)
        if self.is_connected:
            await self.disconnect()

    async def _pair_connection(self) -> None:
        connection = self._require_connection()
        try:
            async with asyncio.timeout(PAIRING_TIMEOUT_S):
                await self._cancel_safe(connection.pair())
        except core.ProtocolError as error:
            raise BleakError(f"pairing with {self.address} failed: {error.error_name}") from error
        except TimeoutError as error:
            raise BleakError(f"pairing with {self.address} timed out") from error

    async def _encrypt_with_bond(self) -> None:
        connection = self._require_connection()
        try:
            await self._cancel_safe(connection.encrypt())
        except (core.BaseBumbleError, HCI_Error) as error:
            # The meter lost or replaced its bond (e.g. an Omron-like meter re-paired with another
            # host). The link stays up unencrypted; protected attributes will refuse us.
            logger.warning(
                "re-encryption with stored bond failed",
                extra={"peer_address": self.address, "error": type(error).__name__},
            )

    async def _discover(self) -> None:
        peer = self._require_peer()
        uuids = [UUID(uuid) for uuid in self._service_filter] if self._service_filter else []
        proxies: list[ServiceProxy] = await self._gatt(peer.discover_services(uuids))
        collection = BleakGATTServiceCollection()
        mtu = self.mtu_size

        def max_write_without_response() -> int:
            return mtu - ATT_WRITE_HEADER_LENGTH

        for service_proxy in proxies:
            service = BleakGATTService(
                service_proxy, service_proxy.handle, bumble_uuid_to_str(service_proxy.uuid)
            )
            collection.add_service(service)
            characteristics: list[CharacteristicProxy[bytes]] = await self._gatt(
                service_proxy.discover_characteristics()
            )
            for characteristic_proxy in characteristics:
                characteristic = BleakGATTCharacteristic(
                    characteristic_proxy,
                    characteristic_proxy.handle,
                    bumble_uuid_to_str(characteristic_proxy.uuid),
                    _properties(int(characteristic_proxy.properties)),
                    max_write_without_response,
                    service,
                )
                collection.add_characteristic(characteristic)
                for descriptor_proxy in await self._gatt(characteristic_proxy.discover_descriptors()):
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor_proxy,
                            descriptor_proxy.handle,
                            bumble_uuid_to_str(descriptor_proxy.type),
                            characteristic,
                        )
                    )
        self.services = collection

    # -- I/O ---------------------------------------------------------------------------------------

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return await self._read_handle(characteristic.handle, use_cached)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return await self._read_handle(descriptor.handle, use_cached)

    async def _read_handle(self, handle: int, use_cached: bool) -> bytearray:
        peer = self._require_peer()
        if use_cached and handle in peer.gatt_client.cached_values:
            return bytearray(peer.gatt_client.cached_values[handle][1])
        value: bytes = await self._gatt(peer.gatt_client.read_value(handle))
        return bytearray(value)

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        peer = self._require_peer()
        await self._gatt(
            peer.gatt_client.write_value(characteristic.handle, bytes(data), with_response=response)
        )

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        peer = self._require_peer()
        await self._gatt(peer.gatt_client.write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        peer = self._require_peer()
        proxy: CharacteristicProxy[bytes] = characteristic.obj

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscriptions[characteristic.handle] = on_value
        try:
            # bleak's contract: prefer notifications when a characteristic has both.
            await self._gatt(peer.gatt_client.subscribe(proxy, on_value, prefer_notify=True))
        except BaseException:
            self._subscriptions.pop(characteristic.handle, None)
            for table in (peer.gatt_client.notification_subscribers, peer.gatt_client.indication_subscribers):
                table.pop(characteristic.handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._require_peer()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        await self._gatt(peer.gatt_client.unsubscribe(proxy, subscriber))

    # -- helpers -----------------------------------------------------------------------------------

    def _require_connection(self) -> Connection:
        if self._connection is None or self._disconnected.is_set():
            raise BleakError("Not connected")
        return self._connection

    def _require_peer(self) -> Peer:
        self._require_connection()
        if self._peer is None:  # pragma: no cover - set with the connection
            raise BleakError("Not connected")
        return self._peer

    async def _cancel_safe(self, awaitable: Awaitable[_T]) -> _T:
        """Await a bumble call; a pending ATT/SMP request cancelled by a lost link becomes BleakError.

        bumble cancels the pending response future when the link drops (gatt_client.on_disconnection);
        that must not look like cancellation of the caller's task. The caller's own cancellation is
        never lost, even where bumble's wait dropped it (see :func:`_raise_dropped_cancellation`).
        """
        task = asyncio.current_task()
        requested = _cancellations_requested(task)
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if task is not None and task.cancelling() > 0:
                raise
            raise BleakError(f"{self.address}: disconnected during the request") from None
        _raise_dropped_cancellation(task, requested)
        return result

    async def _gatt(self, awaitable: Coroutine[Any, Any, _T]) -> _T:
        try:
            return await self._cancel_safe(awaitable)
        except att.ATT_Error as error:
            raise BleakGATTProtocolError(error.error_code) from error
        except core.TimeoutError as error:
            raise TimeoutError(f"{self.address}: GATT request timed out") from error
        except core.InvalidStateError as error:
            raise BleakError(f"{self.address}: {error}") from error


def _cancellations_requested(task: asyncio.Task[Any] | None) -> int:
    return 0 if task is None else task.cancelling()


def _cancellation_dropped(task: asyncio.Task[Any] | None, requested_before: int) -> bool:
    return task is not None and task.cancelling() > requested_before


def _raise_dropped_cancellation(task: asyncio.Task[Any] | None, requested_before: int) -> None:
    """Raise CancelledError if ``task`` was cancelled during a bumble call that returned normally.

    bumble waits for HCI and ATT answers with ``asyncio.wait_for`` (HCI: bumble/host.py
    ``Host._send_command`` under ``Device.command_timeout``; ATT: bumble/gatt_client.py
    ``send_request``), which on Python 3.11 drops a cancellation that arrives together with the
    answer (CPython gh-86296). The gateway stops its scanner and meter sessions by cancelling
    them: a dropped cancellation would keep scanning, a session, and the gateway, running.
    """
    if _cancellation_dropped(task, requested_before):
        raise asyncio.CancelledError
