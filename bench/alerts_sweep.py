"""Sweep benchmark: the periodic, vectorised evaluation of every window / time-based rule
(stale data, adherence, W7 averages, trends, CGM metrics) over 10,000 patients x 90 days.

Target (issue #7): < 10 s on this machine. Prints the figures; run:
    .venv/bin/python bench/alerts_sweep.py [--patients 10000] [--days 90]
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta

import numpy as np

from alerts.profiles import PatientTargets, parameters, profile
from alerts.simulate import simulate, to_columns
from alerts.windows import FIRING, PatientArrays, build_matrix, evaluate_windows

TARGET_S = 10.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--profile", choices=["cn", "us", "eu"], default="cn")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sim = simulate(args.patients, args.days, seed=11)
    t_gen = time.perf_counter() - t0
    params = parameters(profile(args.profile), PatientTargets(timezone="Asia/Shanghai"))
    targets = PatientArrays.uniform(params, args.patients)

    t1 = time.perf_counter()
    cols, starts = to_columns(sim)
    day0 = date(sim.start.year, sim.start.month, sim.start.day)
    matrix = build_matrix(cols, sim.patient_ids, args.days, day0, starts, params)
    t_bin = time.perf_counter() - t1
    now_s = sim.start.timestamp() + (args.days - 0.5) * 86_400
    t2 = time.perf_counter()
    results = evaluate_windows(matrix, params, targets, now_s=now_s)
    t_eval = time.perf_counter() - t2
    t3 = time.perf_counter()
    last = args.days - 1
    firing = {r.rule_id: int(np.count_nonzero(r.status[:, last] == FIRING)) for r in results}
    t_pick = time.perf_counter() - t3
    sweep_s = t_bin + t_eval + t_pick

    print(
        f"alerts sweep: {args.patients:,} patients x {args.days} days, {len(sim):,} readings "
        f"(generated in {t_gen:.2f} s, not counted)"
    )
    print(f"  bin readings into patients x days : {t_bin:7.3f} s")
    print(f"  evaluate {len(results)} window rules, every day: {t_eval:7.3f} s")
    print(f"  pick today's firing outcomes       : {t_pick:7.3f} s")
    print(
        f"  sweep total                        : {sweep_s:7.3f} s  (target < {TARGET_S:.0f} s: "
        f"{'met' if sweep_s < TARGET_S else 'MISSED'}; ratio {sweep_s / TARGET_S:.2f} of target)"
    )
    print(f"  per patient                        : {1e6 * sweep_s / args.patients:7.1f} us")
    print(f"  patients firing today ({day0 + timedelta(days=last)}):")
    for rule, n in sorted(firing.items()):
        print(f"    {rule:<13} {n:6d}  ({100.0 * n / args.patients:5.1f} %)")
    return 0 if sweep_s < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
