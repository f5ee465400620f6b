"""Alert lifecycle: one open alert per (patient, rule), re-notify on severity increase, auto-resolve,
acknowledge, snooze that never hides the other side, resolve with a note, escalation
(clinical-rules.md §7 ESC-1 / ESC-2, §3.3 [58][59e])."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.lifecycle import ESCALATION_AFTER, InvalidTransition, Lifecycle
from alerts.memory_repository import InMemoryAlertRepository
from alerts.model import Outcome, OutcomeStatus
from tests.alerts.helpers import PATIENT, at
from vitals.payload import AlertSeverity, AlertState

CLINIC = "clinic-a"
NOW = at(0, 8)


def firing(rule: str, severity: AlertSeverity, key: str = "r1", ids: tuple[str, ...] = ("r1",)) -> Outcome:
    return Outcome(
        rule_id=rule,
        patient_id=PATIENT,
        status=OutcomeStatus.FIRING,
        severity=severity,
        window_start=NOW,
        window_end=NOW,
        values={"v": 1},
        reading_ids=ids,
        episode_key=key,
    )


def clear(rule: str) -> Outcome:
    return Outcome(rule_id=rule, patient_id=PATIENT, status=OutcomeStatus.CLEAR)


@pytest.fixture
def life() -> Lifecycle:
    return Lifecycle(InMemoryAlertRepository())


def test_one_open_alert_per_patient_and_rule_and_repeats_do_not_notify(life: Lifecycle) -> None:
    first = life.apply(CLINIC, [firing("BP-CRIT-1", AlertSeverity.WARNING)], NOW)
    assert [c.event.event for c in first] == ["opened"] and first[0].notify
    again = life.apply(CLINIC, [firing("BP-CRIT-1", AlertSeverity.WARNING)], NOW + timedelta(minutes=1))
    assert again == []
    assert len(life.repo.unresolved()) == 1


def test_severity_increase_renotifies_and_decrease_does_not(life: Lifecycle) -> None:
    life.apply(CLINIC, [firing("GLU-HIGH-2", AlertSeverity.WARNING)], NOW)
    up = life.apply(
        CLINIC, [firing("GLU-HIGH-2", AlertSeverity.URGENT, ids=("r1", "r2"))], NOW + timedelta(hours=1)
    )
    assert [(c.event.event, c.notify) for c in up] == [("severity_raised", True)]
    assert up[0].record.severity is AlertSeverity.URGENT
    down = life.apply(
        CLINIC, [firing("GLU-HIGH-2", AlertSeverity.WARNING, ids=("r1", "r2"))], NOW + timedelta(hours=2)
    )
    assert all(not c.notify for c in down)
    assert life.repo.unresolved()[0].severity is AlertSeverity.URGENT


def test_auto_resolve_when_condition_clears(life: Lifecycle) -> None:
    life.apply(CLINIC, [firing("GLU-HYPO-2", AlertSeverity.URGENT)], NOW)
    changes = life.apply(CLINIC, [clear("GLU-HYPO-2")], NOW + timedelta(hours=1))
    assert [c.event.event for c in changes] == ["auto_resolved"]
    assert life.repo.unresolved() == []
    # a recurrence is a new alert (and notifies)
    again = life.apply(
        CLINIC, [firing("GLU-HYPO-2", AlertSeverity.URGENT, key="r9", ids=("r9",))], NOW + timedelta(hours=3)
    )
    assert [(c.event.event, c.notify) for c in again] == [("opened", True)]


def test_window_rule_needs_two_clear_evaluations(life: Lifecycle) -> None:
    # ESC-1 hysteresis applied to window rules: 2 consecutive clear evaluations.
    life.apply(CLINIC, [firing("BP-CTRL-1", AlertSeverity.WARNING)], NOW)
    assert life.apply(CLINIC, [clear("BP-CTRL-1")], NOW + timedelta(days=1)) == []
    life.apply(CLINIC, [firing("BP-CTRL-1", AlertSeverity.WARNING)], NOW + timedelta(days=2))
    assert life.apply(CLINIC, [clear("BP-CTRL-1")], NOW + timedelta(days=3)) == []
    resolved = life.apply(CLINIC, [clear("BP-CTRL-1")], NOW + timedelta(days=4))
    assert [c.event.event for c in resolved] == ["auto_resolved"]


def test_acknowledge_is_one_state_and_idempotent(life: Lifecycle) -> None:
    [opened] = life.apply(CLINIC, [firing("BP-CRIT-2", AlertSeverity.URGENT)], NOW)
    ack = life.acknowledge(opened.record.alert_id, "dr-li", NOW + timedelta(minutes=3))
    assert ack is not None and ack.record.state is AlertState.ACKNOWLEDGED
    assert ack.event.actor == "dr-li" and ack.event.at == NOW + timedelta(minutes=3)
    assert life.acknowledge(opened.record.alert_id, "nurse-wang", NOW + timedelta(minutes=4)) is None
    events = [e.event for e in life.repo.events(opened.record.alert_id)]
    assert events == ["opened", "acknowledged"]
    # an acknowledged urgent alert is not escalated
    assert life.tick(NOW + ESCALATION_AFTER * 3) == []


def test_snoozing_high_never_hides_a_low(life: Lifecycle) -> None:
    # [59e]: separate snooze for high vs low so a high-snooze never hides a low.
    [high] = life.apply(CLINIC, [firing("GLU-HIGH-1", AlertSeverity.WARNING)], NOW)
    life.snooze(high.record.alert_id, "dr-li", NOW + timedelta(hours=2), NOW)
    low = life.apply(
        CLINIC,
        [firing("GLU-HYPO-2", AlertSeverity.URGENT, key="r5", ids=("r5",))],
        NOW + timedelta(minutes=10),
    )
    assert [(c.record.rule_id, c.event.event, c.notify) for c in low] == [("GLU-HYPO-2", "opened", True)]


def test_snooze_expires_and_severity_increase_breaks_it(life: Lifecycle) -> None:
    [opened] = life.apply(CLINIC, [firing("GLU-HIGH-2", AlertSeverity.WARNING)], NOW)
    life.snooze(opened.record.alert_id, "dr-li", NOW + timedelta(minutes=30), NOW)
    assert life.tick(NOW + timedelta(minutes=29)) == []
    woke = life.tick(NOW + timedelta(minutes=30))
    assert [(c.event.event, c.notify) for c in woke] == [("snooze_expired", True)]
    life.snooze(opened.record.alert_id, "dr-li", NOW + timedelta(hours=5), NOW + timedelta(minutes=31))
    raised = life.apply(
        CLINIC, [firing("GLU-HIGH-2", AlertSeverity.URGENT, ids=("r1", "r2"))], NOW + timedelta(minutes=40)
    )
    assert raised[0].record.state is AlertState.OPEN and raised[0].notify


def test_snooze_bounds(life: Lifecycle) -> None:
    [opened] = life.apply(CLINIC, [firing("GLU-HIGH-2", AlertSeverity.WARNING)], NOW)
    with pytest.raises(InvalidTransition):
        life.snooze(opened.record.alert_id, "dr-li", NOW - timedelta(minutes=1), NOW)
    with pytest.raises(InvalidTransition):
        life.snooze(opened.record.alert_id, "dr-li", NOW + timedelta(days=2), NOW)


def test_resolve_with_note_latches_until_condition_clears(life: Lifecycle) -> None:
    [opened] = life.apply(CLINIC, [firing("BP-CTRL-1", AlertSeverity.WARNING)], NOW)
    with pytest.raises(InvalidTransition):
        life.resolve(opened.record.alert_id, "dr-li", "   ", NOW)
    done = life.resolve(opened.record.alert_id, "dr-li", "titrated amlodipine", NOW + timedelta(hours=1))
    assert done.event.details == {"note": "titrated amlodipine"} and done.event.actor == "dr-li"
    # still above goal tomorrow: no new alert for the same episode (a person has dealt with it)
    assert life.apply(CLINIC, [firing("BP-CTRL-1", AlertSeverity.WARNING)], NOW + timedelta(days=1)) == []
    # the condition clears once, then recurs (a new episode): a new alert
    life.apply(CLINIC, [clear("BP-CTRL-1")], NOW + timedelta(days=2))
    recurs = firing("BP-CTRL-1", AlertSeverity.WARNING, key="r9", ids=("r9",))
    again = life.apply(CLINIC, [recurs], NOW + timedelta(days=9))
    assert [c.event.event for c in again] == ["opened"]


def test_an_episode_whose_alert_cleared_does_not_open_a_second_alert(life: Lifecycle) -> None:
    """An evaluation that has not yet seen the readings that ended a hypo opens no second alert for it."""
    [opened] = life.apply(CLINIC, [firing("GLU-HYPO-1", AlertSeverity.WARNING)], NOW)
    [resolved] = life.apply(CLINIC, [clear("GLU-HYPO-1")], NOW + timedelta(minutes=40))
    assert resolved.event.event == "auto_resolved"
    assert (
        life.apply(CLINIC, [firing("GLU-HYPO-1", AlertSeverity.WARNING)], NOW + timedelta(minutes=41)) == []
    )
    # the same episode found worse than its alert said is told again
    raised = life.apply(CLINIC, [firing("GLU-HYPO-1", AlertSeverity.URGENT)], NOW + timedelta(minutes=42))
    assert [(c.event.event, c.record.severity) for c in raised] == [("opened", AlertSeverity.URGENT)]
    # the next hypo is a new episode: a new alert
    life.apply(CLINIC, [clear("GLU-HYPO-1")], NOW + timedelta(hours=1))
    nxt = firing("GLU-HYPO-1", AlertSeverity.WARNING, key="r7", ids=("r7",))
    assert [c.event.event for c in life.apply(CLINIC, [nxt], NOW + timedelta(hours=5))] == ["opened"]
    assert opened.record.alert_id != raised[0].record.alert_id


def test_higher_severity_reopens_after_manual_resolve(life: Lifecycle) -> None:
    [opened] = life.apply(CLINIC, [firing("GLU-HIGH-2", AlertSeverity.WARNING)], NOW)
    life.resolve(opened.record.alert_id, "dr-li", "seen", NOW + timedelta(minutes=5))
    again = life.apply(CLINIC, [firing("GLU-HIGH-2", AlertSeverity.URGENT)], NOW + timedelta(minutes=30))
    assert [c.event.event for c in again] == ["opened"]


def test_urgent_unacknowledged_escalates_every_30_minutes(life: Lifecycle) -> None:
    # ESC-2: urgent unacknowledged 30 min -> re-notify + next on-call [58].
    life.apply(CLINIC, [firing("BP-CRIT-2", AlertSeverity.URGENT)], NOW)
    assert life.tick(NOW + ESCALATION_AFTER - timedelta(seconds=1)) == []
    first = life.tick(NOW + ESCALATION_AFTER)
    assert [(c.event.event, c.record.escalation_level, c.notify) for c in first] == [("escalated", 1, True)]
    assert life.tick(NOW + ESCALATION_AFTER + timedelta(minutes=1)) == []
    second = life.tick(NOW + 2 * ESCALATION_AFTER)
    assert second[0].record.escalation_level == 2
    # warnings are never escalated (they go to the daily digest)
    life.apply(CLINIC, [firing("BP-CTRL-1", AlertSeverity.WARNING)], NOW)
    assert all(c.record.rule_id != "BP-CTRL-1" for c in life.tick(NOW + 10 * ESCALATION_AFTER))


def test_superseding_rule_resolves_the_provisional_one(life: Lifecycle) -> None:
    life.apply(CLINIC, [firing("BP-CRIT-1", AlertSeverity.WARNING)], NOW)
    changes = life.apply(
        CLINIC, [firing("BP-CRIT-1", AlertSeverity.WARNING), firing("BP-CRIT-2", AlertSeverity.URGENT)], NOW
    )
    assert sorted((c.record.rule_id, c.event.event) for c in changes) == [
        ("BP-CRIT-1", "superseded"),
        ("BP-CRIT-2", "opened"),
    ]


def test_changes_carry_opaque_ids_only(life: Lifecycle) -> None:
    [opened] = life.apply(CLINIC, [firing("BP-CRIT-2", AlertSeverity.URGENT)], NOW)
    payload = opened.payload()
    assert payload.patient_id == PATIENT and payload.clinic_id == CLINIC
    assert payload.event == "opened" and payload.actor == "system"


def test_invalid_reading_alert_is_inbox_only(life: Lifecycle) -> None:
    # DQ-02 is "exclude; info to patient" (§7): visible in the inbox, never pushed to people.
    [opened] = life.apply(CLINIC, [firing("DQ-02", AlertSeverity.INFO)], NOW)
    assert opened.event.event == "opened" and not opened.notify


# --- nothing urgent disappears unseen ------------------------------------------------------------------


def test_an_urgent_alert_that_clears_unacknowledged_waits_for_a_clinicians_signoff(life: Lifecycle) -> None:
    """A level-2 hypo that resolves by itself a minute later stays on the sign-off list until signed off."""
    [opened] = life.apply(CLINIC, [firing("GLU-HYPO-2", AlertSeverity.URGENT)], NOW)
    [resolved] = life.apply(CLINIC, [clear("GLU-HYPO-2")], NOW + timedelta(minutes=1))
    alert_id = opened.record.alert_id
    assert resolved.event.event == "auto_resolved" and resolved.record.needs_signoff
    assert resolved.event.details == {"needs_signoff": True}
    assert [a.alert_id for a in life.repo.needing_signoff(CLINIC)] == [alert_id]
    assert life.repo.needing_signoff("another-clinic") == []

    signed = life.sign_off(
        alert_id, "nurse-wang", "  called her: fine, had juice  ", NOW + timedelta(hours=2)
    )
    assert (signed.event.event, signed.event.actor, signed.event.at) == (
        "signed_off",
        "nurse-wang",
        NOW + timedelta(hours=2),
    )
    assert signed.event.details == {"note": "called her: fine, had juice"}
    assert signed.record.state is AlertState.RESOLVED and not signed.record.needs_signoff
    stored = life.repo.get(alert_id)
    assert stored is not None
    assert (stored.signed_off_by, stored.signed_off_at) == ("nurse-wang", NOW + timedelta(hours=2))
    assert life.repo.needing_signoff(CLINIC) == []
    with pytest.raises(InvalidTransition):  # once is enough
        life.sign_off(alert_id, "dr-li", None, NOW + timedelta(hours=3))


def test_an_urgent_alert_acknowledged_before_it_cleared_needs_no_signoff(life: Lifecycle) -> None:
    """A clinician who acknowledged the urgent alert has seen it: it closes without sign-off."""
    [opened] = life.apply(CLINIC, [firing("BP-CRIT-2", AlertSeverity.URGENT)], NOW)
    life.acknowledge(opened.record.alert_id, "nurse-wang", NOW + timedelta(minutes=2))
    [resolved] = life.apply(CLINIC, [clear("BP-CRIT-2")], NOW + timedelta(hours=1))
    assert not resolved.record.needs_signoff and "needs_signoff" not in resolved.event.details
    assert life.repo.needing_signoff() == []
    with pytest.raises(InvalidTransition):  # signing off what does not need it is refused
        life.sign_off(opened.record.alert_id, "dr-li", "ok", NOW + timedelta(hours=2))


def test_an_acknowledgement_before_the_alert_became_urgent_does_not_count(life: Lifecycle) -> None:
    """A warning seen, then raised to urgent and cleared before anyone looked again, needs sign-off."""
    [opened] = life.apply(CLINIC, [firing("GLU-HIGH-2", AlertSeverity.WARNING)], NOW)
    life.acknowledge(opened.record.alert_id, "dr-li", NOW + timedelta(minutes=1))
    life.apply(
        CLINIC, [firing("GLU-HIGH-2", AlertSeverity.URGENT, ids=("r1", "r2"))], NOW + timedelta(hours=1)
    )
    [resolved] = life.apply(CLINIC, [clear("GLU-HIGH-2")], NOW + timedelta(hours=2))
    assert resolved.record.needs_signoff


def test_only_urgent_alerts_need_signoff(life: Lifecycle) -> None:
    """Warnings and info that clear by themselves just close (they were never pushed as urgent)."""
    life.apply(CLINIC, [firing("BP-CRIT-1", AlertSeverity.WARNING)], NOW)
    [resolved] = life.apply(CLINIC, [clear("BP-CRIT-1")], NOW + timedelta(hours=1))
    assert resolved.event.event == "auto_resolved" and not resolved.record.needs_signoff


def test_an_urgent_alert_superseded_unseen_needs_signoff(life: Lifecycle) -> None:
    """Any path out of the list counts, not only auto-resolve: a superseded unseen crisis waits too."""
    [confirmed] = life.apply(CLINIC, [firing("BP-CRIT-2", AlertSeverity.URGENT)], NOW)
    changes = life.apply(
        CLINIC, [firing("BP-CRIT-3", AlertSeverity.URGENT, key="r2", ids=("r2",))], NOW + timedelta(minutes=1)
    )
    [superseded] = [c for c in changes if c.record.rule_id == "BP-CRIT-2"]
    assert superseded.event.event == "superseded" and superseded.record.needs_signoff
    assert [a.alert_id for a in life.repo.needing_signoff()] == [confirmed.record.alert_id]


def test_a_clinicians_resolve_records_who_and_why_and_needs_no_signoff(life: Lifecycle) -> None:
    """Resolving with a note is a clinician's look: resolved_by and the note are kept on the alert."""
    [opened] = life.apply(CLINIC, [firing("GLU-HYPO-2", AlertSeverity.URGENT)], NOW)
    done = life.resolve(
        opened.record.alert_id, "nurse-zhao", "rechecked 6.1 mmol/L", NOW + timedelta(minutes=5)
    )
    assert (done.record.resolved_by, done.record.resolution_note) == ("nurse-zhao", "rechecked 6.1 mmol/L")
    assert not done.record.needs_signoff and life.repo.needing_signoff() == []


def test_an_open_alert_cannot_be_signed_off(life: Lifecycle) -> None:
    """Sign-off is for resolved alerts only: an open urgent alert is acknowledged or resolved instead."""
    [opened] = life.apply(CLINIC, [firing("GLU-HYPO-2", AlertSeverity.URGENT)], NOW)
    with pytest.raises(InvalidTransition):
        life.sign_off(opened.record.alert_id, "dr-li", None, NOW + timedelta(minutes=1))
    assert life.repo.get(opened.record.alert_id).state is AlertState.OPEN  # type: ignore[union-attr]
