"""Alert burden on a simulated population: alerts per patient-month, per rule.

Runs simulated home-monitoring histories (alerts/simulate.py: a small numpy generator, used until the
virtual-patient model exists) through the same rules and lifecycle as the live engine (reading rules
on every reading, window rules at every day end, ESC-1 hysteresis, supersession), and counts the
alerts that open. Context: a hypertension RPM service saw 17,293 alerts for 174 patients over a
mean 207 days, about 14 per patient-month, before its alert-reduction work (clinical-rules.md §3.2
[44]). Run:
    .venv/bin/python bench/alert_burden.py [--patients 500] [--days 90] [--profile cn]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

from alerts.catalogue import INBOX_ONLY, RULES
from alerts.evaluate import PatientHistory
from alerts.model import Observation
from alerts.profiles import PatientTargets, profile
from alerts.replay import replay
from alerts.simulate import simulate

DAYS_PER_MONTH = 30.4375
MAASSTAD_PER_PATIENT_MONTH = 17_293 / (174 * 207 / DAYS_PER_MONTH)  # [44]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--profile", choices=["cn", "us", "eu"], default="cn")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    t0 = time.perf_counter()
    sim = simulate(args.patients, args.days, seed=args.seed)
    by_patient: defaultdict[str, list[Observation]] = defaultdict(list)
    for obs in sim.observations():
        by_patient[obs.patient_id].append(obs)
    histories = [PatientHistory(pid, by_patient[pid]) for pid in sim.patient_ids if by_patient[pid]]
    targets = {"*": PatientTargets(timezone="Asia/Shanghai")}
    alerts = [a.data for a in replay(histories, profile(args.profile), targets)]
    elapsed = time.perf_counter() - t0

    months = len(histories) * args.days / DAYS_PER_MONTH
    opened = Counter(a["rule_id"] for a in alerts)
    urgent = Counter(a["rule_id"] for a in alerts if a["severity"] == "urgent")
    print(
        f"alert burden: {len(histories)} simulated patients x {args.days} days = {months:.0f} "
        f"patient-months, profile {args.profile}, {len(sim):,} readings ({elapsed:.1f} s)"
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
        "service before alert reduction (clinical-rules.md §3.2 [44])"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
