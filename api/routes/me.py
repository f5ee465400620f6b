"""The signed-in user and their settings.

- GET /api/v1/me                 who I am, my roles, my clinic, the glucose unit I read
- PUT /api/v1/me/preferences     my own glucose unit (or null: the clinic's)

Glucose is stored and computed in mg/dL everywhere (DESIGN.md, Storage); the unit is a display
setting only. The clinic's unit is kept with the clinic (`clinics.glucose_unit`: mg/dL for the US
profile, mmol/L otherwise); a user may override it for themselves (`users.glucose_unit_override`).
Changing one's preference is audited ("set_preferences" on the user), with the new value.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal
from api.deps import CurrentUser, Services, commit_audited
from api.errors import ApiError, ErrorCode
from storage.clinic.audit import record_audit
from storage.clinic.models import Clinic, GuidelineProfile, User, UserRole
from vitals.units import GlucoseUnit

router = APIRouter(prefix="/api/v1/me", tags=["me"])


class ClinicOut(BaseModel):
    clinic_id: str
    name: str
    timezone: str = Field(description="IANA time zone of the clinic's day boundaries")
    guideline_profile: GuidelineProfile
    glucose_unit: GlucoseUnit = Field(description="the clinic's glucose display unit")


class MeOut(BaseModel):
    user_id: str
    display_name: str
    roles: list[UserRole] = Field(description="a nurse is clinic_staff")
    clinic: ClinicOut
    glucose_unit_override: GlucoseUnit | None = Field(description="the user's own unit; null: the clinic's")
    glucose_unit: GlucoseUnit = Field(description="the unit this user reads glucose in (effective)")


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    glucose_unit_override: GlucoseUnit | None = Field(description="null: use the clinic's unit")


def _me_out(user: User, clinic: Clinic) -> MeOut:
    override = user.glucose_unit_override
    return MeOut(
        user_id=user.user_id,
        display_name=user.display_name,
        roles=sorted(user.role_set, key=lambda r: list(UserRole).index(r)),
        clinic=ClinicOut(
            clinic_id=clinic.clinic_id,
            name=clinic.name,
            timezone=clinic.timezone,
            guideline_profile=clinic.default_profile,
            glucose_unit=clinic.glucose_unit,
        ),
        glucose_unit_override=override,
        glucose_unit=override or clinic.glucose_unit,
    )


def _rows(session: Session, principal: Principal) -> tuple[User, Clinic]:
    user = session.get(User, principal.user_id)
    clinic = session.get(Clinic, principal.clinic_id)
    if user is None or clinic is None:  # deleted since the token was checked
        raise ApiError(ErrorCode.AUTH_REQUIRED)
    return user, clinic


def _read(sessions: sessionmaker[Session], principal: Principal) -> MeOut:
    with sessions() as session:
        return _me_out(*_rows(session, principal))


def _set_preferences(sessions: sessionmaker[Session], principal: Principal, body: PreferencesIn) -> MeOut:
    action = "set_preferences"
    with sessions() as session:
        user, clinic = _rows(session, principal)
        user.glucose_unit_override = body.glucose_unit_override
        details: dict[str, Any] = {
            "glucose_unit_override": body.glucose_unit_override.value if body.glucose_unit_override else None
        }
        record_audit(
            session,
            actor=principal.user_id,
            action=action,
            object_type="user",
            object_id=principal.user_id,
            clinic_id=principal.clinic_id,
            details=details,
        )
        commit_audited(session, action)
        return _me_out(user, clinic)


@router.get("", response_model=MeOut)
async def me(user: CurrentUser, services: Services) -> MeOut:
    return await asyncio.to_thread(_read, services.clinic_sessions, user)


@router.put("/preferences", response_model=MeOut)
async def set_preferences(body: PreferencesIn, user: CurrentUser, services: Services) -> MeOut:
    return await asyncio.to_thread(_set_preferences, services.clinic_sessions, user, body)
