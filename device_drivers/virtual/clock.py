"""The simulation clock: real time, or accelerated time for the demo and tests.

``SimulationClock(speed=3600)`` makes one real second one simulated hour. Meters and virtual
patients read ``now()`` and wait with ``sleep(simulated_seconds)``; nothing else in the simulation
knows the speed. A meter's own wall clock is this clock plus the meter's drift (see
:class:`~device_drivers.virtual.meter_services.MeterClock`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time


class SimulationClock:
    """UTC time that runs ``speed`` times faster than real time from ``start``."""

    def __init__(
        self, *, start: dt.datetime | None = None, speed: float = 1.0, catch_up_to_wall_clock: bool = False
    ) -> None:
        """``catch_up_to_wall_clock``: with a ``start`` in the past, run at ``speed`` until the simulated
        time reaches the real time, then at real time (the demo: past days replay fast, and readings
        are never stamped in the future)."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        origin = start if start is not None else dt.datetime.now(dt.UTC)
        if origin.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self._origin = origin.astimezone(dt.UTC)
        self._real_origin = time.monotonic()
        # Real seconds after which the clock runs at real time; None: always at `speed`.
        self._fast_real_s: float | None = None
        if catch_up_to_wall_clock and speed > 1:
            lag_s = (dt.datetime.now(dt.UTC) - self._origin).total_seconds()
            self._fast_real_s = max(lag_s, 0.0) / (speed - 1)

    def _elapsed_real(self) -> float:
        return time.monotonic() - self._real_origin

    def now(self) -> dt.datetime:
        """The simulated time, aware UTC."""
        elapsed_real = self._elapsed_real()
        fast = self._fast_real_s
        if fast is None or elapsed_real <= fast:
            return self._origin + dt.timedelta(seconds=elapsed_real * self.speed)
        return self._origin + dt.timedelta(seconds=fast * self.speed + (elapsed_real - fast))

    @property
    def caught_up(self) -> bool:
        """True once a catching-up clock runs at real time."""
        return self._fast_real_s is not None and self._elapsed_real() > self._fast_real_s

    def real_seconds(self, simulated_seconds: float) -> float:
        """Real seconds that ``simulated_seconds`` take from now on."""
        if self._fast_real_s is None:
            return simulated_seconds / self.speed
        fast_left_sim = max(self._fast_real_s - self._elapsed_real(), 0.0) * self.speed
        fast_part = min(simulated_seconds, fast_left_sim)
        return fast_part / self.speed + (simulated_seconds - fast_part)

    async def sleep(self, simulated_seconds: float) -> None:
        """Wait ``simulated_seconds`` of simulated time (a simulation pace, not a test wait)."""
        await asyncio.sleep(self.real_seconds(max(simulated_seconds, 0.0)))

    def advance(self, delta: dt.timedelta) -> None:
        """Jump the simulated time forward (tests: "three weeks later")."""
        self._origin += delta
