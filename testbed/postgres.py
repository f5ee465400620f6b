"""A throw-away PostgreSQL database on the development machine's server, for tests and benches.

The development machine and CI serve PostgreSQL on 127.0.0.1:5432 with trust auth (DESIGN.md, Real
components); `VITALGATE_TEST_POSTGRES_URL` points elsewhere. Each user creates a uniquely named
database and drops it at the end, so runs side by side never meet.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from sqlalchemy import text

from storage.clinic.database import create_clinic_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "VITALGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CONNECT_TIMEOUT_S = 3


def postgres_absent_reason() -> str | None:
    """Why the PostgreSQL server cannot be reached, or None when it can."""
    import psycopg

    plain = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, connect_timeout=CONNECT_TIMEOUT_S):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable at {plain.split('@')[-1]} ({type(exc).__name__})"


@contextlib.contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """The URL of an empty database created for this run (named `<prefix>_<pid>_<random>`), dropped
    at the end even where connections to it are still open."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_clinic_engine(POSTGRES_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
