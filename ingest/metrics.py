"""Ingest's monitoring counters: `IngestMetrics`, updated by the consumer's threads, and
`IngestCounters`, a snapshot of them with the Prometheus exposition (docs/ingest.md, Metrics).

No personal data: counts and gauges only; ids go to logs, never here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ingest.pipeline import CycleResult


@dataclass(frozen=True, slots=True)
class IngestCounters:
    """Monitoring counters since start. No personal data; ids only in logs."""

    connected: bool
    connections: int
    messages_received: int
    messages_acked: int
    readings_received: int
    readings_stored: int
    readings_duplicate: int
    readings_rejected: int
    messages_dead_lettered: int
    store_retries: int
    listener_errors: int
    in_flight_messages: int
    held_bytes: int  # payload bytes of the in-flight messages
    held_bytes_peak: int  # the most held at once since start
    messages_deferred: int  # left unacked past max_held_bytes, for the broker to send again
    last_lag_s: float | None
    max_lag_s: float | None
    last_commit_at: datetime | None
    last_error: str | None

    def prometheus_text(self, prefix: str = "vitalgate_ingest") -> str:
        """The counters in Prometheus text exposition format (0.0.4); no labels, no personal data."""
        lines: list[str] = []

        def metric(name: str, kind: str, value: float | None, help_text: str) -> None:
            if value is None:
                return
            lines.append(f"# HELP {prefix}_{name} {help_text}")
            lines.append(f"# TYPE {prefix}_{name} {kind}")
            lines.append(f"{prefix}_{name} {value:g}")

        metric("connected", "gauge", int(self.connected), "1 while connected to the broker")
        metric("connections_total", "counter", self.connections, "successful broker connections")
        metric("messages_received_total", "counter", self.messages_received, "MQTT messages received")
        metric("messages_acked_total", "counter", self.messages_acked, "MQTT messages acked after commit")
        metric(
            "messages_dead_lettered_total", "counter", self.messages_dead_lettered, "payloads dead-lettered"
        )
        metric(
            "messages_deferred_total",
            "counter",
            self.messages_deferred,
            "messages left unacked past max_held_bytes, for the broker to send again",
        )
        metric("held_bytes", "gauge", self.held_bytes, "payload bytes received and not yet acked")
        metric("held_bytes_peak", "gauge", self.held_bytes_peak, "the most payload bytes held at once")
        metric("readings_received_total", "counter", self.readings_received, "readings in committed cycles")
        metric("readings_stored_total", "counter", self.readings_stored, "readings newly stored")
        metric("readings_duplicate_total", "counter", self.readings_duplicate, "readings already stored")
        metric("readings_rejected_total", "counter", self.readings_rejected, "readings rejected for good")
        metric("store_retries_total", "counter", self.store_retries, "cycles retried: store or db down")
        metric("listener_errors_total", "counter", self.listener_errors, "listener calls that raised")
        metric("in_flight_messages", "gauge", self.in_flight_messages, "messages received, not yet acked")
        metric("lag_seconds", "gauge", self.last_lag_s, "commit time minus the batch's sent_at")
        metric("max_lag_seconds", "gauge", self.max_lag_s, "largest lag since start")
        if self.last_commit_at is not None:
            metric("last_commit_timestamp_seconds", "gauge", self.last_commit_at.timestamp(), "last commit")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class HeldNow:
    """What flow control (ingest.flow) holds at one moment, for a snapshot."""

    connected: bool
    in_flight_messages: int
    held_bytes: int
    held_bytes_peak: int


@dataclass(slots=True)
class IngestMetrics:
    """The counters the consumer's threads add to (paho's network thread, the worker), each change
    under one lock so a snapshot is consistent. The gauges of what is held live in flow control
    (ingest.flow) and join them in `snapshot`."""

    connections: int = 0
    messages_received: int = 0
    messages_acked: int = 0
    messages_deferred: int = 0
    messages_dead_lettered: int = 0
    readings_received: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    readings_rejected: int = 0
    store_retries: int = 0
    listener_errors: int = 0
    last_lag_s: float | None = None
    max_lag_s: float | None = None
    last_commit_at: datetime | None = None
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def count_received(self) -> None:
        with self._lock:
            self.messages_received += 1

    def count_deferred(self) -> None:
        with self._lock:
            self.messages_deferred += 1

    def count_acked(self, messages: int) -> None:
        with self._lock:
            self.messages_acked += messages

    def count_store_retry(self) -> None:
        with self._lock:
            self.store_retries += 1

    def count_listener_error(self) -> None:
        with self._lock:
            self.listener_errors += 1

    def record_cycle(self, result: CycleResult) -> None:
        """A cycle committed: its readings, its dead letters, the lag behind its oldest batch."""
        with self._lock:
            self.readings_received += result.readings_received
            self.readings_stored += result.stored
            self.readings_duplicate += result.duplicates
            self.readings_rejected += result.rejected
            self.messages_dead_lettered += result.dead_lettered_messages
            self.last_commit_at = datetime.now(UTC)
            if result.lag_s is not None:
                self.last_lag_s = result.lag_s
                self.max_lag_s = max(self.max_lag_s or 0.0, result.lag_s)

    def record_error(self, error: str) -> bool:
        """Keep `error` as the last one; True when it differs from the one before (worth a log line)."""
        with self._lock:
            changed = error != self.last_error
            self.last_error = error
        return changed

    def snapshot(self, held: HeldNow) -> IngestCounters:
        with self._lock:
            return IngestCounters(
                connected=held.connected,
                connections=self.connections,
                messages_received=self.messages_received,
                messages_acked=self.messages_acked,
                readings_received=self.readings_received,
                readings_stored=self.readings_stored,
                readings_duplicate=self.readings_duplicate,
                readings_rejected=self.readings_rejected,
                messages_dead_lettered=self.messages_dead_lettered,
                store_retries=self.store_retries,
                listener_errors=self.listener_errors,
                in_flight_messages=held.in_flight_messages,
                held_bytes=held.held_bytes,
                held_bytes_peak=held.held_bytes_peak,
                messages_deferred=self.messages_deferred,
                last_lag_s=self.last_lag_s,
                max_lag_s=self.max_lag_s,
                last_commit_at=self.last_commit_at,
                last_error=self.last_error,
            )
