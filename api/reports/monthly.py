"""The monthly remote-monitoring report of a clinic, for its administrators: per patient, the days
with readings in each 30-day monitoring period, readings, and alerts opened and handled.

- Monitoring periods (clinical-rules.md §4, CPT 99454: "≥16 days of data in a 30-day period" [57]):
  consecutive 30-day periods counted in the patient's local days from the day of enrolment; the
  report of a month lists the periods that end in it. A period that ends after today is in
  progress: its days so far are shown, and it is marked incomplete.
- Days with readings: local days with any reading, valid or not (a transmitted error reading is still
  a day the patient measured), counted by the summary module (`alerts.summaries.days_with_data`,
  the DQ-03 count) over the period's days; the threshold is `REMOTE_MONITORING_MIN_DAYS` (16).
- Days with readings in the calendar month, and readings in the month (valid or not).
- Alerts opened in the month (local days of the patient), and of those the ones handled by a person:
  acknowledged, resolved by a clinician, or signed off.

Patients listed: those enrolled by the month's end and not discharged before it began.
"""

from __future__ import annotations

import calendar
import csv
import functools
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from alerts.summaries import (
    ADHERENCE_WINDOW_DAYS,
    REMOTE_MONITORING_MIN_DAYS,
    FloatArray,
    LocalDays,
    days_with_data,
)
from alerts.summary_updater import patient_settings
from api.reports.fonts import report_font
from api.reports.text import Language, message
from storage.clinic.models import Alert, Clinic, Patient
from storage.readings.protocol import ReadingStore
from vitals.readings import ReadingKind

MONTH_PATTERN: Final = r"^\d{4}-(0[1-9]|1[0-2])$"
PERIOD_DAYS: Final = ADHERENCE_WINDOW_DAYS
ROWS_PER_TABLE: Final = 40  # about a landscape A4 page


@dataclass(frozen=True, slots=True)
class MonitoringPeriod:
    first_day: date
    last_day: date
    days_with_readings: int
    readings: int
    meets_threshold: bool
    complete: bool = True


@dataclass(frozen=True, slots=True)
class MonthlyPatient:
    patient_id: str
    given_name: str
    family_name: str
    timezone: str
    enrolled_on: date
    periods: tuple[MonitoringPeriod, ...]
    days_with_readings_in_month: int
    readings_in_month: int
    alerts_opened: int
    alerts_handled: int


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    clinic_id: str
    clinic_name: str
    month: str
    first_day: date
    last_day: date
    generated_at: datetime
    threshold_days: int
    patients: tuple[MonthlyPatient, ...]


def month_days(month: str) -> tuple[date, date]:
    """First and last day of `YYYY-MM`."""
    if not re.match(MONTH_PATTERN, month):
        raise ValueError("month must be YYYY-MM")
    year, number = int(month[:4]), int(month[5:])
    return date(year, number, 1), date(year, number, calendar.monthrange(year, number)[1])


