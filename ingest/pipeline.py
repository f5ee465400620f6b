"""One processing cycle of ingest, without MQTT: validate, check bindings, store, dead-letter.

The consumer's worker (ingest.worker) feeds it the messages it pulled and acks them only when the
cycle's `result` (or `process`) returns; these raise `ReadingStoreUnavailable` or
`ClinicDatabaseUnavailableError` when a write could not be confirmed, and then nothing of the cycle
may be acked (it is retried whole; the store and the dead-letter table are idempotent, so a retry
stores nothing twice).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from ingest.validation import (
    InboundMessage,
    ParsedMessage,
    Rejection,
    clip,
    device_user_id,
    oversized_summary,
    parse_message,
    reading_bytes,
)
from storage.clinic.models import DeadLetterScope
from storage.clinic.repository import Binding, DeadLetterRecord
from storage.readings.protocol import AnyReading, ReadingStore, ReadingStoreRejected, WriteResult
from vitals.payload import ReadingsAck, RejectedReading

logger = logging.getLogger(__name__)


class BindingSource(Protocol):
    def bindings_for_readings(self, gateway_id: str) -> list[Binding]:
        """Active bindings and recently ended ones (storage.clinic.repository.bindings_for_readings)."""
        ...


class DeadLetterSink(Protocol):
    def add_dead_letters(self, records: Sequence[DeadLetterRecord]) -> int: ...


class ClinicAccess(BindingSource, DeadLetterSink, Protocol):
    """What ingest needs from the clinic database (storage.clinic.repository.ClinicRepository)."""


class CycleProcessor(DeadLetterSink, Protocol):
    """What the consumer runs each cycle through: `IngestPipeline` in its own process, or
    `ingest.pipeline_process.PipelineProcess`, which runs one in a child process.

    Cycles are handed over with `submit` and their results taken with `result`, in submission
    order; up to `max_outstanding` may be handed over before the oldest one's result is taken.
    `process` is `submit` then `result`, with nothing else outstanding."""

    @property
    def max_outstanding(self) -> int:
        """Cycles worth handing over before taking the oldest one's result."""
        ...

    @property
    def want_committed(self) -> bool:
        """Whether results carry the committed readings (`CycleResult.committed`, for listeners)."""
        ...

    @property
    def outstanding(self) -> int:
        """Cycles submitted whose `result()` has not been taken."""
        ...

    def submit(self, messages: Sequence[InboundMessage]) -> None:
        """Hand a cycle over; never raises (a failure is raised by its `result()`)."""
        ...

    def oldest_outstanding(self) -> list[InboundMessage]:
        """The messages of the cycle the next `result()` answers for."""
        ...

    def result(self) -> CycleResult:
        """The oldest submitted cycle's result, once committed; raises what `process` raises."""
        ...

    def process(self, messages: Sequence[InboundMessage]) -> CycleResult: ...


class BindingCache:
    """Active bindings per gateway, reused for `ttl_s`.

    A hit is trusted for `ttl_s` (an unbinding takes effect within that time). A miss is never
    trusted from the cache: the gateway's bindings are fetched again (once per cycle) before a
    reading is rejected, because a rejection is final (the gateway deletes the reading).
    """

    def __init__(
        self, source: BindingSource, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, list[Binding]]] = {}
        self._refreshed: set[str] = set()

    def new_cycle(self) -> None:
        self._refreshed.clear()

    def _fetch(self, gateway_id: str) -> list[Binding]:
        bindings = self._source.bindings_for_readings(gateway_id)
        self._entries[gateway_id] = (self._clock(), bindings)
        self._refreshed.add(gateway_id)
        return bindings

    @staticmethod
    def _bound(
        bindings: list[Binding], meter_key: str, patient_id: str, slot: int | None, measured_at: datetime
    ) -> bool:
        return any(
            b.patient_id == patient_id and b.matches(meter_key, slot) and b.in_force_at(measured_at)
            for b in bindings
        )

    def is_bound(
        self, gateway_id: str, meter_key: str, patient_id: str, slot: int | None, measured_at: datetime
    ) -> bool:
        """Was the meter (slot) bound to the patient through this gateway when the reading was taken?"""
        cached = self._cached(gateway_id)
        if cached is not None:
            if self._bound(cached, meter_key, patient_id, slot, measured_at):
                return True
            if gateway_id in self._refreshed:
                return False
        return self._bound(self._fetch(gateway_id), meter_key, patient_id, slot, measured_at)

    def _cached(self, gateway_id: str) -> list[Binding] | None:
        """The gateway's bindings if fetched less than `ttl_s` ago."""
        entry = self._entries.get(gateway_id)
        return entry[1] if entry is not None and self._clock() - entry[0] < self._ttl_s else None

    def candidates(
        self, gateway_id: str, meter_key: str, patient_id: str, slot: int | None
    ) -> tuple[Binding, ...]:
        """The bindings of this meter (slot) to this patient through this gateway, ended or not, as
        `is_bound` would look them up now (fetched when not cached or older than `ttl_s`).

        A reading measured while one of them was in force is bound; for any other reading ask
        `is_bound`, which fetches again (once per cycle) before answering no."""
        bindings = self._cached(gateway_id)
        if bindings is None:
            bindings = self._fetch(gateway_id)
        return tuple(b for b in bindings if b.patient_id == patient_id and b.matches(meter_key, slot))


