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


def now_reading(device_time: dt.datetime) -> ClockReading:
    return ClockReading(ClockSource.CURRENT_TIME, device_time, dt.datetime.now(dt.UTC), dt.UTC)


def test_records_between_a_reset_and_a_manual_set_are_untrusted() -> None:
    """A reset to the default date and then the clock set by hand, in one report: only the records
    after the set are on the clock the meter runs now."""
    times = [
        DAY,  # on the clock before the battery change
        DAY + dt.timedelta(hours=12),
        RESET + dt.timedelta(hours=1),  # the clock restarted from its default date
        None,
        RESET + dt.timedelta(hours=9),
        DAY + dt.timedelta(days=2),  # set by hand back to the right time
        DAY + dt.timedelta(days=2, hours=8),
    ]
    clock = now_reading(DAY + dt.timedelta(days=2, hours=10))
    assert stamped_before_clock_reset(times, clock) == [True, True, True, False, True, False, False]
    assert stamped_before_clock_reset(times, None) == [True, True, True, False, True, False, False]


def test_records_between_a_manual_set_and_a_later_reset_are_untrusted() -> None:
    """The other order: the clock set by hand and then reset, in one report: only the records after
    the reset are on the clock the meter runs now (it still shows the default era)."""
    times = [
        RESET + dt.timedelta(hours=1),  # the clock still on its default date
        DAY,  # set by hand
        DAY + dt.timedelta(hours=12),
        RESET + dt.timedelta(hours=2),  # reset again (battery change)
        RESET + dt.timedelta(hours=9),
    ]
    clock = now_reading(RESET + dt.timedelta(hours=10))
    assert stamped_before_clock_reset(times, clock) == [True, True, True, False, False]


def test_a_gap_in_measuring_after_a_reset_is_not_a_manual_set() -> None:
    """After a reset, a week without measuring (the clock still far behind its old stamps) leaves
    the reset clock's records trusted: that clock is the one the meter shows now."""
    times = [
        DAY,
        RESET + dt.timedelta(hours=1),
        RESET + dt.timedelta(days=7),
        RESET + dt.timedelta(days=7, hours=3),
    ]
    clock = now_reading(RESET + dt.timedelta(days=7, hours=5))
    assert stamped_before_clock_reset(times, clock) == [True, False, False, False]