def periods_ending_in(enrolled_on: date, first_day: date, last_day: date) -> list[tuple[date, date]]:
    """The 30-day periods counted from `enrolled_on` whose last day falls in first_day..last_day."""
    out: list[tuple[date, date]] = []
    k = max(0, (first_day - enrolled_on).days // PERIOD_DAYS - 1)
    while True:
        start = enrolled_on + timedelta(days=k * PERIOD_DAYS)
        end = start + timedelta(days=PERIOD_DAYS - 1)
        if end > last_day:
            return out
        if end >= first_day:
            out.append((start, end))
        k += 1


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _patients(session: Session, clinic_id: str, first: datetime, end: datetime) -> list[Patient]:
    return list(
        session.execute(
            select(Patient)
            .where(
                Patient.clinic_id == clinic_id,
                Patient.enrolled_at < end,
                or_(Patient.discharged_at.is_(None), Patient.discharged_at >= first),
            )
            .order_by(Patient.family_name, Patient.given_name, Patient.patient_id)
        )
        .scalars()
        .all()
    )


def _alerts(session: Session, patient_ids: list[str], start: datetime, end: datetime) -> list[Alert]:
    return list(
        session.execute(
            select(Alert).where(
                Alert.patient_id.in_(patient_ids), Alert.opened_at >= start, Alert.opened_at < end
            )
        )
        .scalars()
        .all()
    )


def _handled(alert: Alert) -> bool:
    return (
        alert.acknowledged_at is not None or alert.resolved_by is not None or alert.signed_off_at is not None
    )


@functools.lru_cache(maxsize=64)
def _local_days(zone: ZoneInfo, first: date, last: date) -> LocalDays:
    """The local days first..last of `zone` (most patients of a report share them)."""
    return LocalDays.ending(zone, last, (last - first).days + 1)


def _readings_per_day(
    store: ReadingStore, patient_id: str, first: date, last: date, zone: ZoneInfo
) -> FloatArray:
    """Readings (valid or not) of each local day first..last, both kinds together, placed on the
    patient's days as the summary module places them (`LocalDays`)."""
    days = _local_days(zone, first, last)
    start = datetime.fromtimestamp(float(days.starts_s[0]), UTC)
    end = datetime.fromtimestamp(float(days.starts_s[-1]), UTC)
    counts = np.zeros(days.count, dtype=np.float64)
    for kind in (ReadingKind.BLOOD_PRESSURE, ReadingKind.GLUCOSE):
        t = (
            np.asarray(store.reading_columns(patient_id, kind, start, end).measured_at_us, dtype=np.float64)
            / 1e6
        )
        day = days.day_of(t)
        inside = (day >= 0) & (day < days.count)
        counts += np.bincount(day[inside], minlength=days.count)[: days.count]
    return counts


def _days_with_readings(counts: FloatArray) -> int:
    """Days with readings among `counts` (the summary module's DQ-03 count, over these days only)."""
    if counts.size == 0:
        return 0
    return int(days_with_data(counts[None, :], window=max(counts.size, 1))[0, -1])


def _patient_row(
    store: ReadingStore,
    patient: Patient,
    zone_name: str,
    first_day: date,
    last_day: date,
    today: date,
    alerts: list[Alert],
) -> MonthlyPatient:
    zone = ZoneInfo(zone_name)
    enrolled_on = patient.enrolled_at.astimezone(zone).date()
    spans = periods_ending_in(enrolled_on, first_day, last_day)
    start = min([first_day, *(s for s, _ in spans)])
    upto = min(last_day, today)
    counts = (
        _readings_per_day(store, patient.patient_id, start, upto, zone)
        if upto >= start
        else np.zeros(0, dtype=np.float64)
    )

    def within(a: date, b: date) -> FloatArray:
        lo = (a - start).days
        hi = (min(b, upto) - start).days + 1
        return counts[max(lo, 0) : max(hi, 0)]

    periods = []
    for a, b in spans:
        days = _days_with_readings(within(a, b))
        periods.append(
            MonitoringPeriod(
                first_day=a,
                last_day=b,
                days_with_readings=days,
                readings=int(within(a, b).sum()),
                meets_threshold=days >= REMOTE_MONITORING_MIN_DAYS,
                complete=b <= today,
            )
        )
    month = within(first_day, last_day)
    opened = [a for a in alerts if first_day <= a.opened_at.astimezone(zone).date() <= last_day]
    return MonthlyPatient(
        patient_id=patient.patient_id,
        given_name=patient.given_name,
        family_name=patient.family_name,
        timezone=zone_name,
        enrolled_on=enrolled_on,
        periods=tuple(periods),
        days_with_readings_in_month=_days_with_readings(month),
        readings_in_month=int(month.sum()),
        alerts_opened=len(opened),
        alerts_handled=sum(1 for a in opened if _handled(a)),
    )


def build_monthly_report(
    sessions: sessionmaker[Session], store: ReadingStore, *, clinic_id: str, month: str, now: datetime
) -> MonthlyReport:
    """The clinic's report of `month` (YYYY-MM) as of `now`. Blocking: call it from a worker thread."""
    first_day, last_day = month_days(month)
    # Wide enough for every patient's zone (UTC-12 to UTC+14); each patient is then cut to their days.
    start = _local_midnight(first_day, ZoneInfo("UTC")) - timedelta(days=1)
    end = _local_midnight(last_day + timedelta(days=1), ZoneInfo("UTC")) + timedelta(days=1)
    with sessions() as session:
        clinic = session.get(Clinic, clinic_id)
        assert clinic is not None  # the caller's own clinic
        clinic_name = clinic.name
        patients = _patients(session, clinic_id, start, end)
        ids = [p.patient_id for p in patients]
        settings = patient_settings(session, ids) if ids else {}
        by_patient: dict[str, list[Alert]] = {pid: [] for pid in ids}
        for chunk in range(0, len(ids), 500):
            for alert in _alerts(session, ids[chunk : chunk + 500], start, end):
                by_patient[alert.patient_id].append(alert)
        session.expunge_all()
    rows = []
    for patient in patients:
        zone_name = settings[patient.patient_id].parameters.timezone
        today = now.astimezone(ZoneInfo(zone_name)).date()
        rows.append(
            _patient_row(
                store, patient, zone_name, first_day, last_day, today, by_patient[patient.patient_id]
            )
        )
    return MonthlyReport(
        clinic_id=clinic_id,
        clinic_name=clinic_name,
        month=month,
        first_day=first_day,
        last_day=last_day,
        generated_at=now.astimezone(UTC),
        threshold_days=REMOTE_MONITORING_MIN_DAYS,
        patients=tuple(rows),
    )


# --- CSV -------------------------------------------------------------------------------------------

CSV_COLUMNS: Final = (
    "patient_id",
    "family_name",
    "given_name",
    "timezone",
    "enrolled_on",
    "period_first_day",
    "period_last_day",
    "period_complete",
    "days_with_readings",
    "meets_16_day_threshold",
    "period_readings",
    "days_with_readings_in_month",
    "readings_in_month",
    "alerts_opened",
    "alerts_handled",
)


def _text(value: str) -> str:
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def monthly_csv(report: MonthlyReport) -> str:
    """One row per patient and period ending in the month; a patient without one has one row with the
    period columns empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for p in report.patients:
        common = [
            p.patient_id,
            _text(p.family_name),
            _text(p.given_name),
            p.timezone,
            p.enrolled_on.isoformat(),
        ]
        tail = [p.days_with_readings_in_month, p.readings_in_month, p.alerts_opened, p.alerts_handled]
        periods: list[list[Any]] = [
            [
                q.first_day.isoformat(),
                q.last_day.isoformat(),
                str(q.complete).lower(),
                q.days_with_readings,
                str(q.meets_threshold).lower(),
                q.readings,
            ]
            for q in p.periods
        ] or [["", "", "", "", "", ""]]
        for period in periods:
            writer.writerow([*common, *period, *tail])
    return buffer.getvalue()


# --- PDF -------------------------------------------------------------------------------------------


def monthly_pdf(report: MonthlyReport, language: Language) -> bytes:
    """The report as a landscape A4 table, one row per patient and period."""
    font = report_font()

    def t(key: str, **values: object) -> str:
        return message(language, key, **values)

    body = ParagraphStyle("body", fontName=font, fontSize=8, leading=10)
    title = ParagraphStyle("title", fontName=font, fontSize=14, leading=18, spaceAfter=4)
    meeting = sum(1 for p in report.patients for q in p.periods if q.meets_threshold and q.complete)
    header = [
        t("monthly.col.patient"),
        t("monthly.col.period"),
        t("monthly.col.days"),
        t("monthly.col.meets", n=report.threshold_days),
        t("monthly.col.readings"),
        t("monthly.col.month_days"),
        t("monthly.col.alerts_opened"),
        t("monthly.col.alerts_handled"),
    ]
    rows: list[list[str]] = [header]
    for p in report.patients:
        name = f"{p.family_name} {p.given_name} ({p.patient_id})"
        tail = [str(p.days_with_readings_in_month), str(p.alerts_opened), str(p.alerts_handled)]
        if not p.periods:
            rows.append([name, t("monthly.no_period"), "", "", "", *tail])
        for q in p.periods:
            span = f"{q.first_day.isoformat()} – {q.last_day.isoformat()}"
            if not q.complete:
                span += f" ({t('monthly.in_progress')})"
            meets = t("monthly.yes") if q.meets_threshold else t("monthly.no")
            rows.append([name, span, str(q.days_with_readings), meets, str(q.readings), *tail])
    # Plain strings in cells (no Paragraph per cell), and one table per page's worth of rows: ReportLab
    # re-measures the rest of a long table at every page break, which grows with the square of its rows.
    style = TableStyle(
        [
            ("FONTNAME", (0, 0), (-1, -1), font),
            ("FONTSIZE", (0, 0), (-1, -1), 7.5),
            ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.grey),
            ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]
    )
    widths = [70 * mm, 52 * mm, 24 * mm, 18 * mm, 20 * mm, 28 * mm, 22 * mm, 20 * mm]
    tables = []
    for chunk in range(1, max(len(rows), 2), ROWS_PER_TABLE):
        table = Table([header, *rows[chunk : chunk + ROWS_PER_TABLE]], colWidths=widths, repeatRows=1)
        table.setStyle(style)
        tables.append(table)
    buffer = io.BytesIO()
    page = landscape(A4)

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(12 * mm, 8 * mm, f"{report.clinic_name} · {report.month}")
        canvas.drawRightString(page[0] - 12 * mm, 8 * mm, t("visit.page", n=doc.page))
        canvas.restoreState()

    doc = SimpleDocTemplate(
        buffer,
        pagesize=page,
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=14 * mm,
        title=t("monthly.title"),
        author=report.clinic_name,
        lang=language,
    )
    story = [
        Paragraph(t("monthly.title"), title),
        Paragraph(f"{report.clinic_name} · {t('monthly.month')} {report.month}", body),
        Paragraph(t("monthly.threshold", n=report.threshold_days), body),
        Paragraph(
            f"{t('monthly.patients')}: {len(report.patients)} · {t('monthly.meeting')}: {meeting}",
            body,
        ),
        Spacer(1, 6),
        *tables,
    ]
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
