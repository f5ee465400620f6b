"""The clinic's settings, for its administrators.

- GET   /api/v1/admin/clinic    name, guideline profile, time zone, glucose unit
- PATCH /api/v1/admin/clinic    change any of them (audited "update_clinic_settings", from and to)

The guideline profile picks the rule thresholds of every patient who has no profile of their own
(clinical-rules.md §7); the time zone sets the clinic's day boundaries (an IANA name, checked against
the tz database: `admin.unknown_timezone`); the glucose unit is what the clinic's staff read (stored
values stay mg/dL).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import Services
from api.routes.admin_common import ADMIN_PREFIX, AdminActor, Audited, run_change, run_read
from storage.clinic.administration import clinic as admin
from storage.clinic.models import Clinic, GuidelineProfile
from vitals.units import GlucoseUnit

router = APIRouter(prefix=f"{ADMIN_PREFIX}/clinic", tags=["admin"])


class ClinicSettingsOut(BaseModel):
    clinic_id: str
    name: str
    guideline_profile: GuidelineProfile = Field(description="rule thresholds: cn, us or eu")
    timezone: str = Field(description="IANA time zone of the clinic's day boundaries")
    glucose_unit: GlucoseUnit = Field(description="the unit the clinic's staff read glucose in")


class ClinicSettingsIn(BaseModel):
    """The settings to change; a setting left out (or null) stays as it is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    guideline_profile: GuidelineProfile | None = None
    timezone: str | None = Field(default=None, min_length=1, max_length=64, description="IANA name")
    glucose_unit: GlucoseUnit | None = None


def settings_out(clinic: Clinic) -> ClinicSettingsOut:
    return ClinicSettingsOut(
        clinic_id=clinic.clinic_id,
        name=clinic.name,
        guideline_profile=clinic.default_profile,
        timezone=clinic.timezone,
        glucose_unit=clinic.glucose_unit,
    )


@router.get("")
async def read_clinic_settings(actor: AdminActor, services: Services) -> ClinicSettingsOut:
    return await run_read(services, actor, lambda s: settings_out(admin.clinic_settings(s, actor)))


@router.patch("")
async def update_clinic_settings(
    body: ClinicSettingsIn, actor: AdminActor, services: Services
) -> ClinicSettingsOut:
    def change(session: Session) -> ClinicSettingsOut:
        return settings_out(
            admin.update_clinic_settings(
                session,
                actor,
                name=body.name,
                guideline_profile=body.guideline_profile,
                timezone=body.timezone,
                glucose_unit=body.glucose_unit,
            )
        )

    return await run_change(
        services, actor, Audited("update_clinic_settings", "clinic", actor.clinic_id), change
    )
