"""The simulation clock: real time, or accelerated time for the demo and tests.

``SimulationClock(speed=3600)`` makes one real second one simulated hour. Meters and virtual
patients read ``now()`` and wait with ``sleep(simulated_seconds)``; nothing else in the simulation
knows the speed. A meter's own wall clock is this clock plus the meter's drift (see
:class:`~device_drivers.virtual.meter.MeterClock`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time


class SimulationClock:
    """UTC time that runs ``speed`` times faster than real time from ``start``."""

    def __init__(self, *, start: dt.datetime | None = None, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        origin = start if start is not None else dt.datetime.now(dt.UTC)
        if origin.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self._origin = origin.astimezone(dt.UTC)
        self._real_origin = time.monotonic()

    def now(self) -> dt.datetime:
        """The simulated time, aware UTC."""
        elapsed_real = time.monotonic() - self._real_origin
        return self._origin + dt.timedelta(seconds=elapsed_real * self.speed)

    def real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds / self.speed

    async def sleep(self, simulated_seconds: float) -> None:
        """Wait ``simulated_seconds`` of simulated time (a simulation pace, not a test wait)."""
        await asyncio.sleep(max(simulated_seconds, 0.0) / self.speed)

    def advance(self, delta: dt.timedelta) -> None:
        """Jump the simulated time forward (tests: "three weeks later")."""
        self._origin += delta
