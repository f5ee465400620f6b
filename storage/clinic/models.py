"""Clinic database: SQLAlchemy 2 typed declarative models (DESIGN.md, Storage).

One module holds every table so that Alembic's autogenerate sees the whole schema, and other packages
(alerts, api) build their queries on these classes.

Personal data lives in `patients` (names, contact) and `users` (staff names, e-mail) only. Every other
table refers to a patient by the opaque `patient_id`, and audit/alert details carry ids, never names.

Portability: SQLite (default, WAL, foreign keys on) and PostgreSQL. Times are stored as UTC; the
`UTCDateTime` type returns timezone-aware UTC datetimes on both engines. Enums are stored as plain
strings (no native PostgreSQL enum types), so adding a value needs no type migration.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE

from vitals.payload import AlertSeverity, AlertState
from vitals.units import GlucoseUnit

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


# Blood Pressure Measurement "User ID" 0xFF = unknown user (ble-health-profiles.md §2.2, field 7).
# A binding with this slot matches every reading of the meter, whatever slot (or none) it carries.
ANY_DEVICE_USER: Final = 0xFF


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


def _str_enum(enum_type: type[enum.Enum], length: int = 32) -> Enum:
    """Store an enum's values (not names) as VARCHAR on every engine."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class UserRole(enum.StrEnum):
    FAMILY_DOCTOR = "family_doctor"
    CLINIC_STAFF = "clinic_staff"
    CLINIC_ADMIN = "clinic_admin"


class CareTeamRole(enum.StrEnum):
    """A member's place in a patient's care team."""

    FAMILY_DOCTOR = "family_doctor"
    CLINIC_STAFF = "clinic_staff"


class GuidelineProfile(enum.StrEnum):
    """Locale profile for rule thresholds (clinical-rules.md §7: parameters in braces {US|EU|CN})."""

    CN = "cn"
    US = "us"
    EU = "eu"


class MeterKind(enum.StrEnum):
    BLOOD_PRESSURE = "blood_pressure"  # vitals.readings.ReadingKind values
    GLUCOSE = "glucose"


