"""A bumble device in the central role: the "adapter" behind the virtual bleak backend.

One :class:`VirtualCentral` plays the part BlueZ plays on a Raspberry Pi: it owns the host stack,
scans, opens LE connections one at a time, pairs and keeps the bonds (a key store), and answers
passkey requests through an agent. Every bleak scanner and client made by one
:class:`~device_drivers.virtual.radio.VirtualRadio` shares it, as every ``BleakClient`` on Linux shares
``hci0``.

The central's controller is either a bumble ``Controller`` on an in-process ``LocalLink`` (tests,
demo) or any bumble HCI transport, e.g. ``tcp-client:127.0.0.1:7001`` to reach a simulator process
that holds the link (the way bumble's ``controllers`` app links controllers), or ``usb:0`` for a real
dongle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bumble import hci, pairing
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Connection, Device
from bumble.host import Host
from bumble.keys import KeyStore, MemoryKeyStore
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

from device_drivers.virtual.controller import STOP_TIMEOUT_S, VirtualController

logger = logging.getLogger(__name__)

#: A passkey agent: given the peer's address, return the 6-digit passkey the user reads off the
#: meter's display, or ``None`` to refuse. Plays the part of a BlueZ agent (reliability.md §5.4:
#: BlueZ pairing without an agent fails).
PasskeyAgent = Callable[[str], Awaitable[int | None]]

AdvertisementListener = Callable[["SeenAdvertisement"], None]

#: The central's own static random address on the virtual link.
DEFAULT_CENTRAL_ADDRESS = "C0:FF:EE:00:00:01"

# AD types (Bluetooth Core Supplement, Part A, §1; bumble.core.AdvertisingData.Type).
AD_TYPE_INCOMPLETE_16_BIT_UUIDS = 0x02
AD_TYPE_COMPLETE_16_BIT_UUIDS = 0x03
AD_TYPE_INCOMPLETE_128_BIT_UUIDS = 0x06
AD_TYPE_COMPLETE_128_BIT_UUIDS = 0x07
AD_TYPE_SHORTENED_LOCAL_NAME = 0x08
AD_TYPE_COMPLETE_LOCAL_NAME = 0x09
AD_TYPE_TX_POWER_LEVEL = 0x0A
AD_TYPE_SERVICE_DATA_16_BIT = 0x16
AD_TYPE_MANUFACTURER_SPECIFIC_DATA = 0xFF
COMPANY_ID_LENGTH = 2
UUID_16_LENGTH = 2
UUID_128_LENGTH = 16

BLUETOOTH_BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid16_to_str(uuid_16: int) -> str:
    """The 128-bit string form bleak uses for a 16-bit SIG UUID."""
    return f"0000{uuid_16:04x}{BLUETOOTH_BASE_UUID_SUFFIX}"


def uuid128_le_to_str(little_endian: bytes) -> str:
    """A 128-bit UUID as carried over the air (little-endian) in bleak's string form."""
    hex_be = bytes(reversed(little_endian)).hex()
    return f"{hex_be[0:8]}-{hex_be[8:12]}-{hex_be[12:16]}-{hex_be[16:20]}-{hex_be[20:32]}"


@dataclass(frozen=True)
class SeenAdvertisement:
    """One advertising report, decoded into the fields bleak's ``AdvertisementData`` carries."""

    address: str
    bumble_address: hci.Address
    local_name: str | None
    service_uuids: tuple[str, ...]
    service_data: dict[str, bytes] = field(default_factory=dict)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    tx_power: int | None = None
    rssi: int = 0
    connectable: bool = True
    raw: bytes = b""


