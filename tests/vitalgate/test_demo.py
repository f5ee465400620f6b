"""`vitalgate demo`, run as a new user would: every reading on the virtual meters arrives once, and the
printed instructions work (sign in, fetch a patient's readings as JSON)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
VITALGATE = Path(sys.executable).with_name("vitalgate")


def test_demo_delivers_every_reading_on_the_meters_exactly_once(tmp_path: Path) -> None:
    env = {**os.environ, "VITALGATE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [
            str(VITALGATE),
            "--log-level",
            "WARNING",
            "demo",
            "--until-synced",
            "--patients",
            "3",
            "--history-days",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"(\d+) readings stored of (\d+) on the meters \((\d+) duplicates", result.stdout)
    assert summary, result.stdout
    stored, held, duplicates = (int(g) for g in summary.groups())
    assert held > 0
    assert stored == held
    assert duplicates == 0
    assert "sign in as doctor@vitalgate.demo" in result.stdout
    # What it stored is really there, in the SQLite reading store it names.
    import sqlite3

    with sqlite3.connect(tmp_path / "demo" / "readings.sqlite3") as db:
        (rows,) = db.execute("SELECT count(*) FROM readings").fetchone()
    assert rows == held
    # The third patient's story is recurrent hypos: the demo records them as on insulin (a target the
    # family doctor sets), so their stale-data limit is 3 days.
    with sqlite3.connect(tmp_path / "demo" / "clinic.sqlite3") as db:
        on_insulin = db.execute("SELECT patient_id FROM patient_targets WHERE on_insulin").fetchall()
    assert on_insulin == [("vp-0003",)]


def test_demo_instructions_work_while_it_runs(tmp_path: Path) -> None:
    env = {**os.environ, "VITALGATE_DATA_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [
            str(VITALGATE),
            "--log-level",
            "WARNING",
            "demo",
            "--patients",
            "1",
            "--history-days",
            "3",
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        url = email = password = None
        for line in process.stdout:
            found = re.search(r"web app\s+(http://\S+)/app/\s+sign in as (\S+) / (\S+)", line)
            if found:
                url, email, password = found.groups()
            if url and "readings on meters" in line and "stored 0," not in line:
                break
        assert url and email and password
        body = urllib.parse.urlencode({"username": email, "password": password}).encode()
        with urllib.request.urlopen(f"{url}/api/v1/auth/token", body, timeout=10) as response:
            token = json.load(response)["access_token"]
        request = urllib.request.Request(
            f"{url}/api/v1/patients/vp-0001/readings?kind=blood_pressure",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            readings = json.load(response)["readings"]
        assert readings, "the demo patient's cuff readings are served as JSON"
        assert all(r["patient_id"] == "vp-0001" for r in readings)
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        stored = re.search(r"^vitalgate_ingest_readings_stored_total (\d+)$", metrics, re.MULTILINE)
        assert stored, metrics
        assert int(stored.group(1)) >= len(readings)
    finally:
        process.terminate()
        process.wait(60)
