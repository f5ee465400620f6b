"""The Bluetooth adapter: its state on BlueZ, link security, and recovery when it is stuck or gone.

Gateways lose their adapter in a few known ways (peers.md §1.3-1.4, reliability.md §5): the
controller stops answering (scans start but report nothing, connects time out one after another),
``bluetoothd`` restarts (every D-Bus object vanishes and comes back), the controller is powered off
or removed (USB reset, a kernel driver reload). Home Assistant's habluetooth and
bleak-retry-connector recover from these by restarting the scan, then resetting the adapter.

:class:`AdapterRecovery` escalates the same way and reports each step in the health report:

1. ``restart_scan``: the scanner is stopped and started again;
2. ``power_cycle``: the adapter is powered off and on over D-Bus (``org.bluez.Adapter1.Powered``);
3. ``wait_for_adapter``: the adapter is not on D-Bus (bluetoothd restarting, controller removed):
   wait until BlueZ shows it again, power it on, restart the scan.

A powered-off adapter is powered on at once. The steps run on scanner start failures and on
connection failures in a row (``failures_before_power_cycle`` across meters), and a watch notices
the adapter leaving or losing power between them.

Link security on BlueZ (:func:`bluez_link_security`): bleak's BlueZ backend says nothing of
encryption, so the gateway asks BlueZ whether it holds a bond for the device
(``org.bluez.Device1.Paired``/``Bonded``) and the kernel whether the link is encrypted (the
``HCIGETCONNLIST`` ioctl on an HCI socket, which needs no privilege: ``hcitool con`` uses it).
The bond's security level (:func:`bond_security_of`) comes from BlueZ's bond file instead: the
kernel's link mode does not tell a Just Works bond from an authenticated one.

With the virtual radio (:class:`NoAdapterControl`) there is no adapter to recover.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.bond_security import BondSecurity, bluez_bond_security, virtual_bond_security

logger = logging.getLogger(__name__)

BLUEZ_SERVICE = "org.bluez"
ADAPTER_INTERFACE = "org.bluez.Adapter1"
DEVICE_INTERFACE = "org.bluez.Device1"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
DEFAULT_ADAPTER = "hci0"


class RecoveryStep(enum.StrEnum):
    RESTART_SCAN = "restart_scan"
    POWER_ON = "power_on"
    POWER_CYCLE = "power_cycle"
    WAIT_FOR_ADAPTER = "wait_for_adapter"
    RECOVERED = "recovered"


class AdapterControl(Protocol):
    """What recovery needs from an adapter."""

    async def present(self) -> bool: ...

    async def powered(self) -> bool: ...

    async def set_powered(self, on: bool) -> None: ...


class NoAdapterControl:
    """The virtual radio: always there, always on."""

    async def present(self) -> bool:
        return True

    async def powered(self) -> bool:
        return True

    async def set_powered(self, on: bool) -> None:
        return None


class AdapterError(Exception):
    """BlueZ refused or could not be asked (the message carries its D-Bus error)."""


class BluezAdapter:
    """One BlueZ adapter (``/org/bluez/hci0``) over the system bus, through dbus-fast (a bleak
    dependency on Linux). The bus connection is opened on first use and again after it drops."""

    def __init__(self, name: str = DEFAULT_ADAPTER) -> None:
        self.name = name
        self.path = f"/org/bluez/{name}"
        self._bus: Any = None

    async def _connected_bus(self) -> Any:
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        if self._bus is None or not self._bus.connected:
            self._bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        return self._bus

    async def _call(self, path: str, member: str, signature: str, body: list[Any]) -> list[Any]:
        from dbus_fast import Message, MessageType

        bus = await self._connected_bus()
        reply = await bus.call(
            Message(
                destination=BLUEZ_SERVICE,
                path=path,
                interface=PROPERTIES_INTERFACE,
                member=member,
                signature=signature,
                body=body,
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            name = None if reply is None else reply.error_name
            raise AdapterError(f"{member} {path}: {name} {[] if reply is None else reply.body}")
        return list(reply.body)

    async def properties(self, path: str, interface: str) -> dict[str, Any] | None:
        """All properties of ``interface`` at ``path``, or None when BlueZ has no such object."""
        try:
            body = await self._call(path, "GetAll", "s", [interface])
        except AdapterError:
            return None
        return {key: variant.value for key, variant in body[0].items()}

    async def present(self) -> bool:
        return await self.properties(self.path, ADAPTER_INTERFACE) is not None

    async def powered(self) -> bool:
        props = await self.properties(self.path, ADAPTER_INTERFACE)
        return bool(props and props.get("Powered"))

    async def set_powered(self, on: bool) -> None:
        from dbus_fast import Variant

        try:
            await self._call(self.path, "Set", "ssv", [ADAPTER_INTERFACE, "Powered", Variant("b", on)])
        except AdapterError as error:
            if "org.bluez.Error.Busy" not in str(error):
                raise
            # A power change already in progress (bluetoothd's AutoEnable, another client): the
            # caller waits for the property either way.

    def device_path(self, address: str) -> str:
        return f"{self.path}/dev_{address.upper().replace(':', '_')}"

    async def device(self, address: str) -> dict[str, Any] | None:
        return await self.properties(self.device_path(address), DEVICE_INTERFACE)

    async def close(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None


# -- link security ------------------------------------------------------------------------------------

AF_BLUETOOTH = 31
BTPROTO_HCI = 1
#: _IOR('H', 212, int) and _IOR('H', 210, int) from the kernel's include/net/bluetooth/hci_sock.h.
HCIGETCONNLIST = 0x800448D4
HCIGETDEVLIST = 0x800448D2
HCI_MAX_DEV = 16
MAX_CONNECTIONS = 16
#: struct hci_conn_info: handle u16, bdaddr 6 bytes (little-endian), type u8, out u8, state u16,
#: link_mode u32.
CONN_INFO = struct.Struct("<H6sBBHI")
HCI_LM_AUTH = 0x0002
HCI_LM_ENCRYPT = 0x0004


@dataclass(frozen=True, slots=True)
class LinkSecurity:
    """What BlueZ and the kernel say about the link to one device."""

    bonded: bool | None  # BlueZ holds a bond (Paired/Bonded); None: not asked
    encrypted: bool | None  # the kernel's link is encrypted; None: no such link or not readable


def _address_bytes(address: str) -> bytes:
    return bytes(int(part, 16) for part in reversed(address.split(":")))


def kernel_link_encrypted(address: str, adapter_index: int = 0) -> bool | None:
    """Whether the kernel's link to ``address`` on hci<adapter_index> is encrypted (None: no link,
    or no Bluetooth sockets here)."""
    try:
        sock = socket.socket(AF_BLUETOOTH, socket.SOCK_RAW, BTPROTO_HCI)
    except OSError:
        return None
    with contextlib.closing(sock):
        request = bytearray(
            struct.pack("<HH", adapter_index, MAX_CONNECTIONS) + bytes(CONN_INFO.size * MAX_CONNECTIONS)
        )
        try:
            fcntl.ioctl(sock.fileno(), HCIGETCONNLIST, request, True)
        except OSError:
            return None
    count = struct.unpack_from("<H", request, 2)[0]
    wanted = _address_bytes(address)
    for i in range(min(count, MAX_CONNECTIONS)):
        _handle, bdaddr, _type, _out, _state, link_mode = CONN_INFO.unpack_from(
            request, 4 + i * CONN_INFO.size
        )
        if bdaddr == wanted:
            return bool(link_mode & HCI_LM_ENCRYPT)
    return None


async def bluez_link_security(adapter: BluezAdapter, address: str) -> LinkSecurity:
    props = await adapter.device(address)
    bonded = None if props is None else bool(props.get("Bonded", props.get("Paired")) and props.get("Paired"))
    index = int(adapter.name.removeprefix("hci") or 0)
    encrypted = await asyncio.to_thread(kernel_link_encrypted, address, index)
    return LinkSecurity(bonded=bonded, encrypted=encrypted)


async def bond_security_of(client: Any, adapter: BluezAdapter | None) -> BondSecurity | None:
    """The security level of the bond protecting ``client``'s link now (gateway.bond_security):
    from the bumble connection on the virtual radio, from BlueZ's bond file with an adapter; None
    where it cannot be read."""
    if adapter is None:
        return await virtual_bond_security(client)
    props = await adapter.properties(adapter.path, ADAPTER_INTERFACE)
    if not props or not props.get("Address"):
        return None
    return await asyncio.to_thread(bluez_bond_security, str(props["Address"]), str(client.address))


# -- recovery -------------------------------------------------------------------------------------------


@dataclass
class RecoveryConfig:
    failures_before_power_cycle: int = 3  # connects or scan starts failing in a row
    power_off_s: float = 1.0  # held off before powering on again
    step_timeout_s: float = 15.0  # one D-Bus call or power transition
    adapter_wait_s: float = 120.0  # the adapter back on D-Bus (bluetoothd restart, controller re-added)
    watch_interval_s: float = 5.0


class AdapterRecovery:
    """Counts failures, checks the adapter, escalates; reports each step through ``report``.

    ``restart_scan`` is called back when the scan must start again (the adapter came back, was
    powered on, or the scan itself is the suspect).
    """

    def __init__(
        self,
        control: AdapterControl,
        report: Callable[[RecoveryStep, str], None],
        restart_scan: Callable[[], None],
        config: RecoveryConfig | None = None,
    ) -> None:
        self.control = control
        self.config = config or RecoveryConfig()
        self._report = report
        self._restart_scan = restart_scan
        self._failures = 0
        self._lock = asyncio.Lock()
        self.steps: list[tuple[float, RecoveryStep]] = []

    def _step(self, step: RecoveryStep, detail: str) -> None:
        self.steps.append((time.monotonic(), step))
        log = logger.info if step is RecoveryStep.RECOVERED else logger.warning
        log("bluetooth adapter recovery", extra={"step": step.value, "detail": detail})
        self._report(step, detail)

    def succeeded(self) -> None:
        """A connection or scan start went through: the adapter works."""
        self._failures = 0

    async def failed(self, what: str) -> None:
        """A scan start or connection failed; escalate when the adapter is at fault or it keeps failing."""
        self._failures += 1
        async with self._lock:
            if await self._fix_adapter(what):
                self._failures = 0
                return
            if self._failures >= self.config.failures_before_power_cycle:
                await self._power_cycle(f"{self._failures} failures in a row ({what})")
                self._failures = 0
            elif what == "scan start":
                self._step(RecoveryStep.RESTART_SCAN, what)
                self._restart_scan()

    async def check(self) -> None:
        """The watch: notice an adapter that left or lost power between failures."""
        async with self._lock:
            await self._fix_adapter("watch")

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.watch_interval_s)
            try:
                await self.check()
            except (AdapterError, OSError, TimeoutError) as error:
                logger.warning("adapter check failed", extra={"error": str(error)[:200]})

    async def _fix_adapter(self, what: str) -> bool:
        """Bring back an adapter that is gone or off; True if it had to (the failure is explained)."""
        async with asyncio.timeout(self.config.step_timeout_s):
            present = await self.control.present()
        if not present:
            self._step(RecoveryStep.WAIT_FOR_ADAPTER, f"adapter not on D-Bus ({what})")
            await self._wait_present()
            await self._power_on_if_off(what)
            self._step(RecoveryStep.RECOVERED, "adapter back")
            self._restart_scan()
            return True
        if await self._power_on_if_off(what):
            self._step(RecoveryStep.RECOVERED, "adapter powered")
            self._restart_scan()
            return True
        return False

    async def _wait_present(self) -> None:
        deadline = time.monotonic() + self.config.adapter_wait_s
        while True:
            with contextlib.suppress(AdapterError, OSError):
                if await self.control.present():
                    return
            if time.monotonic() > deadline:
                raise AdapterError(f"adapter did not come back within {self.config.adapter_wait_s:.0f} s")
            await asyncio.sleep(1.0)

    async def _power_on_if_off(self, what: str) -> bool:
        async with asyncio.timeout(self.config.step_timeout_s):
            if await self.control.powered():
                return False
            self._step(RecoveryStep.POWER_ON, f"adapter powered off ({what})")
            await self.control.set_powered(True)
            await self._wait_powered(True)
        return True

    async def _wait_powered(self, on: bool) -> None:
        # BlueZ answers Set(Powered) once the kernel has switched; the property follows at once.
        while True:
            if await self.control.powered() == on:
                return
            await asyncio.sleep(0.2)

    async def _power_cycle(self, why: str) -> None:
        self._step(RecoveryStep.POWER_CYCLE, why)
        async with asyncio.timeout(self.config.step_timeout_s + self.config.power_off_s):
            await self.control.set_powered(False)
            await self._wait_powered(False)
            await asyncio.sleep(self.config.power_off_s)
            await self.control.set_powered(True)
            await self._wait_powered(True)
        self._step(RecoveryStep.RECOVERED, "adapter power-cycled")
        self._restart_scan()
