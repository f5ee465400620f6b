"""Report and export speed: a 14-day visit report PDF, the monthly remote-monitoring report of a clinic
of 2,000 patients, and one year of one patient exported as FHIR.

Data (SQLite reading store and clinic database in a temporary directory, written straight in):
- the visit patient: 14 days of home readings, 4 blood pressures and 4 glucoses a day, with targets
  and a handled alert, i.e. what a doctor takes into a visit;
- PATIENTS patients enrolled ten days before last month, each with one blood pressure and one
  glucose a day from enrolment to now, and an alert on every tenth;
- the year patient: 365 days of 4 blood pressures (with pulse) and 4 glucoses a day.

What is timed is the server's work behind each endpoint, called as the routes call it (store reads,
summary, rendering, serialising), median of --runs after one warm-up run:
- visit report: api.reports.visit.load_visit_report + render_visit_pdf (en and zh-CN), target < 1 s;
- monthly report: build_monthly_report + monthly_csv, and + monthly_pdf, target < 10 s;
- FHIR, one year of one patient: every page of 1,000 Observations (api.routes.fhir.search_page),
  each as a Bundle serialised to JSON, target < 5 s.
The one-time font load (the CJK font is parsed once per process) is printed on its own.

Usage: .venv/bin/python bench/report_render.py [--patients 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.orm import Session, sessionmaker

from api.reports import fhir
from api.reports.fonts import report_font
from api.reports.monthly import build_monthly_report, monthly_csv, monthly_pdf
from api.reports.visit import load_visit_report
from api.reports.visit_pdf import render_visit_pdf
from api.routes.fhir import EARLIEST, search_page
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, add_user
from storage.clinic.models import Alert, GuidelineProfile, Patient, PatientTargets, UserRole
from storage.readings.protocol import AnyReading, ReadingStore
from storage.readings.sqlite import SqliteReadingStore
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.payload import AlertSeverity, AlertState
from vitals.readings import (
    BloodPressureReading,
    DeviceIdentity,
    GlucoseContext,
    GlucoseReading,
    Meal,
    ReadingKind,
)

VISIT_TARGET_S = 1.0
MONTHLY_TARGET_S = 10.0
FHIR_YEAR_TARGET_S = 5.0
WRITE_CHUNK = 5_000
CLINIC = "c-bench"
VISIT_PATIENT = "p-visit"
YEAR_PATIENT = "p-year"


def readings(
    patient_id: str, index: int, first: datetime, days: int, hours: tuple[float, ...]
) -> Iterator[AnyReading]:
    """A blood pressure (with pulse) and a glucose at each of `hours` every day, values varying."""
    cuff = DeviceIdentity(manufacturer="Acme", model="BP-7", serial_number=f"C{index:05d}")
    meter = DeviceIdentity(manufacturer="Acme", model="GL-2", serial_number=f"G{index:05d}")
    k = 0
    for d in range(days):
        for h in hours:
            at = first + timedelta(days=d, hours=h)
            systolic, diastolic = 118.0 + (index * 7 + d * 3 + k) % 40, 72.0 + (index * 5 + d) % 20
            device_time = at.replace(tzinfo=None)
            yield BloodPressureReading(
                reading_id=blood_pressure_reading_id(
                    cuff,
                    device_time,
                    1,
                    systolic=systolic,
                    diastolic=diastolic,
                    mean_arterial=None,
                    pulse_bpm=70,
                ),
                device=cuff,
                patient_id=patient_id,
                measured_at=at,
                device_time=device_time,
                systolic=systolic,
                diastolic=diastolic,
                pulse_bpm=70.0,
                user_id=1,
            )
            g_at = at + timedelta(minutes=10)
            yield GlucoseReading(
                reading_id=glucose_reading_id(meter, k % 65536, g_at.replace(tzinfo=None)),
                device=meter,
                patient_id=patient_id,
                measured_at=g_at,
                sequence_number=k % 65536,
                glucose=80.0 + (index * 11 + d * 7 + k * 13) % 170,
                context=GlucoseContext(meal=Meal.FASTING if h < 9 else Meal.POSTPRANDIAL),
            )
            k += 1


def write(store: ReadingStore, source: Iterator[AnyReading]) -> int:
    batch: list[AnyReading] = []
    written = 0
    for reading in source:
        batch.append(reading)
        if len(batch) >= WRITE_CHUNK:
            written += len(store.write_batch(batch).all_ids)
            batch = []
    if batch:
        written += len(store.write_batch(batch).all_ids)
    return written


def previous_month(today: date) -> tuple[str, date]:
    last = today.replace(day=1) - timedelta(days=1)
    return last.strftime("%Y-%m"), last.replace(day=1)


def seed(
    sessions: sessionmaker[Session], store: ReadingStore, patients: int, now: datetime
) -> tuple[str, int]:
    month, first_day = previous_month(now.date())
    enrolled = datetime.combine(first_day - timedelta(days=10), datetime.min.time(), tzinfo=UTC)
    with sessions() as session:
        add_clinic(session, clinic_id=CLINIC, name="Bench Clinic", profile=GuidelineProfile.CN)
        add_user(
            session,
            user_id="dr-bench",
            clinic_id=CLINIC,
            email="doctor@bench.example",
            display_name="Dr Bench",
            roles=[UserRole.FAMILY_DOCTOR],
            password="bench password 1234",
        )
        session.flush()
        ids = [f"p-{i:05d}" for i in range(patients)] + [VISIT_PATIENT, YEAR_PATIENT]
        for i, pid in enumerate(ids):
            session.add(
                Patient(
                    patient_id=pid,
                    clinic_id=CLINIC,
                    given_name="Wei",
                    family_name=f"Wang{i}",
                    enrolled_at=enrolled,
                )
            )
        session.flush()  # patients before their alerts (no ORM relationship orders them)
        for i, pid in enumerate(ids):
            if i % 10 == 0:
                session.add(
                    Alert(
                        alert_id=f"a-{i:05d}",
                        patient_id=pid,
                        clinic_id=CLINIC,
                        rule_id="BP-CTRL-1",
                        severity=AlertSeverity.WARNING,
                        state=AlertState.ACKNOWLEDGED,
                        opened_at=enrolled + timedelta(days=15),
                        acknowledged_at=enrolled + timedelta(days=15, hours=2),
                        acknowledged_by="dr-bench",
                    )
                )
        session.flush()
        session.add(
            PatientTargets(patient_id=VISIT_PATIENT, bp_goal_systolic_mmhg=130.0, updated_by="dr-bench")
        )
        session.commit()
    span = (now - enrolled).days
    written = 0
    for i in range(patients):
        written += write(store, readings(f"p-{i:05d}", i, enrolled, span, (8.0,)))
    today = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    written += write(
        store, readings(VISIT_PATIENT, patients, today - timedelta(days=14), 14, (7.0, 7.05, 19.0, 19.05))
    )
    written += write(
        store, readings(YEAR_PATIENT, patients + 1, today - timedelta(days=365), 365, (7.0, 12.0, 19.0, 22.0))
    )
    return month, written


def timed(runs: int, work: Callable[[], Any]) -> tuple[float, Any]:
    work()  # warm-up
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def fhir_year(store: ReadingStore) -> tuple[int, int]:
    """Every page of the year patient's Observations as serialised Bundles: (observations, bytes)."""
    end = datetime.now(UTC) + timedelta(days=1)
    kinds = [ReadingKind.BLOOD_PRESSURE, ReadingKind.GLUCOSE]
    after, count, size = None, 0, 0
    while True:
        page = search_page(store, YEAR_PATIENT, kinds, EARLIEST, end, None, 1000, after)
        body = fhir.bundle(page, self_url="http://clinic/fhir/r4/Observation", next_url=None, first_url="")
        size += len(json.dumps(body))
        count += len(page.observations)
        if page.next_cursor is None:
            return count, size
        micros, reading_id, part = page.next_cursor.split(".")
        after = (int(micros), reading_id, int(part))


