"""Episodes of the reading rules: what each rule has fired for, and when it counts as back in range.

A trigger opens an episode (or raises it, and adds its evidence); ESC-1 hysteresis ends it only after
`clear_after` consecutive in-range readings (clinical-rules.md §7 ESC-1, [58]). A reading that is
neither a trigger nor in range breaks the in-range streak. The rules themselves are in
alerts/reading_rules/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerts.catalogue import SEVERITY_RANK
from alerts.model import Outcome, OutcomeStatus
from vitals.payload import AlertSeverity

MAX_READING_IDS = 20
_SEVERITY_OF_RANK = {rank: severity for severity, rank in SEVERITY_RANK.items()}


@dataclass(slots=True)
class Episode:
    severity_rank: int
    start: datetime
    end: datetime
    values: dict[str, Any]
    reading_ids: list[str]
    key: str
    in_range_streak: int = 0


@dataclass(slots=True)
class RuleEpisodes:
    """One reading rule's state for one patient: its current episode, if any."""

    rule_id: str
    patient_id: str
    clear_after: int
    episode: Episode | None = None
    seen: bool = False
    changed: bool = False  # since the last `PatientStream.changed_outcomes()`
    ended: list[Outcome] = field(default_factory=list)  # each episode that cleared, as it last fired

    def trigger(
        self, at: datetime, severity: AlertSeverity, values: dict[str, Any], reading_ids: list[str]
    ) -> None:
        self.seen = True
        self.changed = True
        severity_rank = SEVERITY_RANK[severity]
        episode = self.episode
        if episode is None:
            self.episode = Episode(
                severity_rank,
                at,
                at,
                dict(values),
                list(reading_ids)[:MAX_READING_IDS],
                reading_ids[0] if reading_ids else "",
            )
            return
        episode.severity_rank = max(episode.severity_rank, severity_rank)
        episode.end = max(episode.end, at)
        episode.values = dict(values)
        for reading_id in reading_ids:
            if reading_id not in episode.reading_ids and len(episode.reading_ids) < MAX_READING_IDS:
                episode.reading_ids.append(reading_id)
        episode.in_range_streak = 0

    def in_range(self) -> None:
        if not self.seen:
            self.seen = self.changed = True
        if self.episode is not None:
            self.episode.in_range_streak += 1
            if self.episode.in_range_streak >= self.clear_after:
                self.ended.append(self.outcome())
                self.episode = None
                self.changed = True

    def neutral(self) -> None:
        """Neither a trigger nor back in range: the in-range streak is broken."""
        if not self.seen:
            self.seen = self.changed = True
        if self.episode is not None:
            self.episode.in_range_streak = 0

    def expire(self) -> None:
        if self.episode is not None:
            self.changed = True
        self.episode = None

    def outcome(self) -> Outcome:
        episode = self.episode
        if episode is not None:
            return Outcome(
                rule_id=self.rule_id,
                patient_id=self.patient_id,
                status=OutcomeStatus.FIRING,
                severity=_SEVERITY_OF_RANK[episode.severity_rank],
                window_start=episode.start,
                window_end=episode.end,
                values=dict(episode.values),
                reading_ids=tuple(episode.reading_ids),
                episode_key=episode.key,
            )
        return Outcome(
            rule_id=self.rule_id,
            patient_id=self.patient_id,
            status=OutcomeStatus.CLEAR if self.seen else OutcomeStatus.UNKNOWN,
        )
