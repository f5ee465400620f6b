"""How the clinic's processes share work through the clinic database, so that any number of
`vitalgate ingest` and `vitalgate api` replicas can run and none is the only one of its kind
(DESIGN.md, Going past one machine: PostgreSQL for coordination, advisory locks and LISTEN/NOTIFY).

- Periodic jobs (the alert sweep, the poll for readings left unevaluated, the daily digest, retention)
  run once per interval across the replicas: `claim_turn`. On PostgreSQL the claim first takes
  `pg_try_advisory_xact_lock` on the job's key, so a replica that finds another one claiming moves on
  at once instead of queueing behind it; on every engine the claim is then a conditional update of the
  job's `periodic_runs` row (started at least one interval ago), committed before the job runs, so a
  second replica waking within the interval finds the turn taken. A replica that dies during its job
  leaves the next turn to whichever replica wakes after the interval.
- One patient's alert evaluation at a time across replicas: `exclusive`, with the patient's key, holds
  `pg_advisory_xact_lock` for the evaluation on a connection of its own (the lock ends with that
  transaction, so a crashed replica never leaves it held). SQLite is one machine's file: there the
  lock is a lock inside the process (`ClinicDatabase.local_locks`) and an flock(2) on one of
  LOCK_FILES files beside the database file, chosen by the key (a process that dies releases it).
- Alert events: every row inserted into `alert_events` notifies `ALERT_EVENTS_CHANNEL` with its
  `alert_event_id` (a trigger, migration 0013), at commit. `Notifications` listens in a thread of its
  own, so every API replica's live stream can carry every event whichever replica made it
  (alerts.event_feed).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from storage.clinic.database import ClinicDatabase, ClinicDatabaseUnavailableError, advisory_key
from storage.clinic.models import RUNNER_LENGTH, PeriodicRun

logger = logging.getLogger(__name__)

ALERT_EVENTS_CHANNEL: Final = "vitalgate_alert_events"
NEVER: Final = datetime(1970, 1, 1, tzinfo=UTC)  # `started_at` of a job row no turn has used yet
LISTEN_POLL_S: Final = 0.5  # how often the listening thread looks up from the socket to see `stop`
RELISTEN_AFTER_S: Final = 2.0  # pause before listening again on a new connection after a failure
LOCK_FILES: Final = 256  # SQLite: names share a lock file by their key modulo this (rarely, and harmlessly)
LOCK_POLL_S: Final = 0.005  # SQLite: how often a lock file held by another process is tried again


@dataclass(frozen=True, slots=True)
class Turn:
    """A periodic job's turn, claimed by this process: it runs the job now."""

    job: str
    started_at: datetime
    previous_started_at: datetime | None  # None: the first turn this database has seen


def claim_turn(
    database: ClinicDatabase, job: str, every: timedelta, *, now: datetime, runner: str
) -> Turn | None:
    """This process's turn at `job` if no process started it within `every` before `now`; None when
    another process holds it or it is not due. Committed before returning, so the turn is taken."""
    key = advisory_key("job", job)
    try:
        with database.sessions() as session, session.begin():
            if database.dialect == "postgresql" and not session.scalar(
                select(func.pg_try_advisory_xact_lock(key))
            ):
                return None  # another replica is claiming it this moment
            insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
            # The row first: on SQLite this write also takes the file's write lock before the read,
            # so two processes cannot both read the old start and both update it.
            session.execute(
                insert(PeriodicRun)
                .values(job=job, started_at=NEVER, runner="", turns=0)
                .on_conflict_do_nothing(index_elements=["job"])
            )
            previous = session.scalar(select(PeriodicRun.started_at).where(PeriodicRun.job == job))
            if previous is not None and previous > now - every:
                return None
            session.execute(
                update(PeriodicRun)
                .where(PeriodicRun.job == job)
                .values(
                    started_at=now,
                    finished_at=None,
                    runner=runner[:RUNNER_LENGTH],
                    turns=PeriodicRun.turns + 1,
                )
            )
    except OperationalError as exc:
        # SQLite: another process held the write lock past the busy timeout. Its turn, then.
        logger.warning(
            "periodic job not claimed: database busy", extra={"job": job, "error": type(exc).__name__}
        )
        return None
    return Turn(job, now, None if previous is None or previous <= NEVER else previous)


def finish_turn(database: ClinicDatabase, turn: Turn, at: datetime) -> None:
    """Record when `turn` ended (operators read `periodic_runs` to see the jobs at work)."""
    with database.sessions() as session, session.begin():
        session.execute(
            update(PeriodicRun)
            .where(PeriodicRun.job == turn.job, PeriodicRun.started_at == turn.started_at)
            .values(finished_at=at)
        )


