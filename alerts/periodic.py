"""The alert engine's periodic passes: readings a crash left unevaluated, and the sweep of the
time-based rules, each run once per interval across the clinic's processes."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Protocol

from alerts.engine import AlertEngine
from storage.clinic.coordination import LocalTurns, Turn

logger = logging.getLogger(__name__)

RECENT_INTERVAL_S = 60.0
STARTUP_LOOKBACK = timedelta(hours=48)
RECENT_MARGIN = timedelta(minutes=5)  # commit lag and clock skew between processes


class Turns(Protocol):
    """Who runs a periodic job now: this process, once per interval across the clinic's processes
    (storage.clinic.coordination.DatabaseTurns), or this process alone (LocalTurns). Sync: call
    through a worker thread."""

    def claim(self, job: str, every: timedelta, now: datetime) -> Turn | None: ...
    def finish(self, turn: Turn, at: datetime) -> None: ...


RECENT_JOB = "alerts.recent"
SWEEP_JOB = "alerts.sweep"


async def run_sweeps(
    engine: AlertEngine,
    interval_s: float,
    stop: asyncio.Event,
    *,
    recent_interval_s: float = RECENT_INTERVAL_S,
    startup_lookback: timedelta = STARTUP_LOOKBACK,
    turns: Turns | None = None,
) -> None:
    """Until `stop` is set, wake every `recent_interval_s` and run what is due, each at most once per
    interval across the processes sharing `turns` (default: this process alone):

    - RECENT_JOB, every `recent_interval_s`: evaluate patients with readings since the previous pass
      (`AlertEngine.evaluate_recent`), whichever process ran it; the first pass on a new clinic looks
      back `startup_lookback`. A safety net: every ingest process hands its batches to an engine, so
      this finds only readings a crash left between commit and evaluation;
    - SWEEP_JOB, every `interval_s`: the full sweep of time-based rules.

    A failing pass is logged with its error and retried at the next interval; it never ends the loop."""
    turns = turns or LocalTurns()
    recent_every = timedelta(seconds=recent_interval_s)
    sweep_every = timedelta(seconds=interval_s)
    while not stop.is_set():
        started = engine.clock()
        try:
            turn = await asyncio.to_thread(turns.claim, RECENT_JOB, recent_every, started)
            if turn is not None:
                since = turn.previous_started_at or started - startup_lookback
                evaluated = await engine.evaluate_recent(since - RECENT_MARGIN, started)
                await asyncio.to_thread(turns.finish, turn, engine.clock())
                if evaluated:
                    logger.info("recent readings evaluated", extra={"patients": evaluated})
        except Exception:
            logger.exception("evaluation of recent readings failed")
        try:
            turn = await asyncio.to_thread(turns.claim, SWEEP_JOB, sweep_every, engine.clock())
            if turn is not None:
                report = await engine.sweep()
                await asyncio.to_thread(turns.finish, turn, engine.clock())
                logger.info(
                    "alert sweep",
                    extra={
                        "patients": report.patients,
                        "changes": report.changes,
                        "failures": report.failures,
                        "seconds": round(report.seconds, 3),
                    },
                )
        except Exception:
            logger.exception("alert sweep failed")
        try:
            await asyncio.wait_for(stop.wait(), recent_interval_s)
        except TimeoutError:
            continue
