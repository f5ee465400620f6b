"""Reports and exports over a real migrated clinic database and SQLite reading store: the visit report
PDF (its text read back with pypdf, its pages kept as PNG by pdftoppm), the readings CSV streamed, the
monthly remote-monitoring report, tenancy and audit. The expected figures are the summary module's
own (the patient page's summary endpoint, alerts.summaries), never numbers worked out here."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest

from api.reports.readings_csv import COLUMNS
from api.reports.text import Language, Numbers, message
from storage.clinic.models import AuditLogEntry, Patient
from vitals.readings import BloodPressureReading, GlucoseReading
from vitals.units import GlucoseUnit

from .conftest import ClinicApi
from .report_seed import (
    SHANGHAI,
    add_alerts,
    bp,
    cgm_patient_readings,
    glucose,
    meter_patient_readings,
    set_targets,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reports"
NOW = datetime.now(UTC)


@pytest.fixture
def seeded(clinic_api: ClinicApi) -> list[BloodPressureReading | GlucoseReading]:
    """p-1: the home-meter patient of report_seed, with alerts and targets set by dr-a."""
    readings = meter_patient_readings("p-1", NOW)
    clinic_api.services.reading_store.write_batch(readings)
    with clinic_api.services.clinic_sessions() as session:
        patient = session.get(Patient, "p-1")
        assert patient is not None
        patient.given_name, patient.family_name, patient.date_of_birth = "伟", "王", "1950-04-01"
        set_targets(session, "p-1", "dr-a", NOW - timedelta(days=20))
        add_alerts(session, "p-1", "c1", "dr-a", NOW)
        session.commit()
    return readings


def _get(api: ClinicApi, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = api.client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response


def _flat(text: str) -> str:
    return "".join(text.split())


def _pdf_text(content: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def _keep(content: bytes, name: str) -> Path:
    """Keep the PDF in test-artifacts/reports/ for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pdf = ARTIFACTS / f"{name}.pdf"
    pdf.write_bytes(content)
    return pdf


