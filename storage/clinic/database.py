"""Engine, sessions and migrations for the clinic database.

SQLite (the default) runs with WAL and foreign keys on; PostgreSQL is the production engine. The
schema is created only by Alembic migrations shipped in this package (`upgrade_to_head`), never by
`metadata.create_all`, so tests exercise the same path as a deployment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
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


def upgrade_to_head(url: str | None = None, *, engine: Engine | None = None) -> None:
    """Migrate the database at `url` (or `engine`) to the newest schema revision."""
    if url is None and engine is None:
        raise ValueError("upgrade_to_head needs a url or an engine")
    command.upgrade(alembic_config(url, engine), "head")
    backend = engine.dialect.name if engine is not None else make_url(url or "").get_backend_name()
    # The backend name, never the URL: it may hold a password.
    logger.debug("clinic database at head", extra={"backend": backend})
