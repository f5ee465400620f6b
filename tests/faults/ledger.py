"""The ledger every fault scenario ends with: counts, not distinct rows.

reliability.md §(a): every run ends with a full drain plus a total-queue check (Jepsen's
`total-queue`: what goes in must come out; it reports ok, lost, unexpected and recovered). Here one
line per stage, each counted where it happens:

- measured: readings the meters produced (the scenario knows them by id);
- published: PUBLISH deliveries of each reading seen by a subscriber beside ingest (one reading may
  be published more than once: resends after a timeout or a reconnect are at-least-once);
- acked: application-ack deliveries naming each reading (the clinic's word to the gateway), and the
  gateway's own record of what it was told (the outbox's `delivered` table);
- stored: rows per reading in the store, and store WRITES per reading (an append-only write log that
  the test adds beside the store's table, so a reading written twice shows as 2 even where the
  store's key keeps one row);
- alerts and notifications: alerts opened per patient and rule, and notifications of an opening
  (distinct event ids) per patient and rule.

Lost, unexpected and stored-twice must be empty. Every abnormal reading opens exactly one alert of
its rule (`abnormal_rule`), a patient with only normal readings none of that rule, and no rule opens
twice for one patient (other rules may open once: the review of a regimen after a level-2
hypoglycaemia, a data-quality or an operational alert); every alert opened is notified exactly once. `Ledger.check()` raises
with the whole ledger printed, so a failing scenario says which stage lost or doubled what.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def _sample(ids: Iterable[str], n: int = 5) -> str:
    items = sorted(ids)
    shown = ", ".join(i[:12] for i in items[:n])
    return f"{shown}{', ...' if len(items) > n else ''}"


@dataclass
class Ledger:
    """What each stage counted for one scenario's readings."""

    scenario: str
    measured: set[str]
    published: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    gateway_acked: set[str] | None = None
    store_rows: Counter[str] = field(default_factory=Counter)
    store_writes: Counter[str] = field(default_factory=Counter)
    # readings in writes whose answer was lost (the store went away mid-request): applied or not
    store_writes_unanswered: set[str] = field(default_factory=set)
    # patient id -> the abnormal reading of that patient (at most one per patient, by design)
    abnormal: dict[str, str] = field(default_factory=dict)
    abnormal_rule: str = ""
    patients: set[str] = field(default_factory=set)
    # (patient id, rule id) -> alerts opened
    alerts_opened: Counter[tuple[str, str]] = field(default_factory=Counter)
    # (patient id, rule id) -> notifications of an alert's opening (distinct event ids)
    notifications: Counter[tuple[str, str]] = field(default_factory=Counter)
    # event id -> deliveries of that notification (the broker may deliver a QoS 1 message twice)
    notification_deliveries: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    check_alerts: bool = True

    # -- what the checks look at ----------------------------------------------------------------
    @property
    def stored(self) -> set[str]:
        return {rid for rid, n in self.store_rows.items() if n > 0}

    @property
    def lost(self) -> set[str]:
        return self.measured - self.stored

    @property
    def unexpected(self) -> set[str]:
        return self.stored - self.measured

    @property
    def stored_twice(self) -> set[str]:
        rows = {rid for rid, n in self.store_rows.items() if n > 1}
        writes = {rid for rid, n in self.store_writes.items() if n > 1}
        return rows | writes

    @property
    def never_written(self) -> set[str]:
        """Readings in the store that the write log never saw (the log would be blind)."""
        return (
            self.stored
            - {rid for rid, n in self.store_writes.items() if n > 0}
            - self.store_writes_unanswered
        )

    @property
    def unacked(self) -> set[str]:
        """Readings the gateway was never told were stored: its own record where there is a gateway
        process (the subscriber beside it can miss a delivery that a broker crash cut off), else the
        acks the subscriber saw."""
        if self.gateway_acked is not None:
            return self.measured - self.gateway_acked
        return self.measured - {rid for rid, n in self.acked.items() if n > 0}

    @property
    def unpublished(self) -> set[str]:
        return self.measured - {rid for rid, n in self.published.items() if n > 0}

    def alert_mismatches(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(patient, rule) -> (what was expected, alerts opened) where they differ."""
        keys = set(self.alerts_opened) | {(p, self.abnormal_rule) for p in self.abnormal}
        out: dict[tuple[str, str], tuple[str, int]] = {}
        for patient, rule in keys:
            opened = self.alerts_opened[(patient, rule)]
            if rule == self.abnormal_rule:
                expected = "1" if patient in self.abnormal else "0"
                ok = opened == int(expected)
            else:
                expected, ok = "0 or 1", opened <= 1
            if not ok:
                out[(patient, rule)] = (expected, opened)
        return out

    def notification_mismatches(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(patient, rule) -> (alerts opened, notifications of an opening) where they differ."""
        keys = set(self.alerts_opened) | set(self.notifications)
        return {
            key: (self.alerts_opened[key], self.notifications[key])
            for key in keys
            if self.alerts_opened[key] != self.notifications[key]
        }

    # -- report ----------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        found = []
        for name, ids in (
            ("lost", self.lost),
            ("unexpected", self.unexpected),
            ("stored twice", self.stored_twice),
            ("stored without a write seen", self.never_written),
            ("never acknowledged to the gateway", self.unacked),
        ):
            if ids:
                found.append(f"{name}: {len(ids)} ({_sample(ids)})")
        if self.check_alerts:
            for name, bad in (
                ("alerts per patient and rule (expected, opened)", self.alert_mismatches()),
                ("notifications per patient and rule (opened, notified)", self.notification_mismatches()),
            ):
                if bad:
                    shown = ", ".join(f"{p} {r}: {v}" for (p, r), v in sorted(bad.items())[:5])
                    found.append(f"{name}: {shown}")
        return found

    def table(self) -> str:
        def total(counter: Counter[Any]) -> int:
            return sum(counter.values())

        resent = sum(n - 1 for n in self.published.values() if n > 1)
        rows = [
            ("measured on the meters", len(self.measured), ""),
            (
                "published (deliveries)",
                total(self.published),
                f"{len(self.published)} distinct, {resent} resent",
            ),
            (
                "acknowledged to the gateway",
                len(self.measured - self.unacked),
                f"{total(self.acked)} ack entries",
            ),
            ("present in the store", len(self.stored & self.measured), f"{total(self.store_rows)} rows"),
            ("store writes", total(self.store_writes), f"{len(self.store_writes_unanswered)} unanswered"),
            ("lost", len(self.lost), ""),
            ("unexpected", len(self.unexpected), ""),
            ("stored twice", len(self.stored_twice), ""),
        ]
        if self.check_alerts:
            rows += [
                ("abnormal readings", len(self.abnormal), f"of {len(self.patients)} patients"),
                (
                    f"alerts opened ({self.abnormal_rule})",
                    sum(n for (_p, r), n in self.alerts_opened.items() if r == self.abnormal_rule),
                    f"{total(self.alerts_opened)} of any rule",
                ),
                (
                    "notifications of an opening",
                    total(self.notifications),
                    f"{total(self.notification_deliveries)} deliveries",
                ),
            ]
        width = max(len(r[0]) for r in rows)
        lines = [f"ledger: {self.scenario}"]
        lines += [f"  {name:<{width}}  {value:>8}  {extra}".rstrip() for name, value, extra in rows]
        lines += [f"  note: {note}" for note in self.notes]
        if self.unpublished - self.lost:
            # The subscriber beside ingest counts deliveries it saw; a broker crash can cut one off.
            lines.append(
                f"  note: the subscriber saw no delivery of {len(self.unpublished - self.lost)} stored readings"
            )
        problems = self.problems()
        lines += [f"  PROBLEM {p}" for p in problems] if problems else ["  balanced: lost 0, stored twice 0"]
        return "\n".join(lines)

    def check(self) -> None:
        """Print the ledger; raise AssertionError with it when anything does not balance."""
        text = self.table()
        print("\n" + text)
        if self.problems():
            raise AssertionError(text)
