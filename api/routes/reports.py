"""Reports and exports of patient data (api/reports renders them).

- GET /api/v1/patients/{patient_id}/reports/visit.pdf?days=&lang=&unit=
      the visit report of the last `days` local days (default 14), as a PDF: the summary module's
      figures (home BP per the ESH protocol on the period's last week, glucose ranges, GMI, CV, hypo
      events, AGP or modal day), alerts with what was done, targets and who set them; in `lang`
      (default: zh-CN for a clinic on the CN profile, else en) and the reader's glucose unit (their
      own, else the clinic's; `unit` overrides)
- GET /api/v1/patients/{patient_id}/readings.csv?start=&end=&kind=
      every stored reading of [start, end) (default: the last 30 days), valid or not, streamed as CSV
      (api/reports/readings_csv.py lists the columns), the store read a week at a time
- GET /api/v1/admin/reports/monthly?month=YYYY-MM&format=json|csv|pdf&lang=
      the clinic's monthly remote-monitoring report, for its administrators (api/reports/monthly.py)

Tenancy and audit as every read of patient data (api/deps.py): a patient outside the caller's care
teams, or clinic for an administrator, is 404 and the refusal is audited; an allowed read is audited on
the patient before anything is read ("read_visit_report", "export_readings_csv", with the period in
details). The monthly report is one entry on the clinic with the month and the number of patients
("read_monthly_report"); anyone but a clinic administrator gets 403, audited as denied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from alerts.summary_updater import patient_settings
from api.auth import Principal
from api.deps import (
    ApiServices,
    AuditedAccess,
    CurrentUser,
    Services,
    audit_listing,
    check_patient_access,
    commit_denial,
)
from api.errors import ApiError, ErrorCode, validation_error
from api.limits import BoundedDatetime
from api.reports import readings_csv
from api.reports.monthly import MONTH_PATTERN, MonthlyReport, build_monthly_report, monthly_csv, monthly_pdf
from api.reports.text import Language
from api.reports.visit import load_visit_report
from api.reports.visit_pdf import render_visit_pdf
from api.routes.patients import SummaryDays
from storage.clinic.models import Clinic, GuidelineProfile, UserRole
from storage.readings.protocol import ReadingStore
from vitals.readings import ReadingKind
from vitals.units import GlucoseUnit

logger = logging.getLogger(__name__)

router = APIRouter(tags=["reports"])

VISIT_REPORT: Final = "read_visit_report"
READINGS_CSV: Final = "export_readings_csv"
MONTHLY_REPORT: Final = "read_monthly_report"
DEFAULT_CSV_WINDOW: Final = timedelta(days=30)
MAX_CSV_WINDOW: Final = timedelta(days=3660)  # ten years


def _clinic_language(sessions: sessionmaker[Session], clinic_id: str) -> Language:
    with sessions() as session:
        clinic = session.get(Clinic, clinic_id)
        return "zh-CN" if clinic is not None and clinic.default_profile is GuidelineProfile.CN else "en"


async def _default_language(services: ApiServices, user: Principal) -> Language:
    return await asyncio.to_thread(_clinic_language, services.clinic_sessions, user.clinic_id)


@router.get(
    "/api/v1/patients/{patient_id}/reports/visit.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "the report, A4"}},
)
async def visit_report(
    patient_id: str,
    user: CurrentUser,
    services: Services,
    days: Annotated[
        SummaryDays, Query(description="the period, as the patient page's: local days, today included")
    ] = SummaryDays.TWO_WEEKS,
    lang: Annotated[Language | None, Query(description="default: zh-CN on the CN profile, else en")] = None,
    unit: Annotated[GlucoseUnit | None, Query(description="default: the reader's glucose unit")] = None,
) -> Response:
    """The visit report as a PDF rendered on the server."""
    access = AuditedAccess(VISIT_REPORT, details={"days": int(days)})
    if not await check_patient_access(services, user, patient_id, access):
        raise ApiError(ErrorCode.PATIENT_NOT_FOUND)
    language = lang if lang is not None else await _default_language(services, user)
    report = await asyncio.to_thread(
        load_visit_report,
        services.clinic_sessions,
        services.reading_store,
        patient_id=patient_id,
        user_id=user.user_id,
        days=int(days),
        glucose_unit=unit,
        now=datetime.now(UTC),
    )
    pdf = await asyncio.to_thread(render_visit_pdf, report, language)
    name = f"visit-report-{patient_id}-{report.last_day.isoformat()}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"},
    )


# --- readings CSV ------------------------------------------------------------------------------------


def _zone(sessions: sessionmaker[Session], patient_id: str) -> str:
    with sessions() as session:
        return patient_settings(session, [patient_id])[patient_id].parameters.timezone


async def _csv_stream(
    store: ReadingStore,
    patient_id: str,
    kinds: list[ReadingKind],
    start: datetime,
    end: datetime,
    zone_name: str,
) -> AsyncIterator[str]:
    zone = ZoneInfo(zone_name)
    yield readings_csv.encode_rows([readings_csv.COLUMNS])
    for page_start, page_end in readings_csv.pages(start, end):
        # A store failure here ends the stream early (the client sees a broken transfer, never a
        # short file that looks complete); the error is logged by the server.
        fetched = [
            await asyncio.to_thread(store.query_range, patient_id, kind, page_start, page_end)
            for kind in kinds
        ]
        readings = readings_csv.in_order(*fetched)
        if readings:
            yield readings_csv.encode_rows(readings_csv.reading_row(r, zone, zone_name) for r in readings)


@router.get(
    "/api/v1/patients/{patient_id}/readings.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one row per reading, header first"}},
)
async def export_readings_csv(
    patient_id: str,
    user: CurrentUser,
    services: Services,
    start: Annotated[BoundedDatetime | None, Query(description="inclusive; default: end - 30 days")] = None,
    end: Annotated[BoundedDatetime | None, Query(description="exclusive; default: now")] = None,
    kind: Annotated[ReadingKind | None, Query(description="default: both kinds, in time order")] = None,
) -> StreamingResponse:
    """Every stored reading of the range, invalid ones included and marked with their reasons."""
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_CSV_WINDOW
    if start >= end:
        raise validation_error("start", "range_reversed", "start must be before end", location="query")
    if end - start > MAX_CSV_WINDOW:
        raise validation_error("start", "value_error", "the range is longer than ten years", location="query")
    access = AuditedAccess(
        READINGS_CSV, details={"start": start.isoformat(), "end": end.isoformat(), "kind": kind}
    )
    if not await check_patient_access(services, user, patient_id, access):
        raise ApiError(ErrorCode.PATIENT_NOT_FOUND)
    zone_name = await asyncio.to_thread(_zone, services.clinic_sessions, patient_id)
    kinds = [kind] if kind is not None else [ReadingKind.BLOOD_PRESSURE, ReadingKind.GLUCOSE]
    name = f"readings-{patient_id}-{start.date().isoformat()}-{end.date().isoformat()}.csv"
    return StreamingResponse(
        _csv_stream(services.reading_store, patient_id, kinds, start, end, zone_name),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


# --- monthly report -----------------------------------------------------------------------------------


class MonitoringPeriodOut(BaseModel):
    first_day: date
    last_day: date = Field(description="the period's 30th day")
    complete: bool = Field(description="false: the period ends after today; its days so far")
    days_with_readings: int
    meets_threshold: bool = Field(description="days_with_readings >= threshold_days")
    readings: int


class MonthlyPatientOut(BaseModel):
    patient_id: str
    given_name: str
    family_name: str
    timezone: str
    enrolled_on: date
    periods: list[MonitoringPeriodOut] = Field(description="the 30-day periods ending in the month")
    days_with_readings_in_month: int
    readings_in_month: int
    alerts_opened: int
    alerts_handled: int = Field(
        description="of those opened: acknowledged, resolved by a clinician or signed off"
    )


class MonthlyReportOut(BaseModel):
    clinic_id: str
    clinic_name: str
    month: str
    first_day: date
    last_day: date
    generated_at: datetime
    threshold_days: int = Field(description="16: CPT 99454's days with data per 30-day period")
    patients: list[MonthlyPatientOut]


def _monthly_out(report: MonthlyReport) -> MonthlyReportOut:
    return MonthlyReportOut(
        clinic_id=report.clinic_id,
        clinic_name=report.clinic_name,
        month=report.month,
        first_day=report.first_day,
        last_day=report.last_day,
        generated_at=report.generated_at,
        threshold_days=report.threshold_days,
        patients=[
            MonthlyPatientOut(
                patient_id=p.patient_id,
                given_name=p.given_name,
                family_name=p.family_name,
                timezone=p.timezone,
                enrolled_on=p.enrolled_on,
                periods=[
                    MonitoringPeriodOut(
                        first_day=q.first_day,
                        last_day=q.last_day,
                        complete=q.complete,
                        days_with_readings=q.days_with_readings,
                        meets_threshold=q.meets_threshold,
                        readings=q.readings,
                    )
                    for q in p.periods
                ],
                days_with_readings_in_month=p.days_with_readings_in_month,
                readings_in_month=p.readings_in_month,
                alerts_opened=p.alerts_opened,
                alerts_handled=p.alerts_handled,
            )
            for p in report.patients
        ],
    )


def _refuse(sessions: sessionmaker[Session], user: Principal, path: str) -> None:
    with sessions() as session:
        commit_denial(
            session,
            actor=user.user_id,
            action=MONTHLY_REPORT,
            object_type="clinic",
            object_id=user.clinic_id,
            clinic_id=user.clinic_id,
            details={"reason": "not_clinic_admin", "path": path},
        )


@router.get(
    "/api/v1/admin/reports/monthly",
    response_model=MonthlyReportOut,
    responses={
        200: {
            "content": {"text/csv": {}, "application/pdf": {}},
            "description": "JSON, or CSV (one row per patient and period), or PDF",
        }
    },
)
async def monthly_report(
    request: Request,
    user: CurrentUser,
    services: Services,
    month: Annotated[str, Query(pattern=MONTH_PATTERN, description="YYYY-MM")],
    format: Annotated[Literal["json", "csv", "pdf"], Query()] = "json",
    lang: Annotated[
        Language | None, Query(description="PDF language; default by the clinic's profile")
    ] = None,
) -> Response | MonthlyReportOut:
    """Each patient's days with readings per 30-day period, readings, alerts opened and handled."""
    if UserRole.CLINIC_ADMIN not in user.roles:
        await asyncio.to_thread(_refuse, services.clinic_sessions, user, request.url.path)
        raise ApiError(ErrorCode.FORBIDDEN, "only clinic administrators may read the monthly report")
    now = datetime.now(UTC)
    if month > now.strftime("%Y-%m"):
        raise validation_error("month", "value_error", "the month has not begun", location="query")
    report = await asyncio.to_thread(
        build_monthly_report,
        services.clinic_sessions,
        services.reading_store,
        clinic_id=user.clinic_id,
        month=month,
        now=now,
    )
    # Audited before anything is returned: no trail, no report (503).
    await audit_listing(
        services, user, MONTHLY_REPORT, {"month": month, "format": format, "count": len(report.patients)}
    )
    name = f"monthly-report-{month}"
    if format == "csv":
        return Response(
            monthly_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}.csv"',
                "Cache-Control": "no-store",
            },
        )
    if format == "pdf":
        language = lang if lang is not None else await _default_language(services, user)
        pdf = await asyncio.to_thread(monthly_pdf, report, language)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{name}.pdf"', "Cache-Control": "no-store"},
        )
    return _monthly_out(report)
