"""A patient's targets, as the family doctor sets them: GET to see them with what the rules will use,
PUT to change them.

The alert rules read these through `alerts.repository.SqlPatientDirectory` at every evaluation, so a
change applies to the next reading and the next sweep. A target left empty (null) means the guideline
profile's value (clinical-rules.md §7, BP-CTRL-1: "goal overrides per patient (e.g. 130/80 DM/CKD)").

Who may change them: the patient's family doctor, or an administrator of the clinic. Clinic staff on
the care team may read them. Glucose is in mg/dL here, the canonical unit (DESIGN.md, Storage); the
web app converts from mmol/L for display and entry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Final, Self

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from alerts.profiles import parameters, profile
from alerts.repository import chosen_profile, patient_targets
from alerts.summary_updater import SummaryUpdater
from api.auth import Principal
from api.deps import (
    AuditedAccess,
    CurrentUser,
    Services,
    check_patient_access,
    commit_audited,
    commit_denial,
    patient_access,
)
from api.errors import ApiError, ErrorCode
from storage.clinic.audit import record_audit
from storage.clinic.database import ClinicDatabaseUnavailableError
from storage.clinic.models import CareTeamMember, CareTeamRole, Clinic, GuidelineProfile, Patient, UserRole
from storage.clinic.models import PatientTargets as TargetsRow
from storage.readings.protocol import ReadingStoreError
from vitals.units import mmol_l_to_mg_dl

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/patients/{patient_id}/targets", tags=["targets"])

SET_TARGETS: Final = "set_targets"  # the audit action of a change, allowed or refused

# Bounds on what a doctor can enter (DEFAULT): wide enough for every individual goal the guidelines
# name, narrow enough to catch a slip of the keyboard, and never past a guideline-fixed alert level.
# Home BP goals: the named ones run from JSH 2019's <125/75 to the usual 135/85 (clinical-rules.md §1.2
# [11][22]); up to the stage-2 home level 145/90 (BP-CTRL-3, [1]), above which BP-CTRL-1 could never
# fire first. The rules compare the 7-day home mean against them (BP-CTRL-1).
GOAL_SYSTOLIC_BOUNDS_MMHG: Final = (110.0, 145.0)
GOAL_DIASTOLIC_BOUNDS_MMHG: Final = (60.0, 90.0)  # always below the systolic bounds: no order check needed


def _mmol_l_bounds(low: float, high: float) -> tuple[float, float]:
    """Bounds stated in mmol/L as mg/dL, widened to whole mg/dL so the mmol/L values themselves pass
    (16.7 mmol/L is 300.86 mg/dL)."""
    return float(math.floor(mmol_l_to_mg_dl(low))), float(math.ceil(mmol_l_to_mg_dl(high)))


# Glucose (clinical-rules.md §2.2, CDS 2020 [41]: capillary fasting 4.4-7.0 mmol/L, non-fasting <10.0,
# individualised): the fasting upper limit from 5.6 to 11.1 mmol/L; the post-meal limit from 7.8 to
# 16.7 (GLU-CTRL-2 default 10.0, [31][41]). The level-1 hypo threshold may be raised, to 5.6, never
# lowered: level 1 (< 3.9 mmol/L, 70 mg/dL) is guideline-fixed (§2.1, [30]).
FASTING_HIGH_BOUNDS_MG_DL: Final = _mmol_l_bounds(5.6, 11.1)
POSTPRANDIAL_HIGH_BOUNDS_MG_DL: Final = _mmol_l_bounds(7.8, 16.7)
HYPO_BOUNDS_MG_DL: Final = (70.0, float(math.ceil(mmol_l_to_mg_dl(5.6))))


def _bounded(bounds: tuple[float, float], description: str) -> Any:
    """An optional target within `bounds`; null means the profile's value."""
    low, high = bounds
    return Field(default=None, ge=low, le=high, allow_inf_nan=False, description=description)


