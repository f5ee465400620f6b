"""Detecting a meter clock reset (battery change) from the records' own time stamps and order."""

from __future__ import annotations

import datetime as dt

from device_drivers.procedures.clock import ClockReading, ClockSource, stamped_before_clock_reset

DAY = dt.datetime(2026, 3, 1, 8, 0)
RESET = dt.datetime(2000, 1, 1, 0, 0)


def test_records_before_the_last_backward_jump_are_on_an_earlier_clock() -> None:
    """Without a clock reading, a jump back of years between two numbered records splits them."""
    times = [
        DAY,
        DAY + dt.timedelta(hours=12),
        None,
        RESET + dt.timedelta(hours=1),
        RESET + dt.timedelta(hours=9),
    ]
    assert stamped_before_clock_reset(times, None) == [True, True, False, False, False]


def test_records_ahead_of_the_meter_clock_were_stamped_before_it_was_reset() -> None:
    """A reset after the newest record shows as records stamped after the time the meter shows now."""
    clock = ClockReading(
        ClockSource.CURRENT_TIME, RESET + dt.timedelta(hours=2), dt.datetime.now(dt.UTC), dt.UTC
    )
    assert stamped_before_clock_reset([DAY, DAY + dt.timedelta(hours=3)], clock) == [True, True]


def test_ordinary_corrections_are_not_a_reset() -> None:
    """Drift and daylight-saving corrections (an hour back between two readings) flag nothing."""
    clock = ClockReading(
        ClockSource.CURRENT_TIME, DAY + dt.timedelta(hours=5), dt.datetime.now(dt.UTC), dt.UTC
    )
    times = [DAY, DAY + dt.timedelta(minutes=30), DAY - dt.timedelta(minutes=20), DAY + dt.timedelta(hours=6)]
    assert stamped_before_clock_reset(times, clock) == [False, False, False, False]