def _png_pages(pdf: Path) -> list[Path]:
    """The PDF's pages as PNG beside it (pdftoppm, Debian poppler-utils)."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed: the pages cannot be rendered")
    for old in pdf.parent.glob(f"{pdf.stem}-*.png"):
        old.unlink()
    subprocess.run([pdftoppm, "-r", "60", "-png", str(pdf), str(pdf.with_suffix(""))], check=True, timeout=60)
    return sorted(pdf.parent.glob(f"{pdf.stem}-*.png"))


@pytest.mark.parametrize(
    ("language", "unit"),
    [
        ("en", GlucoseUnit.MG_DL),
        ("zh-CN", GlucoseUnit.MMOL_L),
        ("en", GlucoseUnit.MMOL_L),
        ("zh-CN", GlucoseUnit.MG_DL),
    ],
)
def test_visit_report_shows_the_summary_modules_figures(
    clinic_api: ClinicApi, seeded: list[Any], language: Language, unit: GlucoseUnit
) -> None:
    """The printed report holds the patient page's numbers (ESH home mean, category, morning and
    evening means, SD, exclusions; glucose ranges, mean, CV, hypo events, meal means) in the language
    and glucose unit asked for, with the alerts' steps and who set the targets."""
    doctor = clinic_api.auth("a@c1.example")
    response = _get(
        clinic_api, "/api/v1/patients/p-1/reports/visit.pdf", doctor, days=14, lang=language, unit=unit.value
    )
    assert response.headers["content-type"] == "application/pdf"
    _keep(response.content, f"visit-{language}-{unit.value.replace('/', '-')}")
    text = _flat(_pdf_text(response.content))
    summary = _get(clinic_api, "/api/v1/patients/p-1/summary", doctor, days=14).json()
    n = Numbers(language, unit, SHANGHAI)

    def shows(fragment: str) -> None:
        assert _flat(fragment) in text, fragment

    def t(key: str, **values: object) -> str:
        return message(language, key, **values)

    shows("王 伟")
    b = summary["blood_pressure"]
    home = b["home_mean"]
    assert home["sufficient"] and b["category"] == "above_target"
    shows(t("bp.home_mean_value", sys=n.mmhg(home["systolic"]), dia=n.mmhg(home["diastolic"])))
    shows(
        t(
            "bp.home_window",
            first=home["first_day"],
            last=home["last_day"],
            discarded=home["discarded_day"],
            readings=home["readings"],
            days=home["days"],
        )
    )
    shows(t("category.above_target"))
    for key, session in (("bp.morning", b["morning_mean"]), ("bp.evening", b["evening_mean"])):
        shows(t(key, start=session["start_hour"], end=session["end_hour"]))
        shows(
            t(
                "bp.session_value",
                sys=n.mmhg(session["systolic"]),
                dia=n.mmhg(session["diastolic"]),
                readings=session["readings"],
            )
        )
    shows(t("bp.sd_value", sys=n.mmhg(b["sd_systolic"]), dia=n.mmhg(b["sd_diastolic"])))
    shows(t("bp.valid_value", readings=b["valid_readings"], days=b["days_with_readings"]))
    assert {e["reason"] for e in b["excluded"]} == {"not_measured", "implausible_value", "body_movement"}
    for e in b["excluded"]:
        shows(f"{t('reason.' + e['reason'])}: {e['count']}")
    g = summary["glucose"]
    shows(n.glucose_with_unit(g["mean_mg_dl"]))
    shows(n.glucose_with_unit(g["sd_mg_dl"]))
    shows(n.percent(g["cv_percent"]))
    shows(t("glu.hypo_value", l1=g["hypo_events"]["level_1"], l2=g["hypo_events"]["level_2"]))
    assert g["hypo_events"] == {"level_1": 1, "level_2": 1}
    for name, share in g["ranges"].items():
        shows(f"{t('glu.range.' + name)} {share:.1f} %")
    for meal in g["by_meal"]:
        shows(f"{t('meal.' + meal['meal'])}{meal['readings']}{n.glucose(meal['mean_mg_dl'])}")
    assert g["agp"] is None and g["gmi_percent"] is None
    shows(t("glu.modal_day"))
    shows(t("glu.reason.wear_below_70_percent", wear=n.percent(g["wear_percent"])))
    for e in g["excluded"]:
        shows(f"{t('reason.' + e['reason'])}: {e['count']}")
    shows(t("targets.bp_goal_value", sys="130", dia="80"))
    shows(t("targets.set_by_value", who="dr-a", when=n.moment(NOW - timedelta(days=20))))
    shows("BP-CTRL-1")
    shows("amlodipine increased")
    shows("GLU-HYPO-2")
    shows(t("alerts.nothing_done"))


def test_visit_report_draws_the_agp_when_fourteen_days_suffice(clinic_api: ClinicApi) -> None:
    """With 14 days of readings every 15 minutes the report gives GMI and the AGP instead of the modal
    day, with the summary module's GMI and time in range."""
    clinic_api.services.reading_store.write_batch(cgm_patient_readings("p-1", NOW))
    doctor = clinic_api.auth("a@c1.example")
    response = _get(clinic_api, "/api/v1/patients/p-1/reports/visit.pdf", doctor, lang="en", unit="mg/dL")
    _keep(response.content, "visit-agp-en")
    text = _flat(_pdf_text(response.content))
    g = _get(clinic_api, "/api/v1/patients/p-1/summary", doctor, days=14).json()["glucose"]
    assert g["agp_sufficient"] and g["gmi_percent"] is not None
    assert _flat(message("en", "glu.agp")) in text
    assert _flat(message("en", "glu.modal_day")) not in text
    assert _flat(f"{g['gmi_percent']:.1f} %") in text
    assert _flat(f"{g['time_in_range_70_180_percent']:.1f} %") in text


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_visit_report_pages_render_as_images(
    clinic_api: ClinicApi, seeded: list[Any], language: Language
) -> None:
    """A PDF reader draws every page (poppler's pdftoppm): as many PNG pages as the PDF has, each with
    more than a blank page's worth of ink; the pages are kept in test-artifacts/reports/."""
    doctor = clinic_api.auth("a@c1.example")
    response = _get(clinic_api, "/api/v1/patients/p-1/reports/visit.pdf", doctor, lang=language)
    pdf = _keep(response.content, f"visit-pages-{language}")
    pages = _png_pages(pdf)
    assert len(pages) == len(pypdf.PdfReader(io.BytesIO(response.content)).pages) >= 2
    blank = _png_pages(_keep(_blank_pdf(), "blank"))[0].stat().st_size
    assert all(page.stat().st_size > 3 * blank for page in pages)


