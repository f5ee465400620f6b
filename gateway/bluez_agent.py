"""A BlueZ pairing agent (org.bluez.Agent1) over dbus-fast, for passkey entry on Linux.

bleak registers no agent, so on BlueZ ``Device1.Pair()`` for a meter that shows a PIN fails
("BlueZ >= 5.72: Pair() without an agent fails with AuthenticationFailed; fix = register a
KeyboardDisplay agent via dbus-fast before pairing", peers.md §1.5, eigger/hass-omron#73; the bleak
pull requests hbldh/bleak#1100 and hbldh/bleak#1990 still open, reliability.md §5.4). dbus-fast is
already a bleak dependency on Linux.

The agent answers only for the one device being paired by ``vitalgate gateway pair`` and only while
that command runs; every other request is rejected (``org.bluez.Error.Rejected``), so a device that
tries to bond while the gateway is running unattended cannot.

Method names and signatures follow BlueZ doc/org.bluez.Agent.rst (agent-api.txt). This module
cannot be exercised here (no BlueZ on the build machine); it is deliberately small.
"""

# No `from __future__ import annotations`: dbus-fast reads the D-Bus signatures from the
# annotations at class creation.

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusObjectPath, DBusStr, DBusUInt16, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_method

logger = logging.getLogger(__name__)

BLUEZ_SERVICE = "org.bluez"
AGENT_MANAGER_PATH = "/org/bluez"
AGENT_MANAGER_INTERFACE = "org.bluez.AgentManager1"
AGENT_INTERFACE = "org.bluez.Agent1"
AGENT_PATH = "/org/vitalgate/pairing_agent"
CAPABILITY_KEYBOARD_DISPLAY = "KeyboardDisplay"
ERROR_REJECTED = "org.bluez.Error.Rejected"
ERROR_CANCELED = "org.bluez.Error.Canceled"
PASSKEY_MAX = 999_999

#: Ask the person pairing for the 6-digit passkey the meter shows (None: cancel).
PasskeyPrompt = Callable[[str], Awaitable[int | None]]
#: Ask the person pairing to confirm that the meter shows this number (numeric comparison).
ConfirmPrompt = Callable[[str, int], Awaitable[bool]]


def address_of(device_path: str) -> str:
    """``/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF`` -> ``AA:BB:CC:DD:EE:FF``."""
    return device_path.rsplit("/", 1)[-1].removeprefix("dev_").replace("_", ":").upper()


class PairingAgent(ServiceInterface):
    def __init__(self, address: str, passkey_prompt: PasskeyPrompt, confirm_prompt: ConfirmPrompt) -> None:
        super().__init__(AGENT_INTERFACE)
        self.address = address.upper()
        self._passkey_prompt = passkey_prompt
        self._confirm_prompt = confirm_prompt
        #: How BlueZ asked to authenticate the meter being paired (None: it did not ask; the kernel
        #: completes Just Works pairing it initiates without the agent).
        self.requests: list[str] = []

    def _only_ours(self, device: str) -> str:
        address = address_of(device)
        if address != self.address:
            logger.warning("pairing request from another device rejected", extra={"peer_address": address})
            raise DBusError(ERROR_REJECTED, "not the meter being paired")
        return address

    @dbus_method()
    def Release(self) -> None:
        logger.info("pairing agent released by BlueZ")

    @dbus_method()
    async def RequestPasskey(self, device: DBusObjectPath) -> DBusUInt32:
        address = self._only_ours(device)
        self.requests.append("passkey_entry")
        logger.info("pairing agent asked for the meter's passkey", extra={"peer_address": address})
        passkey = await self._passkey_prompt(address)
        if passkey is None or not 0 <= passkey <= PASSKEY_MAX:
            raise DBusError(ERROR_CANCELED, "no passkey entered")
        return passkey

    @dbus_method()
    async def RequestConfirmation(self, device: DBusObjectPath, passkey: DBusUInt32) -> None:
        address = self._only_ours(device)
        self.requests.append("numeric_comparison")
        logger.info("pairing agent asked to confirm a number", extra={"peer_address": address})
        if not await self._confirm_prompt(address, passkey):
            raise DBusError(ERROR_REJECTED, "passkey not confirmed")

    @dbus_method()
    def RequestAuthorization(self, device: DBusObjectPath) -> None:
        # Just Works: accepted only for the meter being paired, by the person pairing it.
        address = self._only_ours(device)
        self.requests.append("just_works")
        logger.info("pairing agent authorised Just Works pairing", extra={"peer_address": address})

    @dbus_method()
    def AuthorizeService(self, device: DBusObjectPath, uuid: DBusStr) -> None:
        self._only_ours(device)

    @dbus_method()
    def DisplayPasskey(self, device: DBusObjectPath, passkey: DBusUInt32, entered: DBusUInt16) -> None:
        self._only_ours(device)
        logger.info("type this passkey on the meter", extra={"passkey": f"{passkey:06d}", "entered": entered})

    @dbus_method()
    def RequestPinCode(self, device: DBusObjectPath) -> DBusStr:
        self._only_ours(device)
        raise DBusError(ERROR_REJECTED, "legacy PIN codes are not supported for LE meters")

    @dbus_method()
    def DisplayPinCode(self, device: DBusObjectPath, pincode: DBusStr) -> None:
        self._only_ours(device)
        raise DBusError(ERROR_REJECTED, "legacy PIN codes are not supported for LE meters")

    @dbus_method()
    def Cancel(self) -> None:
        logger.info("pairing cancelled by BlueZ")


class RegisteredAgent:
    """``async with RegisteredAgent(...)``: export the agent, register it as default, undo on exit."""

    def __init__(self, agent: PairingAgent) -> None:
        self.agent = agent
        self._bus: MessageBus | None = None

    async def __aenter__(self) -> "RegisteredAgent":
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        bus.export(AGENT_PATH, self.agent)
        introspection = await bus.introspect(BLUEZ_SERVICE, AGENT_MANAGER_PATH)
        manager: Any = bus.get_proxy_object(BLUEZ_SERVICE, AGENT_MANAGER_PATH, introspection).get_interface(
            AGENT_MANAGER_INTERFACE
        )
        await manager.call_register_agent(AGENT_PATH, CAPABILITY_KEYBOARD_DISPLAY)
        await manager.call_request_default_agent(AGENT_PATH)
        self._bus = bus
        self._manager = manager
        logger.info("BlueZ pairing agent registered", extra={"capability": CAPABILITY_KEYBOARD_DISPLAY})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        bus = self._bus
        if bus is None:
            return
        try:
            await self._manager.call_unregister_agent(AGENT_PATH)
        except DBusError as error:
            logger.warning("unregistering the pairing agent failed", extra={"error": str(error)})
        finally:
            bus.unexport(AGENT_PATH)
            bus.disconnect()
            self._bus = None
