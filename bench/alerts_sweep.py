"""Sweep benchmark: the periodic evaluation of every window and time-based rule (stale data, adherence,
W7 averages, trends, CGM metrics) over every active patient, as `AlertEngine.sweep` runs it in a
clinic process: the patients' rule parameters from the clinic database, each patient's history read
from the reading store (one range query per patient, `ReadingStore.history_columns`), the vectorised
rules, and the alert lifecycle for the patients whose alerts change.

Data: PATIENTS patients with DAYS days of home readings (PER_DAY blood pressures and as many glucoses a
day, bench/workspace_latency.py's generator), written straight into the store; the patients enrolled
in one clinic (CN profile) in the clinic database. The sweep runs twice: the first opens the alerts
the histories call for, the second is the steady state of every interval after.

Target: 10,000 patients x 90 days in < 10 s per sweep.

Backends: SQLite (reading store and clinic database in a temporary directory), and PostgreSQL on
127.0.0.1:5432 (a database created and dropped here) + a private influxd (testbed/influxdb.py).
Either is skipped with the reason when its server is absent.

Usage: .venv/bin/python bench/alerts_sweep.py [--patients 10000] [--days 90] [--per-day 2]
       [--backends sqlite,postgres+influxdb]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import insert
from workspace_latency import readings_of

from alerts.engine import AlertEngine
from alerts.repository import SqlAlertRepository, SqlPatientDirectory
from alerts.routing import Router
from storage.clinic.database import ClinicDatabase
from storage.clinic.enrolment import add_clinic
from storage.clinic.models import GuidelineProfile, Patient
from storage.readings.protocol import AnyReading, ReadingStore
from storage.readings.sqlite import SqliteReadingStore

TARGET_S = 10.0
WRITE_CHUNK = 5_000


@dataclass
class Backend:
    name: str
    store: ReadingStore
    clinic_url: str
    close: Callable[[], None]


class TimedReads:
    """The reading store with its history reads timed (the sweep's store reads)."""

    def __init__(self, store: ReadingStore) -> None:
        self.store = store
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # this process's CPU in the reads (the machine may be busy)
        self.readings = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def history_columns(self, *args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.thread_time()
        columns = self.store.history_columns(*args, **kwargs)
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.thread_time() - cpu
        self.readings += len(columns)
        return columns


def seed(backend: Backend, patients: int, days: int, per_day: int, now: datetime) -> tuple[int, float]:
    started = time.perf_counter()
    with ClinicDatabase.open(backend.clinic_url) as database, database.sessions() as session:
        add_clinic(session, clinic_id="c-bench", name="Bench Clinic", profile=GuidelineProfile.CN)
        session.commit()
        session.execute(
            insert(Patient),
            [
                {
                    "patient_id": f"p-{i:05d}",
                    "clinic_id": "c-bench",
                    "given_name": "Bench",
                    "family_name": f"Patient {i}",
                }
                for i in range(patients)
            ],
        )
        session.commit()
    batch: list[AnyReading] = []
    written = 0
    for i in range(patients):
        for reading in readings_of(f"p-{i:05d}", i, days, per_day, now):
            batch.append(reading)
            if len(batch) >= WRITE_CHUNK:
                written += len(backend.store.write_batch(batch).all_ids)
                batch = []
    if batch:
        written += len(backend.store.write_batch(batch).all_ids)
    return written, time.perf_counter() - started


@dataclass
class SweepFigures:
    seconds: float
    cpu_seconds: float  # the whole process's CPU time (the sweep's worker threads included)
    read_seconds: float
    read_cpu_seconds: float
    readings: int
    changes: int


async def sweep_once(engine: AlertEngine, reads: TimedReads, now: datetime) -> SweepFigures:
    reads.seconds, reads.cpu_seconds, reads.readings = 0.0, 0.0, 0
    started, cpu = time.perf_counter(), time.process_time()
    report = await engine.sweep(now)
    return SweepFigures(
        time.perf_counter() - started,
        time.process_time() - cpu,
        reads.seconds,
        reads.cpu_seconds,
        reads.readings,
        report.changes,
    )


def run(backend: Backend, args: argparse.Namespace) -> list[str]:
    now = datetime.now(UTC).replace(microsecond=0)
    written, seeded_s = seed(backend, args.patients, args.days, args.per_day, now)
    lines = [
        f"{backend.name}: {args.patients:,} patients x {args.days} days, {written:,} readings "
        f"(seeded in {seeded_s:.0f} s, not counted)"
    ]
    with ClinicDatabase.open(backend.clinic_url, migrate=False) as database:
        reads = TimedReads(backend.store)
        engine = AlertEngine(
            reads,
            SqlAlertRepository(database.sessions),
            SqlPatientDirectory(database.sessions, "cn"),
            Router(),
            clock=lambda: now,
        )
        for label in ("first sweep (opens alerts)", "steady-state sweep"):
            f = asyncio.run(sweep_once(engine, reads, now))
            verdict = "met" if f.seconds < TARGET_S else "MISSED"
            lines += [
                f"  {label:<27}: {f.seconds:7.2f} s, CPU {f.cpu_seconds:6.2f} s  (target < {TARGET_S:.0f} s: "
                f"{verdict}; ratio {f.seconds / TARGET_S:.2f})",
                f"    history reads            : {f.read_seconds:7.2f} s, CPU {f.read_cpu_seconds:6.2f} s  "
                f"({f.readings:,} readings, {1e6 * f.read_seconds / args.patients:.0f} us per patient)",
                f"    rules, lifecycle, rest   : {f.seconds - f.read_seconds:7.2f} s  ({f.changes:,} alert changes)",
            ]
    return lines


@contextlib.contextmanager
def sqlite_backend(root: Path) -> Iterator[Backend]:
    store = SqliteReadingStore(root / "readings.sqlite3", synchronous="NORMAL")
    try:
        yield Backend("SQLite", store, f"sqlite:///{root / 'clinic.sqlite3'}", store.close)
    finally:
        store.close()


@contextlib.contextmanager
def postgres_influx_backend(root: Path) -> Iterator[Backend | str]:
    try:
        from storage.readings.influxdb.connection import InfluxConfig
        from storage.readings.influxdb.store import InfluxReadingStore
        from testbed.influxdb import InfluxServer, influxd_available
        from testbed.postgres import postgres_absent_reason, throwaway_database
    except ImportError as exc:
        yield f"skipped: {exc}"
        return
    if not influxd_available():
        yield "skipped: influxd not installed (Debian package influxdb)"
        return
    reason = postgres_absent_reason()
    if reason is not None:
        yield f"skipped: {reason}"
        return
    influx = InfluxServer(root / "influxd")
    with throwaway_database("vitalgate_bench") as url, contextlib.closing(influx):
        influx.start()
        store = InfluxReadingStore(
            InfluxConfig(url=influx.url, query_url=influx.influxd_url, database="bench", timeout_s=120.0)
        )
        try:
            store.ensure_database(None)
            yield Backend("PostgreSQL + InfluxDB", store, url, store.close)
        finally:
            store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--per-day", type=int, default=2, help="blood pressures a day, and as many glucoses")
    ap.add_argument("--backends", default="sqlite,postgres+influxdb")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    for name in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            opened = sqlite_backend if name == "sqlite" else postgres_influx_backend
            if name not in ("sqlite", "postgres+influxdb"):
                raise SystemExit(f"unknown backend {name!r}")
            with opened(Path(tmp)) as backend:
                if isinstance(backend, str):
                    print(f"{name}: {backend}")
                    continue
                for line in run(backend, args):
                    print(line, flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
