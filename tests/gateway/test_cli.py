"""`vitalgate gateway devices | status` read the gateway's state files (no broker, no radio)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.bindings import Bindings, MeterProfile, PairedMeter
from gateway.health import GatewayHealth, write_status_file
from gateway.outbox import Outbox, SyncPosition, UnboundReading
from testbed.factories import blood_pressure, cuff
from vitalgate.cli import main
from vitals.payload import MeterBinding

GW = "gw-cli"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VITALGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VITALGATE_GATEWAY__GATEWAY_ID", GW)
    monkeypatch.setenv("VITALGATE_GATEWAY__OUTBOX_CAPACITY", "10")
    return tmp_path / "gateway"


def test_devices_lists_meters_bindings_and_readings_kept_aside(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gateway devices` lists each meter's bindings and last sequence number, and the readings kept aside."""
    device = cuff("BP-CLI")
    bindings = Bindings(state / "bindings.json", GW).load()
    meter = PairedMeter(
        address="C0:00:00:00:00:07",
        meter_key=device.meter_key,
        profile=MeterProfile.BLOOD_PRESSURE,
        paired_at=datetime.now(UTC),
    )
    bindings.add_paired_meter(meter, MeterBinding(meter_key=device.meter_key, user_id=1, patient_id="p-7"))
    with Outbox(state / "outbox.sqlite3") as outbox:
        stray = blood_pressure(1, device=device, patient_id=None, user_id=2)
        position = SyncPosition(device.meter_key, 4, {1: 4, 2: 1})
        outbox.commit([], unbound=[UnboundReading(stray, device.meter_key, 2)], sync_position=position)
    assert main(["--log-format", "text", "gateway", "devices"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meters"][0]["bindings"] == [{"user_slot": 1, "patient_id": "p-7"}]
    assert out["meters"][0]["last_sequence_number"] == 4
    assert out["unbound_readings"] == [{"meter_key": device.meter_key, "user_slot": 2, "readings": 1}]


def test_status_fails_when_the_outbox_is_full(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Outbox(state / "outbox.sqlite3", capacity=10) as outbox:
        outbox.commit([blood_pressure(i) for i in range(10)])
        write_status_file(state / "status.json", GatewayHealth(GW).report(outbox.stats()))
    assert main(["--log-format", "text", "gateway", "status"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["outbox"]["full"] is True
    assert out["last_report"]["outbox_full"] is True
