"""Run a history of readings through the rules, as the live engine would, and list the alerts.

Used by `vitalgate alerts replay` (clinicians check the rules on real histories) and by
bench/alert_burden.py. CSV columns are documented in docs/alerts.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from alerts.catalogue import RULES, rank
from alerts.evaluate import PatientHistory, population_matrix, timeline
from alerts.lifecycle import Lifecycle
from alerts.memory_repository import InMemoryAlertRepository
from alerts.model import Observation, ObservationKind, PatientReport, ReportKind
from alerts.profiles import PatientTargets, Profile, RuleParameters, parameters
from vitals.readings import Meal
from vitals.units import mmol_l_to_mg_dl

REPLAY_CLINIC_ID = "replay"
EXCLUDING_FLAGS = frozenset({"body_movement", "cuff_too_loose", "improper_position", "invalid"})
KNOWN_FLAGS = EXCLUDING_FLAGS | {"irregular_pulse"}


class ReplayInputError(ValueError):
    """A CSV row that cannot be read; the message names the line and column, never a value's owner."""


def _float(row: dict[str, str], column: str, line: int) -> float | None:
    raw = (row.get(column) or "").strip()
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ReplayInputError(f"line {line}: {column} is not a number") from exc
    return None if math.isnan(value) else value


def _time(raw: str, line: int) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReplayInputError(f"line {line}: time must be ISO 8601") from exc
    if value.tzinfo is None:
        raise ReplayInputError(f"line {line}: time needs a UTC offset (e.g. 2025-03-01T07:30:00+08:00)")
    return value.astimezone(UTC)


def read_csv(stream: TextIO) -> list[PatientHistory]:
    """Histories per patient, in first-seen order."""
    reader = csv.DictReader(stream)
    required = {"patient_id", "time", "kind"}
    if reader.fieldnames is None or not required <= set(reader.fieldnames):
        raise ReplayInputError(f"CSV needs at least the columns {sorted(required)}")
    observations: dict[str, list[Observation]] = {}
    reports: dict[str, list[PatientReport]] = {}
    for line, row in enumerate(reader, start=2):
        pid = (row.get("patient_id") or "").strip()
        if not pid:
            raise ReplayInputError(f"line {line}: patient_id is empty")
        at = _time(row.get("time") or "", line)
        kind = (row.get("kind") or "").strip()
        observations.setdefault(pid, [])
        reports.setdefault(pid, [])
        rid = (row.get("reading_id") or "").strip() or hashlib.sha256(
            "|".join(f"{k}={v}" for k, v in sorted(row.items()) if k).encode()
        ).hexdigest()[:32]
        if kind == "report":
            reports[pid].append(_report(row, pid, rid, at, line))
            continue
        flags = {f.strip() for f in (row.get("flags") or "").replace(",", ";").split(";") if f.strip()}
        unknown = flags - KNOWN_FLAGS
        if unknown:
            raise ReplayInputError(f"line {line}: unknown flags {sorted(unknown)}")
        reasons = sorted(flags & EXCLUDING_FLAGS)
        if kind == "blood_pressure":
            sys_ = _float(row, "systolic_mmhg", line)
            dia = _float(row, "diastolic_mmhg", line)
            if sys_ is None or dia is None:
                reasons.append("not measured (NaN)")
            observations[pid].append(
                Observation(
                    patient_id=pid,
                    reading_id=rid,
                    measured_at=at,
                    kind=ObservationKind.BLOOD_PRESSURE,
                    systolic_mmhg=sys_,
                    diastolic_mmhg=dia,
                    pulse_bpm=_float(row, "pulse_bpm", line),
                    irregular_pulse="irregular_pulse" in flags,
                    excluded_from_averages=bool(reasons),
                    exclusion_reasons=tuple(reasons),
                )
            )
        elif kind in ("glucose", "cgm"):
            mg = _float(row, "glucose_mg_dl", line)
            mmol = _float(row, "glucose_mmol_l", line)
            if mg is None and mmol is not None:
                mg = mmol_l_to_mg_dl(mmol)
            if mg is None:
                reasons.append("not measured (NaN)")
            meal_raw = (row.get("meal") or "").strip()
            try:
                meal = Meal(meal_raw) if meal_raw else None
            except ValueError as exc:
                raise ReplayInputError(f"line {line}: meal must be one of {[m.value for m in Meal]}") from exc
            obs_kind = ObservationKind.CGM if kind == "cgm" else ObservationKind.GLUCOSE
            observations[pid].append(
                Observation(
                    patient_id=pid,
                    reading_id=rid,
                    measured_at=at,
                    kind=obs_kind,
                    glucose_mg_dl=mg,
                    meal=meal,
                    excluded_from_averages=bool(reasons),
                    exclusion_reasons=tuple(reasons),
                )
            )
        else:
            raise ReplayInputError(f"line {line}: kind must be blood_pressure, glucose, cgm or report")
    return [PatientHistory(pid, observations[pid], reports[pid]) for pid in observations]


