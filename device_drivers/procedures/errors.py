"""Typed procedure errors. Every one carries what was received before the failure, if anything."""

from __future__ import annotations

from device_drivers.profiles.racp import RacpOpcode, RacpResponseCode

from .results import GlucoseSyncResult


class ProcedureError(Exception):
    """Root of the procedure error tree."""


class GattTimeout(ProcedureError):
    """A GATT read, write or subscription did not complete in time."""

    def __init__(self, operation: str, characteristic: str, timeout_s: float) -> None:
        self.operation = operation
        self.characteristic = characteristic
        self.timeout_s = timeout_s
        super().__init__(f"{operation} {characteristic} did not complete within {timeout_s:g} s")


class GattOperationFailed(ProcedureError):
    """The GATT layer refused an operation (ATT error, not connected...); ``__cause__`` has bleak's error."""

    def __init__(self, operation: str, characteristic: str, detail: str) -> None:
        self.operation = operation
        self.characteristic = characteristic
        self.detail = detail
        super().__init__(f"{operation} {characteristic} failed: {detail}")


class MissingCharacteristic(ProcedureError):
    """A characteristic the procedure cannot do without is absent on the meter."""

    def __init__(self, characteristic: str) -> None:
        self.characteristic = characteristic
        super().__init__(f"the meter has no {characteristic} characteristic")


class SyncTimeout(ProcedureError):
    """The meter went quiet before finishing a RACP procedure; an abort was sent.

    ``partial`` holds every record received before the timeout (nothing is lost).
    """

    def __init__(self, waited_s: float, partial: GlucoseSyncResult, *, abort_acknowledged: bool) -> None:
        self.waited_s = waited_s
        self.partial = partial
        self.abort_acknowledged = abort_acknowledged
        super().__init__(
            f"no RACP response after {waited_s:g} s of silence; {len(partial.records)} record(s) received; "
            f"abort {'acknowledged' if abort_acknowledged else 'not acknowledged'}"
        )


class RacpError(ProcedureError):
    """The meter answered a RACP request with a response code other than success / no records found."""

    def __init__(
        self, request_opcode: RacpOpcode, response_code: RacpResponseCode, partial: GlucoseSyncResult
    ) -> None:
        self.request_opcode = request_opcode
        self.response_code = response_code
        self.partial = partial
        super().__init__(
            f"RACP {request_opcode.name.lower()} answered {response_code.name.lower()} "
            f"(0x{int(response_code):02X})"
        )


class MeterDisconnected(ProcedureError):
    """The meter disconnected in the middle of a procedure that needs an answer.

    ``partial`` holds what was received before the link dropped.
    """

    def __init__(self, during: str, partial: GlucoseSyncResult | None = None) -> None:
        self.during = during
        self.partial = partial
        super().__init__(f"the meter disconnected during {during}")
