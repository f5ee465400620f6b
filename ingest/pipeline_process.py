"""The ingest pipeline in a process of its own, so the MQTT process keeps a GIL for paho.

Why: one ingest process is bound by its GIL. paho's network thread and the worker (parse, validate,
bindings, rows, store) take turns holding it, so one process reaches at most paho / (paho + worker)
of what a subscriber that does nothing receives; paho's share is per message and the worker's per
reading, so the bound falls as messages grow. Here the consumer's worker thread hands each cycle's raw
messages to a child process, which runs `IngestPipeline` against its own store and clinic database
connections and answers with what the consumer needs to ack: counters and the application acks,
already encoded. The MQTT process does no per-reading work at all; it waits on a pipe with the GIL
released while the child works, so paho keeps receiving.

Delivery is the consumer's (ingest.consumer): it acks a cycle only on the child's answer, which
comes after the child's commit. If the child dies, the cycle raises `ReadingStoreUnavailable`: the
consumer holds the messages, retries, and this class starts a new child; the store and the
dead-letter table are idempotent, so a cycle the dead child had committed is stored once. If the
MQTT process dies, the child reads end-of-file on its pipe and exits once it has committed what it
was handed (nothing of it is acked; the broker redelivers it).

The child is started with the "spawn" method (a fresh interpreter): forking a process that already
runs threads (paho's, the worker) can copy a lock held by another thread (Python docs,
multiprocessing, "Contexts and start methods"). `open_parts` must therefore be picklable: a
module-level function or a `functools.partial` of one, called in the child to open the store and the
clinic database (and to set up logging there).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, Final

from ingest.pipeline import ClinicAccess, CycleResult, IngestPipeline
from ingest.runtime import freeze_startup_heap
from ingest.validation import InboundMessage
from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.clinic.repository import DeadLetterRecord
from storage.readings.protocol import ReadingStore, ReadingStoreUnavailable

logger = logging.getLogger(__name__)

# Committer threads in the child: a store write waits on I/O (InfluxDB's HTTP round trip, SQLite's
# fsync) with the GIL released, so a second committer overlaps one cycle's write with the next one's.
COMMITTERS: Final = 2
START_TIMEOUT_S: Final = 60.0  # a fresh interpreter importing pydantic, SQLAlchemy, the store
_POLL_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class PipelineParts:
    """What the child opens: the reading store, the clinic database access, and how to close both."""

    store: ReadingStore
    clinic: ClinicAccess
    close: Callable[[], None]


PartsFactory = Callable[[], PipelineParts]


class PipelineProcessError(RuntimeError):
    """The child failed a cycle in a way that is neither an unavailable store nor a database outage
    (a bug). The consumer treats it as any unexpected failure: hold, retry, isolate the message.
    `failure` is the child's exception type: its message stays in the child's log (it may quote
    the payload)."""

    def __init__(self, failure: str) -> None:
        super().__init__(f"ingest pipeline process failed: {failure}")
        self.failure = failure


class PipelineProcessDied(ReadingStoreUnavailable):
    """The child died with a cycle in hand (killed, out of memory, or a crash in native code). Held
    and retried like an unavailable store; the consumer also counts repeated deaths on one cycle
    toward isolating the message that causes them (ingest.worker.ISOLATE_AFTER_FAILURES)."""


# -- the child ---------------------------------------------------------------------------------

# Requests (tuples, pickled): ("cycle", want_committed, [(topic, payload, received_at), ...]),
# ("dead_letter", record), ("stop",). Answers: ("ok", summary) or (error kind, message).
_CYCLE: Final = "cycle"
_DEAD_LETTER: Final = "dead_letter"
_STOP: Final = "stop"
_OK: Final = "ok"
_STORE_DOWN: Final = "store_unavailable"
_DATABASE_DOWN: Final = "database_unavailable"
_FAILED: Final = "failed"

WireMessage = tuple[str, bytes, datetime]


def _serve(conn: Connection, open_parts: PartsFactory, binding_cache_ttl_s: float) -> None:
    """The child: this thread receives requests and prepares cycles (parse, validate, bindings);
    `COMMITTERS` threads write them, and the answers go back in the order received
    (`_AnswersInOrder`). So while a cycle waits on its commit (an fsync, an InfluxDB round trip:
    both release the GIL) the next one is parsed, and into InfluxDB two writes are in flight at
    once (SQLite's write lock takes them one at a time). Two cycles may commit in either order:
    both are acked only once both have committed, in order, and a reading in both is written
    once (the second waits for the first's commit: ingest.pipeline.ReadingsInCommit). Runs until "stop" or end-of-file (the parent is gone)."""
    # SIGTERM from a service manager and Ctrl-C's SIGINT reach the whole process group. The parent
    # stops first (finishing its cycles) and then sends "stop"; if it is killed, end-of-file ends
    # this process instead.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parts = open_parts()
    try:
        pipeline = IngestPipeline(
            parts.store, parts.clinic, parts.clinic, binding_cache_ttl_s=binding_cache_ttl_s
        )
        freeze_startup_heap()  # wired: keep the start-up heap out of collections (ingest.runtime)
        conn.send((_OK, None))
        # Unbounded, but the parent never has more than a few cycles (or one dead letter) outstanding.
        handed: queue.SimpleQueue[tuple[int, str, Any, Any] | None] = queue.SimpleQueue()
        answers = _AnswersInOrder(conn)
        committers = [
            threading.Thread(
                target=_commit, args=(pipeline, parts.clinic, handed, answers), name=f"ingest-commit-{i}"
            )
            for i in range(COMMITTERS)
        ]
        for committer in committers:
            committer.start()
        try:
            for number in itertools.count():
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    return
                kind = request[0]
                if kind == _STOP or answers.parent_gone:
                    return
                if kind == _CYCLE:
                    messages = _inbound(request[2])
                    handed.put((number, kind, request[1], _answer_for(pipeline.prepare, messages)))
                else:
                    handed.put((number, kind, request[1], None))
        finally:
            for _ in committers:
                handed.put(None)
            for committer in committers:
                committer.join()
    finally:
        parts.close()


class _AnswersInOrder:
    """Answers sent in request order, whichever committer finished first."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._ready: dict[int, tuple[str, Any]] = {}
        self._next = 0
        self.parent_gone = False

    def put(self, number: int, answer: tuple[str, Any]) -> None:
        with self._lock:
            self._ready[number] = answer
            while self._next in self._ready and not self.parent_gone:
                try:
                    self._conn.send(self._ready.pop(self._next))
                except OSError:
                    self.parent_gone = True  # the receiving thread reads end-of-file and stops
                self._next += 1


def _commit(
    pipeline: IngestPipeline,
    clinic: ClinicAccess,
    handed: queue.SimpleQueue[tuple[int, str, Any, Any] | None],
    answers: _AnswersInOrder,
) -> None:
    """A committer thread of the child: writes prepared cycles (or a dead letter) and answers.

    Failures of a step are answers (`_answer_for`). Anything else escaping here would leave a
    request unanswered forever: the child exits instead, which the parent sees and recovers from."""
    try:
        _commit_until_stopped(pipeline, clinic, handed, answers)
    except BaseException:
        logger.exception("ingest pipeline process: committer failed; exiting")
        os._exit(70)


def _commit_until_stopped(
    pipeline: IngestPipeline,
    clinic: ClinicAccess,
    handed: queue.SimpleQueue[tuple[int, str, Any, Any] | None],
    answers: _AnswersInOrder,
) -> None:
    while (item := handed.get()) is not None:
        number, kind, argument, prepared = item
        if kind == _CYCLE:
            status, value = prepared
            answer = (
                _answer_for(lambda cycle, want: _summary(pipeline.commit(cycle), want), value, argument)
                if status == _OK
                else prepared
            )
        else:
            answer = _answer_for(clinic.add_dead_letters, [argument])
        answers.put(number, answer)


def _answer_for(step: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """Run one step of a request; its value, or the failure as the parent will raise it."""
    try:
        return (_OK, step(*args))
    except ReadingStoreUnavailable as exc:
        return (_STORE_DOWN, str(exc))
    except ClinicDatabaseUnavailableError as exc:
        return (_DATABASE_DOWN, str(exc))
    except Exception as exc:
        logger.exception("ingest pipeline process: request failed")
        return (_FAILED, type(exc).__name__)


def _inbound(wire: list[WireMessage]) -> list[InboundMessage]:
    # The pipeline reads topic, payload and received_at; packet ids stay with the consumer.
    return [InboundMessage(mid=0, qos=1, topic=t, payload=p, received_at=r) for t, p, r in wire]


def _summary(result: CycleResult, want_committed: bool) -> tuple[Any, ...]:
    """What crosses back: counters, the application acks as their JSON bytes, and the committed
    readings only when the consumer has listeners (pickling the models is the costly part)."""
    return (
        {gateway_id: ack.model_dump_json().encode() for gateway_id, ack in result.acks.items()},
        result.readings_received,
        result.stored,
        result.duplicates,
        result.rejected,
        result.dead_lettered_messages,
        result.lag_s,
        result.committed if want_committed else [],
    )


def _raise_failure(kind: str, value: Any) -> Any:
    """The child's answer's value, or the exception it stands for."""
    if kind == _OK:
        return value
    if kind == _STORE_DOWN:
        raise ReadingStoreUnavailable(value)
    if kind == _DATABASE_DOWN:
        raise ClinicDatabaseUnavailableError(value)
    raise PipelineProcessError(value)


@dataclass(slots=True)
class _Submitted:
    """A cycle handed to the child (`conn`: the child's pipe it went down), or that could not be
    (`error`, raised by its `result()`)."""

    messages: list[InboundMessage]
    conn: Connection | None
    error: Exception | None = None
    process: multiprocessing.process.BaseProcess | None = None


# -- the parent --------------------------------------------------------------------------------


class PipelineProcess:
    """`IngestPipeline` in a child process, with the same `process` contract (see module doc).

    `start()` spawns the child and waits until it has opened its store; `close()` stops it, from any
    thread. `submit`, `result`, `process` and `add_dead_letters` are called from one thread (the
    consumer's worker). A dead child is replaced on the next cycle."""

    # One cycle being prepared and one per committer thread (COMMITTERS), so the child is never
    # idle while the consumer acks.
    max_outstanding: Final = 1 + COMMITTERS

    def __init__(
        self,
        open_parts: PartsFactory,
        *,
        binding_cache_ttl_s: float = 5.0,
        want_committed: bool = False,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self._open_parts = open_parts
        self._binding_cache_ttl_s = binding_cache_ttl_s
        self.want_committed = want_committed
        self._start_timeout_s = start_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        # Guards the child, its pipe, `_submitted` and sends; never held while waiting for an answer.
        self._lock = threading.Lock()
        self._closed = False
        self._children_started = 0
        self._submitted: deque[_Submitted] = deque()

    @property
    def restarts(self) -> int:
        """Children started after the first (one died, or was closed and needed again)."""
        return max(0, self._children_started - 1)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        with self._lock:
            self._ensure_child()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child: it commits what it was handed, then exits (killed after `timeout_s`).
        Callable from any thread, also while the worker waits for an answer (that wait then ends
        in `PipelineProcessDied`, and nothing of it is acked). A closed instance starts no child."""
        with self._lock:
            self._closed = True
            process, conn = self._process, self._conn
            self._process = self._conn = None
            if process is None or conn is None:
                return
            with contextlib.suppress(OSError):
                conn.send((_STOP,))
        process.join(timeout_s)
        if process.is_alive():
            logger.error("ingest pipeline process did not stop; killing it")
            process.kill()
            process.join(timeout_s)
        conn.close()

    def process(self, messages: Sequence[InboundMessage]) -> CycleResult:
        """Run one cycle in the child (`submit`, then `result`); nothing else may be outstanding."""
        self.submit(messages)
        return self.result()

    def submit(self, messages: Sequence[InboundMessage]) -> None:
        """Hand a cycle to the child and return at once; `result()` answers for cycles in submission
        order. Never raises: a failure to hand it over is raised by its `result()`."""
        wire = [(m.topic, m.payload, m.received_at) for m in messages]
        with self._lock:
            try:
                conn = self._ensure_child()
                conn.send((_CYCLE, self.want_committed, wire))
            except OSError as exc:
                error = PipelineProcessDied(
                    f"ingest pipeline process gone (exit code {self._discard_child()})"
                )
                error.__cause__ = exc
                self._submitted.append(_Submitted(list(messages), None, error))
            except Exception as exc:  # ReadingStoreUnavailable from a start that failed, or a bug
                self._submitted.append(_Submitted(list(messages), None, exc))
            else:
                self._submitted.append(_Submitted(list(messages), conn, process=self._process))

    def oldest_outstanding(self) -> list[InboundMessage]:
        """The messages of the cycle the next `result()` answers for."""
        return self._submitted[0].messages

    @property
    def outstanding(self) -> int:
        """Cycles submitted whose `result()` has not been taken."""
        return len(self._submitted)

    def result(self) -> CycleResult:
        """The oldest submitted cycle's result, once the child has committed it. Raises what
        `IngestPipeline.process` raises (the store or the clinic database unavailable),
        `PipelineProcessDied` when the child died (or was closed) before answering,
        `ReadingStoreUnavailable` when it could not be started, and `PipelineProcessError` for any
        other failure in the child."""
        with self._lock:
            entry = self._submitted.popleft()
            if entry.error is not None:
                raise entry.error
            if entry.conn is None or entry.conn is not self._conn:
                raise PipelineProcessDied("ingest pipeline process exited before answering")
        kind, value = self._answer(entry.conn, entry.process, "mid-cycle")
        acks, received, stored, duplicates, rejected, dead_lettered, lag_s, committed = _raise_failure(
            kind, value
        )
        return CycleResult(
            entry.messages,
            encoded_acks=acks,
            committed=committed,
            readings_received=received,
            stored=stored,
            duplicates=duplicates,
            rejected=rejected,
            dead_lettered_messages=dead_lettered,
            lag_s=lag_s,
        )

    def add_dead_letters(self, records: Sequence[DeadLetterRecord]) -> int:
        """Write dead letters through the child (nothing may be outstanding)."""
        for record in records:
            with self._lock:
                if self._submitted:
                    raise RuntimeError("add_dead_letters while cycles are outstanding")
                conn = self._ensure_child()
                process = self._process
                try:
                    conn.send((_DEAD_LETTER, record))
                except OSError as exc:
                    exit_code = self._discard_child()
                    raise PipelineProcessDied(
                        f"ingest pipeline process gone (exit code {exit_code})"
                    ) from exc
            _raise_failure(*self._answer(conn, process, "writing a dead letter"))
        return len(records)

    # -- helpers ---------------------------------------------------------------------------------

    def _answer(
        self, conn: Connection, process: multiprocessing.process.BaseProcess | None, doing: str
    ) -> tuple[str, Any]:
        """Wait for the child's answer without holding the lock, noticing its death (poll, then
        is_alive) or `close()` instead of hanging; a death is `PipelineProcessDied`."""
        try:
            while not conn.poll(_POLL_S):
                if self._closed or process is None or not process.is_alive():
                    raise EOFError("closed" if self._closed else "exited")
            answer: tuple[str, Any] = conn.recv()
        except (EOFError, OSError) as exc:
            with self._lock:
                exit_code = self._discard_child() if conn is self._conn else None
            logger.error("ingest pipeline process died %s", doing, extra={"exit_code": exit_code})
            raise PipelineProcessDied(
                f"ingest pipeline process exited {doing} (exit code {exit_code})"
            ) from exc
        return answer

    def _ensure_child(self) -> Connection:
        """The current child's pipe, starting a child if there is none (caller holds the lock)."""
        if self._closed:
            raise ReadingStoreUnavailable("ingest pipeline process closed")
        if self._process is not None and self._conn is not None and self._process.is_alive():
            return self._conn
        if self._process is not None:
            logger.error(
                "ingest pipeline process died; starting a new one",
                extra={"exit_code": self._discard_child()},
            )
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        try:
            process = self._ctx.Process(
                target=_serve,
                args=(child_conn, self._open_parts, self._binding_cache_ttl_s),
                name="vitalgate-ingest-pipeline",
                daemon=True,
            )
            process.start()
        except Exception as exc:  # e.g. EAGAIN or EMFILE: no pipes left behind
            parent_conn.close()
            child_conn.close()
            raise ReadingStoreUnavailable(f"cannot start the ingest pipeline process: {exc}") from exc
        self._children_started += 1
        child_conn.close()
        self._process, self._conn = process, parent_conn
        deadline = time.monotonic() + self._start_timeout_s
        try:
            while not parent_conn.poll(_POLL_S):
                if not process.is_alive() or time.monotonic() > deadline:
                    raise EOFError("did not start")
            parent_conn.recv()
        except (EOFError, OSError) as exc:
            self._discard_child()
            raise ReadingStoreUnavailable(
                f"ingest pipeline process could not open the store ({exc}); see its log"
            ) from exc
        logger.info("ingest pipeline process started", extra={"pid": process.pid})
        return parent_conn

    def _discard_child(self) -> int | None:
        """Forget the child (killing it if it still runs); returns its exit code."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join(5.0)
        return process.exitcode
