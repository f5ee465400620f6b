"""The simulation and `vitalgate simulate`: patients, meters, history, live readings, other process."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import sys
from collections.abc import AsyncIterator

import pytest
from bleak import BleakClient, BleakScanner

from device_drivers.procedures.session import run_blood_pressure_session, run_glucose_session
from device_drivers.profiles.uuids import SERIAL_NUMBER_STRING
from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.radio import VirtualRadio
from device_drivers.virtual.simulator import Simulation
from device_drivers.virtual.stories import load_story
from vitalgate.cli import main

WAIT_S = 15.0


@pytest.fixture
async def simulation() -> AsyncIterator[Simulation]:
    # 10 simulated hours per real second.
    clock = SimulationClock(start=dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC), speed=36_000.0)
    async with VirtualRadio() as radio:
        sim = Simulation(
            radio,
            clock,
            [load_story("stable"), load_story("recurrent-hypos")],
            patients=2,
            seed=5,
            history_days=3,
        )
        await sim.setup()
        yield sim
        await sim.stop()


async def test_meters_hold_the_history_and_the_gateway_collects_it(simulation: Simulation) -> None:
    first, second = simulation.patients
    assert [m.persona.key for m in first.meters] == ["omron-like", "contour-like"]
    assert [m.persona.key for m in second.meters] == ["silvercrest-like", "accu-chek-like"]
    cuff = first.cuffs()[0]
    glucose = first.glucose_meters()[0]
    # At 36,000x the Omron-like 120 s window would be 3 ms of real time: it lasts 20 real seconds.
    assert cuff.advertising_window_s() == 20 * simulation.clock.speed
    assert 6 <= len(cuff.records) <= 8  # three days and a half, two a day
    assert 9 <= len(glucose.records) <= 12

    radio = simulation.radio
    lost = asyncio.Event()
    async with BleakClient(
        cuff.address, lambda _c: lost.set(), backend=radio.client_backend, pair=True, timeout=WAIT_S
    ) as client:
        session = await run_blood_pressure_session(
            client, gateway_timezone=dt.UTC, now=simulation.clock.now, disconnected=lost
        )
    assert len(session.collection.measurements) == len(cuff.records)

    lost = asyncio.Event()
    async with BleakClient(
        glucose.address, lambda _c: lost.set(), backend=radio.client_backend, pair=True, timeout=WAIT_S
    ) as client:
        glucose_session = await run_glucose_session(
            client,
            last_sequence_number=None,
            gateway_timezone=dt.UTC,
            now=simulation.clock.now,
            disconnected=lost,
        )
    assert len(glucose_session.sync.records) == len(glucose.records)


async def test_live_readings_arrive_on_the_accelerated_clock(simulation: Simulation) -> None:
    meter = simulation.patients[0].glucose_meters()[0]
    before = len(meter.records)
    measured = asyncio.Event()
    meter.add_listener(lambda event: measured.set() if event == "measurement" else None)
    simulation.start()
    await asyncio.wait_for(measured.wait(), WAIT_S)
    assert len(meter.records) == before + 1
    assert "omron-like" in simulation.describe() and "records=" in simulation.describe()


def test_simulate_command_prints_what_each_meter_holds(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--patients", "2", "--story", "bp-rising", "--history-days", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "patient vp-0001  story=bp-rising" in out and "patient vp-0002" in out
    assert "and-like" in out and "accu-chek-like" in out and "PIN 123456" in out
    assert "mmHg pulse" in out and "mg/dL" in out


def test_simulate_command_refuses_an_unknown_story(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--story", "no-such-story"]) == 2
    assert "no story named" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_gateway_in_another_process_reaches_the_simulated_meters() -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vitalgate.cli",
        "simulate",
        "--patients",
        "1",
        "--story",
        "cuff-errors",
        "--history-days",
        "4",
        "--expose",
        f"tcp-server:127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        addresses: list[str] = []
        async with asyncio.timeout(WAIT_S):
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, "simulator exited early"
                if "silvercrest-like" in line:
                    addresses.append(line.split()[1])
                    break
        radio = await VirtualRadio.remote(f"tcp-client:127.0.0.1:{port}")
        try:
            device = await BleakScanner.find_device_by_address(
                addresses[0], timeout=WAIT_S, backend=radio.scanner_backend
            )
            assert device is not None
            lost = asyncio.Event()
            async with BleakClient(
                device, lambda _c: lost.set(), backend=radio.client_backend, pair=True, timeout=WAIT_S
            ) as client:
                session = await run_blood_pressure_session(client, gateway_timezone=dt.UTC, disconnected=lost)
            assert len(session.collection.measurements) >= 8
        finally:
            await radio.close()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), WAIT_S)


async def test_a_meter_runs_on_a_controller_behind_a_transport() -> None:
    clock = SimulationClock(start=dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC))
    # The --hardware path (usb:0 on a real dongle) with a TCP transport instead of USB: the meter's
    # host stack drives a controller it reaches through a bumble transport, here one served on
    # another link that plays the real air; a gateway on that air finds and reads the meter.
    async with VirtualRadio() as air:
        _transport, port = await air.serve_controller_on_free_port()
        async with VirtualRadio() as simulator_side:
            sim = Simulation(simulator_side, clock, [load_story("cuff-errors")], patients=1, history_days=2)
            await sim.setup(hardware_transport=f"tcp-client:127.0.0.1:{port}")
            on_air = sim.patients[0].meters[0]
            assert on_air.persona.key == "silvercrest-like"
            async with BleakClient(
                on_air.address, backend=air.client_backend, pair=True, timeout=WAIT_S
            ) as client:
                assert await client.read_gatt_char(SERIAL_NUMBER_STRING) == on_air.serial_number.encode()
