"""Queries ingest needs on the clinic database, plus the binding administration they depend on.

Keyword-only functions and a small class over a session factory, so they are callable from ingest,
the API, scripts and tests without HTTP (style-models.md §4, "CRUD functions are keyword-only").
Database failures surface as `ClinicDatabaseUnavailableError` (retry later) so a consumer can hold
its messages instead of rejecting readings because the database blinked.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from storage.clinic.database import ClinicDatabaseError, ClinicDatabaseUnavailableError
from storage.clinic.models import (
    ANY_DEVICE_USER,
    TOPIC_LENGTH,
    DeadLetter,
    DeadLetterScope,
    MeterBinding,
    UnboundReleaseRecord,
    cut_to,
    utcnow,
)
from vitals import payload

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Binding:
    """A binding: readings of `meter_key` (slot `device_user_id`, None = any) on `gateway_id` belong
    to `patient_id` when measured inside its validity interval: from `attributed_from` (None: the
    meter's whole memory, when the administrator said the readings it already held are the
    patient's) up to `unbound_at` (None while it is active)."""

    gateway_id: str
    meter_key: str
    device_user_id: int | None
    patient_id: str
    unbound_at: datetime | None = None
    attributed_from: datetime | None = None

    def matches(self, meter_key: str, device_user_id: int | None) -> bool:
        if meter_key != self.meter_key:
            return False
        return self.device_user_id is None or self.device_user_id == device_user_id

    def in_force_at(self, measured_at: datetime) -> bool:
        """Was a reading measured at `measured_at` taken while this binding held? One measured before
        the binding ended still belongs to its patient, even when it arrives after an unbind or a
        rebind (a gateway that was offline); one measured before the binding began does not (a reused
        or loaner meter's memory is its earlier owner's), unless the administrator said so."""
        if self.attributed_from is not None and measured_at < self.attributed_from:
            return False
        return self.unbound_at is None or measured_at < self.unbound_at


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A payload (scope MESSAGE) or one reading of it (scope READING) that can never be stored."""

    scope: DeadLetterScope
    topic: str
    payload: bytes
    reason: str
    received_at: datetime
    gateway_id: str | None = None
    reading_id: str | None = None

    @property
    def dedup_key(self) -> str:
        """Same bytes on the same topic (or the same rejected reading of a gateway) -> same key."""
        digest = hashlib.sha256()
        if self.scope is DeadLetterScope.READING and self.reading_id is not None:
            gateway = (self.gateway_id or "").encode()
            parts: tuple[bytes, ...] = (b"reading", gateway, self.reading_id.encode())
        else:
            parts = (b"message", self.topic.encode(), self.payload)
        for part in parts:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters; escape them rather than fail the insert."""
    return text.replace("\x00", "\\x00")


def _slot(device_user_id: int | None) -> int:
    return ANY_DEVICE_USER if device_user_id is None else device_user_id


def _binding(row: MeterBinding) -> Binding:
    slot = None if row.device_user_id == ANY_DEVICE_USER else row.device_user_id
    return Binding(
        row.gateway_id,
        row.meter_key,
        slot,
        row.patient_id,
        unbound_at=None if row.active else row.unbound_at,
        attributed_from=None if row.prior_memory_belongs else row.bound_at,
    )


def bindings_for_readings(session: Session, *, gateway_id: str) -> list[Binding]:
    """Every binding of the gateway, active or ended: what ingest checks readings against, each with
    `Binding.in_force_at(measured_at)` (a home has a few meters; rebinding is rare). An
    administrator's adoption of a gateway's unbound readings (storage.clinic.unbound_readings) counts as a
    binding of that meter (slot) to the chosen patient over the adopted readings' time span."""
    rows = session.scalars(
        select(MeterBinding)
        .where(MeterBinding.gateway_id == gateway_id)
        .order_by(MeterBinding.meter_key, MeterBinding.device_user_id, MeterBinding.binding_id)
    )
    adoptions = session.scalars(
        select(UnboundReleaseRecord)
        .where(UnboundReleaseRecord.gateway_id == gateway_id, UnboundReleaseRecord.action == "adopt")
        .order_by(UnboundReleaseRecord.decided_at)
    )
    return [_binding(row) for row in rows] + [_adoption(row) for row in adoptions]


def _adoption(row: UnboundReleaseRecord) -> Binding:
    assert row.patient_id is not None  # ck_unbound_releases_adopt_names_patient
    return Binding(
        row.gateway_id,
        row.meter_key,
        row.device_user_id,
        row.patient_id,
        unbound_at=row.measured_to + timedelta(microseconds=1),  # the span is inclusive
        attributed_from=row.measured_from,
    )


# Ended bindings stay in a gateway's config this long: a reading measured before an unbind, synced
# later, still goes to the patient it belongs to (the gateway attributes by measurement time).
ENDED_BINDINGS_IN_CONFIG = timedelta(days=90)


def gateway_config_bindings(
    session: Session, *, gateway_id: str, now: datetime
) -> list[payload.MeterBinding]:
    """A gateway's bindings as its config carries them: active ones and those ended within
    ENDED_BINDINGS_IN_CONFIG, each with its interval."""
    rows = session.scalars(
        select(MeterBinding)
        .where(
            MeterBinding.gateway_id == gateway_id,
            (MeterBinding.active.is_(True)) | (MeterBinding.unbound_at >= now - ENDED_BINDINGS_IN_CONFIG),
        )
        .order_by(MeterBinding.meter_key, MeterBinding.device_user_id, MeterBinding.binding_id)
    )
    return [
        payload.MeterBinding(
            meter_key=row.meter_key,
            user_id=None if row.device_user_id == ANY_DEVICE_USER else row.device_user_id,
            patient_id=row.patient_id,
            bound_at=row.bound_at,
            unbound_at=None if row.active else row.unbound_at,
            prior_memory_belongs=row.prior_memory_belongs,
        )
        for row in rows
    ]


def active_bindings(session: Session, *, gateway_id: str) -> list[Binding]:
    rows = session.scalars(
        select(MeterBinding)
        .where(MeterBinding.gateway_id == gateway_id, MeterBinding.active.is_(True))
        .order_by(MeterBinding.meter_key, MeterBinding.device_user_id)
    )
    return [_binding(row) for row in rows]


def bind_meter(
    session: Session,
    *,
    gateway_id: str,
    meter_key: str,
    patient_id: str,
    device_user_id: int | None = None,
    bound_by: str | None = None,
    at: datetime | None = None,
    prior_memory_belongs: bool = True,
) -> MeterBinding:
    """Bind a meter slot to a patient through a gateway from `at` (default now), ending any active
    binding of that slot.

    `prior_memory_belongs`: whether readings the meter measured before `at` are the patient's too.
    This building block keeps them by default, as every binding did before the choice existed;
    administration (storage.clinic.administration) always passes the administrator's choice, whose
    default is no. The caller commits. Gateway, meter and patient rows must exist (foreign keys).
    """
    now = at or utcnow()
    session.execute(
        update(MeterBinding)
        .where(
            MeterBinding.gateway_id == gateway_id,
            MeterBinding.meter_key == meter_key,
            MeterBinding.device_user_id == _slot(device_user_id),
            MeterBinding.active.is_(True),
        )
        .values(active=False, unbound_at=now)
    )
    binding = MeterBinding(
        gateway_id=gateway_id,
        meter_key=meter_key,
        device_user_id=_slot(device_user_id),
        patient_id=patient_id,
        active=True,
        bound_at=now,
        bound_by=bound_by,
        prior_memory_belongs=prior_memory_belongs,
    )
    session.add(binding)
    session.flush()
    return binding


def unbind_meter(
    session: Session,
    *,
    gateway_id: str,
    meter_key: str,
    device_user_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """End the active binding of a meter slot; returns how many bindings ended (0 or 1)."""
    result = session.execute(
        update(MeterBinding)
        .where(
            MeterBinding.gateway_id == gateway_id,
            MeterBinding.meter_key == meter_key,
            MeterBinding.device_user_id == _slot(device_user_id),
            MeterBinding.active.is_(True),
        )
        .values(active=False, unbound_at=at or utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def add_dead_letters(session: Session, records: Iterable[DeadLetterRecord]) -> int:
    """Insert dead letters idempotently; a repeat bumps `times_seen`. Returns how many were new.

    The caller commits. Each insert runs in a SAVEPOINT so a duplicate key does not abort the
    surrounding transaction (PostgreSQL aborts the whole transaction on an error otherwise).
    """
    new = 0
    for record in records:
        key = record.dedup_key
        try:
            with session.begin_nested():
                session.add(
                    DeadLetter(
                        dedup_key=key,
                        scope=record.scope,
                        topic=cut_to(_storable(record.topic), TOPIC_LENGTH),
                        gateway_id=record.gateway_id,
                        reading_id=record.reading_id,
                        reason=_storable(record.reason),
                        payload=record.payload,
                        received_at=record.received_at,
                        last_seen_at=record.received_at,
                        times_seen=1,
                    )
                )
            new += 1
        except IntegrityError:
            session.execute(
                update(DeadLetter)
                .where(DeadLetter.dedup_key == key)
                .values(times_seen=DeadLetter.times_seen + 1, last_seen_at=record.received_at)
            )
    return new


@contextmanager
def _unavailable_as_typed(what: str) -> Iterator[None]:
    try:
        yield
    except (OperationalError, PoolTimeoutError) as exc:
        raise ClinicDatabaseUnavailableError(f"clinic database unavailable during {what}") from exc
    except SQLAlchemyError as exc:
        raise ClinicDatabaseError(f"clinic database error during {what}: {type(exc).__name__}") from exc


class ClinicRepository:
    """The clinic-database operations of the ingest consumer, each in its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def bindings_for_readings(self, gateway_id: str) -> list[Binding]:
        with _unavailable_as_typed("bindings_for_readings"), self._sessions() as session:
            return bindings_for_readings(session, gateway_id=gateway_id)

    def bindings_for_gateway(self, gateway_id: str) -> list[Binding]:
        with _unavailable_as_typed("bindings_for_gateway"), self._sessions() as session:
            return active_bindings(session, gateway_id=gateway_id)

    def is_bound(
        self, *, gateway_id: str, meter_key: str, patient_id: str, device_user_id: int | None
    ) -> bool:
        """Is meter `meter_key` (cuff slot `device_user_id`) bound to `patient_id` via `gateway_id`?"""
        return any(
            b.patient_id == patient_id and b.matches(meter_key, device_user_id)
            for b in self.bindings_for_gateway(gateway_id)
        )

    def gateway_config(self, gateway_id: str, *, issued_at: datetime) -> payload.GatewayConfig:
        """The retained `.../config` payload for a gateway: its bindings with their intervals, active
        ones and recently ended ones (`gateway_config_bindings`)."""
        with _unavailable_as_typed("gateway_config"), self._sessions() as session:
            bindings = gateway_config_bindings(session, gateway_id=gateway_id, now=issued_at)
        return payload.GatewayConfig(gateway_id=gateway_id, issued_at=issued_at, bindings=tuple(bindings))

    def add_dead_letters(self, records: Sequence[DeadLetterRecord]) -> int:
        if not records:
            return 0
        with _unavailable_as_typed("add_dead_letters"), self._sessions() as session, session.begin():
            new = add_dead_letters(session, records)
        logger.info(
            "dead letters recorded",
            extra={"dead_letters_new": new, "dead_letters_total": len(records)},
        )
        return new
