"""Patients and their care: care teams, per-patient targets, the summary row of the doctor's panel,
and patient reports."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.clinic.models.accounts import GuidelineProfile, User
from storage.clinic.models.base import OPAQUE_ID_LENGTH, Base, str_enum, utcnow


class CareTeamRole(enum.StrEnum):
    """A member's place in a patient's care team."""

    FAMILY_DOCTOR = "family_doctor"
    CLINIC_STAFF = "clinic_staff"


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
    team_role: Mapped[CareTeamRole] = mapped_column(str_enum(CareTeamRole))
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
    guideline_profile: Mapped[GuidelineProfile | None] = mapped_column(str_enum(GuidelineProfile, 8))
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
    bp_not_counted_7d: Mapped[int | None] = mapped_column(
        Integer, doc="valid blood pressures of the 7-day window on its discarded first measured day"
    )
    glucose_latest_mg_dl: Mapped[float | None] = mapped_column(Float, doc="newest valid glucose")
    glucose_latest_at: Mapped[datetime | None]
    glucose_time_in_range_percent: Mapped[float | None] = mapped_column(Float, doc="last 14 days")
    glucose_readings_14d: Mapped[int | None] = mapped_column(Integer)
    days_with_data_30: Mapped[int] = mapped_column(Integer)


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