class DeadLetterScope(enum.StrEnum):
    MESSAGE = "message"  # a whole MQTT payload that can never be stored
    READING = "reading"  # one reading of an otherwise valid batch, rejected (e.g. unbound meter)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Clinic(Base):
    __tablename__ = "clinics"

    clinic_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    default_profile: Mapped[GuidelineProfile] = mapped_column(
        _str_enum(GuidelineProfile, 8), default=GuidelineProfile.EU
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", doc="IANA zone for day boundaries")
    glucose_unit: Mapped[GlucoseUnit] = mapped_column(
        _str_enum(GlucoseUnit, 8),
        default=lambda context: default_glucose_unit(context.get_current_parameters().get("default_profile")),
        server_default=GlucoseUnit.MMOL_L.value,
        doc="unit glucose is shown in (stored values stay mg/dL); a user may override it",
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def default_glucose_unit(profile: object) -> GlucoseUnit:
    """mg/dL where US practice reads it (profile us), mmol/L elsewhere (EU, China)."""
    return GlucoseUnit.MG_DL if profile == GuidelineProfile.US.value else GlucoseUnit.MMOL_L


class User(Base):
    """A clinic account: family doctor, clinic staff or administrator (roles in `user_roles`)."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.clinic_id", ondelete="RESTRICT"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(
        String(HASH_LENGTH), doc="argon2 hash in PHC string form (pwdlib); never the password"
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="consecutive failed logins; the account locks at api.routes.auth.LOCK_AFTER_FAILED_LOGINS",
    )
    phone: Mapped[str | None] = mapped_column(String(40), doc="for pushed alerts (SMS/voice channels)")
    glucose_unit_override: Mapped[GlucoseUnit | None] = mapped_column(
        _str_enum(GlucoseUnit, 8), doc="the user's glucose display unit; NULL: the clinic's"
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    session_version: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="raised whenever the account is deactivated or reactivated or its roles change: every "
        "session signed in under an older version ends (api.sessions; the events below)",
    )

    roles: Mapped[list[UserRoleGrant]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    def has_role(self, role: UserRole) -> bool:
        return any(grant.role is role for grant in self.roles)

    @property
    def role_set(self) -> frozenset[UserRole]:
        return frozenset(grant.role for grant in self.roles)


class UserRoleGrant(Base):
    """One role held by a user; a doctor may also administer the clinic."""

    __tablename__ = "user_roles"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[UserRole] = mapped_column(_str_enum(UserRole), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="roles")


class Patient(Base):
    """The only table with a patient's name and contact details; everything else uses patient_id."""

    __tablename__ = "patients"

    patient_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    clinic_id: Mapped[str] = mapped_column(ForeignKey("clinics.clinic_id", ondelete="RESTRICT"), index=True)
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[str | None] = mapped_column(String(10), doc="ISO date, YYYY-MM-DD")
    phone: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(254))
    active: Mapped[bool] = mapped_column(Boolean, default=True, doc="false: discharged (data kept)")
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    discharged_at: Mapped[datetime | None] = mapped_column(
        doc="when discharged; NULL while active (and for a patient discharged before this was kept)"
    )

    care_team: Mapped[list[CareTeamMember]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="CareTeamMember.escalation_order"
    )
    targets: Mapped[PatientTargets | None] = relationship(
        back_populates="patient", cascade="all, delete-orphan", uselist=False
    )


class CareTeamMember(Base):
    """Patient -> family doctor and clinic staff; `escalation_order` is the order to notify in."""

    __tablename__ = "care_team_members"
    __table_args__ = (
        UniqueConstraint("patient_id", "user_id"),
        Index("ix_care_team_members_user_id", "user_id"),
    )

    care_team_member_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"))
    team_role: Mapped[CareTeamRole] = mapped_column(_str_enum(CareTeamRole))
    escalation_order: Mapped[int] = mapped_column(Integer, default=0, doc="0 = notified first")
    on_duty: Mapped[bool] = mapped_column(Boolean, default=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="care_team")
    user: Mapped[User] = relationship(lazy="joined")


class PatientTargets(Base):
    """Per-patient goals that override the guideline profile's defaults (clinical-rules.md §7).

    NULL means "use the profile's default". Glucose in canonical mg/dL.
    """

    __tablename__ = "patient_targets"
    __table_args__ = (
        CheckConstraint(
            "bp_goal_diastolic_mmhg IS NULL OR bp_goal_systolic_mmhg IS NULL "
            "OR bp_goal_diastolic_mmhg < bp_goal_systolic_mmhg",
            name="bp_goal_order",
        ),
        CheckConstraint(
            "glucose_fasting_low_mg_dl IS NULL OR glucose_fasting_high_mg_dl IS NULL "
            "OR glucose_fasting_low_mg_dl < glucose_fasting_high_mg_dl",
            name="glucose_fasting_order",
        ),
    )

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.patient_id", ondelete="CASCADE"), primary_key=True
    )
    guideline_profile: Mapped[GuidelineProfile | None] = mapped_column(_str_enum(GuidelineProfile, 8))
    bp_goal_systolic_mmhg: Mapped[float | None] = mapped_column(Float)
    bp_goal_diastolic_mmhg: Mapped[float | None] = mapped_column(Float)
    glucose_fasting_low_mg_dl: Mapped[float | None] = mapped_column(Float)
    glucose_fasting_high_mg_dl: Mapped[float | None] = mapped_column(Float)
    glucose_postprandial_high_mg_dl: Mapped[float | None] = mapped_column(Float)
    glucose_hypo_mg_dl: Mapped[float | None] = mapped_column(Float, doc="level-1 hypo threshold override")
    older_adult: Mapped[bool] = mapped_column(Boolean, default=False, doc="relaxed CGM goals (§7)")
    # DQ-01 (clinical-rules.md §7, [58] DEFAULT): a patient whose BP medication is being titrated, or
    # who is on insulin, is flagged stale after 3 days without a reading instead of 7, as a warning.
    bp_titration: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false"), doc="BP medication being titrated"
    )
    on_insulin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    timezone: Mapped[str | None] = mapped_column(
        String(64), doc="IANA zone of the patient's home, for morning/evening and days; NULL: the clinic's"
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(ForeignKey("users.user_id", ondelete="SET NULL"))

    patient: Mapped[Patient] = relationship(back_populates="targets")


class PatientSummaryRow(Base):
    """The panel's figures of one patient (alerts.summaries.PanelFigures), so that a panel of
    thousands of patients is one query, sorted and paged by the database.

    Written by alerts.summary_updater when readings are committed, when targets change, and again once
    `valid_until` (the patient's next local midnight, when the 7-, 14- and 30-day windows move) has
    passed; a row is current while `now < valid_until`, its `summary_version` is the updater's and the
    patient's targets did not change after `computed_at`. Numbers only: no personal data.
    """

    __tablename__ = "patient_summaries"

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.patient_id", ondelete="CASCADE"), primary_key=True
    )
    summary_version: Mapped[int] = mapped_column(Integer)
    computed_at: Mapped[datetime]
    valid_until: Mapped[datetime]
    last_reading_at: Mapped[datetime | None] = mapped_column(doc="newest reading, valid or not")
    bp_mean_systolic_mmhg: Mapped[float | None] = mapped_column(Float, doc="7-day home mean (ESH)")
    bp_mean_diastolic_mmhg: Mapped[float | None] = mapped_column(Float)
    bp_readings: Mapped[int | None] = mapped_column(Integer)
    bp_days: Mapped[int | None] = mapped_column(Integer)
    bp_category: Mapped[str | None] = mapped_column(String(16), doc="alerts.summaries.BpCategory")
    bp_target_systolic_mmhg: Mapped[float | None] = mapped_column(Float)
    bp_target_diastolic_mmhg: Mapped[float | None] = mapped_column(Float)
    glucose_latest_mg_dl: Mapped[float | None] = mapped_column(Float, doc="newest valid glucose")
    glucose_latest_at: Mapped[datetime | None]
    glucose_time_in_range_percent: Mapped[float | None] = mapped_column(Float, doc="last 14 days")
    glucose_readings_14d: Mapped[int | None] = mapped_column(Integer)
    days_with_data_30: Mapped[int] = mapped_column(Integer)


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
    kind: Mapped[MeterKind] = mapped_column(_str_enum(MeterKind))
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


