"""Engine, sessions and migrations for the clinic database.

SQLite (the default) runs with WAL and foreign keys on; PostgreSQL is the production engine. The
schema is created only by Alembic migrations shipped in this package (`upgrade_to_head`), never by
`metadata.create_all`, so tests exercise the same path as a deployment.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000


class ClinicDatabaseError(Exception):
    """Base class for clinic database errors."""


class ClinicDatabaseUnavailableError(ClinicDatabaseError):
    """The clinic database could not be reached or is locked; the operation may be retried."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite and must be enabled per connection
    # (sqlite.org/foreignkeys.html §2); WAL lets readers proceed during a write.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a dead letter is acked to the broker once committed, so it must survive power loss.
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def create_clinic_engine(url: str, *, echo: bool = False) -> Engine:
    """An Engine for `url` (sqlite:///path or postgresql+psycopg://...), with SQLite pragmas set."""
    parsed = make_url(url)
    # hide_parameters: SQL errors would otherwise carry bound values (names, e-mail addresses) into
    # tracebacks and logs (DESIGN.md: no personal data in logs or error messages).
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False}
        kwargs.pop("pool_pre_ping")
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


class KeyedLocks:
    """A lock per name inside one process, each forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def held(self, name: str, timeout_s: float) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(name, (threading.Lock(), 0))
            self._locks[name] = (lock, users + 1)
        try:
            if not lock.acquire(timeout=timeout_s):
                raise ClinicDatabaseUnavailableError(f"lock {name!r} not taken within {timeout_s} s")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                lock, users = self._locks[name]
                if users == 1:
                    del self._locks[name]
                else:
                    self._locks[name] = (lock, users - 1)


class ClinicDatabase:
    """One process's clinic database: its engine and its session factory, opened once by the
    composition root and closed once (`close` releases every pooled connection).

    The processes of a clinic (ingest and API replicas) also coordinate through it on PostgreSQL:
    advisory locks and notifications (storage.clinic.coordination)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        # What stands in for PostgreSQL's advisory locks where the database is one machine's file
        # (storage.clinic.coordination): locks between this process's threads, and lock files beside
        # the database file between the processes sharing it.
        self.local_locks = KeyedLocks()
        database_file = engine.url.database if engine.dialect.name == "sqlite" else None
        self.lock_dir = Path(f"{database_file}.locks") if database_file else None
        self._closed = threading.Event()

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, echo: bool = False) -> ClinicDatabase:
        """The database at `url`, migrated to the newest schema unless `migrate` is false (a process
        whose parent migrated it already)."""
        engine = create_clinic_engine(url, echo=echo)
        try:
            if migrate:
                _upgrade_one_at_a_time(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def dialect(self) -> str:
        """ "postgresql" or "sqlite"."""
        return self.engine.dialect.name

    @property
    def shared_by_hosts(self) -> bool:
        """Whether processes on several machines can share it (PostgreSQL), so coordination between
        them goes through the database; SQLite is one machine's file."""
        return self.dialect == "postgresql"

    def close(self) -> None:
        """Release the engine's pooled connections. Idempotent."""
        if not self._closed.is_set():
            self._closed.set()
            self.engine.dispose()

    def __enter__(self) -> ClinicDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def alembic_config(url: str | None = None, engine: Engine | None = None) -> Config:
    """An Alembic Config pointing at the migrations shipped in this package; no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def advisory_key(kind: str, name: str) -> int:
    """A signed 64-bit PostgreSQL advisory-lock key for `name` of `kind` (hashtext gives 32 bits)."""
    digest = hashlib.sha256(f"vitalgate:{kind}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _upgrade_one_at_a_time(engine: Engine) -> None:
    """`upgrade_to_head`, on PostgreSQL under a session advisory lock: replicas starting together wait
    for the first one's migration instead of running the same one at once."""
    if engine.dialect.name != "postgresql":
        upgrade_to_head(engine=engine)
        return
    key = advisory_key("migrations", "clinic")
    with engine.connect() as connection:
        connection.execute(select(func.pg_advisory_lock(key)))
        try:
            upgrade_to_head(engine=engine)
        finally:
            connection.execute(select(func.pg_advisory_unlock(key)))
            connection.commit()


def upgrade_to_head(url: str | None = None, *, engine: Engine | None = None) -> None:
    """Migrate the database at `url` (or `engine`) to the newest schema revision."""
    if url is None and engine is None:
        raise ValueError("upgrade_to_head needs a url or an engine")
    command.upgrade(alembic_config(url, engine), "head")
    backend = engine.dialect.name if engine is not None else make_url(url or "").get_backend_name()
    # The backend name, never the URL: it may hold a password.
    logger.debug("clinic database at head", extra={"backend": backend})
