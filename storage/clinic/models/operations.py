"""Operational records: the audit log, dead letters of ingest, and the turns of periodic jobs."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.clinic.models.base import (
    METER_KEY_LENGTH,
    OPAQUE_ID_LENGTH,
    READING_ID_LENGTH,
    TOPIC_LENGTH,
    Base,
    str_enum,
    utcnow,
)


class DeadLetterScope(enum.StrEnum):
    MESSAGE = "message"  # a whole MQTT payload that can never be stored
    READING = "reading"  # one reading of an otherwise valid batch, rejected (e.g. unbound meter)


class AuditLogEntry(Base):
    """Security audit trail (HIPAA §164.312(b), reliability.md §5.1). No personal data in `details`."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_object", "object_type", "object_id"),
    )

    audit_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), doc="user_id, gateway_id or 'system'")
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(METER_KEY_LENGTH))
    clinic_id: Mapped[str | None] = mapped_column(String(OPAQUE_ID_LENGTH))
    outcome: Mapped[str] = mapped_column(String(16), default="allowed", doc="allowed | denied | error")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DeadLetter(Base):
    """A payload (or one reading of it) that can never be stored, kept with its raw bytes.

    `dedup_key` makes dead-lettering idempotent: the same bytes replayed on the same topic (or the
    same rejected reading) is recorded once and `times_seen` counts the repeats.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_received_at", "received_at"),)

    dead_letter_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[DeadLetterScope] = mapped_column(str_enum(DeadLetterScope, 16))
    topic: Mapped[str] = mapped_column(String(TOPIC_LENGTH))
    gateway_id: Mapped[str | None] = mapped_column(String(OPAQUE_ID_LENGTH), index=True)
    reading_id: Mapped[str | None] = mapped_column(String(READING_ID_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    times_seen: Mapped[int] = mapped_column(Integer, default=1)


JOB_NAME_LENGTH: Final = 64


RUNNER_LENGTH: Final = 128


class PeriodicRun(Base):
    """The latest turn of each periodic job the clinic's processes share (storage.clinic.coordination.claim_turn)."""

    __tablename__ = "periodic_runs"

    job: Mapped[str] = mapped_column(String(JOB_NAME_LENGTH), primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    runner: Mapped[str] = mapped_column(String(RUNNER_LENGTH), doc="host and process id; never a person")
    turns: Mapped[int] = mapped_column(Integer, default=0)
