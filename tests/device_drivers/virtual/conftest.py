"""Fixtures for the virtual meters: a simulation clock and a radio (link + gateway central)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from device_drivers.virtual.clock import SimulationClock
from device_drivers.virtual.radio import VirtualRadio

START = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> SimulationClock:
    return SimulationClock(start=START, speed=1.0)


@pytest.fixture
async def radio() -> AsyncIterator[VirtualRadio]:
    async with VirtualRadio() as started:
        yield started
