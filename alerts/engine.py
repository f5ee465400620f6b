"""The alert engine: evaluation on each committed batch, the periodic sweep, people's actions.

Ingest announces each committed batch to a sync listener on its worker thread (ingest.consumer
ReadingsListener); `threadsafe_listener` hands the batch to the engine's event loop without blocking
ingest. Every ingest process hands its batches to an engine, standalone or inside the API (the
composition root, vitalgate.wiring), so a reading is evaluated as soon as it is committed; the
periodic `evaluate_recent` pass only catches readings a crash left between commit and evaluation.

Each patient in a batch costs one history read: both kinds over the rules' look-back in one range
query (`ReadingStore.history_columns`, alerts.history), merged with the batch's own readings.
Evaluation is a pure function of that history, so a redelivered reading changes nothing and creates no
second alert or notification (DESIGN.md, Delivery; reliability.md §(a) 9).

Replicas: one patient is evaluated, and its alerts acted on, by one process at a time
(`patient_lock`, handed in by the composition root: an advisory lock of the clinic database,
storage.clinic.coordination), so two replicas given readings of one patient open one alert and
notify once. The sweep runs over every active patient in chunks, one history read per patient.

Who the patients are: alerts.directory. When the periodic passes run: alerts.periodic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.catalogue import INBOX_ONLY, OPERATIONAL, RULES, SUPERSEDES, rank
from alerts.channels.base import DeliveryError
from alerts.channels.email import EmailChannel
from alerts.directory import PatientContext, PatientDirectory, PatientRules
from alerts.evaluate import LOOKBACK_DAYS, PatientHistory, evaluate_patient, window_outcomes
from alerts.history import observations, sweep_columns
from alerts.lifecycle import (
    ESCALATION_AFTER,
    AlertNotFound,
    AlertRecord,
    AlertRepository,
    Change,
    InvalidTransition,
    Lifecycle,
)
from alerts.memory_repository import PatientAlerts
from alerts.model import (
    Outcome,
    OutcomeStatus,
    PatientReport,
    ReportRepository,
    ReportStore,
    observation_from_reading,
)
from alerts.routing import DeliveryFailure, Router
from alerts.triage import EvaluationQueue
from storage.readings.protocol import AnyReading, HistoryColumns, ReadingStore
from vitals.payload import AlertSeverity

logger = logging.getLogger(__name__)

# How long `digest_deliveries` rows are kept (one per doctor per day): a quarter, for an operator
# asking whether a doctor was sent the digests; the digest itself reads only today's.
DIGEST_RECORDS_KEPT = timedelta(days=92)


@dataclass(frozen=True, slots=True)
class SweepReport:
    patients: int
    changes: int
    failures: int
    seconds: float


MAX_KEPT_FAILURES = 1000
SWEEP_CHUNK = 1000  # patients per history read and matrix in the sweep (bounds its memory)
EVALUATION_WORKERS = 4  # patients evaluated at once from ingest's batches (reads overlap rules)
# A lost race for a patient's alert (another process on the same SQLite file opened it first): the
# evaluation runs again on what is stored now, this many times in all.
EVALUATION_ATTEMPTS = 2
# Readings measured up to this far ahead of the clinic's clock (a meter's clock running fast, which
# the gateway corrects only to within its reading of the meter's clock) are part of every
# evaluation: were they left to the evaluations after their time, one evaluation would see an
# episode and the next, cut off earlier, would not, closing and reopening its alert.
MEASURED_AHEAD = timedelta(days=1)

PatientLock = Callable[[str], AbstractContextManager[object]]
"""Holds a patient's evaluation and alert changes exclusive across the clinic's processes."""


def _no_lock(_patient_id: str) -> AbstractContextManager[object]:
    return nullcontext()


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
        patient_lock: PatientLock = _no_lock,
    ) -> None:
        self.readings = readings
        self.patient_lock = patient_lock
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
        # Committed readings noted by the ingest listener, by patient, waiting for evaluation.
        self._pending = EvaluationQueue()
        self._workers: set[asyncio.Future[list[Change]]] = set()

    # --- ingest side -----------------------------------------------------------------------------------
    def threadsafe_listener(self, loop: asyncio.AbstractEventLoop) -> Callable[[Sequence[AnyReading]], None]:
        """A sync ingest listener that notes the batch's patients for evaluation on `loop` and returns
        at once. Batches of a patient not yet evaluated are merged, so the work waiting is bounded by
        the patients, not the batches: a backlog replayed after an outage costs one evaluation per
        patient, with every reading it brought (EVALUATION_WORKERS evaluate at a time). Patients with
        a reading that may be urgent are evaluated first (alerts.triage)."""

        def listener(batch: Sequence[AnyReading]) -> None:
            loop.call_soon_threadsafe(self._note_committed, list(batch))

        return listener

    def _note_committed(self, batch: list[AnyReading]) -> None:
        self._pending.add(batch)
        self._workers = {w for w in self._workers if not w.done()}
        # One worker beyond the usual number for a reading that may be urgent: it must not wait for a
        # routine evaluation to end (alerts.triage).
        limit = EVALUATION_WORKERS + (1 if self._pending.urgent_waiting else 0)
        while self._pending and len(self._workers) < limit:
            worker = asyncio.ensure_future(self._evaluate_pending())
            worker.add_done_callback(_log_failure)
            self._workers.add(worker)

    async def _evaluate_pending(self) -> list[Change]:
        """Evaluate noted patients, those with a reading that may be urgent first (and alone: no
        routine turn starts while one is in flight, alerts.triage), until none waits."""
        changes: list[Change] = []
        while (turn := await self._pending.next_turn()) is not None:
            newest = max(r.measured_at for r in turn.readings)
            try:
                changes += await self.evaluate(turn.patient_id, max(self.clock(), newest), turn.readings)
            except Exception:
                # The periodic pass finds the patient's readings again (evaluate_recent).
                logger.exception("alert evaluation failed", extra={"patient_id": turn.patient_id})
            finally:
                self._pending.finished(turn)
        return changes

    async def on_readings_committed(self, batch: Sequence[AnyReading]) -> list[Change]:
        """Evaluate each patient of a committed batch: the batch's readings plus one history read."""
        fresh: dict[str, list[AnyReading]] = {}
        for reading in batch:
            if reading.patient_id is not None:
                fresh.setdefault(reading.patient_id, []).append(reading)
        changes: list[Change] = []
        for patient_id, readings in fresh.items():
            newest = max(r.measured_at for r in readings)
            changes.extend(await self.evaluate(patient_id, max(self.clock(), newest), readings))
        return changes

    async def add_report(self, report: PatientReport) -> list[Change]:
        """Patient-reported input (symptoms, severe hypo event, ketones, medication change, standing BP)."""
        if not await asyncio.to_thread(self.reports.add, report):
            return []
        return await self.evaluate(report.patient_id, max(self.clock(), report.reported_at))

    async def evaluate(
        self, patient_id: str, now: datetime, fresh: Sequence[AnyReading] = ()
    ) -> list[Change]:
        """Every rule for one patient as of `now`, on its stored history plus `fresh` readings (a
        batch just committed), and the lifecycle changes that follow, routed."""
        ctx = await asyncio.to_thread(self.directory.context, patient_id)
        if ctx is None:
            logger.warning("readings for a patient unknown to the clinic", extra={"patient_id": patient_id})
            return []
        self._pending.know(patient_id, ctx.parameters())  # the patient's own limits screen its next readings
        async with self._locks[patient_id]:
            changes = await asyncio.to_thread(self._evaluate, ctx, now, fresh)
        await self._route(changes, ctx)
        return changes

    def _evaluate(self, ctx: PatientContext, now: datetime, fresh: Sequence[AnyReading]) -> list[Change]:
        """Read, evaluate and apply under the patient's lock (worker thread)."""
        for attempt in range(1, EVALUATION_ATTEMPTS + 1):
            with self.patient_lock(ctx.patient_id):
                history = self._history(ctx.patient_id, now, fresh)
                fresh_ids = {r.reading_id for r in fresh}
                outcomes = evaluate_patient(history, ctx.parameters(), now, fresh_ids)
                try:
                    return self._lifecycle_of(ctx.patient_id).apply(ctx.clinic_id, outcomes, now)
                except InvalidTransition:
                    if attempt == EVALUATION_ATTEMPTS:
                        raise
                    logger.info(
                        "alert changed by another process meanwhile; evaluating again",
                        extra={"patient_id": ctx.patient_id},
                    )
        raise AssertionError("unreachable")

    def _lifecycle_of(self, patient_id: str) -> Lifecycle:
        """The lifecycle over this patient's alerts, read once (`PatientAlerts`; under its lock)."""
        return Lifecycle(PatientAlerts(self.repo, patient_id), self.lifecycle.escalation_after)  # type: ignore[arg-type]

    def _history(self, patient_id: str, now: datetime, fresh: Sequence[AnyReading] = ()) -> PatientHistory:
        """The patient's look-back as observations: one read of both kinds, plus `fresh` readings the
        read did not return, and the patient's reports; readings measured ahead of `now` up to
        MEASURED_AHEAD count."""
        start = now - timedelta(days=LOOKBACK_DAYS)
        end = now + MEASURED_AHEAD
        obs = observations(self.readings.history_columns([patient_id], start, end)).get(patient_id, [])
        known = {o.reading_id for o in obs}
        extra = [
            observation_from_reading(r)
            for r in fresh
            if r.reading_id not in known and start <= r.measured_at < end
        ]
        if extra:
            obs = sorted([*obs, *extra], key=lambda o: (o.measured_at, o.reading_id))
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
            applied = await self._apply(patient_id, ctx.clinic_id, outs, now)
            await self._route(applied, ctx)
            changes.extend(applied)
        return changes

    async def _apply(
        self, patient_id: str, clinic_id: str, outcomes: Sequence[Outcome], now: datetime
    ) -> list[Change]:
        """`Lifecycle.apply` under the patient's locks (this process's and the clinic's)."""

        def apply() -> list[Change]:
            with self.patient_lock(patient_id):
                return self._lifecycle_of(patient_id).apply(clinic_id, outcomes, now)

        async with self._locks[patient_id]:
            return await asyncio.to_thread(apply)

    # --- people --------------------------------------------------------------------------------------
    async def _act(self, alert_id: str, action: Callable[[], Change | None]) -> AlertRecord:
        """A person's action on an alert, under its patient's locks, so it never interleaves with an
        evaluation of that patient in this or another process (both read, change and save the alert)."""
        found = await asyncio.to_thread(self.repo.get, alert_id)
        if found is None:
            raise AlertNotFound(alert_id)

        def act() -> Change | None:
            with self.patient_lock(found.patient_id):
                return action()

        async with self._locks[found.patient_id]:
            change = await asyncio.to_thread(act)
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
        then snooze wake-ups and escalations. Patients go in chunks of SWEEP_CHUNK: one history read
        per patient, one matrix per chunk and guideline profile."""
        started = asyncio.get_running_loop().time()
        now = now or self.clock()
        ids = await asyncio.to_thread(self.directory.active_patient_ids)
        rules = await asyncio.to_thread(self.directory.rules, ids)
        open_alerts = {
            (a.patient_id, a.rule_id): a for a in await asyncio.to_thread(self.repo.unresolved, None)
        }
        unresolved = set(open_alerts)
        changes_total = failures = 0
        members = [rules[pid] for pid in ids if pid in rules]
        for i in range(0, len(members), SWEEP_CHUNK):
            chunk = members[i : i + SWEEP_CHUNK]
            outcomes = await asyncio.to_thread(self._sweep_outcomes, chunk, now, unresolved)
            by_id = {r.patient_id: r for r in chunk}
            for patient_id, outs in outcomes.items():
                if _changes_nothing(outs, open_alerts):
                    continue
                changes = await self._apply(patient_id, by_id[patient_id].clinic_id, outs, now)
                if changes:
                    ctx = await asyncio.to_thread(self.directory.context, patient_id)
                    changes_total += len(changes)
                    failures += await self._route(changes, ctx) if ctx is not None else 0
        for change in await asyncio.to_thread(self.lifecycle.tick, now):
            found = await asyncio.to_thread(self.directory.context, change.record.patient_id)
            changes_total += 1
            failures += len(await self.router.route(change, found.care_team if found else ()))
        return SweepReport(len(members), changes_total, failures, asyncio.get_running_loop().time() - started)

    def _sweep_outcomes(
        self, chunk: Sequence[PatientRules], now: datetime, unresolved: set[tuple[str, str]]
    ) -> dict[str, list[Outcome]]:
        """The window rules' outcomes for one chunk of patients (worker thread): one history read
        per patient, then `window_outcomes` per guideline profile."""
        start = now - timedelta(days=LOOKBACK_DAYS)
        history = self.readings.history_columns(
            [r.patient_id for r in chunk], start, now + timedelta(seconds=1), details=False
        )
        groups: defaultdict[str, list[PatientRules]] = defaultdict(list)
        for r in chunk:
            groups[r.parameters.profile.name.value].append(r)
        out: dict[str, list[Outcome]] = {}
        day0 = (now - timedelta(days=LOOKBACK_DAYS + 1)).date()
        for group in groups.values():
            ids = [r.patient_id for r in group]
            params = [r.parameters for r in group]
            part = history if len(groups) == 1 else _select(history, set(ids))
            cols, starts = sweep_columns(part, ids, day0, [p.timezone for p in params])
            out.update(window_outcomes(cols, starts, ids, params, day0, now, unresolved))
        return out


def _changes_nothing(outcomes: Sequence[Outcome], open_alerts: Mapping[tuple[str, str], AlertRecord]) -> bool:
    """Whether the lifecycle would leave a patient's alerts as they were when the sweep began: every
    outcome fires a rule whose open alert already says so (same values, no higher severity, no
    clearing under way), and none supersedes another rule's open alert. Such patients are not
    applied, which saves the steady state a read and a lock per patient with an open window alert;
    any other outcome goes through the lifecycle under the patient's lock, on the alerts as stored."""
    for o in outcomes:
        if o.status is not OutcomeStatus.FIRING or o.severity is None:
            return False
        rec = open_alerts.get((o.patient_id, o.rule_id))
        if (
            rec is None
            or rec.trigger_values.get("clear_streak")
            or rank(o.severity) > rank(rec.severity)
            or o.reading_ids
            or rec.trigger_values.get("reading_ids")
            or o.values != rec.trigger_values.get("values")
            or any((o.patient_id, loser) in open_alerts for loser in SUPERSEDES.get(o.rule_id, ()))
        ):
            return False
    return True


def _select(columns: HistoryColumns, patient_ids: set[str]) -> HistoryColumns:
    """The rows of `columns` of `patient_ids` (columns left empty stay empty)."""
    rows = [i for i, pid in enumerate(columns.patient_id) if pid in patient_ids]
    picked = HistoryColumns()
    for name in HistoryColumns.__dataclass_fields__:
        source = getattr(columns, name)
        setattr(picked, name, [source[i] for i in rows] if source else [])
    return picked


def _log_failure(future: Future[list[Change]] | asyncio.Future[list[Change]]) -> None:
    if future.cancelled():
        logger.warning("alert evaluation cancelled (engine stopping)")
        return
    exc = future.exception()
    if exc is not None:
        logger.error("alert evaluation failed", exc_info=exc)
