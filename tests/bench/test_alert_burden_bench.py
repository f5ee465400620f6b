"""The alert burden bench runs end to end on both populations, and the virtual one (the demo's
patients and stories) drives the rules its stories are about. No figure is asserted: the burden per
patient-month is recorded in docs/alerts.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_alert_burden_reports_both_populations_and_the_stories_show_in_the_rules() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "alert_burden.py"), "--patients", "10", "--days", "35"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reports = dict(
        re.findall(r"^alert burden \((numpy|virtual)\): (.*?)^pushed to people", run.stdout, re.M | re.S)
    )
    assert reports.keys() == {"numpy", "virtual"}
    for text in reports.values():
        assert re.search(r"^ALL\s+\d+\s+[\d.]+\s+\d+$", text, re.M)
    opened = {
        rule: int(n)
        for rule, n in re.findall(r"^([A-Z][A-Z0-9-]+)\s+(\d+)\s+[\d.]+\s+\d+ ", reports["virtual"], re.M)
    }
    # Two patients per story: recurrent hypos, a cuff that shows "Err", blood pressure rising.
    assert opened["GLU-HYPO-1"] + opened["GLU-HYPO-2"] > 0
    assert opened["DQ-02"] > 0
    assert opened["BP-TREND-1"] > 0