class PasswordResetCode(Base):
    """A one-time code an administrator issues so that a user sets a new password (or a first one).

    Only the code's SHA-256 is kept: the code is 100 random bits, so a fast hash cannot be reversed by
    guessing (OWASP Forgot Password Cheat Sheet: store reset tokens hashed, single use, expiring).
    """

    __tablename__ = "password_reset_codes"
    __table_args__ = (Index("ix_password_reset_codes_user_id", "user_id"),)

    reset_code_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, doc="hex SHA-256 of the code")
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    issued_by: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), doc="audit actor who issued it")
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


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
    severity: Mapped[AlertSeverity] = mapped_column(_str_enum(AlertSeverity, 16))
    state: Mapped[AlertState] = mapped_column(_str_enum(AlertState, 16))
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
    from_state: Mapped[AlertState | None] = mapped_column(_str_enum(AlertState, 16))
    to_state: Mapped[AlertState | None] = mapped_column(_str_enum(AlertState, 16))
    severity: Mapped[AlertSeverity | None] = mapped_column(_str_enum(AlertSeverity, 16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    alert: Mapped[Alert] = relationship(back_populates="events")


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
    scope: Mapped[DeadLetterScope] = mapped_column(_str_enum(DeadLetterScope, 16))
    topic: Mapped[str] = mapped_column(String(TOPIC_LENGTH))
    gateway_id: Mapped[str | None] = mapped_column(String(OPAQUE_ID_LENGTH), index=True)
    reading_id: Mapped[str | None] = mapped_column(String(READING_ID_LENGTH))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    times_seen: Mapped[int] = mapped_column(Integer, default=1)


class PatientReportRecord(Base):
    """Patient-reported input the gateway cannot supply: symptoms, an assisted hypo, ketones, a
    medication change, a standing BP. The care team records it through the API; it is rule input for
    BP-CRIT-3, BP-LOW-1/2, GLU-HYPO-3 and GLU-HIGH-3 (clinical-rules.md §7) and must survive restarts.
    `kind` and `symptoms` are alerts' vocabulary (alerts.model.ReportKind), stored as plain strings."""

    __tablename__ = "patient_reports"
    __table_args__ = (Index("ix_patient_reports_patient_id_reported_at", "patient_id", "reported_at"),)

    report_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    reported_at: Mapped[datetime]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    symptoms: Mapped[list[str]] = mapped_column(JSON, default=list)
    ketones_mmol_l: Mapped[float | None] = mapped_column(Float)
    seated_systolic_mmhg: Mapped[float | None] = mapped_column(Float)
    standing_systolic_mmhg: Mapped[float | None] = mapped_column(Float)


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


class UserSession(Base):
    """One sign-in (api/sessions.py): its access tokens name it (`sid`) and its refresh tokens
    belong to it. Revoked at sign-out, when a refresh token is used twice (RFC 9700 §4.14.2), or by
    the account's session_version moving on; it never outlives `expires_at`."""

    __tablename__ = "user_sessions"

    session_id: Mapped[str] = mapped_column(String(OPAQUE_ID_LENGTH), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    session_version: Mapped[int] = mapped_column(Integer, doc="users.session_version when signed in")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    """A refresh token of a session, kept only as its SHA-256 (the token is 256 random bits, so a
    plain hash suffices): whoever reads this table cannot use it. Each refresh marks the token used
    and issues the next; a used token presented again revokes the whole session."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("user_sessions.session_id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


# Every change of an account's activity or roles raises its session_version, whichever code makes it
# (the API, `vitalgate admin`, a script): the sessions signed in before it end at their next request
# or live-event check (api.deps, api.sessions).
def _next_session_version(user: User) -> None:
    user.session_version = (user.session_version or 0) + 1


@event.listens_for(User.active, "set", active_history=True)
def _active_changed(user: User, value: bool, old: object, _initiator: object) -> None:
    if old is not NO_VALUE and old is not NEVER_SET and value != old:
        _next_session_version(user)


@event.listens_for(User.roles, "append")
@event.listens_for(User.roles, "remove")
def _roles_changed(user: User, _grant: UserRoleGrant, _initiator: object) -> None:
    if inspect(user).persistent:
        _next_session_version(user)


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