def _not_bound_reason(
    bindings: Sequence[Binding], patient_id: str, gateway_id: str, measured_at: datetime
) -> str:
    """Why a reading of a meter is refused for a patient: no binding at all, or it was measured
    outside the interval of each (a loaner meter's memory, a reading after an unbind)."""
    if not bindings:
        return f"meter not bound to patient {patient_id} through gateway {gateway_id}"
    spans = ", ".join(
        f"{b.attributed_from.isoformat() if b.attributed_from else 'its memory'}"
        f" to {b.unbound_at.isoformat() if b.unbound_at else 'now'}"
        for b in bindings[:3]
    )
    return clip(
        f"meter not bound to patient {patient_id} through gateway {gateway_id} when measured"
        f" ({measured_at.isoformat()}): outside its binding's interval ({spans})"
    )


@dataclass(frozen=True, slots=True)
class Candidates:
    """One meter's key and its bindings to one patient through one gateway (BindingCache.candidates)."""

    meter_key: str
    bindings: tuple[Binding, ...]


@dataclass(slots=True)
class CycleResult:
    """What one committed cycle did. `committed`: accepted readings now durably stored (new or
    already present), in message order, for the listeners."""

    messages: list[InboundMessage]
    acks: dict[str, ReadingsAck] = field(default_factory=dict)
    # The same acks as JSON, when they were encoded elsewhere (ingest.pipeline_process).
    encoded_acks: dict[str, bytes] | None = None
    committed: list[AnyReading] = field(default_factory=list)
    readings_received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    dead_lettered_messages: int = 0
    lag_s: float | None = None

    def ack_payloads(self) -> dict[str, bytes]:
        """The application ack to publish per gateway, as JSON bytes."""
        if self.encoded_acks is not None:
            return self.encoded_acks
        return {gateway_id: ack.model_dump_json().encode() for gateway_id, ack in self.acks.items()}


@dataclass(slots=True)
class PreparedCycle:
    """A cycle parsed and checked against the bindings, not yet written (IngestPipeline.prepare)."""

    messages: list[InboundMessage]
    parsed: list[ParsedMessage]

    @property
    def reading_ids(self) -> frozenset[str]:
        return frozenset(r.reading_id for item in self.parsed for r in item.accepted)


