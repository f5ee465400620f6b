"""`vitalgate alerts replay READINGS.csv [--profile cn|us|eu] [--targets FILE]`.

Runs a history of readings through the alert rules, as the live engine would, and prints one JSON
object per alert (rule id as in clinical-rules.md §7, severity, patient, window, triggering values,
citation), so clinicians can check the rules on real histories. CSV columns: docs/alerts.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("alerts", help="alert rules: replay a history of readings")
    sub = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    p = sub.add_parser("replay", help="run READINGS.csv through the rules; print one JSON object per alert")
    p.add_argument("readings", type=Path, metavar="READINGS.csv", help="columns: see docs/alerts.md")
    p.add_argument(
        "--profile",
        choices=["cn", "us", "eu"],
        default=None,
        help="guideline profile (default: alerts.profile from the settings, else eu)",
    )
    p.add_argument("--targets", type=Path, default=None, help="JSON: patient_id -> targets ('*' = all)")
    p.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    from alerts.profiles import profile
    from alerts.replay import ReplayInputError, read_csv, read_targets, replay

    name = args.profile
    if name is None:
        settings = getattr(args, "settings", None)
        name = settings.alerts.profile if settings is not None else "eu"
    try:
        with args.readings.open(encoding="utf-8", newline="") as stream:
            histories = read_csv(stream)
        targets = read_targets(args.targets) if args.targets else {}
    except (OSError, ReplayInputError, ValueError) as exc:
        print(f"vitalgate alerts replay: {exc}", file=sys.stderr)
        return 2
    count = 0
    for alert in replay(histories, profile(name), targets):
        print(alert.json())
        count += 1
    print(f"{count} alerts for {len(histories)} patients (profile {name})", file=sys.stderr)
    return 0