def _blank_pdf() -> bytes:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=595, height=842)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_visit_report_language_defaults_to_the_clinics_profile(
    clinic_api: ClinicApi, seeded: list[Any]
) -> None:
    """A clinic on the CN profile gets the report in Chinese and mmol/L unless the reader asks otherwise."""
    response = _get(clinic_api, "/api/v1/patients/p-1/reports/visit.pdf", clinic_api.auth("a@c1.example"))
    text = _flat(_pdf_text(response.content))
    assert _flat(message("zh-CN", "visit.title")) in text and "mmol/L" in text


def test_reports_of_another_clinics_patient_are_not_found_and_audited(
    clinic_api: ClinicApi, seeded: list[Any]
) -> None:
    """Another clinic's administrator gets 404 for the PDF and the CSV, each refusal audited on the
    patient; the care team's reads are audited as allowed, with the period."""
    other = clinic_api.auth("admin@c2.example")
    for path in ("/api/v1/patients/p-1/reports/visit.pdf", "/api/v1/patients/p-1/readings.csv"):
        refused = clinic_api.client.get(path, headers=other)
        assert refused.status_code == 404 and refused.json()["code"] == "patient.not_found"
    doctor = clinic_api.auth("a@c1.example")
    _get(clinic_api, "/api/v1/patients/p-1/reports/visit.pdf", doctor, days=7)
    _get(clinic_api, "/api/v1/patients/p-1/readings.csv", doctor)
    with clinic_api.services.clinic_sessions() as session:
        entries = [
            (e.actor, e.action, e.outcome, e.details)
            for e in session.query(AuditLogEntry)
            .filter(AuditLogEntry.object_id == "p-1", AuditLogEntry.action != "read_summary")
            .order_by(AuditLogEntry.audit_id)
        ]
    assert [e[:3] for e in entries] == [
        ("admin-2", "read_visit_report", "denied"),
        ("admin-2", "export_readings_csv", "denied"),
        ("dr-a", "read_visit_report", "allowed"),
        ("dr-a", "export_readings_csv", "allowed"),
    ]
    assert entries[2][3] == {"days": 7} and set(entries[3][3]) == {"start", "end", "kind"}


def test_visit_report_refuses_a_period_it_does_not_offer(clinic_api: ClinicApi) -> None:
    """Days other than the patient page's 7, 14, 30, 90 or 365 and an unknown language are coded
    validation errors."""
    doctor = clinic_api.auth("a@c1.example")
    for params in ({"days": 10}, {"lang": "fr"}):
        refused = clinic_api.client.get(
            "/api/v1/patients/p-1/reports/visit.pdf", params=params, headers=doctor
        )
        assert refused.status_code == 422 and refused.json()["code"] == "validation"


# --- readings CSV ------------------------------------------------------------------------------------


def _csv_rows(content: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content)))


def test_csv_holds_every_reading_with_its_reasons_and_both_times(
    clinic_api: ClinicApi, seeded: list[Any]
) -> None:
    """Every stored reading of the range is a row, invalid ones marked with their reasons; times are
    in UTC and in the patient's zone; every field of the stored model is a column."""
    doctor = clinic_api.auth("a@c1.example")
    start = (NOW - timedelta(days=20)).isoformat()
    response = _get(clinic_api, "/api/v1/patients/p-1/readings.csv", doctor, start=start, end=NOW.isoformat())
    assert response.headers["content-type"].startswith("text/csv")
    rows = _csv_rows(response.text)
    assert sorted(r["reading_id"] for r in rows) == sorted(r.reading_id for r in seeded)
    assert list(rows[0]) == list(COLUMNS)
    for model in (BloodPressureReading, GlucoseReading):
        for name in model.model_fields:
            assert name in COLUMNS or f"{name}." in "".join(COLUMNS) or name == "measured_at"
    by_id = {r["reading_id"]: r for r in rows}
    for reading in seeded:
        row = by_id[reading.reading_id]
        assert datetime.fromisoformat(row["measured_at_utc"]) == reading.measured_at
        local = datetime.fromisoformat(row["measured_at_local"])
        assert local == reading.measured_at and local.utcoffset() == timedelta(hours=8)
        assert row["timezone"] == "Asia/Shanghai"
        assert row["valid"] == str(reading.valid).lower()
    reasons = sorted(r["exclusion_reasons"] for r in rows if r["exclusion_reasons"])
    assert reasons == sorted(
        [
            "not_measured",
            "implausible_value",
            "body_movement",
            "control_solution",
            "result_too_high;not_measured",
        ]
    )
    err = next(r for r in rows if r["exclusion_reasons"] == "not_measured")
    assert err["valid"] == "false" and err["systolic_mmhg"] == "" and "not measured" in err["invalid_reasons"]
    glucose_row = next(r for r in rows if r["context.meal"] == "fasting")
    assert glucose_row["unit"] == "mmol/L" and glucose_row["device.serial_number"] == "SN-GLU-p-1"
    assert float(glucose_row["glucose_mg_dl"]) == pytest.approx(float(glucose_row["glucose"]) * 18.01559)


