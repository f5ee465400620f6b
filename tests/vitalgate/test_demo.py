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
from typing import Any

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


def _json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (each curl line prints one)."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        document, at = decoder.raw_decode(text, at)
        out.append(document)
    return out


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_demo_instructions_work_while_it_runs(tmp_path: Path) -> None:
    """The printed logins (doctor, nurse, administrator) sign in, and the printed curl lines, run as
    printed, fetch the first patient's blood pressure and glucose readings."""
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
        url = None
        logins: dict[str, str] = {}
        curl_lines: list[str] = []
        in_readings = False
        kinds: dict[str, list[dict[str, object]]] = {}
        for line in process.stdout:
            found = re.search(r"web app\s+(http://\S+)/app/", line)
            if found:
                url = found.group(1)
            for email, password in re.findall(r"(\S+@vitalgate\.demo) / (\S+)", line):
                logins[email] = password
            if line.startswith("  readings"):
                in_readings = True
            elif in_readings and not line.startswith("              "):
                in_readings = False
            if in_readings:
                curl_lines.append(line[len("  readings    ") :].rstrip("\n"))
            if url and curl_lines and "readings on meters" in line and "stored 0," not in line:
                # Run the printed lines as a user would paste them, until both kinds have arrived.
                ran = subprocess.run(
                    ["bash", "-c", "\n".join(curl_lines)], capture_output=True, text=True, timeout=30
                )
                assert ran.returncode == 0, ran.stderr
                kinds = {str(page["kind"]): list(page["readings"]) for page in _json_documents(ran.stdout)}
                if kinds.get("blood_pressure") and kinds.get("glucose"):
                    break
        assert url and set(logins) == {
            "doctor@vitalgate.demo",
            "nurse@vitalgate.demo",
            "admin@vitalgate.demo",
        }
        assert len(curl_lines) == 3, curl_lines  # sign in, then one line per kind
        assert kinds.get("blood_pressure") and kinds.get("glucose"), (
            "both kinds, fetched by the printed lines"
        )
        for kind, readings in kinds.items():
            assert all(r["patient_id"] == "vp-0001" and r["kind"] == kind for r in readings)

        roles = {}
        for email, password in logins.items():
            body = urllib.parse.urlencode({"username": email, "password": password}).encode()
            with urllib.request.urlopen(f"{url}/api/v1/auth/token", body, timeout=10) as response:
                token = json.load(response)["access_token"]
            me = _get(f"{url}/api/v1/me", token)
            roles[email] = me["roles"]
            alerts = _get(f"{url}/api/v1/alerts?view=active", token)
            assert isinstance(alerts, list)
            if email == "nurse@vitalgate.demo":  # the nurse may read the patient: she is on the care team
                glucose = _get(f"{url}/api/v1/patients/vp-0001/readings?kind=glucose", token)
                assert glucose["readings"]
        assert roles == {
            "doctor@vitalgate.demo": ["family_doctor"],
            "nurse@vitalgate.demo": ["clinic_staff"],
            "admin@vitalgate.demo": ["clinic_admin"],
        }
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        stored = re.search(r"^vitalgate_ingest_readings_stored_total (\d+)$", metrics, re.MULTILINE)
        assert stored, metrics
        assert int(stored.group(1)) >= sum(len(r) for r in kinds.values())
    finally:
        process.terminate()
        process.wait(60)