class DatabaseTurns:
    """Turns at periodic jobs shared by every process on `database` (`claim_turn`), as `runner`."""

    def __init__(self, database: ClinicDatabase, runner: str) -> None:
        self.database = database
        self.runner = runner

    def claim(self, job: str, every: timedelta, now: datetime) -> Turn | None:
        return claim_turn(self.database, job, every, now=now, runner=self.runner)

    def finish(self, turn: Turn, at: datetime) -> None:
        finish_turn(self.database, turn, at)


class LocalTurns:
    """Turns kept inside one process: every job is due once per interval of this process alone (a
    process with no clinic database to share them through: tests, replay)."""

    def __init__(self) -> None:
        self._last: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def claim(self, job: str, every: timedelta, now: datetime) -> Turn | None:
        with self._lock:
            previous = self._last.get(job)
            if previous is not None and previous > now - every:
                return None
            self._last[job] = now
        return Turn(job, now, previous)

    def finish(self, turn: Turn, at: datetime) -> None:
        """Nothing to record."""


def periodic_runs(database: ClinicDatabase) -> dict[str, PeriodicRun]:
    """Every job's latest turn, by job name."""
    with database.sessions() as session:
        return {row.job: row for row in session.scalars(select(PeriodicRun))}


@contextmanager
def exclusive(database: ClinicDatabase, kind: str, name: str, *, timeout_s: float) -> Iterator[None]:
    """Hold the clinic-wide lock on `name` of `kind` (e.g. a patient's alert evaluation) for the
    block: an advisory transaction lock on PostgreSQL, a lock inside this process on SQLite. Raises
    ClinicDatabaseUnavailableError when it was not taken within `timeout_s`."""
    if database.dialect != "postgresql":
        deadline = time.monotonic() + timeout_s
        with database.local_locks.held(f"{kind}:{name}", timeout_s):
            if database.lock_dir is None:  # an in-memory database: this process alone
                yield
                return
            with _file_lock(database.lock_dir, advisory_key(kind, name) % LOCK_FILES, deadline):
                yield
        return
    with database.engine.connect() as connection:
        try:
            # set_config(..., true): for this transaction only; the pool's connection keeps its default.
            connection.execute(select(func.set_config("lock_timeout", f"{int(timeout_s * 1000)}ms", True)))
            connection.execute(select(func.pg_advisory_xact_lock(advisory_key(kind, name))))
        except OperationalError as exc:
            connection.rollback()
            raise ClinicDatabaseUnavailableError(f"{kind} lock not taken within {timeout_s} s") from exc
        try:
            yield
        finally:
            connection.rollback()  # ends the transaction, and with it the lock


@contextmanager
def _file_lock(directory: Path, number: int, deadline: float) -> Iterator[None]:
    """flock(2) on lock file `number` in `directory` until the block ends, waiting until `deadline`
    (time.monotonic) at most. Each hold opens the file anew: flock belongs to the open file, so two
    holders in one process exclude each other too, and closing releases it."""
    directory.mkdir(exist_ok=True)
    fd = os.open(directory / f"{number:03d}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ClinicDatabaseUnavailableError("lock file held by another process") from None
                time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


class Notifications:
    """LISTEN on one PostgreSQL channel, in a thread of its own, until `stop`: every payload goes to
    `deliver` (from that thread). After each (re)connection `connected` is called first, so the
    caller can catch up on what was sent while no connection listened."""

    def __init__(
        self,
        database: ClinicDatabase,
        channel: str,
        deliver: Callable[[str], None],
        *,
        connected: Callable[[], None] = lambda: None,
    ) -> None:
        if database.dialect != "postgresql":
            raise ValueError("notifications need PostgreSQL")
        self.database = database
        self.channel = channel
        self.deliver = deliver
        self.connected = connected
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # a lost connection, a restarted server: listen again
                self.listening.clear()
                logger.warning(
                    "notification listener lost its connection; listening again",
                    extra={"channel": self.channel, "error": type(exc).__name__},
                )
                self._stop.wait(RELISTEN_AFTER_S)

    def _listen(self) -> None:
        pooled = self.database.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # this connection listens for the process's life: not the pool's to hand out
        try:
            connection.autocommit = True  # type: ignore[union-attr]
            connection.execute(text(f"LISTEN {self.channel}").text)  # type: ignore[union-attr]
            self.listening.set()
            self.connected()
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=LISTEN_POLL_S):  # type: ignore[union-attr]
                    self.deliver(notification.payload)
        finally:
            self.listening.clear()
            pooled.close()
