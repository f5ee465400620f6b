"""What went wrong in a meter session, and how long to wait before the next attempt.

Backoff by error type, as bleak-retry-connector does (peers.md §1.6): a transient link abort is
retried within a quarter second, an adapter out of connection slots after 4 s, a bond problem only
after minutes (it needs a person to pair again, not retries), each doubling to its cap.
"""

from __future__ import annotations

from enum import StrEnum

from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from device_drivers.procedures.errors import (
    GattOperationFailed,
    GattTimeout,
    MeterDisconnected,
    ProcedureError,
    SyncTimeout,
)
from gateway.bond_security import BondSecurity
from gateway.outbox import OutboxFullError, OutboxWriteError


class ErrorKind(StrEnum):
    NOT_FOUND = "not_found"  # meter stopped advertising (went back to sleep)
    TIMEOUT = "timeout"
    OUT_OF_SLOTS = "out_of_slots"  # adapter busy: too many connections / operation in progress
    TRANSIENT = "transient"  # link lost, connection aborted
    SECURITY = "security"  # not bonded / encryption refused: needs re-pairing, not retries
    SPOOFED = "spoofed"  # identity claim without the bond
    DOWNGRADED = "downgraded"  # a bond weaker than the one enrolled: needs re-pairing by a person
    OUTBOX_FULL = "outbox_full"  # we stopped pulling; records stay on the meter
    STORAGE = "storage"  # outbox write failed (disk)
    PROTOCOL = "protocol"  # the meter answered something we cannot use


# First delay and cap per kind (bleak-retry-connector's error-class backoff, peers.md §1.6).
BACKOFF_S: dict[ErrorKind, tuple[float, float]] = {
    ErrorKind.NOT_FOUND: (0.25, 5.0),
    ErrorKind.TIMEOUT: (1.0, 30.0),
    ErrorKind.OUT_OF_SLOTS: (4.0, 30.0),
    ErrorKind.TRANSIENT: (0.25, 30.0),
    ErrorKind.SECURITY: (300.0, 3600.0),
    ErrorKind.SPOOFED: (600.0, 3600.0),
    ErrorKind.DOWNGRADED: (300.0, 3600.0),  # a bond problem, like SECURITY
    ErrorKind.OUTBOX_FULL: (5.0, 60.0),  # poll for room; reading resumes soon after acks
    ErrorKind.STORAGE: (60.0, 600.0),
    ErrorKind.PROTOCOL: (30.0, 600.0),
}

#: Failures a person has to act on (pair again, look at an impostor, free the outbox): logged as errors.
LOGGED_AS_ERRORS = frozenset(
    {ErrorKind.SPOOFED, ErrorKind.DOWNGRADED, ErrorKind.OUTBOX_FULL, ErrorKind.SECURITY}
)

_SECURITY_ATT_ERRORS = {
    BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
    BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION,
    BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION_KEY_SIZE,
    BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHORIZATION,
}
# BlueZ "org.bluez.Error.InProgress", ESPHome "out of slots", ATT/RACP 0xFE "procedure already in progress".
_SLOT_MARKERS = ("out of slots", "inprogress", "in progress", "in_progress", "busy", "no free slot")


class SpoofedMeterError(Exception):
    """A device answered for a paired meter without its bond, or with another meter's identity."""


def classify(error: BaseException) -> ErrorKind:
    """Map an exception from a session to the backoff it deserves."""
    if isinstance(error, OutboxFullError):
        return ErrorKind.OUTBOX_FULL
    if isinstance(error, OutboxWriteError):
        return ErrorKind.STORAGE
    if isinstance(error, SpoofedMeterError):
        return ErrorKind.SPOOFED
    if isinstance(error, BondLostError):
        return ErrorKind.SECURITY
    if isinstance(error, DowngradedBondError):
        return ErrorKind.DOWNGRADED
    if isinstance(error, (GattTimeout, SyncTimeout)):
        return ErrorKind.TIMEOUT
    if isinstance(error, MeterDisconnected):
        return ErrorKind.TRANSIENT
    if isinstance(error, GattOperationFailed):
        # The ATT error is in the message and in __cause__ (bleak's error).
        return _classify_text(str(error), default=ErrorKind.TRANSIENT)
    if isinstance(error, ProcedureError):  # RacpError, MissingCharacteristic
        return ErrorKind.PROTOCOL
    if isinstance(error, TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(error, BleakDeviceNotFoundError):
        return ErrorKind.NOT_FOUND
    if isinstance(error, BleakGATTProtocolError):
        code = getattr(error, "code", None)
        if code in _SECURITY_ATT_ERRORS:
            return ErrorKind.SECURITY
        return ErrorKind.PROTOCOL
    if isinstance(error, BleakError):
        return _classify_text(str(error), default=ErrorKind.TRANSIENT)
    if isinstance(error, (ConnectionError, EOFError)):
        return ErrorKind.TRANSIENT
    return ErrorKind.PROTOCOL


def _classify_text(message: str, *, default: ErrorKind) -> ErrorKind:
    text = message.lower()
    if any(marker in text for marker in _SLOT_MARKERS):
        return ErrorKind.OUT_OF_SLOTS  # adapter or meter busy: retry after a few seconds
    if any(marker in text for marker in ("pair", "bond", "authentic", "encrypt")):
        return ErrorKind.SECURITY
    return default


def backoff_s(kind: ErrorKind, attempt: int, cap: float) -> float:
    first, kind_cap = BACKOFF_S[kind]
    return float(min(cap, kind_cap, first * 2 ** max(0, attempt - 1)))


class BondLostError(Exception):
    """BlueZ holds no bond for a paired meter's address: it must be paired again by a person."""


class DowngradedBondError(Exception):
    """The link's bond is weaker than the one the meter was enrolled with (e.g. Just Works where a
    passkey was used): it must be paired again by a person to be accepted (gateway.bond_security)."""


def refuse_weaker_bond(address: str, enrolled: BondSecurity, current: BondSecurity | None) -> None:
    """Raise :class:`DowngradedBondError` when the link's bond (``current``) is weaker than the one
    the meter was enrolled with; a level that cannot be read now is not compared."""
    if current is None:
        return
    lacking = enrolled.shortfalls(current)
    if lacking:
        raise DowngradedBondError(
            f"device at {address} is bonded below the level it was paired with ({'; '.join(lacking)}):"
            " pair it again to accept the new bond"
        )
