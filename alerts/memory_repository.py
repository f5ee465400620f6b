"""Alerts kept in memory, behind the same repository interface as the clinic database's
(alerts.repository): for replay, benches and tests of the pure lifecycle, and one patient's alerts
read once for a pass of the engine."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime

from alerts.lifecycle import AlertRecord, AlertRepository, EventRecord, InvalidTransition


class InMemoryAlertRepository:
    """For replay, benches and tests of the pure lifecycle. Thread-safe."""

    def __init__(self) -> None:
        self._alerts: dict[str, AlertRecord] = {}
        self._by_rule: dict[tuple[str, str], list[str]] = {}
        self._events: dict[str, list[EventRecord]] = {}
        self._digests: dict[str, set[str]] = {}  # day -> user ids sent that day's digest
        self._lock = threading.Lock()

    def current(self, patient_id: str, rule_id: str) -> AlertRecord | None:
        latest = self.latest(patient_id, rule_id)
        return latest if latest is not None and latest.unresolved else None

    def latest(self, patient_id: str, rule_id: str) -> AlertRecord | None:
        with self._lock:
            ids = self._by_rule.get((patient_id, rule_id))
            return replace(self._alerts[ids[-1]]) if ids else None

    def has_episode(self, patient_id: str, rule_id: str, episode_key: str) -> bool:
        with self._lock:
            ids = self._by_rule.get((patient_id, rule_id), [])
            return any(self._alerts[i].trigger_values.get("episode_key") == episode_key for i in ids)

    def get(self, alert_id: str) -> AlertRecord | None:
        with self._lock:
            rec = self._alerts.get(alert_id)
            return replace(rec) if rec else None

    def save(self, record: AlertRecord, event: EventRecord | None) -> None:
        with self._lock:
            if record.alert_id not in self._alerts:
                key = (record.patient_id, record.rule_id)
                ids = self._by_rule.setdefault(key, [])
                if ids and self._alerts[ids[-1]].unresolved:
                    raise InvalidTransition("an unresolved alert exists for this patient and rule")
                ids.append(record.alert_id)
            self._alerts[record.alert_id] = replace(record, trigger_values=dict(record.trigger_values))
            if event is not None:
                self._events.setdefault(record.alert_id, []).append(event)

    def unresolved(self, clinic_id: str | None = None) -> list[AlertRecord]:
        with self._lock:
            return [
                replace(a)
                for a in self._alerts.values()
                if a.unresolved and (clinic_id is None or a.clinic_id == clinic_id)
            ]

    def needing_signoff(self, clinic_id: str | None = None) -> list[AlertRecord]:
        with self._lock:
            waiting = [
                replace(a)
                for a in self._alerts.values()
                if a.needs_signoff and (clinic_id is None or a.clinic_id == clinic_id)
            ]
        return sorted(waiting, key=lambda a: (a.resolved_at or a.updated_at, a.alert_id))

    def all(self) -> list[AlertRecord]:
        with self._lock:
            return [replace(a) for a in self._alerts.values()]

    def events(self, alert_id: str) -> list[EventRecord]:
        with self._lock:
            return list(self._events.get(alert_id, []))

    def digests_sent(self, day: str) -> set[str]:
        with self._lock:
            return set(self._digests.get(day, ()))

    def record_digest_sent(self, day: str, user_id: str, at: datetime) -> bool:
        with self._lock:
            sent = self._digests.setdefault(day, set())
            if user_id in sent:
                return False
            sent.add(user_id)
            return True

    def forget_digests_before(self, day: str) -> int:
        with self._lock:
            old = [d for d in self._digests if d < day]
            return sum(len(self._digests.pop(d)) for d in old)


class PatientAlerts:
    """One patient's alerts for one lifecycle pass, read in one query when the pass starts (under the
    patient's lock, so nothing else changes them meanwhile): `current` and `latest` answer from it,
    saves go to the repository and into it. Anything else is the repository's."""

    def __init__(self, repo: AlertRepository, patient_id: str) -> None:
        self.repo = repo
        self.patient_id = patient_id
        load = getattr(repo, "latest_by_rule", None)
        self._latest: dict[str, AlertRecord] | None = load(patient_id) if load is not None else None

    def __getattr__(self, name: str) -> object:
        return getattr(self.repo, name)

    def current(self, patient_id: str, rule_id: str) -> AlertRecord | None:
        latest = self.latest(patient_id, rule_id)
        return latest if latest is not None and latest.unresolved else None

    def latest(self, patient_id: str, rule_id: str) -> AlertRecord | None:
        if self._latest is None or patient_id != self.patient_id:
            return self.repo.latest(patient_id, rule_id)
        found = self._latest.get(rule_id)
        return None if found is None else replace(found, trigger_values=dict(found.trigger_values))

    def save(self, record: AlertRecord, event: EventRecord | None) -> None:
        self.repo.save(record, event)
        if self._latest is not None and record.patient_id == self.patient_id:
            self._latest[record.rule_id] = replace(record, trigger_values=dict(record.trigger_values))