def decode_advertisement(advertisement: Advertisement) -> SeenAdvertisement:
    """Decode a bumble advertising report (AD structures: Core Supplement Part A)."""
    local_name: str | None = None
    uuids: list[str] = []
    service_data: dict[str, bytes] = {}
    manufacturer_data: dict[int, bytes] = {}
    tx_power: int | None = None
    data: AdvertisingData = advertisement.data
    for ad_type, value in data.ad_structures:
        kind = int(ad_type)
        if kind in (AD_TYPE_COMPLETE_LOCAL_NAME, AD_TYPE_SHORTENED_LOCAL_NAME):
            if local_name is None or kind == AD_TYPE_COMPLETE_LOCAL_NAME:
                local_name = value.decode("utf-8", errors="replace")
        elif kind in (AD_TYPE_COMPLETE_16_BIT_UUIDS, AD_TYPE_INCOMPLETE_16_BIT_UUIDS):
            for offset in range(0, len(value) - 1, UUID_16_LENGTH):
                uuid_16 = int.from_bytes(value[offset : offset + UUID_16_LENGTH], "little")
                uuids.append(uuid16_to_str(uuid_16))
        elif kind in (AD_TYPE_COMPLETE_128_BIT_UUIDS, AD_TYPE_INCOMPLETE_128_BIT_UUIDS):
            for offset in range(0, len(value) - UUID_128_LENGTH + 1, UUID_128_LENGTH):
                uuids.append(uuid128_le_to_str(value[offset : offset + UUID_128_LENGTH]))
        elif kind == AD_TYPE_SERVICE_DATA_16_BIT and len(value) >= UUID_16_LENGTH:
            uuid_16 = int.from_bytes(value[:UUID_16_LENGTH], "little")
            service_data[uuid16_to_str(uuid_16)] = bytes(value[UUID_16_LENGTH:])
        elif kind == AD_TYPE_MANUFACTURER_SPECIFIC_DATA and len(value) >= COMPANY_ID_LENGTH:
            company = int.from_bytes(value[:COMPANY_ID_LENGTH], "little")
            manufacturer_data[company] = bytes(value[COMPANY_ID_LENGTH:])
        elif kind == AD_TYPE_TX_POWER_LEVEL and len(value) == 1:
            tx_power = int.from_bytes(value, "little", signed=True)
    # The accumulator may repeat structures (advertisement + scan response): keep order, drop repeats.
    unique_uuids = tuple(dict.fromkeys(uuids))
    return SeenAdvertisement(
        address=address_key(advertisement.address),
        bumble_address=advertisement.address,
        local_name=local_name,
        service_uuids=unique_uuids,
        service_data=service_data,
        manufacturer_data=manufacturer_data,
        tx_power=tx_power,
        rssi=int(advertisement.rssi),
        connectable=bool(advertisement.is_connectable),
        raw=bytes(advertisement.data_bytes),
    )


def address_key(address: hci.Address) -> str:
    """The address as bleak shows it: ``AA:BB:CC:DD:EE:FF``, no type suffix."""
    return address.to_string(with_type_qualifier=False)


class VirtualCentralError(Exception):
    """The virtual central could not do what was asked (not started, no key store...)."""


class _CentralPairingDelegate(pairing.PairingDelegate):
    """Keyboard+display, like a gateway with an agent: passkeys come from the central's agent."""

    def __init__(self, central: VirtualCentral, peer_address: str) -> None:
        super().__init__(io_capability=pairing.PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT)
        self._central = central
        self._peer_address = peer_address

    async def get_number(self) -> int | None:
        return await self._central.passkey_for(self._peer_address)

    async def compare_numbers(self, number: int, digits: int) -> bool:
        return True

    async def confirm(self, auto: bool = False) -> bool:
        return True


