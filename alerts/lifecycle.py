"""Alert lifecycle (clinical-rules.md §7 ESC-1, ESC-2; §3.3 Nightscout ack/snooze model [58][59e]).

- At most one unresolved alert per (patient, rule). A severity increase re-notifies (and breaks a
  snooze); the same or a lower severity updates the evidence silently.
- Auto-resolve when the rule reports CLEAR (for reading rules: 2 consecutive in-range readings).
- Acknowledge, snooze (one alert only: snoozing a "high" rule never hides a "low" one, [59e]),
  resolve with a note. A manual resolve latches the rule: it does not re-open for the same episode
  until the condition has cleared once (so a redelivered reading cannot re-open it), unless the
  severity rises above the resolved alert's.
- Escalation: an urgent alert unacknowledged for 30 min is re-notified and the next member of the
  care team is added, every 30 min (ESC-2, [58] DEFAULT routing).
- Nothing urgent disappears unseen: an urgent alert that resolves without a clinician having seen it
  at its urgent level (auto-resolved when the condition cleared, superseded by another rule, with no
  acknowledgement since it became urgent) is marked `needs_signoff` and stays on the sign-off list
  until a clinician signs it off (event "signed_off": who, when, note). Nightscout auto-acks a
  cleared alarm ([58], clinical-rules.md §5); a clinic's urgent alert also needs a person to have
  looked, because an urgent episode that cleared by itself (a level-2 hypo) still calls for a review
  of the regimen (GLU-HYPO-REC, [30]). A clinician's own resolve counts as seen.
Every change is an event with actor and time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from alerts.catalogue import INBOX_ONLY, RULES, SUPERSEDES, rank
from alerts.model import Outcome, OutcomeStatus
from alerts.reading_rules import READING_RULE_IDS
from vitals.payload import AlertEvent, AlertSeverity, AlertState

SYSTEM_ACTOR = "system"
ESCALATION_AFTER = timedelta(minutes=30)  # ESC-2 ([58] 30-min default)
MAX_SNOOZE = timedelta(hours=24)
NOTE_LENGTH = 1000  # storage.clinic.models.RESOLUTION_NOTE_LENGTH
CLEAR_EVALUATIONS = 2  # ESC-1: back in range on 2 consecutive evaluations before auto-resolve


class AlertError(Exception):
    """Base of lifecycle errors."""


class AlertNotFound(AlertError):
    pass


class InvalidTransition(AlertError):
    pass


@dataclass(slots=True)
class AlertRecord:
    alert_id: str
    clinic_id: str
    patient_id: str
    rule_id: str
    severity: AlertSeverity
    state: AlertState
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    snoozed_until: datetime | None = None
    escalation_level: int = 0
    window_start: datetime | None = None
    window_end: datetime | None = None
    # values, reading_ids, citation, episode_key, latched, notified_at, urgent_since: numbers and ids
    # only.
    trigger_values: dict[str, Any] = field(default_factory=dict)
    resolved_by: str | None = None  # the clinician; None when the engine resolved it
    resolution_note: str | None = None
    needs_signoff: bool = False
    signed_off_at: datetime | None = None
    signed_off_by: str | None = None

    @property
    def unresolved(self) -> bool:
        return self.state is not AlertState.RESOLVED

    def seen_while_urgent(self) -> bool:
        """Whether a clinician acknowledged this alert since it became urgent."""
        since = self.trigger_values.get("urgent_since")
        urgent_since = datetime.fromisoformat(str(since)) if since else self.opened_at
        return self.acknowledged_at is not None and self.acknowledged_at >= urgent_since


@dataclass(frozen=True, slots=True)
class EventRecord:
    alert_id: str
    at: datetime
    actor: str
    event: str
    from_state: AlertState | None
    to_state: AlertState | None
    severity: AlertSeverity | None
    details: dict[str, Any] = field(default_factory=dict)


class AlertRepository(Protocol):
    """Where alerts live, and which daily digests of them went out. Sync (call through
    asyncio.to_thread from async code)."""

    def current(self, patient_id: str, rule_id: str) -> AlertRecord | None: ...
    def latest(self, patient_id: str, rule_id: str) -> AlertRecord | None: ...
    def has_episode(self, patient_id: str, rule_id: str, episode_key: str) -> bool:
        """Whether an alert of this rule was ever opened for this episode of the patient's."""
        ...

    def get(self, alert_id: str) -> AlertRecord | None: ...
    def save(self, record: AlertRecord, event: EventRecord | None) -> None: ...
    def unresolved(self, clinic_id: str | None = None) -> list[AlertRecord]: ...
    def needing_signoff(self, clinic_id: str | None = None) -> list[AlertRecord]:
        """Resolved urgent alerts no clinician has seen, oldest resolution first, until signed off."""
        ...

    def events(self, alert_id: str) -> list[EventRecord]: ...

    def digests_sent(self, day: str) -> set[str]:
        """The user ids of the doctors already sent the digest for `day` (YYYY-MM-DD)."""
        ...

    def record_digest_sent(self, day: str, user_id: str, at: datetime) -> bool:
        """Record that `user_id` was sent the digest for `day`; False if that was already recorded
        (a repeat is not an error: another process may have recorded it first)."""
        ...

    def forget_digests_before(self, day: str) -> int:
        """Drop the records of digests for days before `day` (YYYY-MM-DD); how many were dropped."""
        ...


