"""Clinic database: SQLAlchemy 2 typed declarative models (DESIGN.md, Storage), one module per area:
`base` (the declarative base, types, column lengths), `accounts` (the clinic, users, sessions),
`patients` (patients, care teams, targets, the panel summary, reports), `devices` (gateways, meters,
bindings, gateway status), `alerting` (alerts and their delivery) and `operations` (audit log, dead
letters, periodic jobs).

This package imports every area, so that whoever imports a model has every table mapped (a
relationship names its target by class) and Alembic's autogenerate sees the whole schema; it also
names each model, so `from storage.clinic.models import Patient` is the one way to import one.

Personal data lives in `patients` (names, contact) and `users` (staff names, e-mail) only. Every other
table refers to a patient by the opaque `patient_id`, and audit/alert details carry ids, never names.

Portability: SQLite (default, WAL, foreign keys on) and PostgreSQL. Times are stored as UTC; the
`UTCDateTime` type returns timezone-aware UTC datetimes on both engines. Enums are stored as plain
strings (no native PostgreSQL enum types), so adding a value needs no type migration.
"""

from storage.clinic.models.accounts import (
    Clinic,
    GuidelineProfile,
    PasswordResetCode,
    RefreshToken,
    User,
    UserRole,
    UserRoleGrant,
    UserSession,
    default_glucose_unit,
)
from storage.clinic.models.alerting import (
    Alert,
    AlertEventRecord,
    DigestDelivery,
    EmailOutboxEntry,
    WebhookDeadLetterRecord,
)
from storage.clinic.models.base import (
    HASH_LENGTH,
    METER_KEY_LENGTH,
    NAMING_CONVENTION,
    OPAQUE_ID_LENGTH,
    READING_ID_LENGTH,
    REASON_LENGTH,
    RESOLUTION_NOTE_LENGTH,
    RULE_ID_LENGTH,
    TOPIC_LENGTH,
    URL_LENGTH,
    Base,
    UTCDateTime,
    cut_to,
    utcnow,
)
from storage.clinic.models.devices import (
    ANY_DEVICE_USER,
    Gateway,
    GatewayStatusRecord,
    Meter,
    MeterBinding,
    MeterKind,
    UnboundReleaseRecord,
)
from storage.clinic.models.operations import (
    JOB_NAME_LENGTH,
    RUNNER_LENGTH,
    AuditLogEntry,
    DeadLetter,
    DeadLetterScope,
    PeriodicRun,
)
from storage.clinic.models.patients import (
    CareTeamMember,
    CareTeamRole,
    Patient,
    PatientReportRecord,
    PatientSummaryRow,
    PatientTargets,
)

__all__ = [
    "ANY_DEVICE_USER",
    "HASH_LENGTH",
    "JOB_NAME_LENGTH",
    "METER_KEY_LENGTH",
    "NAMING_CONVENTION",
    "OPAQUE_ID_LENGTH",
    "READING_ID_LENGTH",
    "REASON_LENGTH",
    "RESOLUTION_NOTE_LENGTH",
    "RULE_ID_LENGTH",
    "RUNNER_LENGTH",
    "TOPIC_LENGTH",
    "URL_LENGTH",
    "Alert",
    "AlertEventRecord",
    "AuditLogEntry",
    "Base",
    "CareTeamMember",
    "CareTeamRole",
    "Clinic",
    "DeadLetter",
    "DeadLetterScope",
    "DigestDelivery",
    "EmailOutboxEntry",
    "Gateway",
    "GatewayStatusRecord",
    "GuidelineProfile",
    "Meter",
    "MeterBinding",
    "MeterKind",
    "PasswordResetCode",
    "Patient",
    "PatientReportRecord",
    "PatientSummaryRow",
    "PatientTargets",
    "PeriodicRun",
    "RefreshToken",
    "UTCDateTime",
    "UnboundReleaseRecord",
    "User",
    "UserRole",
    "UserRoleGrant",
    "UserSession",
    "WebhookDeadLetterRecord",
    "cut_to",
    "default_glucose_unit",
    "utcnow",
]
