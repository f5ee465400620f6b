"""Backoff chosen by error type (bleak-retry-connector's error classes, peers.md §1.6)."""

from __future__ import annotations

from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode

from device_drivers.procedures.errors import GattOperationFailed, GattTimeout, MissingCharacteristic
from gateway.outbox import OutboxFullError
from gateway.session_failures import ErrorKind, SpoofedMeterError, backoff_s, classify


def test_errors_are_classified() -> None:
    assert classify(BleakDeviceNotFoundError("AA", "gone")) is ErrorKind.NOT_FOUND
    assert classify(TimeoutError()) is ErrorKind.TIMEOUT
    assert classify(BleakError("org.bluez.Error.InProgress")) is ErrorKind.OUT_OF_SLOTS
    assert classify(BleakError("le-connection-abort-by-local")) is ErrorKind.TRANSIENT
    auth = BleakGATTProtocolError(BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION)
    assert classify(auth) is ErrorKind.SECURITY
    assert classify(OutboxFullError("outbox", 10, 10, 1)) is ErrorKind.OUTBOX_FULL
    assert classify(SpoofedMeterError("x")) is ErrorKind.SPOOFED


def test_backoff_grows_per_kind_and_is_capped() -> None:
    assert backoff_s(ErrorKind.TRANSIENT, 1, 600) == 0.25
    assert backoff_s(ErrorKind.TRANSIENT, 3, 600) == 1.0
    assert backoff_s(ErrorKind.TRANSIENT, 30, 600) == 30.0
    assert backoff_s(ErrorKind.OUT_OF_SLOTS, 1, 600) == 4.0
    # A meter that lost its bond is not hammered: retries wait minutes, not seconds.
    assert backoff_s(ErrorKind.SECURITY, 1, 600) >= 300
    assert backoff_s(ErrorKind.SPOOFED, 5, 100) == 100


def test_procedure_errors_are_classified() -> None:
    busy = GattOperationFailed("write", "0x2A52", "(<ErrorCode.PROCEDURE_ALREADY_IN_PROGRESS: 254>, ...)")
    assert classify(busy) is ErrorKind.OUT_OF_SLOTS
    assert classify(GattTimeout("read", "0x2A19", 10.0)) is ErrorKind.TIMEOUT
    assert classify(MissingCharacteristic("0x2A35")) is ErrorKind.PROTOCOL
