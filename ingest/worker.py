"""The ingest worker: one thread takes cycles of messages, runs them through the pipeline, and hands
each committed cycle on to be acked, in arrival order.

The work loop is the same whatever the pipeline (ingest.pipeline.CycleProcessor): it hands over up
to the pipeline's `max_outstanding` cycles before reading the oldest one's result. In-process that
is one cycle at a time; with a `PipelineProcess` (what `vitalgate ingest` runs) the next cycles are
handed to the child before the current one's answer is read, so the child starts on them at once
instead of idling while this thread acks, and this process's GIL is left to paho
(ingest.pipeline_process).

Acks keep arrival order: results come back in submission order and each cycle is finished before
the next result is read. When a cycle fails, it runs again until it commits, and only then are the
cycles handed over after it finished: those that committed meanwhile with their own results (each
reading written once), those that failed too run again, one at a time, in order.

A failed cycle is held (nothing acked) and retried with backoff: an unavailable store is waited
out, so the broker stops at Receive Maximum and nothing is lost (reliability.md §(a) 6). A cycle
that fails `ISOLATE_AFTER_FAILURES` times for any other reason is run again one message at a time,
and a message that still fails alone is dead-lettered and acked (DESIGN.md, Delivery): one payload
that trips a bug must not stall the stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ingest.ack_window import AckWindow
from ingest.config import IngestConfig
from ingest.flow import FlowControl
from ingest.metrics import IngestMetrics
from ingest.pipeline import CycleProcessor, CycleResult
from ingest.pipeline_process import PipelineProcessDied, PipelineProcessError
from ingest.validation import InboundMessage
from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.clinic.models import DeadLetterScope
from storage.clinic.repository import DeadLetterRecord
from storage.readings.protocol import ReadingStoreUnavailable

logger = logging.getLogger(__name__)

# Unexpected failures of one cycle before its messages are tried one by one (and a message that
# still fails alone is dead-lettered): one payload that trips a bug must not stall the stream.
ISOLATE_AFTER_FAILURES = 3

CycleFinisher = Callable[[CycleResult], None]
"""Called with each committed cycle, in arrival order (IngestConsumer: application acks, the ack
window, listeners); it may block while the ack window is full."""


class Worker:
    """The worker thread's loop (`run`); stops once `stopping` is set and the cycles in hand are
    finished."""

    def __init__(
        self,
        config: IngestConfig,
        pipeline: CycleProcessor,
        flow: FlowControl,
        window: AckWindow,
        metrics: IngestMetrics,
        *,
        finish: CycleFinisher,
        report: Callable[[str], None],
        stopping: threading.Event,
    ) -> None:
        self._config = config
        self._pipeline = pipeline
        self._flow = flow
        self._window = window
        self._metrics = metrics
        self._finish = finish
        self._report = report
        self._stopping = stopping

    def run(self) -> None:
        pipeline = self._pipeline
        while not self._stopping.is_set():
            self._flow.renew_connection_if_deferred()
            if pipeline.outstanding < pipeline.max_outstanding:
                messages = self._flow.take_cycle(wait=pipeline.outstanding == 0)
                self._window.expire_overdue()
                if messages:
                    pipeline.submit(messages)
                    continue
            if pipeline.outstanding == 0:
                continue
            oldest = pipeline.oldest_outstanding()
            try:
                result = pipeline.result()
            except Exception as exc:
                if not self._recover(oldest, exc):
                    return  # stopping while the store was down: the broker keeps the rest
                continue
            self._finish(result)
        # Stopping: finish what was handed over (results follow commits). From the first cycle that
        # fails on, nothing more is acked: acks keep arrival order, and the broker redelivers the
        # rest to the next session.
        failed = False
        while pipeline.outstanding:
            try:
                result = pipeline.result()
            except Exception:
                logger.warning("ingest stopping: a cycle in the pipeline failed; left unacked")
                failed = True
                continue
            if not failed:
                self._finish(result)

    def _recover(self, failed: list[InboundMessage], failure: Exception) -> bool:
        """The oldest handed-over cycle (`failed`) failed: run it again (with retries), then finish
        the ones handed over after it in order: those the pipeline committed with their results
        (written once: a commit needs no order, an ack does), the others run again one at a time.
        False when stopping meanwhile."""
        later: list[tuple[list[InboundMessage], CycleResult | Exception]] = []
        while self._pipeline.outstanding:
            messages = self._pipeline.oldest_outstanding()
            try:
                later.append((messages, self._pipeline.result()))
            except Exception as exc:
                later.append((messages, exc))
        for index, (messages, outcome) in enumerate([(failed, failure), *later]):
            if isinstance(outcome, CycleResult):
                result: CycleResult | None = outcome
            else:
                # A later cycle runs again at once: its failure may be the first one's doing (the
                # child that died under it), so it neither waits nor counts towards isolation.
                result = self._process_with_retry(messages, failed=outcome if index == 0 else None)
            if result is None:
                return False
            self._finish(result)
        return True

    def _process_with_retry(
        self, messages: list[InboundMessage], *, isolated: bool = False, failed: Exception | None = None
    ) -> CycleResult | None:
        """Process a cycle, retrying with backoff until it commits; `failed`: its first attempt
        already failed with that. None when stopping meanwhile (nothing acked)."""
        delay = self._config.retry_initial_s
        unexpected = 0
        while True:
            if failed is None:
                try:
                    return self._pipeline.process(messages)
                except Exception as attempt_error:
                    failed = attempt_error
            exc, failed = failed, None
            self._metrics.count_store_retry()
            if isinstance(exc, PipelineProcessDied):
                # Held and retried like an unavailable store, but a message that kills the pipeline
                # process every time must be isolated like one that trips a bug, or it stalls the
                # stream (a crash in native code, memory exhausted by one payload).
                self._report(f"pipeline process died, holding {len(messages)} messages")
                unexpected += 1
            elif isinstance(exc, (ReadingStoreUnavailable, ClinicDatabaseUnavailableError)):
                self._report(f"store unavailable, holding {len(messages)} messages: {exc}")
                unexpected = 0  # an outage is not the message's doing: it starts the count again
            else:
                # A bug, not bad input (bad input is dead-lettered by the pipeline). Hold the
                # messages (no ack), log loudly, and retry as for an unavailable store; if it keeps
                # failing, find the message that causes it so one payload cannot stall the stream.
                logger.error("ingest cycle failed unexpectedly; holding its messages", exc_info=exc)
                self._metrics.record_error("unexpected error in ingest cycle (see log)")
                unexpected += 1
            if unexpected >= ISOLATE_AFTER_FAILURES:
                if len(messages) > 1 and not isolated:
                    return self._process_one_by_one(messages)
                if len(messages) == 1:
                    settled = self._dead_letter_unprocessable(messages[0], exc)
                    if settled is not None:
                        return settled
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, self._config.retry_max_s)
            if self._flow.is_stale(messages):
                # The connection dropped meanwhile: the broker will redeliver these.
                self._flow.forget(messages)
                return None if self._stopping.is_set() else _empty_cycle()

    def _process_one_by_one(self, messages: list[InboundMessage]) -> CycleResult | None:
        """Each message in a cycle of its own, in order (acks keep arrival order)."""
        for message in messages:
            result = self._process_with_retry([message], isolated=True)
            if result is None:
                return None
            self._finish(result)
        return _empty_cycle()

    def _dead_letter_unprocessable(self, message: InboundMessage, exc: Exception) -> CycleResult | None:
        """One message that fails on its own every time: keep its raw bytes in the dead-letter table and
        ack it, so the stream flows (DESIGN.md, Delivery). None if even that cannot be written now."""
        failure = exc.failure if isinstance(exc, PipelineProcessError) else type(exc).__name__
        record = DeadLetterRecord(
            scope=DeadLetterScope.MESSAGE,
            topic=message.topic,
            payload=message.payload,
            reason=f"ingest failed on this message {ISOLATE_AFTER_FAILURES} times: {failure}",
            received_at=message.received_at,
        )
        try:
            self._pipeline.add_dead_letters([record])
        except Exception:
            logger.exception("could not dead-letter an unprocessable message; holding it")
            return None
        logger.error("unprocessable message dead-lettered", extra={"topic": message.topic})
        return CycleResult(messages=[message], dead_lettered_messages=1)


def _empty_cycle() -> CycleResult:
    return CycleResult(messages=[])