@dataclass(frozen=True, slots=True)
class Change:
    """One lifecycle event, with whether it must be pushed to people (not only to live inboxes)."""

    record: AlertRecord
    event: EventRecord
    notify: bool  # push to the care team's channels (urgent re-notification, new alert, ...)

    def payload(self) -> AlertEvent:
        return AlertEvent(
            clinic_id=self.record.clinic_id,
            alert_id=self.record.alert_id,
            patient_id=self.record.patient_id,
            rule_id=self.record.rule_id,
            severity=self.record.severity,
            state=self.record.state,
            event=self.event.event,
            at=self.event.at,
            actor=self.event.actor,
        )

    @property
    def event_id(self) -> str:
        """Deterministic id of this event (for idempotent delivery)."""
        rec, ev = self.record, self.event
        text = f"{rec.alert_id}|{ev.event}|{ev.at.isoformat()}|{rec.escalation_level}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def alert_id_for(patient_id: str, rule_id: str, episode: str, opened_at: datetime) -> str:
    """Deterministic alert id: the same episode opened twice (a retried evaluation) gets one id."""
    text = f"{patient_id}|{rule_id}|{episode}|{opened_at.isoformat()}"
    return "al_" + hashlib.sha256(text.encode()).hexdigest()[:29]


class Lifecycle:
    def __init__(self, repository: AlertRepository, escalation_after: timedelta = ESCALATION_AFTER) -> None:
        self.repo = repository
        self.escalation_after = escalation_after

    # --- rule outcomes -----------------------------------------------------------------------------
    def apply(self, clinic_id: str, outcomes: Sequence[Outcome], now: datetime) -> list[Change]:
        changes: list[Change] = []
        firing = [o for o in outcomes if o.status is OutcomeStatus.FIRING]
        superseded: set[str] = set()
        for winner in firing:
            for loser in SUPERSEDES.get(winner.rule_id, ()):
                superseded.add(loser)
                cur = self.repo.current(winner.patient_id, loser)
                if cur is not None:
                    details = {"by_rule": winner.rule_id}
                    changes.append(self._resolve(cur, now, SYSTEM_ACTOR, "superseded", details, latch=True))
        for outcome in outcomes:
            if outcome.status is OutcomeStatus.ENDED:
                changes.extend(self._ended(clinic_id, outcome, now))
        for outcome in outcomes:
            if outcome.status in (OutcomeStatus.UNKNOWN, OutcomeStatus.ENDED):
                continue
            if outcome.rule_id in superseded and outcome.status is OutcomeStatus.FIRING:
                continue
            if outcome.status is OutcomeStatus.FIRING:
                change = self._fire(clinic_id, outcome, now)
            else:
                change = self._clear(outcome, now)
            if change is not None:
                changes.append(change)
        return changes

    def _ended(self, clinic_id: str, o: Outcome, now: datetime) -> list[Change]:
        """An episode no evaluation saw firing. Where another episode of the rule has an unresolved
        alert, this one's evidence (and severity, if higher, which notifies) goes on it; otherwise
        it gets its own alert, opened and resolved at once: the care team is told as of an episode
        that is over, and an urgent one stays on the sign-off list until a clinician has seen it."""
        assert o.severity is not None
        if o.episode_key and self.repo.has_episode(o.patient_id, o.rule_id, o.episode_key):
            return []
        fired = replace(o, status=OutcomeStatus.FIRING)
        if self.repo.current(o.patient_id, o.rule_id) is not None:
            change = self._fire(clinic_id, fired, now)
            return [change] if change is not None else []
        opened = self._fire(clinic_id, fired, now)
        if opened is None:  # latched by a person's resolve of an episode at this severity or above
            return []
        details = {"episode_ended_before_evaluation": True}
        record = replace(opened.record, trigger_values=dict(opened.record.trigger_values))
        return [opened, self._resolve(record, now, SYSTEM_ACTOR, "auto_resolved", details, latch=False)]

    def _fire(self, clinic_id: str, o: Outcome, now: datetime) -> Change | None:
        assert o.severity is not None
        cur = self.repo.current(o.patient_id, o.rule_id)
        evidence = {"values": o.values, "reading_ids": list(o.reading_ids)}
        if cur is not None and cur.trigger_values.get("clear_streak"):
            cur.trigger_values["clear_streak"] = 0
            self.repo.save(cur, None)
        if cur is None:
            latest = self.repo.latest(o.patient_id, o.rule_id)
            if (
                latest is not None
                and latest.trigger_values.get("latched")
                and rank(o.severity) <= rank(latest.severity)
            ):
                return None  # resolved by a person for this episode; re-arms when it clears
            if (
                latest is not None
                and o.episode_key
                and latest.trigger_values.get("episode_key") == o.episode_key
                and rank(o.severity) <= rank(latest.severity)
            ):
                return None  # this episode's alert has cleared: one alert per episode of a reading rule
            episode = o.episode_key or (o.window_start.isoformat() if o.window_start else now.isoformat())
            rec = AlertRecord(
                alert_id=alert_id_for(o.patient_id, o.rule_id, episode, now),
                clinic_id=clinic_id,
                patient_id=o.patient_id,
                rule_id=o.rule_id,
                severity=o.severity,
                state=AlertState.OPEN,
                opened_at=now,
                updated_at=now,
                window_start=o.window_start,
                window_end=o.window_end,
                trigger_values=evidence
                | {
                    "citation": RULES[o.rule_id].citation,
                    "episode_key": episode,
                    "notified_at": now.isoformat(),
                    "max_severity": o.severity.value,
                },
            )
            if o.severity is AlertSeverity.URGENT:
                rec.trigger_values["urgent_since"] = now.isoformat()
            ev = EventRecord(
                rec.alert_id, now, SYSTEM_ACTOR, "opened", None, AlertState.OPEN, o.severity, evidence
            )
            self.repo.save(rec, ev)
            return Change(rec, ev, notify=o.rule_id not in INBOX_ONLY)
        if rank(o.severity) > rank(cur.severity):
            before = cur.state
            cur.severity = o.severity
            cur.state = AlertState.OPEN
            cur.snoozed_until = None
            cur.updated_at = now
            cur.window_end = o.window_end or cur.window_end
            cur.trigger_values.update(evidence, notified_at=now.isoformat(), max_severity=o.severity.value)
            if o.severity is AlertSeverity.URGENT:
                cur.trigger_values["urgent_since"] = now.isoformat()
            ev = EventRecord(
                cur.alert_id, now, SYSTEM_ACTOR, "severity_raised", before, cur.state, o.severity, evidence
            )
            self.repo.save(cur, ev)
            return Change(cur, ev, notify=True)
        if list(o.reading_ids) != cur.trigger_values.get("reading_ids") or (
            o.values != cur.trigger_values.get("values") and not o.reading_ids
        ):
            if o.reading_ids:  # new evidence from readings: record it (no push)
                cur.trigger_values.update(evidence)
                cur.window_end = o.window_end or cur.window_end
                cur.updated_at = now
                ev = EventRecord(
                    cur.alert_id,
                    now,
                    SYSTEM_ACTOR,
                    "evidence_added",
                    cur.state,
                    cur.state,
                    cur.severity,
                    {"reading_ids": list(o.reading_ids)},
                )
                self.repo.save(cur, ev)
                return Change(cur, ev, notify=False)
            cur.trigger_values.update(evidence)  # window values moved: keep the latest, no event
            cur.window_end = o.window_end or cur.window_end
            self.repo.save(cur, None)
        return None

    def _clear(self, o: Outcome, now: datetime) -> Change | None:
        cur = self.repo.current(o.patient_id, o.rule_id)
        if cur is not None:
            if o.rule_id not in READING_RULE_IDS:
                # ESC-1 hysteresis for window rules: CLEAR on 2 consecutive evaluations ([58]); the
                # reading rules count their 2 in-range readings themselves (alerts.reading_rules).
                streak = int(cur.trigger_values.get("clear_streak", 0)) + 1
                if streak < CLEAR_EVALUATIONS:
                    cur.trigger_values["clear_streak"] = streak
                    self.repo.save(cur, None)
                    return None
            return self._resolve(cur, now, SYSTEM_ACTOR, "auto_resolved", {}, latch=False)
        latest = self.repo.latest(o.patient_id, o.rule_id)
        if latest is not None and latest.trigger_values.get("latched"):
            latest.trigger_values["latched"] = False  # condition cleared: the rule re-arms
            self.repo.save(latest, None)
        return None

    def _resolve(
        self, rec: AlertRecord, now: datetime, actor: str, event: str, details: dict[str, Any], latch: bool
    ) -> Change:
        before = rec.state
        by_person = actor != SYSTEM_ACTOR
        rec.state = AlertState.RESOLVED
        rec.resolved_at = now
        rec.updated_at = now
        rec.snoozed_until = None
        rec.resolved_by = actor if by_person else None
        rec.resolution_note = details.get("note") if by_person else None
        rec.trigger_values["latched"] = latch
        if rec.severity is AlertSeverity.URGENT and not by_person and not rec.seen_while_urgent():
            rec.needs_signoff = True
            details = details | {"needs_signoff": True}
        ev = EventRecord(rec.alert_id, now, actor, event, before, rec.state, rec.severity, details)
        self.repo.save(rec, ev)
        return Change(rec, ev, notify=False)

    # --- people ------------------------------------------------------------------------------------
    def _get(self, alert_id: str) -> AlertRecord:
        rec = self.repo.get(alert_id)
        if rec is None:
            raise AlertNotFound(alert_id)
        return rec

    def acknowledge(self, alert_id: str, actor: str, now: datetime) -> Change | None:
        """Acknowledge from any channel; one state for all. Acknowledging twice changes nothing."""
        rec = self._get(alert_id)
        if rec.state is AlertState.RESOLVED:
            raise InvalidTransition("alert is resolved")
        if rec.state is AlertState.ACKNOWLEDGED:
            return None
        before = rec.state
        rec.state = AlertState.ACKNOWLEDGED
        rec.acknowledged_at = now
        rec.acknowledged_by = actor
        rec.snoozed_until = None
        rec.updated_at = now
        ev = EventRecord(alert_id, now, actor, "acknowledged", before, rec.state, rec.severity)
        self.repo.save(rec, ev)
        return Change(rec, ev, notify=False)

    def snooze(self, alert_id: str, actor: str, until: datetime, now: datetime) -> Change:
        """Snooze this one alert. Other rules, including the other side's, keep alerting ([59e])."""
        rec = self._get(alert_id)
        if rec.state is AlertState.RESOLVED:
            raise InvalidTransition("alert is resolved")
        if until <= now or until - now > MAX_SNOOZE:
            raise InvalidTransition("snooze must end within 24 h from now")
        before = rec.state
        rec.state = AlertState.SNOOZED
        rec.snoozed_until = until
        rec.updated_at = now
        ev = EventRecord(
            alert_id, now, actor, "snoozed", before, rec.state, rec.severity, {"until": until.isoformat()}
        )
        self.repo.save(rec, ev)
        return Change(rec, ev, notify=False)

    def resolve(self, alert_id: str, actor: str, note: str, now: datetime) -> Change:
        rec = self._get(alert_id)
        if rec.state is AlertState.RESOLVED:
            raise InvalidTransition("alert is already resolved")
        if not note.strip():
            raise InvalidTransition("a resolution note is required")
        return self._resolve(rec, now, actor, "resolved", {"note": note.strip()[:NOTE_LENGTH]}, latch=True)

    def sign_off(self, alert_id: str, actor: str, note: str | None, now: datetime) -> Change:
        """A clinician has seen an urgent alert that resolved unseen: it leaves the sign-off list.
        Signing off an alert that does not need it (never did, or already signed off) is refused."""
        rec = self._get(alert_id)
        if not rec.needs_signoff:
            raise InvalidTransition("alert does not need sign-off")
        text = (note or "").strip()[:NOTE_LENGTH]
        rec.needs_signoff = False
        rec.signed_off_at = now
        rec.signed_off_by = actor
        rec.updated_at = now
        details = {"note": text} if text else {}
        ev = EventRecord(alert_id, now, actor, "signed_off", rec.state, rec.state, rec.severity, details)
        self.repo.save(rec, ev)
        return Change(rec, ev, notify=False)

    # --- time --------------------------------------------------------------------------------------
    def tick(self, now: datetime, clinic_id: str | None = None) -> list[Change]:
        """Wake expired snoozes and escalate unacknowledged urgent alerts."""
        changes: list[Change] = []
        for rec in self.repo.unresolved(clinic_id):
            if rec.state is AlertState.SNOOZED and rec.snoozed_until is not None and rec.snoozed_until <= now:
                rec.state = AlertState.OPEN
                rec.snoozed_until = None
                rec.updated_at = now
                rec.trigger_values["notified_at"] = now.isoformat()
                ev = EventRecord(
                    rec.alert_id,
                    now,
                    SYSTEM_ACTOR,
                    "snooze_expired",
                    AlertState.SNOOZED,
                    rec.state,
                    rec.severity,
                )
                self.repo.save(rec, ev)
                changes.append(Change(rec, ev, notify=True))
                continue
            if rec.severity is not AlertSeverity.URGENT or rec.state not in (
                AlertState.OPEN,
                AlertState.ESCALATED,
            ):
                continue
            notified = datetime.fromisoformat(
                str(rec.trigger_values.get("notified_at", rec.opened_at.isoformat()))
            )
            if now - notified < self.escalation_after:
                continue
            before = rec.state
            rec.state = AlertState.ESCALATED
            rec.escalation_level += 1
            rec.updated_at = now
            rec.trigger_values["notified_at"] = now.isoformat()
            ev = EventRecord(
                rec.alert_id,
                now,
                SYSTEM_ACTOR,
                "escalated",
                before,
                rec.state,
                rec.severity,
                {"escalation_level": rec.escalation_level},
            )
            self.repo.save(rec, ev)
            changes.append(Change(rec, ev, notify=True))
        return changes
