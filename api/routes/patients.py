"""The doctor's patient panel: their patients with the latest reading of each kind and open alerts.

Names appear here because the caller is the patient's own care team (or the clinic's administrator);
they never leave the clinic database for topics, logs or metrics. Each listing is one audit entry
("read_panel", object "patient_panel", the number of patients in details; not each patient id),
written with the query: no trail, no panel (api/deps.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal
from api.deps import CurrentUser, Services, commit_audited
from storage.clinic.audit import record_audit
from storage.clinic.models import Alert, CareTeamMember, Patient, UserRole
from storage.readings.protocol import AnyReading
from vitals.payload import AlertState
from vitals.readings import ReadingKind

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])

ACTIVE_ALERT_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.SNOOZED, AlertState.ESCALATED)


class LatestReading(BaseModel):
    measured_at: datetime
    valid: bool
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    pulse_bpm: float | None = None
    glucose_mg_dl: float | None = None


class PanelEntry(BaseModel):
    patient_id: str
    given_name: str
    family_name: str
    open_alerts: int
    latest_blood_pressure: LatestReading | None
    latest_glucose: LatestReading | None


def _panel_rows(sessions: sessionmaker[Session], user: Principal) -> list[tuple[Patient, int]]:
    with sessions() as session:
        query = select(Patient).where(Patient.clinic_id == user.clinic_id, Patient.active.is_(True))
        if UserRole.CLINIC_ADMIN not in user.roles:
            query = query.where(
                Patient.patient_id.in_(
                    select(CareTeamMember.patient_id).where(CareTeamMember.user_id == user.user_id)
                )
            )
        patients = list(session.scalars(query.order_by(Patient.family_name, Patient.given_name)))
        rows = session.execute(
            select(Alert.patient_id, func.count())
            .where(
                Alert.patient_id.in_([p.patient_id for p in patients]),
                Alert.state.in_(ACTIVE_ALERT_STATES),
            )
            .group_by(Alert.patient_id)
        )
        counts = {patient_id: count for patient_id, count in rows}
        record_audit(
            session,
            actor=user.user_id,
            action="read_panel",
            object_type="patient_panel",
            object_id=None,
            clinic_id=user.clinic_id,
            details={"count": len(patients)},
        )
        commit_audited(session, "read_panel")
        return [(p, int(counts.get(p.patient_id, 0))) for p in patients]


def _summary(reading: AnyReading | None) -> LatestReading | None:
    if reading is None:
        return None
    return LatestReading.model_validate(reading.model_dump())


@router.get("")
async def patient_panel(user: CurrentUser, services: Services) -> list[PanelEntry]:
    rows = await asyncio.to_thread(_panel_rows, services.clinic_sessions, user)
    ids = [patient.patient_id for patient, _ in rows]
    store = services.reading_store
    latest_bp, latest_glucose = await asyncio.gather(
        asyncio.to_thread(store.latest_by_patient, ids, ReadingKind.BLOOD_PRESSURE),
        asyncio.to_thread(store.latest_by_patient, ids, ReadingKind.GLUCOSE),
    )
    return [
        PanelEntry(
            patient_id=patient.patient_id,
            given_name=patient.given_name,
            family_name=patient.family_name,
            open_alerts=open_alerts,
            latest_blood_pressure=_summary(latest_bp.get(patient.patient_id)),
            latest_glucose=_summary(latest_glucose.get(patient.patient_id)),
        )
        for patient, open_alerts in rows
    ]
