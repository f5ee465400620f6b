"""Alembic environment, driven programmatically by storage.clinic.database (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from storage.clinic.database import create_clinic_engine
from storage.clinic.models import Base

config = context.config
target_metadata = Base.metadata


def _run(engine: Engine) -> None:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table (Alembic "batch" docs).
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        _run(engine)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: no engine and no sqlalchemy.url configured")
    owned = create_clinic_engine(url)
    try:
        _run(owned)
    finally:
        owned.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; pass a database url")
run_migrations_online()