def test_csv_is_streamed_a_week_at_a_time(clinic_api: ClinicApi, seeded: list[Any]) -> None:
    """The export is a stream without a length, sent in several parts over a range of several weeks,
    and holds the same rows as the range asked in one piece."""
    doctor = clinic_api.auth("a@c1.example")
    params = {"start": (NOW - timedelta(days=28)).isoformat(), "end": NOW.isoformat()}
    with clinic_api.client.stream(
        "GET", "/api/v1/patients/p-1/readings.csv", params=params, headers=doctor
    ) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        parts = [chunk for chunk in response.iter_raw() if chunk]
    assert len(parts) >= 3  # the header, then one part per week holding readings
    rows = _csv_rows(b"".join(parts).decode())
    assert len(rows) == len(seeded)


def test_csv_neutralises_formulas_in_device_strings(clinic_api: ClinicApi) -> None:
    """A meter whose name starts with '=' is written as text, never as a spreadsheet formula."""
    from vitals.readings import DeviceIdentity

    evil = DeviceIdentity(manufacturer="=HYPERLINK(1)", model="-2+3", serial_number="@SUM")
    clinic_api.services.reading_store.write_batch(
        [glucose("p-1", NOW - timedelta(hours=1), 6.0, device=evil)]
    )
    rows = _csv_rows(
        _get(clinic_api, "/api/v1/patients/p-1/readings.csv", clinic_api.auth("a@c1.example")).text
    )
    assert [rows[0]["device.manufacturer"], rows[0]["device.model"], rows[0]["device.serial_number"]] == [
        "'=HYPERLINK(1)",
        "'-2+3",
        "'@SUM",
    ]


# --- monthly report ------------------------------------------------------------------------------------


def _previous_month(today: date) -> tuple[str, date]:
    first = today.replace(day=1) - timedelta(days=1)
    return first.strftime("%Y-%m"), first.replace(day=1)


@pytest.fixture
def monthly(clinic_api: ClinicApi) -> tuple[str, date]:
    """p-1 with readings on 16 days of its 30-day period ending last month (one day only an invalid
    reading), p-2 with 15 days; both enrolled 10 days before last month began."""
    from vitalgate.administration import add_patient

    month, first = _previous_month(datetime.now(SHANGHAI).date())
    enrolled_on = first - timedelta(days=10)
    with clinic_api.services.clinic_sessions() as session:
        add_patient(
            session,
            clinic_id="c1",
            patient_id="p-2",
            given_name="Li",
            family_name="Na",
            family_doctor_id="dr-a",
        )
        session.flush()
        for pid in ("p-1", "p-2"):
            set_targets(session, pid, "dr-a", NOW)
            patient = session.get(Patient, pid)
            assert patient is not None
            patient.enrolled_at = datetime.combine(enrolled_on, time(0), tzinfo=SHANGHAI).astimezone(UTC)
        add_alerts(
            session,
            "p-1",
            "c1",
            "dr-a",
            datetime.combine(first + timedelta(days=6), time(0), tzinfo=UTC),
        )
        session.commit()
    readings: list[Any] = []
    for pid, days in (("p-1", 16), ("p-2", 15)):
        # Spread over the period's 30 days, first and last day included.
        for k in range(days):
            day = enrolled_on + timedelta(days=round(k * 29 / (days - 1)))
            at = datetime.combine(day, time(8), tzinfo=SHANGHAI).astimezone(UTC)
            if pid == "p-1" and k == 0:
                readings.append(bp(pid, at, 0.0, 0.0))  # an error reading is still a day measured
            else:
                readings += [bp(pid, at, 130.0, 80.0), glucose(pid, at + timedelta(minutes=5), 6.1)]
    # The next period's first day, at local midnight and a minute before: one in, one out.
    next_period = datetime.combine(enrolled_on + timedelta(days=30), time(0), tzinfo=SHANGHAI).astimezone(UTC)
    readings += [
        bp("p-2", next_period, 131.0, 81.0),
        bp("p-2", next_period - timedelta(minutes=1), 132.0, 82.0),
    ]
    clinic_api.services.reading_store.write_batch(readings)
    return month, enrolled_on