def line(what: str, seconds: float, target: float, extra: str = "") -> None:
    verdict = "ok" if seconds < target else "OVER TARGET"
    print(f"{what:<52} {seconds * 1000:9.1f} ms   target < {target * 1000:7.0f} ms   {verdict} {extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'clinic.sqlite3'}"
        upgrade_to_head(url)
        engine = create_clinic_engine(url)
        sessions = session_factory(engine)
        store = SqliteReadingStore(root / "readings.sqlite3", synchronous="NORMAL")
        started = time.perf_counter()
        month, written = seed(sessions, store, args.patients, now)
        print(
            f"seeded {written} readings of {args.patients + 2} patients in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        report_font()
        print(f"{'font load, once per process':<52} {(time.perf_counter() - started) * 1000:9.1f} ms")

        for language in ("en", "zh-CN"):

            def visit(language: str = language) -> int:
                report = load_visit_report(
                    sessions,
                    store,
                    patient_id=VISIT_PATIENT,
                    user_id="dr-bench",
                    days=14,
                    glucose_unit=None,
                    now=now,
                )
                return len(render_visit_pdf(report, language))  # type: ignore[arg-type]

            seconds, size = timed(args.runs, visit)
            line(
                f"visit report PDF, 14 days, {language}", seconds, VISIT_TARGET_S, f"({size / 1024:.0f} KiB)"
            )

        def monthly(pdf: bool) -> int:
            report = build_monthly_report(sessions, store, clinic_id=CLINIC, month=month, now=now)
            csv_text = monthly_csv(report)
            return len(monthly_pdf(report, "en")) if pdf else len(csv_text)

        seconds, _ = timed(args.runs, lambda: monthly(False))
        line(f"monthly report {month}, {args.patients + 2} patients, CSV", seconds, MONTHLY_TARGET_S)
        seconds, size = timed(args.runs, lambda: monthly(True))
        line(
            f"monthly report {month}, {args.patients + 2} patients, PDF",
            seconds,
            MONTHLY_TARGET_S,
            f"({size / 1024:.0f} KiB)",
        )

        seconds, (observations, size) = timed(args.runs, lambda: fhir_year(store))
        line(
            "FHIR export, one patient, one year",
            seconds,
            FHIR_YEAR_TARGET_S,
            f"({observations} Observations, {size / 1e6:.1f} MB JSON)",
        )
        store.close()
        engine.dispose()


if __name__ == "__main__":
    main()