class TargetsIn(BaseModel):
    """The whole set of targets (PUT replaces it). Unknown fields are refused, not ignored, so a
    misspelt target can never silently leave the old value in force (OWASP API3, mass assignment).

    The clinic database's `glucose_fasting_low_mg_dl` is not here: no rule reads it."""

    model_config = ConfigDict(extra="forbid")

    guideline_profile: GuidelineProfile | None = Field(default=None, description="null: the clinic's")
    bp_goal_systolic_mmhg: float | None = _bounded(GOAL_SYSTOLIC_BOUNDS_MMHG, "home BP goal, systolic")
    bp_goal_diastolic_mmhg: float | None = _bounded(GOAL_DIASTOLIC_BOUNDS_MMHG, "home BP goal, diastolic")
    glucose_fasting_high_mg_dl: float | None = _bounded(FASTING_HIGH_BOUNDS_MG_DL, "fasting upper limit")
    glucose_postprandial_high_mg_dl: float | None = _bounded(
        POSTPRANDIAL_HIGH_BOUNDS_MG_DL, "2-h post-meal limit"
    )
    glucose_hypo_mg_dl: float | None = _bounded(HYPO_BOUNDS_MG_DL, "level-1 hypoglycaemia threshold")
    older_adult: bool = Field(default=False, description="older or high-risk: relaxed CGM goals")
    bp_titration: bool = Field(default=False, description="BP medication being titrated")
    on_insulin: bool = False
    timezone: str | None = Field(default=None, max_length=64, description="IANA zone; null: the clinic's")

    @model_validator(mode="after")
    def _known_zone(self) -> Self:
        if self.timezone is not None and self.timezone not in _zones():
            raise ValueError("timezone must be an IANA time zone name, e.g. Asia/Shanghai")
        return self


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())  # reads the tz database once


class RulesUse(BaseModel):
    """What the alert rules use for this patient: the targets applied over the profile."""

    guideline_profile: GuidelineProfile
    bp_goal_systolic_mmhg: float
    bp_goal_diastolic_mmhg: float
    glucose_fasting_high_mg_dl: float
    glucose_postprandial_high_mg_dl: float
    glucose_hypo_mg_dl: float
    stale_after_days: int
    timezone: str


class TargetsOut(TargetsIn):
    """The stored targets and what the rules make of them. Built without re-validating, so a row
    written before a bound changed (or by SQL) is still shown, and can be corrected."""

    patient_id: str
    updated_at: datetime | None
    updated_by: str | None
    rules_use: RulesUse
    may_edit: bool = Field(
        description="whether the caller may change these targets (the patient's family doctor, or a "
        "clinic administrator); the web app says so before anyone types"
    )


def _row_values(row: TargetsRow | None) -> dict[str, Any]:
    """The stored targets; a patient without a row has the defaults (everything from the profile)."""
    if row is None:
        return TargetsIn().model_dump()
    return {name: getattr(row, name) for name in TargetsIn.model_fields}


def rules_use(row: TargetsRow | None, clinic: Clinic) -> RulesUse:
    # The engine's own mapping (SqlPatientDirectory.context) and parameters(), so this is what it uses.
    chosen = chosen_profile(row, clinic, profile(clinic.default_profile.value))
    params = parameters(chosen, patient_targets(row, clinic))
    stale = params.stale_titration if params.titration else params.stale_stable
    return RulesUse(
        guideline_profile=GuidelineProfile(params.profile.name.value),
        bp_goal_systolic_mmhg=params.goal_systolic_mmhg,
        bp_goal_diastolic_mmhg=params.goal_diastolic_mmhg,
        glucose_fasting_high_mg_dl=params.fasting_limit_mg_dl,
        glucose_postprandial_high_mg_dl=params.postprandial_limit_mg_dl,
        glucose_hypo_mg_dl=params.hypo1_mg_dl,
        stale_after_days=stale.days,
        timezone=params.timezone,
    )


def _out(patient: Patient, clinic: Clinic, *, may_edit: bool) -> TargetsOut:
    row = patient.targets
    return TargetsOut.model_construct(
        **_row_values(row),
        patient_id=patient.patient_id,
        updated_at=row.updated_at if row else None,
        updated_by=row.updated_by if row else None,
        rules_use=rules_use(row, clinic),
        may_edit=may_edit,
    )


def _load(session: Session, patient_id: str) -> tuple[Patient, Clinic]:
    patient = session.get(Patient, patient_id)
    assert patient is not None  # the access check found it in the caller's clinic
    clinic = session.get(Clinic, patient.clinic_id)
    assert clinic is not None
    return patient, clinic


