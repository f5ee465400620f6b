"""Alert burden on a simulated population: alerts per patient-month, per rule.

Runs simulated home-monitoring histories through the same rules and lifecycle as the live engine
(reading rules on every reading, window rules at every day end, ESC-1 hysteresis, supersession), and
counts the alerts that open. Two populations (`--source`, default both):

- `numpy`: alerts/simulate.py, a small numpy generator with a spread of usual BP, adherence, cuff
  flags, atrial fibrillation flags, diabetes and a few CGM wearers;
- `virtual`: the virtual patients the demo's meters measure (device_drivers/virtual/patients.py:
  circadian BP with a morning surge, meals, hypos), the five stories in turn, each patient's
  baseline BP and fasting glucose spread around the story's (SD 10/6 mmHg, x0.9-1.3), living at
  UTC+8. Every patient measures BP and glucose; a cuff "Err" is an excluded reading without values.

Context: a hypertension RPM service saw 17,293 alerts for 174 patients over a mean 207 days, about
14 per patient-month, before its alert-reduction work ([44], docs/references.md). Run:
    .venv/bin/python bench/alert_burden.py [--patients 500] [--days 90] [--profile cn] [--source both]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import time
from collections import Counter, defaultdict
from dataclasses import replace

from alerts.catalogue import INBOX_ONLY, RULES
from alerts.evaluate import PatientHistory
from alerts.model import Observation, ObservationKind
from alerts.profiles import PatientTargets, profile
from alerts.replay import replay
from alerts.simulate import simulate
from device_drivers.virtual.patients import PatientProfile, VirtualPatient
from device_drivers.virtual.stories import available_stories, load_story
from vitals.readings import Meal

DAYS_PER_MONTH = 30.4375
MAASSTAD_PER_PATIENT_MONTH = 17_293 / (174 * 207 / DAYS_PER_MONTH)  # [44]
UTC_PLUS_8 = dt.timedelta(hours=8)  # Asia/Shanghai, as the targets' time zone below


def numpy_population(patients: int, days: int, seed: int) -> list[PatientHistory]:
    sim = simulate(patients, days, seed=seed)
    by_patient: defaultdict[str, list[Observation]] = defaultdict(list)
    for obs in sim.observations():
        by_patient[obs.patient_id].append(obs)
    return [PatientHistory(pid, by_patient[pid]) for pid in sim.patient_ids if by_patient[pid]]


def _reading_id(patient_id: str, kind: str, at: dt.datetime) -> str:
    return hashlib.sha256(f"{patient_id}|{kind}|{at.isoformat()}".encode()).hexdigest()[:32]


def virtual_population(patients: int, days: int, seed: int) -> list[PatientHistory]:
    stories = [load_story(name) for name in available_stories()]
    histories = []
    for index in range(patients):
        story = stories[index % len(stories)]
        spread = random.Random(f"{seed}:{index}")
        base = PatientProfile.from_dict(story.patient)
        patient = VirtualPatient(
            patient_id=f"vp-{index + 1:04d}",
            story=story,
            profile=replace(
                base,
                systolic_mmhg=base.systolic_mmhg + spread.gauss(0, 10),
                diastolic_mmhg=base.diastolic_mmhg + spread.gauss(0, 6),
                glucose_fasting_mg_dl=base.glucose_fasting_mg_dl * spread.uniform(0.9, 1.3),
            ),
            seed=seed * 10_000 + index,
            utc_offset=UTC_PLUS_8,
        )
        pid = patient.patient_id
        observations: list[Observation] = []
        for day in range(days):
            for bp in patient.blood_pressure_readings(day):
                observations.append(
                    Observation(
                        patient_id=pid,
                        reading_id=_reading_id(pid, "bp", bp.taken_at),
                        measured_at=bp.taken_at,
                        kind=ObservationKind.BLOOD_PRESSURE,
                        systolic_mmhg=_value(bp.systolic_mmhg),  # None with a cuff "Err"
                        diastolic_mmhg=_value(bp.diastolic_mmhg),
                        pulse_bpm=_value(bp.pulse_bpm),
                        excluded_from_averages=bp.error,
                        exclusion_reasons=("systolic_mmhg: not measured",) if bp.error else (),
                    )
                )
            for glucose in patient.glucose_readings(day):
                observations.append(
                    Observation(
                        patient_id=pid,
                        reading_id=_reading_id(pid, "glucose", glucose.taken_at),
                        measured_at=glucose.taken_at,
                        kind=ObservationKind.GLUCOSE,
                        glucose_mg_dl=float(glucose.glucose_mg_dl),
                        meal=Meal(glucose.meal),
                    )
                )
        observations.sort(key=lambda obs: obs.measured_at)
        histories.append(PatientHistory(pid, observations))
    return histories


def _value(value: int | None) -> float | None:
    return None if value is None else float(value)


def report(source: str, histories: list[PatientHistory], days: int, profile_name: str) -> None:
    t0 = time.perf_counter()
    targets = {"*": PatientTargets(timezone="Asia/Shanghai")}
    alerts = [a.data for a in replay(histories, profile(profile_name), targets)]
    elapsed = time.perf_counter() - t0
    readings = sum(len(h.observations) for h in histories)
    months = len(histories) * days / DAYS_PER_MONTH
    opened = Counter(a["rule_id"] for a in alerts)
    urgent = Counter(a["rule_id"] for a in alerts if a["severity"] == "urgent")
    print(
        f"\nalert burden ({source}): {len(histories)} simulated patients x {days} days = {months:.0f} "
        f"patient-months, profile {profile_name}, {readings:,} readings (rules: {elapsed:.1f} s)"
    )
    print(f"{'rule':<13} {'alerts':>7} {'per patient-month':>18} {'urgent':>7}  title")
    for rule_id in RULES:
        n = opened.get(rule_id, 0)
        print(f"{rule_id:<13} {n:7d} {n / months:18.3f} {urgent.get(rule_id, 0):7d}  {RULES[rule_id].title}")
    total = sum(opened.values())
    print(f"{'ALL':<13} {total:7d} {total / months:18.3f} {sum(urgent.values()):7d}")
    pushed = sum(n for r, n in opened.items() if r not in INBOX_ONLY)
    print(
        f"pushed to people (all but {', '.join(sorted(INBOX_ONLY))}, which is inbox-only): "
        f"{pushed / months:.3f} per patient-month"
    )
    print(
        f"reference: ~{MAASSTAD_PER_PATIENT_MONTH:.1f} alerts per patient-month in a hypertension RPM "
        "service before alert reduction ([44], docs/references.md)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--profile", choices=["cn", "us", "eu"], default="cn")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--source", choices=["numpy", "virtual", "both"], default="both")
    args = ap.parse_args()
    if args.source in ("numpy", "both"):
        report("numpy", numpy_population(args.patients, args.days, args.seed), args.days, args.profile)
    if args.source in ("virtual", "both"):
        report("virtual", virtual_population(args.patients, args.days, args.seed), args.days, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
