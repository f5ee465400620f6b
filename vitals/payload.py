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

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

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


class UnboundReason(StrEnum):
    """Why a reading is kept aside on the gateway instead of being attributed to a patient."""

    NO_BINDING = "no_binding"  # the meter (or user slot) is bound to nobody on this gateway
    OUTSIDE_BINDING = "outside_binding"  # measured before a binding began or after it ended
    CLOCK_UNTRUSTED = "clock_untrusted"  # the meter's time could not be corrected: a person decides


class UnboundSummary(BaseModel):
    """Readings of one meter (user slot) kept aside for one reason: how many and when measured.

    Counts and times only, never values: a person decides whose they are from this and the meter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_key: str
    user_id: int | None = Field(default=None, ge=0, le=254)
    reason: UnboundReason
    count: int = Field(ge=1)
    first_measured_at: AwareDatetime
    last_measured_at: AwareDatetime


MAX_APPLIED_COMMANDS_REPORTED = 50


class AppliedCommand(BaseModel):
    """A clinic command the gateway carried out, and how many readings it adopted or discarded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str = Field(pattern=_ID)
    readings: int = Field(ge=0)


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
    unbound: tuple[UnboundSummary, ...] = Field(
        default=(), description="unbound_readings by meter, user slot and reason"
    )
    applied_commands: tuple[AppliedCommand, ...] = Field(
        default=(),
        max_length=MAX_APPLIED_COMMANDS_REPORTED,
        description="the most recent clinic commands the gateway has carried out",
    )
    meters: tuple[MeterHealth, ...] = ()
    last_error: str | None = None


class MeterBinding(BaseModel):
    """One meter (and user slot, for multi-user cuffs) bound to a patient's opaque id, with the
    interval it holds for: a reading belongs to `patient_id` only when measured at or after
    `bound_at` (or before it, when `prior_memory_belongs`) and before `unbound_at`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_key: str = Field(description="DeviceIdentity.meter_key: manufacturer|model|serial-or-address")
    user_id: int | None = Field(default=None, ge=0, le=254)
    patient_id: str = Field(pattern=_ID)
    bound_at: AwareDatetime | None = Field(
        default=None, description="start of the interval; None: no start (a binding made on site)"
    )
    unbound_at: AwareDatetime | None = Field(default=None, description="end of the interval; None: open")
    prior_memory_belongs: bool = Field(
        default=False,
        description="readings the meter measured before bound_at are this patient's too (the "
        "administrator's choice when binding)",
    )

    @model_validator(mode="after")
    def _interval_in_order(self) -> MeterBinding:
        if self.bound_at is not None and self.unbound_at is not None and self.unbound_at < self.bound_at:
            raise ValueError("unbound_at is before bound_at")
        return self


class GatewayConfig(_Payload):
    """clinic -> gateway on `.../config`, retained: the gateway's device bindings, active ones and
    those ended recently (a reading measured before an unbind may still be on its way)."""

    gateway_id: str = Field(pattern=_ID)
    issued_at: AwareDatetime
    bindings: tuple[MeterBinding, ...] = ()


class UnboundAction(StrEnum):
    ADOPT = "adopt"  # attribute the readings to `patient_id` and send them
    DISCARD = "discard"  # delete them from the gateway for good


MAX_COMMANDS = 100


class UnboundRelease(BaseModel):
    """A person's decision on the unbound readings of one meter (user slot) measured in a time span."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str = Field(pattern=_ID, description="unique; the gateway carries out each id once")
    action: UnboundAction
    meter_key: str
    user_id: int | None = Field(default=None, ge=0, le=254)
    measured_from: AwareDatetime = Field(description="inclusive")
    measured_to: AwareDatetime = Field(description="inclusive")
    patient_id: str | None = Field(default=None, pattern=_ID, description="required to adopt")

    @model_validator(mode="after")
    def _complete(self) -> UnboundRelease:
        if self.measured_to < self.measured_from:
            raise ValueError("measured_to is before measured_from")
        if (self.action is UnboundAction.ADOPT) != (self.patient_id is not None):
            raise ValueError("adopt needs a patient_id, discard takes none")
        return self


class GatewayCommands(_Payload):
    """clinic -> gateway on `.../commands`, retained: the decisions the gateway has not yet reported
    carried out (GatewayStatus.applied_commands). Each command is idempotent on its id."""

    gateway_id: str = Field(pattern=_ID)
    issued_at: AwareDatetime
    commands: tuple[UnboundRelease, ...] = Field(default=(), max_length=MAX_COMMANDS)


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
    "gateway-commands": GatewayCommands,
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