def test_monthly_report_counts_days_in_each_30_day_period_against_16(
    clinic_api: ClinicApi, monthly: tuple[str, date]
) -> None:
    """16 days with readings in the period meets the remote-monitoring threshold, 15 does not; the
    error-only day counts; readings and alerts opened and handled in the month are counted."""
    month, enrolled_on = monthly
    admin = clinic_api.auth("admin@c1.example")
    body = _get(clinic_api, "/api/v1/admin/reports/monthly", admin, month=month).json()
    assert body["threshold_days"] == 16
    rows = {p["patient_id"]: p for p in body["patients"]}
    assert set(rows) == {"p-1", "p-2"}
    for pid, days, meets in (("p-1", 16, True), ("p-2", 15, False)):
        (period,) = rows[pid]["periods"]
        assert period["first_day"] == enrolled_on.isoformat()
        assert period["last_day"] == (enrolled_on + timedelta(days=29)).isoformat()
        assert (period["days_with_readings"], period["meets_threshold"], period["complete"]) == (
            days,
            meets,
            True,
        )
        assert period["readings"] == 2 * days - (1 if pid == "p-1" else 0) + (1 if pid == "p-2" else 0)
    assert (rows["p-1"]["alerts_opened"], rows["p-1"]["alerts_handled"]) == (2, 1)
    assert (rows["p-2"]["alerts_opened"], rows["p-2"]["alerts_handled"]) == (0, 0)
    csv_rows = _csv_rows(
        _get(clinic_api, "/api/v1/admin/reports/monthly", admin, month=month, format="csv").text
    )
    assert {(r["patient_id"], r["days_with_readings"], r["meets_16_day_threshold"]) for r in csv_rows} == {
        ("p-1", "16", "true"),
        ("p-2", "15", "false"),
    }
    pdf = _get(clinic_api, "/api/v1/admin/reports/monthly", admin, month=month, format="pdf", lang="zh-CN")
    _keep(pdf.content, "monthly-zh-CN")
    text = _flat(_pdf_text(pdf.content))
    assert _flat(message("zh-CN", "monthly.title")) in text and "NaLi(p-2)" in text


def test_monthly_report_is_for_administrators_only_and_audited(
    clinic_api: ClinicApi, monthly: tuple[str, date]
) -> None:
    """A family doctor gets 403, audited as denied; an administrator's report is one audit entry with
    the month and the number of patients; a month not begun is a validation error."""
    month, _ = monthly
    refused = clinic_api.client.get(
        "/api/v1/admin/reports/monthly", params={"month": month}, headers=clinic_api.auth("a@c1.example")
    )
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    admin = clinic_api.auth("admin@c1.example")
    _get(clinic_api, "/api/v1/admin/reports/monthly", admin, month=month, format="csv")
    future = (datetime.now(UTC) + timedelta(days=40)).strftime("%Y-%m")
    assert (
        clinic_api.client.get(
            "/api/v1/admin/reports/monthly", params={"month": future}, headers=admin
        ).status_code
        == 422
    )
    assert (
        clinic_api.client.get(
            "/api/v1/admin/reports/monthly", params={"month": "2024-13"}, headers=admin
        ).status_code
        == 422
    )
    with clinic_api.services.clinic_sessions() as session:
        entries = [
            (e.actor, e.outcome, e.details)
            for e in session.query(AuditLogEntry)
            .filter(AuditLogEntry.action == "read_monthly_report")
            .order_by(AuditLogEntry.audit_id)
        ]
    assert entries[0][:2] == ("dr-a", "denied")
    assert entries[1] == ("admin-1", "allowed", {"month": month, "format": "csv", "count": 2})
    assert len(entries) == 2
