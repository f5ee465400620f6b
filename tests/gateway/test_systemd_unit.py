"""The systemd unit of the gateway: hardened, always restarted, verified by systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "vitalgate-gateway.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        found.setdefault(key, []).append(value)
    return found


def test_unit_is_hardened_and_restarts_forever() -> None:
    d = directives()
    assert d["Restart"] == ["always"]
    assert d["StartLimitIntervalSec"] == ["0"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["CapabilityBoundingSet"] == [""]
    assert "vitalgate-gateway" in d["StateDirectory"]
    assert "AF_BLUETOOTH" in d["RestrictAddressFamilies"][0].split()
    assert d["Type"] == ["notify"]
    assert "WatchdogSec" in d
    assert "User" in d or d.get("DynamicUser") == ["yes"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    # Same unit, with an ExecStart that exists on this machine (the install path does not).
    text = UNIT.read_text(encoding="utf-8").replace("/opt/vitalgate/bin/vitalgate", "/bin/true")
    unit = tmp_path / UNIT.name
    unit.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if UNIT.name in line and "bluetooth.service" not in line
    ]
    assert problems == [], result.stdout + result.stderr