class _GatewayDevice(Device):
    """bumble's ``Device`` as the gateway's host: a connection that completes after the host gave
    up on it is disconnected, as a host does with a link it did not ask for.

    A cancel can cross the controller's LE Connection Complete (Core Specification Vol 4, Part E,
    7.8.13: the attempt may already have succeeded). bumble 0.0.236 then fails an assertion in
    ``on_le_connection`` (no own address type once ``connect`` has returned), and the meter is left
    holding a link the gateway does not know, so it stops advertising until the link drops."""

    def on_le_connection(  # the host emits these positionally (bumble.host, le_connection)
        self,
        connection_handle: int,
        peer_address: hci.Address,
        self_resolvable_address: hci.Address | None,
        peer_resolvable_address: hci.Address | None,
        role: hci.Role,
        connection_interval: int,
        peripheral_latency: int,
        supervision_timeout: int,
    ) -> None:
        if role == hci.Role.CENTRAL and self.connect_own_address_type is None:
            logger.info("late connection dropped", extra={"peer_address": str(peer_address)})
            task = asyncio.get_running_loop().create_task(
                self.send_command(
                    hci.HCI_Disconnect_Command(
                        connection_handle=connection_handle,
                        reason=hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR,
                    )
                )
            )
            _late_disconnects.add(task)
            task.add_done_callback(_late_disconnects.discard)
            return
        super().on_le_connection(
            connection_handle,
            peer_address,
            self_resolvable_address,
            peer_resolvable_address,
            role,
            connection_interval,
            peripheral_latency,
            supervision_timeout,
        )


_late_disconnects: set[asyncio.Task[Any]] = set()