class ReadingsInCommit:
    """The readings of the cycles being committed now. Two cycles may commit at once (the pipeline
    process's committers); one that holds a reading the other is writing (a message delivered again
    while its first delivery commits) waits for that commit, then finds the reading stored: each
    reading is written once, not twice and treated as one by the store."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._ids: set[str] = set()

    @contextlib.contextmanager
    def holding(self, ids: frozenset[str]) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._ids.isdisjoint(ids))
            self._ids |= ids
        try:
            yield
        finally:
            with self._changed:
                self._ids -= ids
                self._changed.notify_all()


class IngestPipeline:
    """The cycle's steps, run in the caller's thread (a `CycleProcessor`: `result` does the work)."""

    # Nothing runs between `submit` and `result`: a second cycle in hand would only wait.
    max_outstanding: Final = 1
    want_committed: Final = True  # the readings are at hand: listeners cost nothing extra

    def __init__(
        self,
        store: ReadingStore,
        bindings: BindingSource,
        dead_letters: DeadLetterSink,
        *,
        binding_cache_ttl_s: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._bindings = BindingCache(bindings, ttl_s=binding_cache_ttl_s)
        self._now = now
        self._submitted: deque[list[InboundMessage]] = deque()
        self._in_commit = ReadingsInCommit()

    def process(self, messages: Sequence[InboundMessage]) -> CycleResult:
        return self.commit(self.prepare(messages))

    @property
    def outstanding(self) -> int:
        return len(self._submitted)

    def submit(self, messages: Sequence[InboundMessage]) -> None:
        self._submitted.append(list(messages))

    def oldest_outstanding(self) -> list[InboundMessage]:
        return self._submitted[0]

    def result(self) -> CycleResult:
        """Process the oldest submitted cycle (it is no longer outstanding, whatever it raises)."""
        return self.process(self._submitted.popleft())

    def prepare(self, messages: Sequence[InboundMessage]) -> PreparedCycle:
        """Parse, validate and check bindings: everything before the store. Touches neither the
        reading store nor the dead-letter table, so it may run while earlier cycles commit
        (ingest.pipeline_process). Commits need no order: the stores are idempotent."""
        parsed = [parse_message(m) for m in messages]
        self._bindings.new_cycle()
        candidates: dict[tuple[object, ...], Candidates] = {}
        for item in parsed:
            if not item.poisoned:
                self._check_bindings(item, candidates)
        return PreparedCycle(list(messages), parsed)

    def commit(self, cycle: PreparedCycle) -> CycleResult:
        """Write the readings and the dead letters; returns once both are durable. Cycles may
        commit from several threads at once; a reading in two of them is written once."""
        with self._in_commit.holding(cycle.reading_ids):
            result = self._write(cycle.parsed)
        self._dead_letters.add_dead_letters(self._dead_letter_records(cycle.parsed))
        return self._summarise(cycle.messages, cycle.parsed, result)

    def add_dead_letters(self, records: Sequence[DeadLetterRecord]) -> int:
        return self._dead_letters.add_dead_letters(records)

    # -- steps ---------------------------------------------------------------------------------

    def _check_bindings(self, item: ParsedMessage, candidates: dict[tuple[object, ...], Candidates]) -> None:
        """Reject readings whose meter is not bound to their patient through the sending gateway.

        `candidates` memoises, per (gateway, device, patient, slot) within one cycle, the meter key
        and the bindings that could hold: a batch usually holds many readings of one meter, and
        meter_key normalisation is not free. Each reading's own time is then checked against them
        (with the time in the memo key, unique per reading, the memo would never hit).
        """
        assert item.gateway_id is not None
        gateway_id = item.gateway_id
        kept: list[AnyReading] = []
        for reading in item.accepted:
            patient_id = reading.patient_id
            if patient_id is None:
                reason = "no patient_id: the gateway has no binding for this meter"
            else:
                device = reading.device
                slot = device_user_id(reading)
                key = (gateway_id, device.manufacturer, device.model, device.serial_number,
                       device.address, patient_id, slot)  # fmt: skip
                memo = candidates.get(key)
                if memo is None:
                    meter_key = device.meter_key
                    memo = candidates[key] = Candidates(
                        meter_key, self._bindings.candidates(gateway_id, meter_key, patient_id, slot)
                    )
                measured_at = reading.measured_at
                if any(b.in_force_at(measured_at) for b in memo.bindings) or self._bindings.is_bound(
                    gateway_id, memo.meter_key, patient_id, slot, measured_at
                ):
                    kept.append(reading)
                    continue
                reason = _not_bound_reason(memo.bindings, patient_id, gateway_id, measured_at)
            item.rejected.append(Rejection(reading.reading_id, reason, reading_bytes(reading)))
        item.accepted = kept

    def _write(self, parsed: list[ParsedMessage]) -> WriteResult:
        readings = [r for item in parsed for r in item.accepted]
        if not readings:
            return WriteResult()
        try:
            return self._store.write_batch(readings)
        except ReadingStoreRejected:
            logger.warning("store rejected a cycle; isolating the message", extra={"messages": len(parsed)})
        stored: list[str] = []
        duplicates: list[str] = []
        for item in parsed:
            if not item.accepted:
                continue
            try:
                result = self._store.write_batch(item.accepted)
            except ReadingStoreRejected:
                result = self._write_one_by_one(item)
            stored.extend(result.stored)
            duplicates.extend(result.duplicates)
        return WriteResult(tuple(stored), tuple(duplicates))

    def _write_one_by_one(self, item: ParsedMessage) -> WriteResult:
        stored: list[str] = []
        duplicates: list[str] = []
        kept: list[AnyReading] = []
        for reading in item.accepted:
            try:
                result = self._store.write_batch([reading])
            except ReadingStoreRejected as exc:
                item.rejected.append(
                    Rejection(reading.reading_id, clip(f"store rejected: {exc}"), reading_bytes(reading))
                )
                continue
            kept.append(reading)
            stored.extend(result.stored)
            duplicates.extend(result.duplicates)
        item.accepted = kept
        return WriteResult(tuple(stored), tuple(duplicates))

    @staticmethod
    def _dead_letter_records(parsed: list[ParsedMessage]) -> list[DeadLetterRecord]:
        records = []
        for item in parsed:
            message = item.message
            if item.poison_reason is not None:
                records.append(
                    DeadLetterRecord(
                        scope=DeadLetterScope.MESSAGE,
                        topic=message.topic,
                        payload=oversized_summary(message.payload) if item.oversized else message.payload,
                        reason=item.poison_reason,
                        received_at=message.received_at,
                        gateway_id=item.gateway_id,
                    )
                )
            records.extend(
                DeadLetterRecord(
                    scope=DeadLetterScope.READING,
                    topic=message.topic,
                    payload=rejection.raw,
                    reason=rejection.reason,
                    received_at=message.received_at,
                    gateway_id=item.gateway_id,
                    reading_id=rejection.reading_id,
                )
                for rejection in item.rejected
            )
        return records

    def _summarise(
        self, messages: list[InboundMessage], parsed: list[ParsedMessage], result: WriteResult
    ) -> CycleResult:
        cycle = CycleResult(messages, stored=len(result.stored), duplicates=len(result.duplicates))
        stored_by_gateway: dict[str, dict[str, None]] = {}
        rejected_by_gateway: dict[str, dict[str, RejectedReading]] = {}
        oldest_sent: datetime | None = None
        for item in parsed:
            cycle.readings_received += len(item.accepted) + len(item.rejected)
            cycle.rejected += len(item.rejected)
            cycle.committed.extend(item.accepted)
            if item.poisoned:
                cycle.dead_lettered_messages += 1
            if item.sent_at is not None and (oldest_sent is None or item.sent_at < oldest_sent):
                oldest_sent = item.sent_at
            if item.gateway_id is None:
                continue
            stored = stored_by_gateway.setdefault(item.gateway_id, {})
            stored.update(dict.fromkeys(r.reading_id for r in item.accepted))
            rejected = rejected_by_gateway.setdefault(item.gateway_id, {})
            reason = f"dead-lettered: {item.poison_reason}" if item.poison_reason else ""
            for reading_id in item.poison_reading_ids:
                rejected.setdefault(reading_id, RejectedReading(reading_id=reading_id, reason=clip(reason)))
            for rejection in item.rejected:
                if rejection.reading_id is not None:
                    rejected.setdefault(
                        rejection.reading_id,
                        RejectedReading(reading_id=rejection.reading_id, reason=rejection.reason),
                    )
        for gateway_id, stored in stored_by_gateway.items():
            rejected = rejected_by_gateway.get(gateway_id, {})
            # An id both stored and rejected (a replay that once failed) is stored: that answer wins.
            rejected_final = tuple(r for rid, r in rejected.items() if rid not in stored)
            if stored or rejected_final:
                cycle.acks[gateway_id] = ReadingsAck(
                    gateway_id=gateway_id, stored=tuple(stored), rejected=rejected_final
                )
        if oldest_sent is not None:
            cycle.lag_s = (self._now() - oldest_sent).total_seconds()
        return cycle
