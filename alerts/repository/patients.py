"""Who a patient is to the rules: guideline profile, targets and care team, from the clinic database."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from alerts.channels.base import Recipient
from alerts.directory import PatientContext, PatientRules
from alerts.profiles import PatientTargets, Profile, parameters, profile
from storage.clinic.models import (
    CareTeamMember,
    CareTeamRole,
    Clinic,
    Patient,
    User,
)
from storage.clinic.models import PatientTargets as TargetsRow

# Patients per query of `SqlPatientDirectory.rules` (bound parameters stay far under SQLite's limit).
RULES_CHUNK = 1000


def chosen_profile(row: TargetsRow | None, clinic: Clinic | None, default: Profile) -> Profile:
    """The patient's guideline profile: the doctor's choice, else the clinic's, else `default`."""
    if row is not None and row.guideline_profile is not None:
        return profile(row.guideline_profile.value)
    if clinic is not None:
        return profile(clinic.default_profile.value)
    return default


def patient_targets(row: TargetsRow | None, clinic: Clinic | None) -> PatientTargets:
    """The rules' view of a patient's targets row (NULL: the profile's value). Titration and insulin
    both shorten DQ-01's stale-data limit ([58] DEFAULT); the patient's time zone, else the clinic's."""
    clinic_zone = clinic.timezone if clinic is not None else None
    if row is None:
        return PatientTargets(timezone=clinic_zone)
    return PatientTargets(
        goal_systolic_mmhg=row.bp_goal_systolic_mmhg,
        goal_diastolic_mmhg=row.bp_goal_diastolic_mmhg,
        fasting_limit_mg_dl=row.glucose_fasting_high_mg_dl,
        postprandial_limit_mg_dl=row.glucose_postprandial_high_mg_dl,
        hypo1_mg_dl=row.glucose_hypo_mg_dl,
        older_or_high_risk=bool(row.older_adult),
        titration=bool(row.bp_titration or row.on_insulin),
        timezone=row.timezone or clinic_zone,
    )


class SqlPatientDirectory:
    """Patient context for the engine: clinic, guideline profile, the doctor's targets, the care team."""

    def __init__(self, sessions: sessionmaker[Session], default_profile: str = "eu") -> None:
        self.sessions = sessions
        self.default_profile = profile(default_profile)

    def context(self, patient_id: str) -> PatientContext | None:
        """One query (patient, clinic, targets, care team and its accounts): it runs before every
        evaluation, on the path of an urgent reading to the doctor's screen."""
        with self.sessions() as session:
            found = (
                session.execute(
                    select(Patient, Clinic)
                    .join(Clinic, Clinic.clinic_id == Patient.clinic_id)
                    .where(Patient.patient_id == patient_id)
                    .options(joinedload(Patient.targets), joinedload(Patient.care_team))
                )
                .unique()
                .first()
            )
            if found is None or not found[0].active:
                return None
            patient, clinic = found
            row: TargetsRow | None = patient.targets
            chosen = chosen_profile(row, clinic, self.default_profile)
            targets = patient_targets(row, clinic)
            return PatientContext(patient_id, patient.clinic_id, chosen, targets, _team(patient.care_team))

    def active_patient_ids(self) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(select(Patient.patient_id).where(Patient.active).order_by(Patient.patient_id))
            )

    def rules(self, patient_ids: Sequence[str]) -> dict[str, PatientRules]:
        """Clinic and rule parameters of the active patients among `patient_ids`: one query per
        RULES_CHUNK patients (the sweep's look-up; `context` adds the care team, per patient)."""
        found: dict[str, PatientRules] = {}
        ids = list(dict.fromkeys(patient_ids))
        with self.sessions() as session:
            for i in range(0, len(ids), RULES_CHUNK):
                rows = session.execute(
                    select(Patient.patient_id, Patient.clinic_id, TargetsRow, Clinic)
                    .join(Clinic, Clinic.clinic_id == Patient.clinic_id)
                    .outerjoin(TargetsRow, TargetsRow.patient_id == Patient.patient_id)
                    .where(Patient.patient_id.in_(ids[i : i + RULES_CHUNK]), Patient.active)
                )
                for pid, clinic_id, row, clinic in rows:
                    chosen = chosen_profile(row, clinic, self.default_profile)
                    found[pid] = PatientRules(
                        pid, clinic_id, parameters(chosen, patient_targets(row, clinic))
                    )
        return found


def _team(members: Sequence[CareTeamMember]) -> tuple[Recipient, ...]:
    """Family doctor first, then staff on duty by escalation order; inactive accounts are skipped."""
    chosen = [
        m for m in members if (m.team_role is CareTeamRole.FAMILY_DOCTOR or m.on_duty) and _active(m.user)
    ]
    chosen.sort(key=lambda m: (m.team_role is not CareTeamRole.FAMILY_DOCTOR, m.escalation_order))
    return tuple(Recipient(m.user_id, m.team_role.value, m.user.email) for m in chosen)


def _active(user: User | None) -> bool:
    return user is not None and user.active
