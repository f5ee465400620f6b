"""Bearer tokens the API refused, counted for monitoring and logged without flooding the log.

A forged, malformed or expired token is refused before any database access, and nothing about it
goes to the audit log: there is no account to name, and an unauthenticated request must not be able
to write to the clinic database (docs/clinic-database.md, "Audit log"). What an operator still needs
is to see it happen: a stream of forged tokens is an attack, a burst of expired ones a clock or
client problem. So each refusal is counted by reason ("expired" or "invalid"), the counts are served
on /metrics, and a warning is logged for the first refusal of each reason and then at most once a
minute with the number since the last one. Never the token, nor anything from inside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

REASONS: Final = ("expired", "invalid")
LOG_INTERVAL_S: Final = 60.0


class RefusedTokens:
    """Thread-safe counts of refused bearer tokens per reason (api.auth.AuthenticationError.reason)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._totals = dict.fromkeys(REASONS, 0)
        self._unlogged = dict.fromkeys(REASONS, 0)
        self._logged_at: dict[str, float] = {}

    def record(self, reason: str) -> int:
        """Count one refusal. Returns how many refusals of this reason to report in a log line now
        (this one and those not yet logged), or 0 when the last line is less than a minute old."""
        reason = reason if reason in self._totals else "invalid"
        now = self._clock()
        with self._lock:
            self._totals[reason] += 1
            self._unlogged[reason] += 1
            last = self._logged_at.get(reason)
            if last is not None and now - last < LOG_INTERVAL_S:
                return 0
            self._logged_at[reason] = now
            due, self._unlogged[reason] = self._unlogged[reason], 0
            return due

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def prometheus_text(self, prefix: str = "vitalgate_api") -> str:
        """The counts in Prometheus text exposition format (0.0.4), one counter per reason."""
        lines = []
        for reason, total in self.totals().items():
            name = f"{prefix}_{reason}_tokens_refused_total"
            lines += [
                f"# HELP {name} bearer tokens refused as {reason}",
                f"# TYPE {name} counter",
                f"{name} {total}",
            ]
        return "\n".join(lines) + "\n"
