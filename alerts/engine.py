"""The alert engine: evaluation on each committed batch, the periodic sweep, people's actions.

Ingest announces each committed batch to a sync listener on its worker thread (ingest.consumer
ReadingsListener); `threadsafe_listener` hands the batch to the engine's event loop without blocking
ingest. Evaluation is a pure function of the stored history, so a redelivered reading changes nothing
and creates no second alert or notification (DESIGN.md, Delivery; reliability.md §(a) 9).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np

from alerts.catalogue import INBOX_ONLY, OPERATIONAL, RULES
from alerts.channels.base import DeliveryError, Recipient
from alerts.channels.email import EmailChannel
from alerts.evaluate import LOOKBACK_DAYS, PatientHistory, evaluate_patient, window_outcome
from alerts.lifecycle import ESCALATION_AFTER, AlertRecord, AlertRepository, Change, Lifecycle
from alerts.model import (
    Observation,
    Outcome,
    PatientReport,
    ReportRepository,
    ReportStore,
    observation_from_reading,
)
from alerts.profiles import PatientTargets, Profile, RuleParameters, parameters
from alerts.routing import DeliveryFailure, Router
from alerts.windows import FIRING, PatientArrays, build_matrix, columns_from_observations, evaluate_windows
from storage.readings.protocol import AnyReading, ReadingStore
from vitals.payload import AlertSeverity
from vitals.readings import ReadingKind

logger = logging.getLogger(__name__)

# How long `digest_deliveries` rows are kept (one per doctor per day): a quarter, for an operator
# asking whether a doctor was sent the digests; the digest itself reads only today's.
DIGEST_RECORDS_KEPT = timedelta(days=92)


@dataclass(frozen=True, slots=True)
class PatientContext:
    patient_id: str
    clinic_id: str
    profile: Profile
    targets: PatientTargets
    care_team: tuple[Recipient, ...]  # family doctor first, then staff on duty

    def parameters(self) -> RuleParameters:
        return parameters(self.profile, self.targets)


class PatientDirectory(Protocol):
    def context(self, patient_id: str) -> PatientContext | None: ...
    def active_patient_ids(self) -> list[str]: ...


@dataclass
class StaticDirectory:
    """A fixed directory (tests, replay, the demo before the clinic DB is wired)."""

    patients: dict[str, PatientContext] = field(default_factory=dict)

    def context(self, patient_id: str) -> PatientContext | None:
        return self.patients.get(patient_id)

    def active_patient_ids(self) -> list[str]:
        return list(self.patients)


@dataclass(frozen=True, slots=True)
class SweepReport:
    patients: int
    changes: int
    failures: int
    seconds: float


MAX_KEPT_FAILURES = 1000
RECENT_INTERVAL_S = 60.0
STARTUP_LOOKBACK = timedelta(hours=48)
RECENT_MARGIN = timedelta(minutes=5)  # commit lag and clock skew between processes


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertEngine:
    def __init__(
        self,
        readings: ReadingStore,
        alerts: AlertRepository,
        directory: PatientDirectory,
        router: Router,
        *,
        reports: ReportRepository | None = None,
        clock: Callable[[], datetime] = _utcnow,
        escalation_after: timedelta = ESCALATION_AFTER,
    ) -> None:
        self.readings = readings
        self.repo = alerts
        self.lifecycle = Lifecycle(alerts, escalation_after)
        self.directory = directory
        self.router = router
        self.reports: ReportRepository = reports or ReportStore()
        self.clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # The most recent delivery failures, for monitoring (bounded: a dead channel must not grow it).
        self._routing: set[asyncio.Task[list[DeliveryFailure]]] = set()
        self.failures: deque[DeliveryFailure] = deque(maxlen=MAX_KEPT_FAILURES)

    # --- ingest side -----------------------------------------------------------------------------------
    def threadsafe_listener(self, loop: asyncio.AbstractEventLoop) -> Callable[[Sequence[AnyReading]], None]:
        """A sync ingest listener that schedules evaluation on `loop` and returns at once."""

        def listener(batch: Sequence[AnyReading]) -> None:
            future = asyncio.run_coroutine_threadsafe(self.on_readings_committed(list(batch)), loop)
            future.add_done_callback(_log_failure)

        return listener

    async def on_readings_committed(self, batch: Sequence[AnyReading]) -> list[Change]:
        latest: dict[str, datetime] = {}
        for reading in batch:
            if reading.patient_id is None:
                continue
            seen = latest.get(reading.patient_id)
            latest[reading.patient_id] = (
                reading.measured_at if seen is None else max(seen, reading.measured_at)
            )
        changes: list[Change] = []
        for patient_id, newest in latest.items():
            changes.extend(await self.evaluate(patient_id, max(self.clock(), newest)))
        return changes

    async def add_report(self, report: PatientReport) -> list[Change]:
        """Patient-reported input (symptoms, severe hypo event, ketones, medication change, standing BP)."""
        if not await asyncio.to_thread(self.reports.add, report):
            return []
        return await self.evaluate(report.patient_id, max(self.clock(), report.reported_at))

    async def evaluate(self, patient_id: str, now: datetime) -> list[Change]:
        ctx = await asyncio.to_thread(self.directory.context, patient_id)
        if ctx is None:
            logger.warning("readings for a patient unknown to the clinic", extra={"patient_id": patient_id})
            return []
        async with self._locks[patient_id]:
            history = await asyncio.to_thread(self._history, patient_id, now)
            outcomes = evaluate_patient(history, ctx.parameters(), now)
            changes = await asyncio.to_thread(self.lifecycle.apply, ctx.clinic_id, outcomes, now)
        await self._route(changes, ctx)
        return changes

    def _history(self, patient_id: str, now: datetime) -> PatientHistory:
        start = now - timedelta(days=LOOKBACK_DAYS)
        end = now + timedelta(seconds=1)
        obs: list[Observation] = []
        for kind in (ReadingKind.BLOOD_PRESSURE, ReadingKind.GLUCOSE):
            obs.extend(
                observation_from_reading(r) for r in self.readings.query_range(patient_id, kind, start, end)
            )
        return PatientHistory(patient_id, obs, self.reports.for_patient(patient_id, start, end))

    async def _route(self, changes: Sequence[Change], ctx: PatientContext) -> int:
        count = 0
        for change in changes:
            failures = await self.router.route(change, ctx.care_team)
            self.failures.extend(failures)
            count += len(failures)
        return count

    async def apply_outcomes(self, outcomes: Mapping[str, Sequence[Outcome]], now: datetime) -> list[Change]:
        """Outcomes of rules evaluated outside the engine (the operational rules over the fleet's
        state, alerts.operations), per patient: the same lifecycle, routing and channels as the
        clinical rules. Patients unknown to the clinic or discharged are skipped."""
        changes: list[Change] = []
        for patient_id, outs in outcomes.items():
            ctx = await asyncio.to_thread(self.directory.context, patient_id)
            if ctx is None:
                continue
            async with self._locks[patient_id]:
                applied = await asyncio.to_thread(self.lifecycle.apply, ctx.clinic_id, outs, now)
            await self._route(applied, ctx)
            changes.extend(applied)
        return changes

    # --- people --------------------------------------------------------------------------------------
    async def _act(self, alert_id: str, action: Callable[[], Change | None]) -> AlertRecord:
        change = await asyncio.to_thread(action)
        if change is not None:
            ctx = await asyncio.to_thread(self.directory.context, change.record.patient_id)
            # The state change is stored; telling the other channels must not hold up the person who
            # made it (a webhook may be retrying for a minute).
            task = asyncio.create_task(self.router.route(change, ctx.care_team if ctx else ()))
            self._routing.add(task)
            task.add_done_callback(self._routing.discard)
            return change.record
        rec = await asyncio.to_thread(self.repo.get, alert_id)
        assert rec is not None
        return rec

    async def acknowledge(self, alert_id: str, user_id: str) -> AlertRecord:
        now = self.clock()
        return await self._act(alert_id, lambda: self.lifecycle.acknowledge(alert_id, user_id, now))

    async def snooze(self, alert_id: str, user_id: str, until: datetime) -> AlertRecord:
        now = self.clock()
        return await self._act(alert_id, lambda: self.lifecycle.snooze(alert_id, user_id, until, now))

    async def resolve(self, alert_id: str, user_id: str, note: str) -> AlertRecord:
        now = self.clock()
        return await self._act(alert_id, lambda: self.lifecycle.resolve(alert_id, user_id, note, now))

    async def sign_off(self, alert_id: str, user_id: str, note: str | None = None) -> AlertRecord:
        """A clinician signs off an urgent alert that resolved unseen (alerts.lifecycle)."""
        now = self.clock()
        return await self._act(alert_id, lambda: self.lifecycle.sign_off(alert_id, user_id, note, now))

    # --- daily digest (ESC-2: "warning batched into daily digest") ---------------------------------------
    async def send_digest(self, email: EmailChannel, now: datetime | None = None) -> int:
        """E-mail each family doctor one list of their patients' open warning and info alerts
        (inbox-only rules excluded). Returns the number of e-mails sent.

        One failed address does not stop the others. It raises `DeliveryError` once all were
        tried. Each digest the SMTP server took is recorded in the clinic database (`self.repo`,
        `digest_deliveries`) by the doctor's user id and the day, so a retry, a restart the same day
        or another clinic process sends only the digests still owed that day.

        The record is written after the send, not before, so that a crash between the two costs a
        second copy of one digest after the restart, never a lost one; for the same reason two
        processes running the digest at the very same moment may both send it. A failure to record
        (the clinic database is down) ends the run at once: every further digest would go out
        unrecorded and be sent again by the retry."""
        now = now or self.clock()
        open_alerts = await asyncio.to_thread(self.repo.unresolved, None)
        lines: defaultdict[str, list[str]] = defaultdict(list)  # doctor's user id -> digest lines
        addresses: dict[str, str] = {}  # doctor's user id -> e-mail address (delivery only, never logged)
        for rec in sorted(open_alerts, key=lambda a: (a.patient_id, a.opened_at)):
            if rec.severity is AlertSeverity.URGENT or rec.rule_id in INBOX_ONLY | OPERATIONAL:
                continue
            ctx = await asyncio.to_thread(self.directory.context, rec.patient_id)
            doctor = ctx.care_team[0] if ctx is not None and ctx.care_team else None
            if doctor is None or not doctor.email:
                continue
            addresses[doctor.user_id] = doctor.email
            lines[doctor.user_id].append(
                f"- {rec.severity.value} {rec.rule_id} ({RULES[rec.rule_id].title}) "
                f"patient {rec.patient_id}, since {rec.opened_at:%Y-%m-%d}: {self.router.link(rec.alert_id)}"
            )
        day = f"{now:%Y-%m-%d}"
        done = await asyncio.to_thread(self.repo.digests_sent, day)
        sent = failed = 0
        for user_id, items in lines.items():
            if user_id in done:
                continue  # sent before a partial failure or a restart: never twice the same day
            try:
                await email.deliver_digest(addresses[user_id], day, items)
            except DeliveryError as exc:
                logger.warning("daily digest not delivered", extra={"user_id": user_id, "error": str(exc)})
                failed += 1
                continue
            await asyncio.to_thread(self.repo.record_digest_sent, day, user_id, self.clock())
            sent += 1
        # Only today's records are consulted; older ones are kept a while for an operator to read.
        forget_before = f"{now - DIGEST_RECORDS_KEPT:%Y-%m-%d}"
        await asyncio.to_thread(self.repo.forget_digests_before, forget_before)
        if failed:
            raise DeliveryError(f"{failed} of {len(lines)} digest e-mail(s) failed; {sent} sent")
        return sent

    # --- periodic sweep ---------------------------------------------------------------------------------
    async def evaluate_recent(self, since: datetime, now: datetime | None = None) -> int:
        """Evaluate every patient whose newest reading was measured or received at or after `since`.

        This catches readings the ingest listener did not hand over: stored by another process (a
        standalone `vitalgate ingest` replica), or committed just before a crash that cut off the
        evaluation. Idempotent: the lifecycle keeps one alert per patient and rule, and a redelivered
        reading never notifies twice. Returns how many patients were evaluated."""
        now = now or self.clock()
        ids = await asyncio.to_thread(self.directory.active_patient_ids)
        latest = await asyncio.to_thread(self.readings.latest_by_patient, ids)
        due = {
            pid: reading
            for pid, reading in latest.items()
            if max(reading.measured_at, reading.received_at or reading.measured_at) >= since
        }
        for patient_id, reading in due.items():
            await self.evaluate(patient_id, max(now, reading.measured_at))
        return len(due)

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        """Time-based rules for every active patient at once (stale data, adherence, trend windows),
        then snooze wake-ups and escalations."""
        started = asyncio.get_running_loop().time()
        now = now or self.clock()
        ids = await asyncio.to_thread(self.directory.active_patient_ids)
        contexts = [c for c in await asyncio.to_thread(lambda: [self.directory.context(i) for i in ids]) if c]
        histories = await asyncio.to_thread(lambda: [self._history(c.patient_id, now) for c in contexts])
        unresolved = {(a.patient_id, a.rule_id) for a in await asyncio.to_thread(self.repo.unresolved, None)}
        outcomes = sweep_outcomes(histories, [c.parameters() for c in contexts], now, unresolved)
        changes_total = failures = 0
        by_id = {c.patient_id: c for c in contexts}
        for patient_id, outs in outcomes.items():
            ctx = by_id[patient_id]
            async with self._locks[patient_id]:
                changes = await asyncio.to_thread(self.lifecycle.apply, ctx.clinic_id, outs, now)
            changes_total += len(changes)
            failures += await self._route(changes, ctx)
        for change in await asyncio.to_thread(self.lifecycle.tick, now):
            found = by_id.get(change.record.patient_id)
            if found is None:
                found = await asyncio.to_thread(self.directory.context, change.record.patient_id)
            changes_total += 1
            failures += len(await self.router.route(change, found.care_team if found else ()))
        return SweepReport(
            len(contexts), changes_total, failures, asyncio.get_running_loop().time() - started
        )


def sweep_outcomes(
    histories: Sequence[PatientHistory],
    params: Sequence[RuleParameters],
    now: datetime,
    unresolved: set[tuple[str, str]],
) -> dict[str, list[Outcome]]:
    """Vectorised window rules as of `now` for many patients: FIRING outcomes, and CLEAR where an
    alert is open. Patients are grouped by profile (thresholds shared inside the matrix build)."""
    groups: defaultdict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[p.profile.name.value].append(i)
    out: dict[str, list[Outcome]] = defaultdict(list)
    for members in groups.values():
        hs = [histories[i] for i in members]
        ps = [params[i] for i in members]
        ids = [h.patient_id for h in hs]
        day0 = (now - timedelta(days=LOOKBACK_DAYS + 1)).date()
        obs = [o for h in hs for o in h.observations if o.measured_at <= now]
        cols, starts = columns_from_observations(obs, ids, day0, [p.timezone for p in ps])
        days = (now.date() - day0).days + 2
        matrix = build_matrix(cols, ids, days, day0, starts, ps[0])
        # The evaluation day of each patient: the local day containing `now`.
        t_of = np.array([(now.astimezone(ZoneInfo(p.timezone)).date() - day0).days for p in ps])
        results = evaluate_windows(matrix, ps[0], PatientArrays.from_parameters(ps), now_s=now.timestamp())
        for r in results:
            codes = r.status[np.arange(len(ids)), t_of]
            for pi in np.flatnonzero(codes):
                pid = ids[pi]
                if codes[pi] == FIRING or (pid, r.rule_id) in unresolved:
                    out[pid].append(window_outcome(r, int(pi), int(t_of[pi]), matrix, pid))
    return out


def _log_failure(future: Future[list[Change]]) -> None:
    if future.cancelled():
        logger.warning("alert evaluation cancelled (engine stopping)")
        return
    exc = future.exception()
    if exc is not None:
        logger.error("alert evaluation failed", exc_info=exc)


async def run_sweeps(
    engine: AlertEngine,
    interval_s: float,
    stop: asyncio.Event,
    *,
    recent_interval_s: float = RECENT_INTERVAL_S,
    startup_lookback: timedelta = STARTUP_LOOKBACK,
) -> None:
    """Until `stop` is set: every `recent_interval_s`, evaluate patients with readings since the last
    pass (`AlertEngine.evaluate_recent`; the first pass looks back `startup_lookback`, covering a
    crash between a commit and its evaluation); every `interval_s`, the full sweep of time-based
    rules. A failing pass is logged with its error and retried at the next interval; it never ends
    the loop."""
    loop = asyncio.get_running_loop()
    since = engine.clock() - startup_lookback
    next_sweep = loop.time()
    while not stop.is_set():
        started = engine.clock()
        try:
            evaluated = await engine.evaluate_recent(since - RECENT_MARGIN, started)
            since = started
            if evaluated:
                logger.info("recent readings evaluated", extra={"patients": evaluated})
        except Exception:
            logger.exception("evaluation of recent readings failed")
        if loop.time() >= next_sweep:
            next_sweep = loop.time() + interval_s
            try:
                report = await engine.sweep()
                logger.info(
                    "alert sweep",
                    extra={
                        "patients": report.patients,
                        "changes": report.changes,
                        "failures": report.failures,
                        "seconds": round(report.seconds, 3),
                    },
                )
            except Exception:
                logger.exception("alert sweep failed")
        try:
            await asyncio.wait_for(stop.wait(), recent_interval_s)
        except TimeoutError:
            continue