class VirtualCentral:
    """The shared central: scanning, one-at-a-time connection set-up, pairing and bonds."""

    def __init__(
        self,
        device: Device,
        *,
        transport: Transport | None = None,
        passkey_agent: PasskeyAgent | None = None,
        keystore: KeyStore | None = None,
    ) -> None:
        self.device = device
        self._transport = transport
        self.passkey_agent = passkey_agent
        self.device.keystore = keystore if keystore is not None else MemoryKeyStore()
        self.device.pairing_config_factory = self._pairing_config
        self._listeners: dict[object, AdvertisementListener] = {}
        self._scanning_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._seen: dict[str, SeenAdvertisement] = {}
        self._pending_passkeys: dict[str, int] = {}
        self._started = False
        self._on_link: tuple[LocalLink, VirtualController] | None = None
        self.device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def on_link(
        cls,
        link: LocalLink,
        *,
        address: str = DEFAULT_CENTRAL_ADDRESS,
        passkey_agent: PasskeyAgent | None = None,
        keystore: KeyStore | None = None,
    ) -> VirtualCentral:
        """A central whose controller sits on an in-process bumble ``LocalLink``."""
        controller = VirtualController("vitalgate-central", link=link)
        host = Host(controller, AsyncPipeSink(controller))
        device = _GatewayDevice(name="vitalgate-gateway", address=hci.Address(address), host=host)
        central = cls(device, passkey_agent=passkey_agent, keystore=keystore)
        central._on_link = (link, controller)
        return central

    @classmethod
    async def over_transport(
        cls,
        transport_spec: str,
        *,
        address: str = DEFAULT_CENTRAL_ADDRESS,
        passkey_agent: PasskeyAgent | None = None,
        keystore: KeyStore | None = None,
    ) -> VirtualCentral:
        """A central driving a controller through a bumble HCI transport (``tcp-client:...``, ``usb:0``)."""
        transport = await open_transport(transport_spec)
        host = Host(transport.source, transport.sink)
        device = _GatewayDevice(name="vitalgate-gateway", address=hci.Address(address), host=host)
        return cls(device, transport=transport, passkey_agent=passkey_agent, keystore=keystore)

    async def start(self) -> None:
        if self._started:
            return
        await self.device.power_on()
        self._started = True

    async def close(self) -> None:
        # Bounded as VirtualMeter.stop is: a peer that is gone never answers.
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), STOP_TIMEOUT_S)
        if self._started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.device.power_off(), STOP_TIMEOUT_S)
        self._started = False
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        if self._on_link is not None:
            # Off the air: a restarted gateway with the same address must not meet its ghost.
            link, controller = self._on_link
            link.remove_controller(controller)
            self._on_link = None

    # -- scanning ----------------------------------------------------------------------------------

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        seen = decode_advertisement(advertisement)
        self._seen[seen.address] = seen
        for listener in list(self._listeners.values()):
            listener(seen)

    async def add_advertisement_listener(
        self, listener: AdvertisementListener
    ) -> Callable[[], Awaitable[None]]:
        """Start scanning (if this is the first listener) and deliver every report to ``listener``.

        Returns an async callable that removes the listener and stops scanning after the last one.
        """
        await self._require_started()
        token = object()
        async with self._scanning_lock:
            self._listeners[token] = listener
            if not self.device.is_scanning:
                try:
                    await self.device.start_scanning(filter_duplicates=False)
                except BaseException:
                    # A start that failed or was stopped hands no remover back: a listener left
                    # here would go on hearing the meters for an owner that gave up (a stopped gateway).
                    self._listeners.pop(token, None)
                    raise

        async def remove() -> None:
            async with self._scanning_lock:
                self._listeners.pop(token, None)
                if not self._listeners and self.device.is_scanning:
                    await self.device.stop_scanning()

        return remove

    def last_seen(self, address: str) -> SeenAdvertisement | None:
        return self._seen.get(address.upper())

    def bumble_address(self, address: str) -> hci.Address:
        """The typed address for ``address``: as last advertised, else a random static address."""
        seen = self.last_seen(address)
        if seen is not None:
            return seen.bumble_address
        return hci.Address(address.upper(), hci.Address.RANDOM_DEVICE_ADDRESS)

    # -- connections -------------------------------------------------------------------------------

    async def connect(self, address: str, *, timeout_s: float) -> Connection:
        """Open an LE connection; the controller accepts one pending connection at a time."""
        await self._require_started()
        target = self.bumble_address(address)
        async with self._connect_lock:
            try:
                return await self.device.connect(target, timeout=timeout_s)
            except asyncio.CancelledError:
                # The caller gave up first (its own timeout, a stop). bumble cancels the controller's
                # attempt only on its own timeout; left pending, the attempt would refuse every later
                # connect and could still complete into a link nobody owns. Cancel it as bumble does
                # (LE Create Connection Cancel, Core Specification Vol 4, Part E, 7.8.13).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.device.send_command(hci.HCI_LE_Create_Connection_Cancel_Command()),
                        STOP_TIMEOUT_S,
                    )
                raise

    # -- bonds and pairing -------------------------------------------------------------------------

    async def is_bonded(self, address: str) -> bool:
        keystore = self._keystore()
        # bumble keys bonds by str(peer address): public addresses carry a "/P" qualifier.
        return await keystore.get(str(self.bumble_address(address))) is not None

    async def forget(self, address: str) -> None:
        keystore = self._keystore()
        with contextlib.suppress(KeyError):
            await keystore.delete(str(self.bumble_address(address)))

    def offer_passkey(self, address: str, passkey: int) -> None:
        """Give the passkey for the next pairing with ``address`` (what a user types in)."""
        self._pending_passkeys[address.upper()] = passkey

    async def passkey_for(self, address: str) -> int | None:
        offered = self._pending_passkeys.pop(address.upper(), None)
        if offered is not None:
            return offered
        if self.passkey_agent is not None:
            return await self.passkey_agent(address.upper())
        logger.warning("passkey requested with no agent", extra={"peer_address": address})
        return None

    def _pairing_config(self, connection: Connection) -> pairing.PairingConfig:
        peer = address_key(connection.peer_address)
        return pairing.PairingConfig(
            sc=True, mitm=True, bonding=True, delegate=_CentralPairingDelegate(self, peer)
        )

    def _keystore(self) -> KeyStore:
        keystore = self.device.keystore
        if keystore is None:  # pragma: no cover - set in __init__
            raise VirtualCentralError("the central has no key store")
        result: KeyStore = keystore
        return result

    async def _require_started(self) -> None:
        if not self._started:
            await self.start()

    def __repr__(self) -> str:
        return f"VirtualCentral({address_key(self.device.random_address)})"

    @property
    def address(self) -> str:
        return address_key(self.device.random_address)

    def describe(self) -> dict[str, Any]:
        return {"address": self.address, "connections": len(self.device.connections)}
