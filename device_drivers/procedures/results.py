"""Results of the procedures and the values they carry, shared by the procedures and their errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.glucose import GlucoseMeasurement, GlucoseMeasurementContext
from device_drivers.profiles.racp import RacpRequest, RacpResponseCode


@dataclass(frozen=True, slots=True)
class UndecodedValue:
    """Bytes a meter sent that did not decode, with the reason. Kept, never dropped."""

    characteristic: str
    raw: bytes
    error: DecodeError


class SequenceEvent(enum.Enum):
    """What happened to the meter's sequence numbers since the last sync."""

    NONE = "none"
    WRAPAROUND = "wraparound"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    """One stored reading with its context, when the meter sent one."""

    measurement: GlucoseMeasurement
    context: GlucoseMeasurementContext | None = None


@dataclass(frozen=True, slots=True)
class GlucoseSyncResult:
    """Everything one RACP collection produced.

    Attributes:
        records: readings in arrival order, joined with their context.
        requests: the RACP requests written, in order.
        response_code: the meter's answer to the last report request.
        highest_sequence_number: the cursor to persist after storing ``records`` (None: keep no
            cursor, e.g. reversed numbering); equals the previous cursor when nothing new came.
        sequence_event: wraparound or reset detected during this sync.
        undecodable: values that did not decode, with their bytes and reason.
        unmatched_contexts: contexts whose measurement never arrived.
        missing_contexts: sequence numbers whose measurement announced a context that never came.
    """

    records: tuple[GlucoseRecord, ...]
    requests: tuple[RacpRequest, ...]
    response_code: RacpResponseCode | None
    highest_sequence_number: int | None
    sequence_event: SequenceEvent = SequenceEvent.NONE
    undecodable: tuple[UndecodedValue, ...] = ()
    unmatched_contexts: tuple[GlucoseMeasurementContext, ...] = ()
    missing_contexts: tuple[int, ...] = ()
