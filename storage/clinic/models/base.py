"""What every clinic table shares: the declarative `Base` with its constraint naming convention, the
`UTCDateTime` type, enums stored as strings, and the column lengths."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import DateTime, Dialect, Enum, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

# Explicit constraint names, so that migrations are reproducible and identical on SQLite and
# PostgreSQL (Alembic docs, "The Importance of Naming Constraints").
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


OPAQUE_ID_LENGTH: Final = 64  # vitals.payload _ID: ^[A-Za-z0-9_-]{1,64}$


METER_KEY_LENGTH: Final = 200  # DeviceIdentity.meter_key: manufacturer|model|serial (each <= 64)


READING_ID_LENGTH: Final = 32  # vitals.identity.READING_ID_HEX_CHARS


RULE_ID_LENGTH: Final = 64


REASON_LENGTH: Final = 500  # vitals.payload.RejectedReading.reason max_length


TOPIC_LENGTH: Final = 300  # our topics are < 100 chars; longer ones are stored cut (with a mark)


HASH_LENGTH: Final = 255  # argon2/PHC strings are ~100 chars; room for parameter changes


RESOLUTION_NOTE_LENGTH: Final = 1000  # a clinician's resolve or sign-off note


URL_LENGTH: Final = 2048  # webhook receiver URLs (configuration); longer ones are stored cut (with a mark)


def cut_to(text: str, length: int) -> str:
    """`text` fitted to a column of `length` characters: cut, with a "…" mark, when longer."""
    return text if len(text) <= length else text[: length - 1] + "…"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every engine.

    PostgreSQL stores `timestamptz`; SQLite stores the UTC wall time without an offset, so values
    are normalised to UTC on the way in and marked UTC on the way out. Naive datetimes are refused:
    a time without a zone is a bug here (DESIGN.md, Storage: store times as UTC).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: clinic database times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(enum_type: type[enum.Enum], length: int = 32) -> Enum:
    """Store an enum's values (not names) as VARCHAR on every engine."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}
