"""`vitalgate alerts replay` on the shipped example history (docs/examples)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alerts.catalogue import RULES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "alerts-replay.csv"
TARGETS = ROOT / "docs" / "examples" / "alerts-targets.json"


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vitalgate.cli", "alerts", "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def test_replay_prints_one_json_object_per_alert_with_rule_ids_and_citations() -> None:
    done = _replay(str(EXAMPLE), "--profile", "cn", "--targets", str(TARGETS))
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines()]
    rules = {(a["patient_id"], a["rule_id"]) for a in alerts}
    assert ("pt-1002", "BP-CRIT-2") in rules
    assert ("pt-1003", "GLU-HYPO-2") in rules and ("pt-1003", "GLU-HYPO-3") in rules
    assert ("pt-1001", "BP-CTRL-1") in rules
    for a in alerts:
        assert a["rule_id"] in RULES and a["citation"] == RULES[a["rule_id"]].citation
        assert {"severity", "window", "values", "opened_at"} <= set(a)
    crit = next(a for a in alerts if a["rule_id"] == "BP-CRIT-2")
    assert crit["severity"] == "urgent" and crit["values"]["systolic_mmhg"] == 184.0


def test_profile_changes_the_answer(tmp_path: Path) -> None:
    # DBP 115 is a crisis in CN (>= 110 [17]) but not in US/EU (>= 120 [4][5]).
    csv_path = tmp_path / "r.csv"
    csv_path.write_text(
        "patient_id,time,kind,systolic_mmhg,diastolic_mmhg,pulse_bpm\n"
        "pt-9,2026-03-01T08:00:00+08:00,blood_pressure,150,115,80\n",
        encoding="utf-8",
    )
    cn = [json.loads(line) for line in _replay(str(csv_path), "--profile", "cn").stdout.splitlines()]
    us = [json.loads(line) for line in _replay(str(csv_path), "--profile", "us").stdout.splitlines()]
    assert [a["rule_id"] for a in cn] == ["BP-CRIT-1"]
    assert us == []


def test_bad_csv_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,time,kind\np1,2026-03-01T08:00:00,blood_pressure\n", encoding="utf-8")
    done = _replay(str(bad))
    assert done.returncode == 2
    assert "line 2" in done.stderr and "offset" in done.stderr