def _read(sessions: sessionmaker[Session], user: Principal, patient_id: str) -> TargetsOut:
    with sessions() as session:
        return _out(*_load(session, patient_id), may_edit=_may_change(session, user, patient_id))


def _may_change(session: Session, user: Principal, patient_id: str) -> bool:
    """The patient's family doctor, or an administrator of the clinic (the caller has already been
    found on the care team or an administrator by the access check)."""
    if UserRole.CLINIC_ADMIN in user.roles:
        return True
    role = session.scalar(
        select(CareTeamMember.team_role).where(
            CareTeamMember.patient_id == patient_id, CareTeamMember.user_id == user.user_id
        )
    )
    return role is CareTeamRole.FAMILY_DOCTOR


class TargetsChangedMeanwhile(Exception):
    """Another change of the same patient's first targets committed first."""


def _write(
    sessions: sessionmaker[Session], user: Principal, patient_id: str, body: TargetsIn
) -> TargetsOut | None:
    """The new targets, or None when this user may not change them. The change and its audit entry
    commit together (no trail, no change: 503); a refusal is audited and stands."""
    with sessions() as session:
        patient, clinic = _load(session, patient_id)
        audit: dict[str, Any] = {
            "actor": user.user_id,
            "action": SET_TARGETS,
            "object_type": "patient",
            "object_id": patient_id,
            "clinic_id": clinic.clinic_id,
        }
        if not _may_change(session, user, patient_id):
            commit_denial(session, **audit, details={"reason": "not_family_doctor"})
            return None
        row = patient.targets
        before = _row_values(row)
        if row is None:
            row = patient.targets = TargetsRow(patient_id=patient_id)
        new = body.model_dump()
        for name, value in new.items():
            setattr(row, name, value)
        row.updated_by = user.user_id
        # Targets are clinical settings, not identifiers: the audit keeps what changed, from what.
        changed = {
            name: {"from": _plain(before[name]), "to": _plain(value)}
            for name, value in new.items()
            if before[name] != value
        }
        record_audit(session, **audit, details={"changed": changed})
        try:
            commit_audited(session, SET_TARGETS)
        except ClinicDatabaseUnavailableError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # two first PUTs at once: one row wins
                raise TargetsChangedMeanwhile() from exc
            raise
        session.refresh(patient)
        return _out(patient, clinic, may_edit=True)


def _plain(value: object) -> object:
    return value.value if isinstance(value, GuidelineProfile) else value


@router.get("")
async def read_targets(
    patient_id: Annotated[str, Depends(patient_access("read_targets"))], user: CurrentUser, services: Services
) -> TargetsOut:
    return await asyncio.to_thread(_read, services.clinic_sessions, user, patient_id)


@router.put("")
async def set_targets(patient_id: str, body: TargetsIn, user: CurrentUser, services: Services) -> TargetsOut:
    # A caller who may not see the patient is refused (404) and audited under this action, so an
    # administrator looking for attempted target changes finds them all under "set_targets".
    if not await check_patient_access(
        services, user, patient_id, AuditedAccess(SET_TARGETS, record_allowed=False)
    ):
        raise ApiError(ErrorCode.PATIENT_NOT_FOUND)
    try:
        result = await asyncio.to_thread(_write, services.clinic_sessions, user, patient_id, body)
    except TargetsChangedMeanwhile as exc:
        raise ApiError(ErrorCode.TARGETS_CHANGED_MEANWHILE) from exc
    if result is None:
        raise ApiError(ErrorCode.TARGETS_NOT_FAMILY_DOCTOR)
    # The panel's category is judged against the targets: its figures follow at once. Should the
    # reading store be down, the change stands and the figures follow once it is back (a row older
    # than the patient's targets is recomputed: alerts.summary_updater).
    updater = SummaryUpdater(services.reading_store, services.clinic_sessions)
    try:
        await asyncio.to_thread(updater.refresh, [patient_id])
    except (ReadingStoreError, ClinicDatabaseUnavailableError, SQLAlchemyError) as exc:
        logger.warning(
            "patient summary not refreshed after a targets change",
            extra={"patient_id": patient_id, "error": type(exc).__name__},
        )
    return result
