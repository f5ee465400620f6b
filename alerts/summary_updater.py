"""Keeps each patient's panel figures (`patient_summaries`) current, computed by alerts.summaries.

A stored row holds what the panel shows besides alerts and the gateway: the 7-day home-BP mean and
its category, the latest valid glucose, the 14-day time in range, days with data in the last 30 and
the last reading time. It is recomputed

- when readings are committed: ingest hands its committed batches to `threadsafe_listener`, as it
  hands them to the alert engine (DESIGN.md, Data flow), and the patients named are recomputed
  together a moment later (`DIRTY_DELAY_S`), so a burst of batches costs one pass;
- when it expires: `valid_until` is the patient's next local midnight, when the windows move (the
  updater's pass comes then);
- when the patient's targets changed after it was computed, or the summary version changed;
- when readings were stored by another process (a standalone ingest replica): `refresh_recent`
  looks for patients with readings newer than the last pass, as the alert engine's does.

Every pass is idempotent (an upsert of what the store holds now), so several API replicas running
it, or a panel request that recomputes a stale row itself, can only write the same figures. The
clinic database is the one place the rows live, so every replica's panel reads the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.profiles import RuleParameters, parameters, profile
from alerts.repository import chosen_profile, patient_targets
from alerts.summaries import ADHERENCE_WINDOW_DAYS, PanelFigures, panel_figures, query_window
from storage.clinic.models import Clinic, Patient
from storage.clinic.models import PatientTargets as TargetsRow
from storage.clinic.summaries import active_patient_ids, earliest_expiry, stale_summaries, upsert_summaries
from storage.readings.protocol import AnyReading, ReadingColumns, ReadingStore
from vitals.readings import GlucoseReading, ReadingKind

logger = logging.getLogger(__name__)

# Raised whenever alerts.summaries changes what a stored figure means: every row is then recomputed.
SUMMARY_VERSION: Final = 2
DIRTY_DELAY_S: Final = 1.0  # gather the batches of a burst into one pass
CHUNK: Final = 100  # patients per store pass and database transaction
INLINE_CHUNK: Final = 20  # patients whose settings a time-bounded recompute loads at a time
REFRESH_INTERVAL_S: Final = 60.0
RECENT_MARGIN: Final = timedelta(minutes=5)  # commit lag and clock skew between processes
EXPIRY_MARGIN_S: Final = 1.0  # a pass for expired figures starts this long after they expire


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PatientSettings:
    """What a summary needs of a patient from the clinic database: the rule parameters (effective
    targets, time zone, guideline profile)."""

    patient_id: str
    parameters: RuleParameters


def patient_settings(
    session: Session, patient_ids: Sequence[str], default_profile: str = "eu"
) -> dict[str, PatientSettings]:
    """The rules' parameters of each patient, as the alert engine maps them
    (alerts.repository.SqlPatientDirectory), for many patients in one query."""
    fallback = profile(default_profile)
    rows = session.execute(
        select(Patient.patient_id, TargetsRow, Clinic)
        .join(Clinic, Clinic.clinic_id == Patient.clinic_id)
        .outerjoin(TargetsRow, TargetsRow.patient_id == Patient.patient_id)
        .where(Patient.patient_id.in_(list(patient_ids)))
    ).all()
    return {
        pid: PatientSettings(
            pid, parameters(chosen_profile(row, clinic, fallback), patient_targets(row, clinic))
        )
        for pid, row, clinic in rows
    }


def _last_valid_glucose(columns: ReadingColumns) -> tuple[float, datetime] | None:
    for i in range(len(columns) - 1, -1, -1):
        value = columns.glucose_mg_dl[i]
        if columns.in_averages[i] and value is not None and math.isfinite(value):
            return value, datetime.fromtimestamp(columns.measured_at_us[i] / 1e6, UTC)
    return None


def _last_time(*columns: ReadingColumns) -> datetime | None:
    last = [c.measured_at_us[-1] for c in columns if len(c)]
    return datetime.fromtimestamp(max(last) / 1e6, UTC) if last else None


def _row(patient_id: str, figures: PanelFigures) -> dict[str, Any]:
    bp, glucose = figures.blood_pressure, figures.glucose
    return {
        "patient_id": patient_id,
        "summary_version": SUMMARY_VERSION,
        "computed_at": figures.computed_at,
        "valid_until": figures.valid_until,
        "last_reading_at": figures.last_reading_at,
        "bp_mean_systolic_mmhg": bp.mean_systolic_mmhg if bp else None,
        "bp_mean_diastolic_mmhg": bp.mean_diastolic_mmhg if bp else None,
        "bp_readings": bp.readings if bp else None,
        "bp_days": bp.days if bp else None,
        "bp_category": bp.category if bp else None,
        "bp_target_systolic_mmhg": bp.target_systolic_mmhg if bp else None,
        "bp_target_diastolic_mmhg": bp.target_diastolic_mmhg if bp else None,
        "bp_not_counted_7d": figures.bp_not_counted_7d,
        "glucose_latest_mg_dl": glucose.latest_mg_dl if glucose else None,
        "glucose_latest_at": glucose.latest_at if glucose else None,
        "glucose_time_in_range_percent": glucose.time_in_range_percent if glucose else None,
        "glucose_readings_14d": glucose.readings_14d if glucose else None,
        "days_with_data_30": figures.days_with_data_30,
    }


class SummaryUpdater:
    """Computes patients' panel figures from the reading store and stores them (module doc).

    The sync methods block (store and database I/O): call them from a worker thread."""

    def __init__(
        self,
        store: ReadingStore,
        sessions: sessionmaker[Session],
        *,
        default_profile: str = "eu",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.default_profile = default_profile
        self.clock = clock
        self._dirty: set[str] = set()
        self._woken: asyncio.Event | None = None
        # Set after each pass of `run` (for whoever waits on one).
        self.passed = asyncio.Event()

    # --- computing -------------------------------------------------------------------------------------
    def figures(self, settings: PatientSettings, now: datetime) -> PanelFigures:
        """One patient's figures as of `now`, from the store (alerts.summaries.panel_figures)."""
        pid, params = settings.patient_id, settings.parameters
        start, end = query_window(params, now, ADHERENCE_WINDOW_DAYS)
        bp = self.store.reading_columns(pid, ReadingKind.BLOOD_PRESSURE, start, end)
        glucose = self.store.reading_columns(pid, ReadingKind.GLUCOSE, start, end)
        latest_glucose = _last_valid_glucose(glucose)
        if latest_glucose is None:  # none in the last 30 days: the newest ever, if any
            older = self.store.latest(pid, ReadingKind.GLUCOSE, valid_only=True)
            if (
                isinstance(older, GlucoseReading)
                and older.glucose_mg_dl is not None
                and older.measured_at < end
            ):
                latest_glucose = (older.glucose_mg_dl, older.measured_at)
        last_reading_at = _last_time(bp, glucose)
        if last_reading_at is None:
            newest: AnyReading | None = self.store.latest(pid)
            last_reading_at = newest.measured_at if newest is not None and newest.measured_at < end else None
        return panel_figures(
            bp, glucose, params, now=now, latest_valid_glucose=latest_glucose, last_reading_at=last_reading_at
        )

    def refresh(self, patient_ids: Iterable[str], now: datetime | None = None) -> int:
        """Recompute and store the figures of `patient_ids` (unknown ids are skipped). Returns how
        many were stored."""
        now = now or self.clock()
        ids = list(dict.fromkeys(patient_ids))
        stored = 0
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            with self.sessions() as session:
                settings = patient_settings(session, chunk, self.default_profile)
            rows = [_row(pid, self.figures(settings[pid], now)) for pid in chunk if pid in settings]
            with self.sessions() as session:
                upsert_summaries(session, rows)
                session.commit()
            stored += len(rows)
        return stored

    def refresh_within(self, patient_ids: Sequence[str], now: datetime, budget_s: float) -> list[str]:
        """Recompute patients in turn until `budget_s` seconds have gone (at least one), store them,
        and return their ids: a request that must answer soon does what it can and leaves the rest
        to the updater's pass."""
        deadline = time.monotonic() + budget_s
        rows: list[dict[str, Any]] = []
        settings: dict[str, PatientSettings] = {}
        for i, pid in enumerate(patient_ids):
            if i % INLINE_CHUNK == 0:
                with self.sessions() as session:
                    settings = patient_settings(
                        session, patient_ids[i : i + INLINE_CHUNK], self.default_profile
                    )
            if pid in settings:
                rows.append(_row(pid, self.figures(settings[pid], now)))
            if time.monotonic() >= deadline:
                break
        with self.sessions() as session:
            upsert_summaries(session, rows)
            session.commit()
        return [row["patient_id"] for row in rows]

    def next_expiry(self) -> datetime | None:
        """When the first stored figures expire (a patient's next midnight)."""
        with self.sessions() as session:
            return earliest_expiry(session)

    def stale(self, patient_ids: Sequence[str] | None = None, now: datetime | None = None) -> list[str]:
        """Patients (of `patient_ids`, or every active one) whose stored figures are not current."""
        now = now or self.clock()
        with self.sessions() as session:
            scope = active_patient_ids(session) if patient_ids is None else patient_ids
            return stale_summaries(session, scope, now=now, version=SUMMARY_VERSION)

    def refresh_stale(self, now: datetime | None = None) -> int:
        """Recompute every active patient's figures that are missing or no longer current."""
        now = now or self.clock()
        return self.refresh(self.stale(None, now), now)

    def refresh_recent(self, since: datetime, now: datetime | None = None) -> int:
        """Recompute patients whose newest reading was measured or received at or after `since`
        (readings another process stored: this process's ingest hands its own over)."""
        now = now or self.clock()
        with self.sessions() as session:
            ids = list(session.scalars(active_patient_ids(session)))
        latest = self.store.latest_by_patient(ids)
        due = [
            pid
            for pid, reading in latest.items()
            if max(reading.measured_at, reading.received_at or reading.measured_at) >= since
        ]
        return self.refresh(due, now)

    # --- running ---------------------------------------------------------------------------------------
    def threadsafe_listener(self, loop: asyncio.AbstractEventLoop) -> Callable[[Sequence[AnyReading]], None]:
        """A sync ingest listener: notes the batch's patients for the next pass and returns at once."""

        def listener(batch: Sequence[AnyReading]) -> None:
            ids = {r.patient_id for r in batch if r.patient_id is not None}
            if ids:
                loop.call_soon_threadsafe(self._mark_dirty, ids)

        return listener

    def _mark_dirty(self, ids: set[str]) -> None:
        self._dirty |= ids
        if self._woken is not None:
            self._woken.set()

    async def run(self, stop: asyncio.Event, *, interval_s: float = REFRESH_INTERVAL_S) -> None:
        """Until `stop` is set: recompute patients named by committed batches shortly after they
        come; every `interval_s`, expired and missing rows and readings stored elsewhere. The first
        pass fills in every missing row (a new table, or patients enrolled while no updater ran). A
        failing pass is logged and retried at the next interval."""
        loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        since = self.clock() - timedelta(hours=48)
        next_full = loop.time()
        while not stop.is_set():
            if self._dirty:
                ids, self._dirty = self._dirty, set()
                try:
                    await asyncio.to_thread(self.refresh, ids)
                    self.passed.set()
                except Exception:
                    self._dirty |= ids
                    logger.exception("patient summaries of committed readings not updated; will retry")
            if loop.time() >= next_full:
                next_full = loop.time() + interval_s
                started = self.clock()
                try:
                    recent = await asyncio.to_thread(self.refresh_recent, since - RECENT_MARGIN, started)
                    stale = await asyncio.to_thread(self.refresh_stale, started)
                    since = started
                    if recent or stale:
                        logger.info("patient summaries updated", extra={"recent": recent, "stale": stale})
                    # The next pass comes early when figures expire first (a midnight), so the
                    # panel shows the new day's figures within seconds of it.
                    expiry = await asyncio.to_thread(self.next_expiry)
                    if expiry is not None:
                        due = max((expiry - self.clock()).total_seconds(), 0.0) + EXPIRY_MARGIN_S
                        next_full = min(next_full, loop.time() + due)
                    self.passed.set()
                except Exception:
                    logger.exception("patient summaries pass failed; will retry")
            self._woken.clear()
            if not self._dirty:  # batches noted meanwhile are not waited for
                wait = max(0.0, min(next_full - loop.time(), interval_s))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(stop, self._woken), wait)
            if self._dirty and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), DIRTY_DELAY_S)


async def _first(*events: asyncio.Event) -> None:
    """Return as soon as any of `events` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
