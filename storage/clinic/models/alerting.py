"""Alerts and their delivery: alerts with their lifecycle events, the e-mail outbox, digest
deliveries, and webhook deliveries given up on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.clinic.models.base import (
    OPAQUE_ID_LENGTH,
    REASON_LENGTH,
    RESOLUTION_NOTE_LENGTH,
    RULE_ID_LENGTH,
    URL_LENGTH,
    Base,
    str_enum,
    utcnow,
)
from vitals.payload import AlertSeverity, AlertState


class Alert(Base):
    """One alert per (patient, rule) while it is not resolved (clinical-rules.md §7, ESC-1).

    `trigger_values` holds the reading ids and values that fired the rule: numbers and ids only.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open_patient_rule",
            "patient_id",
            "rule_id",
            unique=True,
            sqlite_where=text("state <> 'resolved'"),
            postgresql_where=text("state <> 'resolved'"),
        ),
        Index("ix_alerts_state_opened_at", "state", "opened_at"),
        Index("ix_alerts_resolved_at", "resolved_at"),
        # A patient's alerts by rule, newest last: what each evaluation reads (alerts.repository).
        Index("ix_alerts_patient_id_rule_id_opened_at", "patient_id", "rule_id", "opened_at"),
        Index(
            "ix_alerts_needs_signoff_clinic_id",
            "clinic_id",
            sqlite_where=text("needs_signoff"),
            postgresql_where=text("needs_signoff"),
        ),
    )

    alert_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id", ondelete="CASCADE"))
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.clinic_id", ondelete="RESTRICT"), index=True)
    rule_id: Mapped[str] = mapped_column(String(RULE_ID_LENGTH))
    severity: Mapped[AlertSeverity] = mapped_column(str_enum(AlertSeverity, 16))
    state: Mapped[AlertState] = mapped_column(str_enum(AlertState, 16))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(ForeignKey("users.user_id", ondelete="SET NULL"))
    snoozed_until: Mapped[datetime | None]
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    trigger_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    resolved_by: Mapped[str | None] = mapped_column(
        ForeignKey("users.user_id", ondelete="SET NULL"), doc="the clinician; NULL: the engine (or none)"
    )
    resolution_note: Mapped[str | None] = mapped_column(String(RESOLUTION_NOTE_LENGTH))
    # An urgent alert that resolved before any clinician acknowledged it waits for a clinician's
    # sign-off (alerts.lifecycle: nothing urgent disappears unseen).
    needs_signoff: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    signed_off_at: Mapped[datetime | None]
    signed_off_by: Mapped[str | None] = mapped_column(ForeignKey("users.user_id", ondelete="SET NULL"))

    events: Mapped[list[AlertEventRecord]] = relationship(
        back_populates="alert", cascade="all, delete-orphan", order_by="AlertEventRecord.alert_event_id"
    )


class AlertEventRecord(Base):
    """Who did what to an alert, and when (opened, severity_raised, acknowledged, ...)."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_alert_id_at", "alert_id", "at"),)

    alert_event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.alert_id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), doc="user_id, or 'system'")
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[AlertState | None] = mapped_column(str_enum(AlertState, 16))
    to_state: Mapped[AlertState | None] = mapped_column(str_enum(AlertState, 16))
    severity: Mapped[AlertSeverity | None] = mapped_column(str_enum(AlertSeverity, 16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    alert: Mapped[Alert] = relationship(back_populates="events")


class EmailOutboxEntry(Base):
    """An urgent alert e-mail the SMTP server did not take, kept until it does (alerts.channels.email).

    `message` is the whole rendered e-mail (RFC 5322 bytes: recipients' addresses, opaque patient
    id, link; never a name), so a retry after a restart sends exactly what would have gone out, with
    the same Message-ID. `event_id` (the alert event's deterministic id) makes queuing idempotent.
    """

    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_sent_at_next_attempt_at", "sent_at", "next_attempt_at"),)

    outbox_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), unique=True)
    message: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(REASON_LENGTH), default="")
    sent_at: Mapped[datetime | None]
    given_up_at: Mapped[datetime | None]


class DigestDelivery(Base):
    """A family doctor's daily digest e-mail that went out (alerts.engine.AlertEngine.send_digest).

    One row per (`digest_day`, `user_id`), written after the SMTP server took the e-mail, so a retry
    after a partial failure, a restart the same day or a second clinic process does not send that
    doctor the day's digest again. The doctor is recorded by `user_id`, not by e-mail address: the
    id is stable (an address can change during the day) and keeps this table free of personal data,
    which stays in `users`. `digest_day` is the day the digest is for, as in its subject (YYYY-MM-DD).
    """

    __tablename__ = "digest_deliveries"
    __table_args__ = (UniqueConstraint("digest_day", "user_id"),)

    digest_delivery_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest_day: Mapped[str] = mapped_column(String(10), doc="ISO date, YYYY-MM-DD")
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDeadLetterRecord(Base):
    """A signed alert webhook its receiver never took, after the last retry (alerts.channels.webhook).

    Kept here rather than in a file on one host, so that an operator sees undelivered webhooks from
    any clinic process, and they are backed up and migrated with the rest of the clinic's data.
    `body` is the exact JSON that was signed (opaque ids and a link, never a name), so it can be
    re-sent byte for byte; `url` is the receiver from configuration. Not unique on `event_id`: one
    event can fail at several receivers, and an event routed again after a restart that fails again
    is a second try worth seeing.
    """

    __tablename__ = "webhook_dead_letters"
    __table_args__ = (Index("ix_webhook_dead_letters_dead_at", "dead_at"),)

    webhook_dead_letter_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), index=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(REASON_LENGTH), default="")
    dead_at: Mapped[datetime] = mapped_column(doc="when the last try failed")
