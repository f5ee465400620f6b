"""The simulation clock: accelerated, and (for the demo) catching up with real time, then real time."""

from __future__ import annotations

import datetime as dt

import pytest

from device_drivers.virtual.clock import SimulationClock


def test_accelerated_clock_runs_speed_times_faster() -> None:
    clock = SimulationClock(start=dt.datetime(2026, 3, 1, tzinfo=dt.UTC), speed=3600)
    assert clock.real_seconds(3600) == pytest.approx(1.0)
    assert not clock.caught_up


def test_catching_up_clock_never_runs_ahead_of_real_time() -> None:
    speed = 1000.0
    clock = SimulationClock(
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=1), speed=speed, catch_up_to_wall_clock=True
    )
    behind_s = (dt.datetime.now(dt.UTC) - clock.now()).total_seconds()
    assert behind_s > 86_000
    # Up to real time the clock runs `speed` times faster; past it, at real time. The wall clock moves
    # on while the simulation catches up, so they meet after behind * speed / (speed - 1) simulated s.
    meet_s = behind_s * speed / (speed - 1)
    assert clock.real_seconds(behind_s / 2) == pytest.approx(behind_s / 2 / speed, rel=0.01)
    assert clock.real_seconds(meet_s + 10) == pytest.approx(meet_s / speed + 10, abs=0.5)
    assert clock.now() <= dt.datetime.now(dt.UTC)


async def test_after_catching_up_it_is_the_wall_clock() -> None:
    clock = SimulationClock(
        start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=100), speed=1001, catch_up_to_wall_clock=True
    )  # catches up after 0.1 real s
    await clock.sleep(100)
    assert clock.caught_up
    assert abs((clock.now() - dt.datetime.now(dt.UTC)).total_seconds()) < 0.5
