"""A BleakClient-shaped replay of recorded GATT exchanges: the stand-in for a meter in tests.

It has the methods the procedures call (``read_gatt_char``, ``write_gatt_char``, ``start_notify``,
``stop_notify``, ``is_connected``) with bleak's signatures, raises bleak's own exceptions
(``BleakCharacteristicNotFoundError`` for an absent characteristic, ``BleakError`` for a refused
write), and calls notification callbacks with real ``BleakGATTCharacteristic`` objects on the event
loop, as bleak does. An exchange says what the meter answers:

- ``reads``: characteristic -> value (hex, or {"text": ...} for DIS strings);
- ``subscribable`` / ``writable``: characteristics that exist for start_notify / write;
- ``responses``: when the collector subscribes to / writes (these bytes to) a characteristic, the
  meter emits these values in order, and optionally drops the link afterwards.

Every call is logged in ``calls`` so tests can assert the order (e.g. time written before
indications enabled).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.service import BleakGATTService
from bleak.exc import BleakCharacteristicNotFoundError, BleakError

from device_drivers.profiles.uuids import uuid16

NotifyCallback = Callable[[BleakGATTCharacteristic, bytearray], Awaitable[None] | None]
EXCHANGES = Path(__file__).parent / "exchanges"


def full_uuid(name: str) -> str:
    """Accept '0x2A18', '2a18' or a full UUID string."""
    text = name.lower().removeprefix("0x")
    return uuid16(int(text, 16)) if len(text) == 4 else text


def _value(spec: Any) -> bytes:
    if isinstance(spec, dict):
        return str(spec["text"]).encode("utf-8")
    return bytes.fromhex(str(spec))


@dataclass
class Response:
    """What the meter does after the collector subscribes to or writes a characteristic."""

    trigger: str  # "subscribe" or "write"
    characteristic: str
    data: bytes | None = None  # for writes: only these bytes trigger (None: any)
    emit: list[tuple[str, bytes]] = field(default_factory=list)
    disconnect: bool = False
    used: bool = False


class ReplayClient:
    """BleakClient-shaped meter stand-in (see module docstring)."""

    def __init__(
        self,
        *,
        reads: dict[str, bytes] | None = None,
        subscribable: set[str] | None = None,
        writable: set[str] | None = None,
        responses: list[Response] | None = None,
        disconnected: asyncio.Event | None = None,
    ) -> None:
        self.reads = dict(reads or {})
        self.subscribable = set(subscribable or ())
        self.writable = set(writable or ())
        self.responses = list(responses or [])
        self.disconnected = disconnected or asyncio.Event()
        self.calls: list[tuple[str, str, bytes | None]] = []
        self.writes: list[tuple[str, bytes]] = []
        self._callbacks: dict[str, NotifyCallback] = {}
        self._service = BleakGATTService(None, 1, uuid16(0x1800))
        self._handles: dict[str, int] = {}
        self._pending: set[asyncio.Future[None]] = set()

    @classmethod
    def from_exchange(cls, name: str, disconnected: asyncio.Event | None = None) -> ReplayClient:
        """Load tests/device_drivers/exchanges/<name>.json."""
        spec = json.loads((EXCHANGES / f"{name}.json").read_text())
        return cls(
            reads={full_uuid(k): _value(v) for k, v in spec.get("reads", {}).items()},
            subscribable={full_uuid(k) for k in spec.get("subscribable", [])},
            writable={full_uuid(k) for k in spec.get("writable", [])},
            responses=[
                Response(
                    trigger=r["after"],
                    characteristic=full_uuid(r["characteristic"]),
                    data=None if r.get("data") is None else bytes.fromhex(r["data"]),
                    emit=[(full_uuid(c), bytes.fromhex(v)) for c, v in r.get("emit", [])],
                    disconnect=bool(r.get("disconnect", False)),
                )
                for r in spec.get("responses", [])
            ],
            disconnected=disconnected,
        )

    # -- bleak API -------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return not self.disconnected.is_set()

    async def read_gatt_char(self, char_specifier: str, **kwargs: Any) -> bytearray:
        self._require_connected()
        self.calls.append(("read", char_specifier, None))
        if char_specifier not in self.reads:
            raise BleakCharacteristicNotFoundError(char_specifier)
        return bytearray(self.reads[char_specifier])

    async def write_gatt_char(self, char_specifier: str, data: bytes, response: bool | None = None) -> None:
        self._require_connected()
        self.calls.append(("write", char_specifier, bytes(data)))
        if char_specifier not in self.writable:
            if char_specifier in self.reads or char_specifier in self.subscribable:
                raise BleakError(f"Write Not Permitted ({char_specifier})")
            raise BleakCharacteristicNotFoundError(char_specifier)
        self.writes.append((char_specifier, bytes(data)))
        self._respond("write", char_specifier, bytes(data))

    async def start_notify(self, char_specifier: str, callback: NotifyCallback, **kwargs: Any) -> None:
        self._require_connected()
        self.calls.append(("start_notify", char_specifier, None))
        if char_specifier not in self.subscribable:
            raise BleakCharacteristicNotFoundError(char_specifier)
        self._callbacks[char_specifier] = callback
        self._respond("subscribe", char_specifier, None)

    async def stop_notify(self, char_specifier: str) -> None:
        self._require_connected()
        self.calls.append(("stop_notify", char_specifier, None))
        self._callbacks.pop(char_specifier, None)

    # -- replay ----------------------------------------------------------------------------------

    def _require_connected(self) -> None:
        if self.disconnected.is_set():
            raise BleakError("Not connected")

    def _characteristic(self, uuid: str) -> BleakGATTCharacteristic:
        handle = self._handles.setdefault(uuid, 3 + 2 * len(self._handles))
        return BleakGATTCharacteristic(None, handle, uuid, ["notify", "indicate"], lambda: 20, self._service)

    def _respond(self, trigger: str, characteristic: str, data: bytes | None) -> None:
        for response in self.responses:
            if response.used or response.trigger != trigger or response.characteristic != characteristic:
                continue
            if response.data is not None and response.data != data:
                continue
            response.used = True
            loop = asyncio.get_running_loop()
            for uuid, value in response.emit:
                loop.call_soon(self._deliver, uuid, value)
            if response.disconnect:
                loop.call_soon(self.disconnected.set)
            return

    def _deliver(self, uuid: str, value: bytes) -> None:
        if self.disconnected.is_set():
            return
        callback = self._callbacks.get(uuid)
        if callback is None:
            return  # not subscribed: a real meter would not send it either
        result = callback(self._characteristic(uuid), bytearray(value))
        if result is not None:
            future = asyncio.ensure_future(result)
            self._pending.add(future)
            future.add_done_callback(self._pending.discard)

    def emit(self, uuid: str, value: bytes) -> None:
        """Deliver one value now (for tests that drive the meter step by step)."""
        self._deliver(uuid, value)
