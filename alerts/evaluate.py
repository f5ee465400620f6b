"""Evaluate every rule for one patient (live path) or many patients over time (replay, burden)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alerts.daily_matrix import Columns, DailyMatrix, build_matrix, columns_from_observations
from alerts.model import Observation, Outcome, OutcomeStatus, PatientReport, ReportKind
from alerts.profiles import RuleParameters
from alerts.reading_rules import PatientStream
from alerts.window_rules import CLEAR, FIRING, SEVERITY_OF_RANK, PatientArrays, WindowResult, evaluate_windows
from vitals.payload import AlertSeverity

# Longest look-back any rule needs: BP-TREND-1 28-day baseline + 14-day window; CGM-GMI 2 x 14 days;
# DQ-03 30 days. A few spare days for the W7 window of BP-LOW-2.
LOOKBACK_DAYS = 45


def _clean(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    return round(float(value), 2)


def window_outcome(
    result: WindowResult,
    patient: int,
    day: int,
    matrix: DailyMatrix,
    patient_id: str,
    *,
    clear_values: bool = True,
) -> Outcome:
    code = int(result.status[patient, day])
    if code == FIRING:
        status = OutcomeStatus.FIRING
    elif code == CLEAR:
        if not clear_values:
            return Outcome(rule_id=result.rule_id, patient_id=patient_id, status=OutcomeStatus.CLEAR)
        status = OutcomeStatus.CLEAR
    else:
        return Outcome(rule_id=result.rule_id, patient_id=patient_id, status=OutcomeStatus.UNKNOWN)
    values: dict[str, Any] = {name: _clean(figures[patient, day]) for name, figures in result.values.items()}
    end_day = matrix.day0 + timedelta(days=day)
    start_day = end_day - timedelta(days=max(result.window_days - 1, 0))
    end = datetime.fromtimestamp(float(matrix.day_end_s[patient, day]), tz=ZoneInfo("UTC"))
    start = end - timedelta(days=(end_day - start_day).days + 1)
    severity = (
        SEVERITY_OF_RANK[int(result.severity[patient, day])] if status is OutcomeStatus.FIRING else None
    )
    return Outcome(
        rule_id=result.rule_id,
        patient_id=patient_id,
        status=status,
        severity=severity,
        window_start=start,
        window_end=end,
        values=values,
        reading_ids=(),
        episode_key=None,
    )


@dataclass(frozen=True, slots=True)
class PatientHistory:
    patient_id: str
    observations: Sequence[Observation]
    reports: Sequence[PatientReport] = ()


def _items(history: PatientHistory) -> list[Observation | PatientReport]:
    items: list[Observation | PatientReport] = [*history.observations, *history.reports]

    def when(item: Observation | PatientReport) -> datetime:
        return item.measured_at if isinstance(item, Observation) else item.reported_at

    items.sort(key=when)
    return items


def evaluate_patient(
    history: PatientHistory, params: RuleParameters, now: datetime, fresh_ids: Collection[str] = ()
) -> list[Outcome]:
    """Every rule's outcome for one patient as of `now`, from its recent history (LOOKBACK_DAYS).
    `fresh_ids`: the readings no evaluation has seen yet; an episode of a reading rule that fired
    and cleared again among them comes first, as ENDED (it has no alert yet)."""
    stream = PatientStream(history.patient_id, params)
    for item in _items(history):
        stream.feed(item)
    stream.advance(now)
    ended = [replace(o, status=OutcomeStatus.ENDED) for o in stream.ended_episodes(fresh_ids)]
    outcomes = [*ended, *stream.outcomes()]
    zone = ZoneInfo(params.timezone)
    today = now.astimezone(zone).date()
    day0 = today - timedelta(days=LOOKBACK_DAYS - 1)
    obs = [o for o in history.observations if o.measured_at <= now]
    cols, starts = columns_from_observations(obs, [history.patient_id], day0, [params.timezone])
    matrix = build_matrix(cols, [history.patient_id], LOOKBACK_DAYS, day0, starts, params)
    targets = PatientArrays.from_parameters([params])
    results = evaluate_windows(matrix, params, targets, now_s=now.timestamp())
    t = LOOKBACK_DAYS - 1
    outcomes.extend(window_outcome(r, 0, t, matrix, history.patient_id) for r in results)
    outcomes.append(bp_low2(history, stream, matrix, results, params, now, day0))
    return outcomes


def bp_low2(
    history: PatientHistory,
    stream: PatientStream,
    matrix: DailyMatrix,
    results: Sequence[WindowResult],
    params: RuleParameters,
    now: datetime,
    day0: date,
) -> Outcome:
    """BP-LOW-2 overtreatment signal ([9][29], DEFAULT window compare): W7 SBP fell >= 20 mmHg from the
    W7 before a reported medication change, or a reported standing SBP fall >= 20 mmHg."""
    pid = history.patient_id
    ortho = stream.orthostatic_report(now)
    if (
        ortho is not None
        and ortho.seated_systolic_mmhg is not None
        and ortho.standing_systolic_mmhg is not None
    ):
        fall = ortho.seated_systolic_mmhg - ortho.standing_systolic_mmhg
        if fall >= params.low2_fall_mmhg:
            return Outcome(
                rule_id="BP-LOW-2",
                patient_id=pid,
                status=OutcomeStatus.FIRING,
                severity=AlertSeverity.INFO,
                window_start=ortho.reported_at,
                window_end=now,
                values={"standing_fall_systolic_mmhg": fall, "criterion": "orthostatic"},
                reading_ids=("report:" + ortho.report_id,),
                episode_key="report:" + ortho.report_id,
            )
    changes = [r for r in history.reports if r.kind is ReportKind.MEDICATION_CHANGE and r.reported_at <= now]
    above_goal = next(r for r in results if r.rule_id == "BP-CTRL-1")
    if not changes:
        return Outcome(rule_id="BP-LOW-2", patient_id=pid, status=OutcomeStatus.UNKNOWN)
    change = max(changes, key=lambda r: r.reported_at)
    zone = ZoneInfo(params.timezone)
    change_day = (change.reported_at.astimezone(zone).date() - day0).days
    today = matrix.shape[1] - 1
    before = change_day - 1
    # The current window (days today-5..today) must lie wholly after the change day.
    if before < 0 or today - (params.w7_days - 2) <= change_day:
        return Outcome(rule_id="BP-LOW-2", patient_id=pid, status=OutcomeStatus.UNKNOWN)
    known = above_goal.status[0, before] != 0 and above_goal.status[0, today] != 0
    if not known:
        return Outcome(rule_id="BP-LOW-2", patient_id=pid, status=OutcomeStatus.UNKNOWN)
    baseline = float(above_goal.values["w7_systolic_mmhg"][0, before])
    current = float(above_goal.values["w7_systolic_mmhg"][0, today])
    fall = baseline - current
    status = OutcomeStatus.FIRING if fall >= params.low2_fall_mmhg else OutcomeStatus.CLEAR
    return Outcome(
        rule_id="BP-LOW-2",
        patient_id=pid,
        status=status,
        severity=AlertSeverity.INFO if status is OutcomeStatus.FIRING else None,
        window_start=change.reported_at,
        window_end=now,
        values={
            "baseline_w7_systolic_mmhg": round(baseline, 2),
            "w7_systolic_mmhg": round(current, 2),
            "fall_systolic_mmhg": round(fall, 2),
            "criterion": "after medication change",
        },
        reading_ids=(),
        episode_key="report:" + change.report_id,
    )


# ---------------------------------------------------------------------------------------------------
# Timelines for replay and the burden bench: every patient, every reading, every day end.


@dataclass(frozen=True, slots=True)
class TimelineStep:
    at: datetime
    patient_id: str
    outcomes: list[Outcome]


def population_matrix(
    histories: Sequence[PatientHistory], params: Sequence[RuleParameters]
) -> tuple[DailyMatrix, list[WindowResult]]:
    """One matrix for a whole population and its window results for every day (vectorised)."""
    all_obs = [o for h in histories for o in h.observations]
    if not all_obs:
        raise ValueError("no observations to evaluate")
    first = min(o.measured_at for o in all_obs)
    last = max(o.measured_at for o in all_obs)
    day0 = (first - timedelta(days=1)).date()
    days = (last.date() - day0).days + 3
    ids = [h.patient_id for h in histories]
    cols, starts = columns_from_observations(all_obs, ids, day0, [p.timezone for p in params])
    matrix = build_matrix(cols, ids, days, day0, starts, params[0])
    results = evaluate_windows(matrix, params[0], PatientArrays.from_parameters(params))
    return matrix, results


def timeline(
    history: PatientHistory,
    index: int,
    params: RuleParameters,
    matrix: DailyMatrix,
    results: Sequence[WindowResult],
) -> Iterable[TimelineStep]:
    """The patient's rule outcomes after every reading/report (reading-level rules) and at the end of
    every day (window rules, as the periodic sweep sees them)."""
    stream = PatientStream(history.patient_id, params)
    items = _items(history)
    day_ends = [
        (datetime.fromtimestamp(float(matrix.day_end_s[index, t]), tz=ZoneInfo("UTC")), t)
        for t in range(matrix.shape[1])
    ]
    last_data = max((o.measured_at for o in history.observations), default=None)
    i = 0
    for end, t in day_ends:
        while i < len(items):
            item = items[i]
            at = item.measured_at if isinstance(item, Observation) else item.reported_at
            if at >= end:
                break
            if stream.feed(item):
                changed = stream.changed_outcomes()
                if changed:
                    yield TimelineStep(at, history.patient_id, changed)
            i += 1
        if last_data is None or end > last_data + timedelta(days=1):
            break  # nothing to judge once the history has ended
        stream.advance(end)
        pid = history.patient_id
        live = [r for r in results if r.status[index, t]]
        outs = [window_outcome(r, index, t, matrix, pid, clear_values=False) for r in live]
        outs.extend(stream.changed_outcomes())
        yield TimelineStep(end, history.patient_id, outs)


def window_outcomes(
    cols: Columns,
    starts: npt.NDArray[np.float64],
    ids: list[str],
    params: Sequence[RuleParameters],
    day0: date,
    now: datetime,
    unresolved: set[tuple[str, str]],
) -> dict[str, list[Outcome]]:
    """Vectorised window rules as of `now` for patients of one guideline profile (thresholds shared
    inside the matrix build): FIRING outcomes, and CLEAR where an alert is open."""
    out: dict[str, list[Outcome]] = defaultdict(list)
    days = (now.date() - day0).days + 2
    matrix = build_matrix(cols, ids, days, day0, starts, params[0])
    # The evaluation day of each patient: the local day containing `now`.
    t_of = np.array([(now.astimezone(ZoneInfo(p.timezone)).date() - day0).days for p in params])
    results = evaluate_windows(
        matrix, params[0], PatientArrays.from_parameters(params), now_s=now.timestamp()
    )
    for r in results:
        codes = r.status[np.arange(len(ids)), t_of]
        for pi in np.flatnonzero(codes):
            pid = ids[pi]
            if codes[pi] == FIRING or (pid, r.rule_id) in unresolved:
                out[pid].append(window_outcome(r, int(pi), int(t_of[pi]), matrix, pid))
    return out
