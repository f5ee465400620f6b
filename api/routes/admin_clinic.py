"""The clinic's settings, for its administrators.

- GET   /api/v1/admin/clinic    name, guideline profile, time zone, glucose unit, readings retention
- PATCH /api/v1/admin/clinic    change any of them (audited "update_clinic_settings", from and to)

The guideline profile picks the rule thresholds of every patient who has no profile of their own
(clinical-rules.md §7); the time zone sets the clinic's day boundaries (an IANA name, checked against
the tz database: `admin.unknown_timezone`); the glucose unit is what the clinic's staff read (stored
values stay mg/dL). `readings_retention_days` is how long the clinic's patients' readings are kept, for
a clinic whose jurisdiction or contract asks for a period of its own: 90 days at least (the rules look
back 45, the charts 90) and at most the operator's ceiling, `retention.clinic_readings_max_days`
(by default `retention.readings_days`, so a clinic may only shorten it), or null for the deployment's
`retention.readings_days` (docs/scaling.md, Retention); 422 `admin.invalid_field` otherwise. The GET
answers the allowed range (`readings_retention_min_days`, `readings_retention_max_days`). In a PATCH, null sets the deployment's period and a
body without the field leaves it.
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
    readings_retention_days: int | None = Field(
        description="days the clinic's readings are kept; null: the deployment's retention"
    )
    readings_retention_min_days: int = Field(description="the shortest readings retention the clinic may set")
    readings_retention_max_days: int = Field(
        description="the longest readings retention the clinic may set: the deployment's ceiling"
    )


class ClinicSettingsIn(BaseModel):
    """The settings to change; a setting left out (or null) stays as it is, except
    `readings_retention_days`, where null means the deployment's retention."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    guideline_profile: GuidelineProfile | None = None
    timezone: str | None = Field(default=None, min_length=1, max_length=64, description="IANA name")
    glucose_unit: GlucoseUnit | None = None
    readings_retention_days: int | None = Field(
        default=None,
        description=f"{admin.MIN_READINGS_RETENTION_DAYS} days up to the deployment's ceiling "
        "(readings_retention_max_days in the GET), or null for the deployment's retention "
        "(retention.readings_days)",
    )


def settings_out(clinic: Clinic, readings_retention_max_days: int | None) -> ClinicSettingsOut:
    shortest, longest = admin.readings_retention_bounds(readings_retention_max_days)
    return ClinicSettingsOut(
        clinic_id=clinic.clinic_id,
        name=clinic.name,
        guideline_profile=clinic.default_profile,
        timezone=clinic.timezone,
        glucose_unit=clinic.glucose_unit,
        readings_retention_days=clinic.readings_retention_days,
        readings_retention_min_days=shortest,
        readings_retention_max_days=longest,
    )


@router.get("")
async def read_clinic_settings(actor: AdminActor, services: Services) -> ClinicSettingsOut:
    ceiling = services.clinic_readings_max_days
    return await run_read(services, actor, lambda s: settings_out(admin.clinic_settings(s, actor), ceiling))


@router.patch("")
async def update_clinic_settings(
    body: ClinicSettingsIn, actor: AdminActor, services: Services
) -> ClinicSettingsOut:
    ceiling = services.clinic_readings_max_days

    def change(session: Session) -> ClinicSettingsOut:
        return settings_out(
            admin.update_clinic_settings(
                session,
                actor,
                name=body.name,
                guideline_profile=body.guideline_profile,
                timezone=body.timezone,
                glucose_unit=body.glucose_unit,
                readings_retention_days=body.readings_retention_days
                if "readings_retention_days" in body.model_fields_set
                else admin.Keep.UNCHANGED,
                readings_retention_max_days=ceiling,
            ),
            ceiling,
        )

    return await run_change(
        services, actor, Audited("update_clinic_settings", "clinic", actor.clinic_id), change
    )
