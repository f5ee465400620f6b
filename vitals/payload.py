"""MQTT payload schema (DESIGN.md, MQTT): pydantic models with a schema version in every payload.

JSON Schema for each is exported under docs/schema/ by `export_json_schemas` (the test suite checks
the committed files match the models).
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from vitals.readings import Reading

SchemaVersion = Literal[1]
SCHEMA_VERSION: SchemaVersion = 1
OpaqueId = str
_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_READINGS_PER_BATCH = 500


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = SCHEMA_VERSION


class ReadingsBatch(_Payload):
    """gateway -> clinic on `.../readings`: readings from the gateway's outbox."""

    gateway_id: str = Field(pattern=_ID)
    sent_at: AwareDatetime
    readings: tuple[Reading, ...] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)


class RejectedReading(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reading_id: str
    reason: str = Field(max_length=500)


class ReadingsAck(_Payload):
    """clinic -> gateway on `.../acks`: ids durably stored, or rejected for good (dead-lettered).

    Either way the gateway may delete them from its outbox: both are final answers.
    """

    gateway_id: str = Field(pattern=_ID)
    stored: tuple[str, ...] = ()
    rejected: tuple[RejectedReading, ...] = ()


class MeterHealth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_key: str
    last_sync_at: datetime | None = None
    last_sequence_number: int | None = None
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    rssi_dbm: int | None = None
    last_error: str | None = None


class GatewayStatus(_Payload):
    """gateway -> clinic on `.../status`, retained; the last will publishes `online: false`."""

    gateway_id: str = Field(pattern=_ID)
    online: bool
    reported_at: AwareDatetime
    software_version: str | None = None
    uptime_s: float | None = None
    outbox_depth: int | None = None
    outbox_capacity: int | None = None
    outbox_full: bool = False
    oldest_unacked_age_s: float | None = None
    unbound_readings: int = 0
    meters: tuple[MeterHealth, ...] = ()
    last_error: str | None = None


class MeterBinding(BaseModel):
    """One meter (and user slot, for multi-user cuffs) bound to a patient's opaque id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_key: str = Field(description="DeviceIdentity.meter_key: manufacturer|model|serial-or-address")
    user_id: int | None = Field(default=None, ge=0, le=254)
    patient_id: str = Field(pattern=_ID)


class GatewayConfig(_Payload):
    """clinic -> gateway on `.../config`, retained: the gateway's device bindings."""

    gateway_id: str = Field(pattern=_ID)
    issued_at: AwareDatetime
    bindings: tuple[MeterBinding, ...] = ()


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    URGENT = "urgent"


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    ESCALATED = "escalated"


class AlertEvent(_Payload):
    """clinic -> clinic apps on `vitalgate/v1/clinic/{clinic_id}/alerts`."""

    clinic_id: str = Field(pattern=_ID)
    alert_id: str
    patient_id: str = Field(pattern=_ID)
    rule_id: str
    severity: AlertSeverity
    state: AlertState
    event: str = Field(description="opened, severity_raised, acknowledged, snoozed, resolved, escalated, ...")
    at: AwareDatetime
    actor: str | None = Field(default=None, description="user id who made the change, or 'system'")


PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    "readings-batch": ReadingsBatch,
    "readings-ack": ReadingsAck,
    "gateway-status": GatewayStatus,
    "gateway-config": GatewayConfig,
    "alert-event": AlertEvent,
}


def json_schemas() -> dict[str, str]:
    """File name -> JSON Schema text for every payload."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in PAYLOAD_MODELS.items()
    }


def export_json_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
