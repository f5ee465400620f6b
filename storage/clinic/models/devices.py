"""Gateways and meters: their registration, the bindings of meters (and cuff user slots) to patients,
gateway status reports, and readings held back for an unbound meter."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.clinic.models.base import (
    HASH_LENGTH,
    METER_KEY_LENGTH,
    OPAQUE_ID_LENGTH,
    REASON_LENGTH,
    Base,
    str_enum,
    utcnow,
)

# Blood Pressure Measurement "User ID" 0xFF = unknown user (ble-health-profiles.md §2.2, field 7).
# A binding with this slot matches every reading of the meter, whatever slot (or none) it carries.
ANY_DEVICE_USER: Final = 0xFF


class MeterKind(enum.StrEnum):
    BLOOD_PRESSURE = "blood_pressure"  # vitals.readings.ReadingKind values
    GLUCOSE = "glucose"


class Gateway(Base):
    """An edge gateway in a patient's home. Its broker credential is kept only as a hash."""

    __tablename__ = "gateways"

    gateway_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.clinic_id", ondelete="RESTRICT"), index=True)
    mqtt_username: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), unique=True)
    mqtt_credential_hash: Mapped[str] = mapped_column(
        String(HASH_LENGTH), doc="hash of the gateway's MQTT password; the plaintext is never stored"
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None]


class Meter(Base):
    """A BLE meter, identified by vitals.readings.DeviceIdentity.meter_key."""

    __tablename__ = "meters"

    meter_key: Mapped[str] = mapped_column(String(METER_KEY_LENGTH), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.clinic_id", ondelete="RESTRICT"), index=True)
    kind: Mapped[MeterKind] = mapped_column(str_enum(MeterKind))
    manufacturer: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    serial_number: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)


class MeterBinding(Base):
    """Meter (and cuff user slot) -> patient, through one gateway.

    At most one active binding per (gateway, meter, slot). `device_user_id` is the cuff's User ID
    field; ANY_DEVICE_USER (0xFF, "unknown user") binds the whole meter to one patient.
    """

    __tablename__ = "meter_bindings"
    __table_args__ = (
        CheckConstraint(
            f"device_user_id >= 0 AND device_user_id <= {ANY_DEVICE_USER}", name="device_user_id_range"
        ),
        Index(
            "uq_meter_bindings_active_slot",
            "gateway_id",
            "meter_key",
            "device_user_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
        Index("ix_meter_bindings_patient_id", "patient_id"),
    )

    binding_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.gateway_id", ondelete="CASCADE"))
    meter_key: Mapped[str] = mapped_column(ForeignKey("meters.meter_key", ondelete="CASCADE"))
    device_user_id: Mapped[int] = mapped_column(Integer, default=ANY_DEVICE_USER)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id", ondelete="CASCADE"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    bound_at: Mapped[datetime] = mapped_column(default=utcnow)
    unbound_at: Mapped[datetime | None]
    bound_by: Mapped[str | None] = mapped_column(ForeignKey("users.user_id", ondelete="SET NULL"))
    # The administrator's choice when binding: do the readings the meter already held (measured before
    # `bound_at`) belong to this patient? No (False) unless they say so: a reused or loaner meter's
    # memory is its earlier owner's. Readings after `unbound_at` never belong.
    prior_memory_belongs: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


class GatewayStatusRecord(Base):
    """The latest status report of a gateway (its retained `status` topic, vitals.payload.GatewayStatus)
    as the clinic's status consumer received it (vitalgate.fleet; storage.clinic.fleet).

    Ids, counts, times and meter health only: `meters` holds vitals.payload.MeterHealth entries and
    `unbound` vitals.payload.UnboundSummary entries (counts and time spans, never values).
    `received_at` and `offline_since` are the clinic's clock; `reported_at` is the gateway's."""

    __tablename__ = "gateway_status"

    gateway_id: Mapped[str] = mapped_column(
        ForeignKey("gateways.gateway_id", ondelete="CASCADE"), primary_key=True
    )
    online: Mapped[bool] = mapped_column(Boolean)
    reported_at: Mapped[datetime]
    received_at: Mapped[datetime]
    offline_since: Mapped[datetime | None] = mapped_column(doc="last will or final status received")
    software_version: Mapped[str | None] = mapped_column(String(64))
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    outbox_capacity: Mapped[int | None] = mapped_column(Integer)
    outbox_full: Mapped[bool] = mapped_column(Boolean, default=False)
    oldest_unacked_age_s: Mapped[float | None] = mapped_column(Float)
    unbound_readings: Mapped[int] = mapped_column(Integer, default=0)
    unbound: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    meters: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(String(REASON_LENGTH))


class UnboundReleaseRecord(Base):
    """An administrator's decision on a gateway's unbound readings of one meter (user slot) measured
    in a time span: adopt them to a patient, or discard them. Sent to the gateway as a command
    (vitals.payload.UnboundRelease, retained `commands` topic) until its status reports it carried
    out (`applied_at`). An adoption is also what lets ingest store those readings under the patient
    (storage.clinic.repository.bindings_for_readings)."""

    __tablename__ = "unbound_releases"
    __table_args__ = (
        Index("ix_unbound_releases_gateway_id_applied_at", "gateway_id", "applied_at"),
        CheckConstraint("action IN ('adopt', 'discard')", name="action_known"),
        CheckConstraint("(action = 'adopt') = (patient_id IS NOT NULL)", name="adopt_names_patient"),
    )

    command_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.clinic_id", ondelete="RESTRICT"), index=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.gateway_id", ondelete="CASCADE"))
    meter_key: Mapped[str] = mapped_column(String(METER_KEY_LENGTH), doc="not necessarily a registered meter")
    device_user_id: Mapped[int | None] = mapped_column(Integer, doc="the cuff's user slot; NULL: none")
    action: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(ForeignKey("patients.patient_id", ondelete="CASCADE"))
    measured_from: Mapped[datetime]
    measured_to: Mapped[datetime]
    readings: Mapped[int] = mapped_column(
        Integer,
        doc="readings in the span: as reported when decided (whole reported groups), then as carried out",
    )
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.user_id", ondelete="SET NULL"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(doc="when the gateway reported it carried out")
