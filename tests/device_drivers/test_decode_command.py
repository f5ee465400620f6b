"""`vitalgate decode` as a new user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

VITALGATE = Path(sys.executable).parent / "vitalgate"
pytestmark = pytest.mark.skipif(not VITALGATE.exists(), reason="console script not installed in this venv")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VITALGATE), "decode", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_unquoted_bytes_decode_to_json_with_units() -> None:
    """The worked BP example typed as separate words prints 120/80 mmHg, pulse 72, exit 0."""
    result = run(
        "bp",
        *["06", "78", "00", "50", "00", "5D", "00", "E8", "07", "03", "01", "08", "1E", "00", "48", "00"],
    )
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["systolic_mmhg"] == 120
    assert decoded["diastolic_mmhg"] == 80
    assert decoded["pulse_bpm"] == 72
    assert decoded["timestamp"] == "2024-03-01T08:30:00"
    assert decoded["valid"] is True


def test_quoted_hex_with_spaces_and_glucose_units() -> None:
    """A quoted glucose value gives sequence_number and glucose_mg_dl."""
    result = run("glucose", "02 05 00 E8 07 03 01 08 1E 00 69 B0 11")
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["sequence_number"] == 5
    assert decoded["glucose_mg_dl"] == 105
    assert decoded["sample_location"] == "finger"


def test_nrf_connect_style_dashes() -> None:
    """`(0x) 06-00-01-06` as nRF Connect prints it decodes as RACP 'no records found'."""
    result = run("racp", "(0x)", "06-00-01-06")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["response_code"] == "no_records_found"


def test_error_record_is_invalid_with_reasons() -> None:
    """The derdilla 'Err' record decodes (exit 0) but says valid: false and why."""
    result = run("bp", "16 FF 07 FF 07 FF 07 E8 07 06 17 0E 23 0A FF 07 00 00")
    assert result.returncode == 0
    decoded = json.loads(result.stdout)
    assert decoded["valid"] is False
    assert "systolic is NaN" in decoded["invalid_reasons"]


def test_truncated_value_one_line_on_stderr_exit_2() -> None:
    """Undecodable bytes: exit 2, nothing on stdout, one stderr line naming offset and reason."""
    result = run("bp", "06 78 00 50 00 5D 00 E8 07 03 01 08 1E 00 48")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "offset 14" in lines[0]
    assert "pulse rate" in lines[0]


def test_not_hex_is_exit_2() -> None:
    """A typo in HEX is reported, not a traceback."""
    result = run("battery", "6g")
    assert result.returncode == 2
    assert "not a hex digit" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_profile_lists_choices() -> None:
    """A wrong profile name is refused by argparse with the valid choices."""
    result = run("weight", "00")
    assert result.returncode == 2
    assert "glucose-context" in result.stderr
