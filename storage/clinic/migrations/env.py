"""Alembic environment, driven programmatically by storage.clinic.database (no alembic.ini)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, ForeignKeyConstraint, text

from storage.clinic.database import create_clinic_engine
from storage.clinic.models import Base

config = context.config
target_metadata = Base.metadata

_ForeignKey = tuple[str, tuple[str, ...], str, tuple[str, ...], str]


def _sqlite_foreign_keys(connection: Connection) -> set[_ForeignKey]:
    """Every foreign key as SQLite enforces it (PRAGMA foreign_key_list): table, columns, referred
    table, referred columns, ON DELETE action."""
    found: set[_ForeignKey] = set()
    for table in target_metadata.tables:
        rows: dict[int, list[Any]] = {}
        for row in connection.execute(text(f"PRAGMA foreign_key_list({table})")):
            rows.setdefault(row[0], []).append(row)
        for parts in rows.values():
            parts.sort(key=lambda r: r[1])
            columns = tuple(str(r[3]) for r in parts)
            referred = tuple(str(r[4]) for r in parts)
            found.add((table, columns, str(parts[0][2]), referred, str(parts[0][6]).upper()))
    return found


def _compare_sqlite_foreign_keys_as_enforced(connection: Connection) -> Any:
    """An `include_object` hook for SQLite. SQLAlchemy reads a foreign key's name and ON DELETE only
    from a table-level FOREIGN KEY clause; a column added in place (ALTER TABLE ... ADD COLUMN ...
    REFERENCES, e.g. 0008) carries them in its column definition, where reflection misses them. A
    model foreign key that SQLite enforces exactly as declared is left out of the comparison, on
    both sides; any other difference is still reported. The PRAGMAs run at the first comparison
    only: run before the migration's transaction, they would open one that is never committed."""
    enforced: list[set[_ForeignKey]] = []

    def declared(fk: ForeignKeyConstraint) -> _ForeignKey:
        table = fk.table.name
        model = target_metadata.tables.get(table)
        ondelete = fk.ondelete
        if model is not None and ondelete is None:  # the reflected side: take the model's action
            for other in model.foreign_key_constraints:
                if tuple(other.column_keys) == tuple(fk.column_keys):
                    ondelete = other.ondelete
        referred = tuple(e.target_fullname.split(".")[-1] for e in fk.elements)
        target = fk.elements[0].target_fullname.split(".")[0]
        return (table, tuple(fk.column_keys), target, referred, (ondelete or "NO ACTION").upper())

    def include(obj: Any, _name: Any, type_: str, _reflected: bool, _compare_to: Any) -> bool:
        if type_ == "foreign_key_constraint" and isinstance(obj, ForeignKeyConstraint):
            if not enforced:
                enforced.append(_sqlite_foreign_keys(connection))
            return declared(obj) not in enforced[0]
        return True

    return include


def _run(engine: Engine) -> None:
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table (Alembic "batch" docs).
            render_as_batch=sqlite,
            compare_type=True,
            include_object=_compare_sqlite_foreign_keys_as_enforced(connection) if sqlite else None,
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
