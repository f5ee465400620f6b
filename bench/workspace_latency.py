"""Clinical workspace latency: the doctors' panel and a one-year patient chart, on SQLite and on
PostgreSQL + InfluxDB.

Data: one clinic, one family doctor whose care team holds every patient: PATIENTS patients with DAYS
days of home readings (2 blood pressure + 2 glucose a day) and one patient with a year (4 + 4 a
day); active alerts on a tenth of the patients, a gateway with a status for each. Readings are written
straight into the store; the summary updater then fills `patient_summaries` as the clinic server does
at start (its time is printed: the warm-up after a deployment).

The API runs in this process under uvicorn (one worker), requests go over HTTP with a bearer token,
one after another after a warm-up. Server time is measured around the ASGI application (what the
targets are about); the round trip beside it. Targets (issue: clinical workspace):
- panel, GET /api/v1/patients (default urgency order, first page): p99 < 300 ms server time;
- one-year patient chart with its summaries (GET summary?days=365, readings/daily for both kinds):
  p99 < 50 ms per request.

Backends: SQLite (reading store and clinic database in a temporary directory), and PostgreSQL on
127.0.0.1:5432 (a database created and dropped here) + a private influxd (testbed/influxdb.py;
reads go to influxd's /query directly, as in production). Either is skipped with the reason when its
server is absent.

Usage: .venv/bin/python bench/workspace_latency.py [--patients 2000] [--days 90] [--requests 200]
       [--backends sqlite,postgres+influxdb] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn
from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from alerts.summary_updater import SummaryUpdater
from api.app import create_app
from api.deps import ApiServices
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.enrolment import add_clinic, add_user
from storage.clinic.models import (
    Alert,
    CareTeamMember,
    CareTeamRole,
    Gateway,
    GatewayStatusRecord,
    GuidelineProfile,
    Meter,
    MeterBinding,
    MeterKind,
    Patient,
    PatientSummaryRow,
    UserRole,
)
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
)

PANEL_TARGET_MS = 300.0
CHART_TARGET_MS = 50.0
PASSWORD = "workspace bench password"
EMAIL = "doctor@bench.example"
WRITE_CHUNK = 5_000
YEAR_PATIENT = "p-year"
SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu")
GIVEN = ("Wei", "Fang", "Na", "Min", "Jing", "Lei", "Jun", "Yan", "Tao", "Hui", "Ping", "Qiang")


# --- data -----------------------------------------------------------------------------------------


def readings_of(patient_id: str, index: int, days: int, per_day: int, now: datetime) -> Iterator[AnyReading]:
    """`per_day` blood pressures and glucoses a day (mornings and evenings), values varying by patient
    and day; one reading in fifty a cuff error (0/0), as meters send them."""
    cuff = DeviceIdentity(manufacturer="Acme", model="BP-7", serial_number=f"C{index:05d}")
    meter = DeviceIdentity(manufacturer="Acme", model="GL-2", serial_number=f"G{index:05d}")
    hours = (7.0, 19.0, 12.0, 22.0)[:per_day]
    sequence = itertools.count()
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    for d in range(days):
        for h in hours:
            at = start + timedelta(days=d, hours=h - start.hour)
            if at >= now:
                continue
            k = next(sequence)
            error = k % 50 == 49
            systolic = 0.0 if error else 118.0 + (index * 7 + d * 3 + k) % 40
            diastolic = 0.0 if error else 72.0 + (index * 5 + d) % 20
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
                received_at=at + timedelta(seconds=30),
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
                received_at=g_at + timedelta(seconds=30),
                sequence_number=k % 65536,
                glucose=80.0 + (index * 11 + d * 7 + k * 13) % 170,
                context=GlucoseContext(meal=Meal.FASTING if h == 7.0 else Meal.POSTPRANDIAL),
            )


def seed_readings(store: ReadingStore, patients: int, days: int, year_days: int, now: datetime) -> int:
    batch: list[AnyReading] = []
    written = 0
    sources = [(f"p-{i:05d}", i, days, 2) for i in range(patients)] + [(YEAR_PATIENT, patients, year_days, 4)]
    for patient_id, index, span, per_day in sources:
        for reading in readings_of(patient_id, index, span, per_day, now):
            batch.append(reading)
            if len(batch) >= WRITE_CHUNK:
                store.write_batch(batch)
                written += len(batch)
                batch = []
    if batch:
        store.write_batch(batch)
        written += len(batch)
    return written


def seed_clinic(sessions: sessionmaker[Session], patients: int, now: datetime) -> None:
    """The clinic, the doctor, every patient on the doctor's care team, a gateway and a meter binding
    each (last heard a minute ago), and active alerts on every tenth patient."""
    with sessions() as session:
        add_clinic(session, clinic_id="c-bench", name="Bench Clinic", profile=GuidelineProfile.CN)
        add_user(
            session,
            user_id="dr-bench",
            clinic_id="c-bench",
            email=EMAIL,
            display_name="Dr Bench",
            roles=[UserRole.FAMILY_DOCTOR],
            password=PASSWORD,
        )
        session.commit()
    ids = [f"p-{i:05d}" for i in range(patients)] + [YEAR_PATIENT]
    severities = (AlertSeverity.URGENT, AlertSeverity.WARNING, AlertSeverity.INFO)
    with sessions() as session:
        for i, patient_id in enumerate(ids):
            gateway_id, meter_key = f"gw-{i:05d}", f"acme|bp-7|C{i:05d}"
            session.add(
                Patient(
                    patient_id=patient_id,
                    clinic_id="c-bench",
                    given_name=GIVEN[i % len(GIVEN)],
                    family_name=SURNAMES[(i // len(GIVEN)) % len(SURNAMES)],
                )
            )
            session.add(
                CareTeamMember(
                    patient_id=patient_id, user_id="dr-bench", team_role=CareTeamRole.FAMILY_DOCTOR
                )
            )
            session.add(
                Gateway(
                    gateway_id=gateway_id,
                    clinic_id="c-bench",
                    mqtt_username=gateway_id,
                    mqtt_credential_hash="not-a-credential",
                    last_seen_at=now - timedelta(minutes=1 if i % 20 else 30),
                )
            )
            session.add(
                Meter(
                    meter_key=meter_key,
                    clinic_id="c-bench",
                    kind=MeterKind.BLOOD_PRESSURE,
                    manufacturer="Acme",
                    model="BP-7",
                    serial_number=f"C{i:05d}",
                )
            )
            session.add(
                GatewayStatusRecord(gateway_id=gateway_id, online=True, reported_at=now, received_at=now)
            )
            session.flush()
            session.add(MeterBinding(gateway_id=gateway_id, meter_key=meter_key, patient_id=patient_id))
            if i % 10 == 0:
                severity = severities[(i // 10) % 3]
                session.add(
                    Alert(
                        alert_id=f"a-{i:05d}",
                        patient_id=patient_id,
                        clinic_id="c-bench",
                        rule_id="BP-CTRL-1",
                        severity=severity,
                        state=AlertState.OPEN if i % 20 else AlertState.ACKNOWLEDGED,
                        opened_at=now - timedelta(hours=i % 72),
                        updated_at=now,
                    )
                )
        session.commit()


# --- serving and measuring --------------------------------------------------------------------------


@dataclass
class ServerTimes:
    """Seconds spent inside the application per request, by path (an ASGI middleware)."""

    by_path: dict[str, list[float]] = field(default_factory=dict)

    def wrap(self, app: Any) -> Callable[..., Any]:
        async def timed(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            try:
                await app(scope, receive, send)
            finally:
                self.by_path.setdefault(scope["path"], []).append(time.perf_counter() - started)

        return timed


@contextlib.contextmanager
def serving(services: ApiServices, times: ServerTimes) -> Iterator[str]:
    config = uvicorn.Config(
        times.wrap(create_app(services)), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q / 100.0 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Row:
    name: str
    server_ms: list[float]
    round_trip_ms: list[float]
    body_kb: float
    target_ms: float | None
    cpu_ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        p50, p99 = percentile(self.server_ms, 50), percentile(self.server_ms, 99)
        rt50, rt99 = percentile(self.round_trip_ms, 50), percentile(self.round_trip_ms, 99)
        cpu50 = percentile(self.cpu_ms, 50)
        verdict = ""
        if self.target_ms is not None:
            met = "met" if p99 < self.target_ms else "MISSED"
            verdict = f"p99 < {self.target_ms:.0f} ms: {met} ({p99 / self.target_ms:.2f} of target)"
        return (
            f"  {self.name:<46} {p50:8.1f} {p99:8.1f}   {rt50:8.1f} {rt99:8.1f}  {cpu50:7.1f}"
            f"  {self.body_kb:8.1f}  {verdict}"
        )


def measure(
    client: httpx.Client,
    times: ServerTimes,
    name: str,
    path: str,
    params: dict[str, Any],
    requests: int,
    target_ms: float | None,
) -> Row:
    for _ in range(2):  # warm-up: connections, caches, the first stale check
        response = client.get(path, params=params)
        response.raise_for_status()
    times.by_path.pop(path, None)
    round_trips: list[float] = []
    cpu: list[float] = []
    size = 0
    for _ in range(requests):
        started, cpu_started = time.perf_counter(), time.process_time()
        response = client.get(path, params=params)
        round_trips.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
        response.raise_for_status()
        size = len(response.content)
    server = [s * 1000 for s in times.by_path.get(path, [])][-requests:]
    return Row(name, server, round_trips, size / 1024, target_ms, cpu)


def concurrent(
    base_url: str, headers: dict[str, str], path: str, clients: int, each: int
) -> tuple[float, float, float]:
    """`clients` clients at once, `each` requests each: p50, p99 round trip (ms) and requests/s."""

    async def run() -> tuple[list[float], float]:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:

            async def one() -> list[float]:
                out = []
                for _ in range(each):
                    started = time.perf_counter()
                    (await client.get(path)).raise_for_status()
                    out.append((time.perf_counter() - started) * 1000)
                return out

            started = time.perf_counter()
            results = await asyncio.gather(*(one() for _ in range(clients)))
            return [t for r in results for t in r], time.perf_counter() - started

    latencies, wall = asyncio.run(run())
    return percentile(latencies, 50), percentile(latencies, 99), len(latencies) / wall


# --- backends ---------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    store: ReadingStore
    clinic_url: str
    close: Callable[[], None]


def sqlite_backend(root: Path) -> Backend:
    store = SqliteReadingStore(root / "readings.sqlite3", synchronous="NORMAL")
    return Backend("SQLite", store, f"sqlite:///{root / 'clinic.sqlite3'}", store.close)


def postgres_influx_backend(root: Path) -> Backend | str:
    """PostgreSQL (a fresh database) and a private influxd; a reason string when either is absent."""
    try:
        from storage.readings.influxdb.connection import InfluxConfig
        from storage.readings.influxdb.store import InfluxReadingStore
        from testbed.influxdb import InfluxServer, influxd_available
        from testbed.postgres import postgres_absent_reason, throwaway_database
    except ImportError as exc:
        return f"skipped: {exc}"
    if not influxd_available():
        return "skipped: influxd not installed (Debian package influxdb)"
    reason = postgres_absent_reason()
    if reason is not None:
        return f"skipped: {reason}"
    cleanup = contextlib.ExitStack()
    url = cleanup.enter_context(throwaway_database("vitalgate_bench"))
    influx = InfluxServer(root / "influxd")
    influx.start()
    influx.create_database("bench")
    store = InfluxReadingStore(
        InfluxConfig(url=influx.url, query_url=influx.influxd_url, database="bench", timeout_s=60.0)
    )

    def close() -> None:
        store.close()
        influx.close()
        cleanup.close()

    return Backend("PostgreSQL + InfluxDB", store, url, close)


def run_backend(backend: Backend, args: argparse.Namespace) -> list[str]:
    now = datetime.now(UTC)
    engine = create_clinic_engine(backend.clinic_url)
    upgrade_to_head(engine=engine)
    sessions = session_factory(engine)
    lines = [f"{backend.name}:"]
    try:
        t0 = time.perf_counter()
        seed_clinic(sessions, args.patients, now)
        written = seed_readings(backend.store, args.patients, args.days, args.year_days, now)
        if engine.dialect.name == "postgresql":
            # Planner statistics of the tables just filled, as autovacuum gathers them after bulk
            # changes; without them PostgreSQL plans for empty tables (nested loops, seconds).
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE"))
        lines.append(
            f"  seeded {args.patients + 1:,} patients, {written:,} readings in {time.perf_counter() - t0:.1f} s"
        )
        updater = SummaryUpdater(backend.store, sessions)
        t1 = time.perf_counter()
        warmed = updater.refresh_stale(now)
        warm_s = time.perf_counter() - t1
        lines.append(
            f"  summary updater warm-up: {warmed:,} patients in {warm_s:.1f} s "
            f"({1000 * warm_s / max(warmed, 1):.1f} ms per patient)"
        )
        # One sign-in for the whole run, however long the seeding and the requests take here.
        services = ApiServices(
            reading_store=backend.store,
            clinic_sessions=sessions,
            jwt_secret="b" * 40,
            access_token_ttl_s=6 * 3600,
        )
        times = ServerTimes()
        with serving(services, times) as base_url:
            token = httpx.post(
                f"{base_url}/api/v1/auth/token", data={"username": EMAIL, "password": PASSWORD}, timeout=60
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            rows: list[Row] = []
            with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
                n = args.requests
                panel = "/api/v1/patients"
                rows.append(
                    measure(client, times, "panel, urgency order, first 100", panel, {}, n, PANEL_TARGET_MS)
                )
                rows.append(
                    measure(
                        client,
                        times,
                        "panel, by 7-day mean, 500 a page",
                        panel,
                        {"sort": "bp_mean", "limit": 500},
                        n,
                        PANEL_TARGET_MS,
                    )
                )
                rows.append(
                    measure(
                        client,
                        times,
                        "panel, name filter",
                        panel,
                        {"q": "Wei", "sort": "name"},
                        n,
                        PANEL_TARGET_MS,
                    )
                )
                patient = f"/api/v1/patients/{YEAR_PATIENT}"
                rows.append(
                    measure(
                        client,
                        times,
                        "one-year chart: summary?days=365",
                        f"{patient}/summary",
                        {"days": 365},
                        n,
                        CHART_TARGET_MS,
                    )
                )
                daily = f"{patient}/readings/daily"
                for kind in ("blood_pressure", "glucose"):
                    rows.append(
                        measure(
                            client,
                            times,
                            f"one-year chart: daily {kind}",
                            daily,
                            {"kind": kind, "days": 365},
                            n,
                            CHART_TARGET_MS,
                        )
                    )
                rows.append(
                    measure(
                        client,
                        times,
                        "patient page: 14-day summary",
                        f"{patient}/summary",
                        {"days": 14},
                        n,
                        CHART_TARGET_MS,
                    )
                )
                rows.append(measure(client, times, "patient page: patient", patient, {}, n, None))
                # Every row expired (a midnight before the updater's pass): each panel request
                # recomputes what it can in 100 ms itself and marks the others not current.
                with sessions() as session:
                    session.execute(update(PatientSummaryRow).values(valid_until=now))
                    session.commit()
                times.by_path.pop(panel, None)
                expired = [client.get(panel).raise_for_status() for _ in range(min(n, 10))]
                rows.append(
                    Row(
                        "panel, every row expired (midnight)",
                        [s * 1000 for s in times.by_path[panel]],
                        [],
                        len(expired[-1].content) / 1024,
                        None,
                    )
                )
            p50, p99, rate = concurrent(base_url, headers, panel, args.clients, max(2, n // 10))
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        lines.append(f"  load average after the requests: {load} ({os.cpu_count()} cores)")
        lines.append(
            f"  {'request':<46} {'server p50':>8} {'p99':>8}   {'trip p50':>8} {'p99':>8}"
            f"  {'CPU p50':>7}  {'body KB':>8}"
        )
        lines.extend(row.line() for row in rows)
        year = [r for r in rows if r.name.startswith("one-year chart")]
        worst = max(percentile(r.server_ms, 99) for r in year)
        lines.append(
            f"  one-year chart with its summaries, worst p99 of its requests: {worst:.1f} ms "
            f"(target < {CHART_TARGET_MS:.0f} ms: {'met' if worst < CHART_TARGET_MS else 'MISSED'})"
        )
        lines.append(
            f"  panel, {args.clients} clients at once: round trip p50 {p50:.0f} ms, p99 {p99:.0f} ms, {rate:.1f} requests/s"
        )
    finally:
        engine.dispose()
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--year-days", type=int, default=365)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--backends", default="sqlite,postgres+influxdb")
    ap.add_argument("--quick", action="store_true", help="a small run that checks the bench works")
    args = ap.parse_args()
    if args.quick:
        args.patients, args.days, args.year_days, args.requests, args.clients = 30, 20, 40, 5, 2
    print(
        f"workspace latency: {args.patients:,} patients x {args.days} days (2 BP + 2 glucose a day) "
        f"+ 1 x {args.year_days} days (4 + 4), {args.requests} requests per case, one uvicorn worker"
    )
    print(
        "times in ms; server time measured around the ASGI app, round trip over loopback HTTP, CPU: this "
        "process's CPU time per request (server and client), what a request costs on an idle core"
    )
    root = Path(tempfile.mkdtemp(prefix="vitalgate-workspace-bench-"))
    try:
        for name in args.backends.split(","):
            sub = root / name.replace("+", "-")
            sub.mkdir()
            backend = sqlite_backend(sub) if name == "sqlite" else postgres_influx_backend(sub)
            if isinstance(backend, str):
                print(f"PostgreSQL + InfluxDB: {backend}")
                continue
            try:
                for line in run_backend(backend, args):
                    print(line, flush=True)
            finally:
                backend.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