def _report(row: dict[str, str], pid: str, rid: str, at: datetime, line: int) -> PatientReport:
    raw = (row.get("report") or "").strip()
    try:
        kind = ReportKind(raw)
    except ValueError as exc:
        raise ReplayInputError(f"line {line}: report must be one of {[k.value for k in ReportKind]}") from exc
    symptoms = frozenset(s.strip() for s in (row.get("symptoms") or "").split(";") if s.strip())
    return PatientReport(
        patient_id=pid,
        report_id=rid,
        reported_at=at,
        kind=kind,
        symptoms=symptoms,
        ketones_mmol_l=_float(row, "ketones_mmol_l", line),
        seated_systolic_mmhg=_float(row, "seated_systolic_mmhg", line),
        standing_systolic_mmhg=_float(row, "standing_systolic_mmhg", line),
    )


def read_targets(path: Path) -> dict[str, PatientTargets]:
    """JSON object: patient_id -> target fields (PatientTargets); key "*" applies to every patient."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ReplayInputError("targets file must hold a JSON object keyed by patient_id")
    return {pid: PatientTargets.from_mapping(values) for pid, values in data.items()}


@dataclass(frozen=True, slots=True)
class ReplayedAlert:
    data: dict[str, Any]

    def json(self) -> str:
        return json.dumps(self.data, sort_keys=True, default=str)


def replay(
    histories: Sequence[PatientHistory], profile: Profile, targets: dict[str, PatientTargets] | None = None
) -> Iterator[ReplayedAlert]:
    """Alerts the engine would have raised, in the order they opened (per patient)."""
    targets = targets or {}
    histories = [h for h in histories if h.observations]
    if not histories:
        return
    params: list[RuleParameters] = [
        parameters(profile, targets.get(h.patient_id, targets.get("*"))) for h in histories
    ]
    matrix, results = population_matrix(histories, params)
    for index, history in enumerate(histories):
        repo = InMemoryAlertRepository()
        life = Lifecycle(repo)
        for step in timeline(history, index, params[index], matrix, results):
            life.apply(REPLAY_CLINIC_ID, step.outcomes, step.at)
        yield from _alerts_of(repo, profile)


def _alerts_of(repo: InMemoryAlertRepository, profile: Profile) -> Iterable[ReplayedAlert]:
    for rec in sorted(repo.all(), key=lambda a: a.opened_at):
        events = repo.events(rec.alert_id)
        opened = next(e for e in events if e.event == "opened")
        max_sev = max((e.severity for e in events if e.severity is not None), key=rank)
        yield ReplayedAlert(
            {
                "alert_id": rec.alert_id,
                "rule_id": rec.rule_id,
                "title": RULES[rec.rule_id].title,
                "severity": max_sev.value,
                "patient_id": rec.patient_id,
                "profile": profile.name.value,
                "opened_at": rec.opened_at.isoformat(),
                "resolved_at": rec.resolved_at.isoformat() if rec.resolved_at else None,
                "resolution": next(
                    (e.event for e in events if e.to_state is not None and e.to_state.value == "resolved"),
                    None,
                ),
                "window": {
                    "start": rec.window_start.isoformat() if rec.window_start else None,
                    "end": rec.window_end.isoformat() if rec.window_end else None,
                },
                "values": opened.details.get("values", {}),
                "reading_ids": opened.details.get("reading_ids", []),
                "citation": RULES[rec.rule_id].citation,
                "reference": "clinical-rules.md §7",
            }
        )
