"""The slice of bleak's ``BleakClient`` the procedures use, and timed wrappers around it.

``GattClient`` is a Protocol: a real ``bleak.BleakClient`` satisfies it structurally (checked by
mypy in tests/device_drivers/test_procedures.py), as does the replay stand-in in the tests.
Characteristics are named by their full UUID string (device_drivers.profiles.uuids).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakCharacteristicNotFoundError, BleakError

from device_drivers.profiles.uuids import short_uuid

from .errors import GattOperationFailed, GattTimeout

logger = logging.getLogger(__name__)

NotifyCallback = Callable[[BleakGATTCharacteristic, bytearray], Awaitable[None] | None]
"""bleak's notification callback: the characteristic and the value."""

_T = TypeVar("_T")


class GattClient(Protocol):
    """What the procedures need from a connected ``BleakClient``."""

    @property
    def is_connected(self) -> bool: ...

    async def read_gatt_char(self, char_specifier: str) -> bytearray: ...

    async def write_gatt_char(
        self, char_specifier: str, data: bytes, response: bool | None = None
    ) -> None: ...

    async def start_notify(self, char_specifier: str, callback: NotifyCallback) -> None: ...

    async def stop_notify(self, char_specifier: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ProcedureTimeouts:
    """Time limits, in seconds. Defaults follow reference §2.3 (ATT transactions time out after 30 s)."""

    #: One GATT read, write or CCCD write.
    gatt_operation_s: float = 10.0
    #: Silence between glucose notifications before a RACP transfer counts as stalled.
    record_silence_s: float = 30.0
    #: Upper bound for one whole RACP transfer.
    racp_procedure_s: float = 300.0
    #: Waiting for the RACP response to an abort after a stall.
    abort_response_s: float = 5.0
    #: Blood pressure: wait this long for the first indication (the patient may be measuring).
    first_indication_s: float = 120.0
    #: Blood pressure: after a measurement arrived, this much silence ends the collection.
    quiet_after_records_s: float = 5.0


def describe(characteristic: str) -> str:
    """Short name for messages: ``0x2A35`` for SIG UUIDs, else the UUID."""
    short = short_uuid(characteristic)
    return characteristic if short is None else f"0x{short:04X}"


async def timed(operation: str, characteristic: str, timeout_s: float, call: Awaitable[_T]) -> _T:
    """Await a GATT call with a timeout; map bleak errors to typed procedure errors.

    ``BleakCharacteristicNotFoundError`` passes through unchanged so callers can treat an optional
    characteristic as absent.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except TimeoutError:
        raise GattTimeout(operation, describe(characteristic), timeout_s) from None
    except BleakCharacteristicNotFoundError:
        raise
    except BleakError as error:
        raise GattOperationFailed(
            operation, describe(characteristic), str(error) or type(error).__name__
        ) from error


async def read(client: GattClient, characteristic: str, timeouts: ProcedureTimeouts) -> bytes:
    """Read a characteristic value (bytes), with the GATT timeout."""
    value = await timed(
        "read", characteristic, timeouts.gatt_operation_s, client.read_gatt_char(characteristic)
    )
    return bytes(value)


async def read_optional(client: GattClient, characteristic: str, timeouts: ProcedureTimeouts) -> bytes | None:
    """Read a characteristic, or None when the meter does not have it."""
    try:
        return await read(client, characteristic, timeouts)
    except BleakCharacteristicNotFoundError:
        logger.debug("characteristic absent", extra={"characteristic": describe(characteristic)})
        return None


async def write(client: GattClient, characteristic: str, data: bytes, timeouts: ProcedureTimeouts) -> None:
    """Write with response, with the GATT timeout."""
    await timed(
        "write", characteristic, timeouts.gatt_operation_s, client.write_gatt_char(characteristic, data, True)
    )


async def subscribe(
    client: GattClient, characteristic: str, callback: NotifyCallback, timeouts: ProcedureTimeouts
) -> None:
    """Enable notifications or indications (bleak picks from the properties), with the GATT timeout."""
    await timed(
        "subscribe to",
        characteristic,
        timeouts.gatt_operation_s,
        client.start_notify(characteristic, callback),
    )


async def unsubscribe_all(
    client: GattClient, characteristics: list[str], timeouts: ProcedureTimeouts
) -> None:
    """Disable notifications on each subscribed characteristic while the link is up.

    After a disconnect there is nothing to undo (the meter forgets CCCDs of unbonded links and the
    stack drops the subscription), so a closed link is not an error here.
    """
    for characteristic in reversed(characteristics):
        if not client.is_connected:
            return
        await timed(
            "unsubscribe from", characteristic, timeouts.gatt_operation_s, client.stop_notify(characteristic)
        )
