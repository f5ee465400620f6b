"""Rules on single readings: one patient's observations and reports, streamed in time order.

Each rule is one function, registered by its rule id in `ON_READING` below (and, for the rules a
patient's report can set off, in `ON_REPORT`): blood pressure and pulse in `blood_pressure`, glucose
in `glucose`, DQ-02 in `data_quality`. A rule keeps its state as an episode
(alerts/episodes.py): a trigger opens or raises it, and ESC-1 hysteresis ends it only after
`clear_after_readings` (2) consecutive in-range readings (clinical-rules.md §7 ESC-1, [58]).
Streaming once over a history gives the state after every item, so replaying months of readings is
linear, and the live path keeps the last state.

Single-reading rules use only readings not excluded by DQ-02 ("R = single valid reading", §7
conventions): a cuff that flagged movement, cuff fit or position, or sent NaN, triggers nothing but
DQ-02. CGM (interstitial) values raise GLU-HYPO-2 only as an episode of >= 15 min below 54 mg/dL
([34]), and otherwise feed the CGM-* window rules (alerts/window_rules/).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.model import Observation, Outcome, PatientReport, ReportKind
from alerts.reading_rules.blood_pressure import (
    bp_crit_1,
    bp_crit_2,
    bp_crit_3,
    bp_crit_3_on_report,
    bp_low_1,
    bp_low_1_on_report,
    hr_high,
    hr_irr,
    hr_low,
)
from alerts.reading_rules.data_quality import dq_02
from alerts.reading_rules.glucose import (
    glu_high_1,
    glu_high_2,
    glu_high_3,
    glu_high_3_on_report,
    glu_hypo_1,
    glu_hypo_2,
    glu_hypo_3_on_report,
)
from alerts.reading_rules.state import READING_RULE_IDS, Judged, NewReading, PatientReadings

__all__ = ["ON_READING", "ON_REPORT", "READING_RULE_IDS", "PatientStream"]

SEVERE_HYPO_ACTIVE = timedelta(days=14)  # GLU-HYPO-3 stays current for 14 days after the report (DEFAULT)
ORTHOSTATIC_ACTIVE = timedelta(days=7)  # BP-LOW-2 standing-fall report current for 7 days (DEFAULT)


class PatientStream(PatientReadings):
    """The reading-level rules for one patient. Feed items in time order; read `outcomes()`."""

    def feed(self, item: Observation | PatientReport) -> bool:
        """Process one item; False if it was already seen (a redelivery changes nothing)."""
        key = item.reading_id if isinstance(item, Observation) else "report:" + item.report_id
        if key in self._seen_ids:
            return False
        self._seen_ids.add(key)
        at = item.measured_at if isinstance(item, Observation) else item.reported_at
        self.latest_at = at if self.latest_at is None else max(self.latest_at, at)
        if isinstance(item, PatientReport):
            self.reports.append(item)
            if item.kind is ReportKind.ORTHOSTATIC:
                self.orthostatic = item
            for on_report in ON_REPORT.values():
                on_report(self, item)
        else:
            new = self.take(item)
            for check in _CHECKS_OF[new.judged_as]:
                check(self, new)
        return True

    def advance(self, now: datetime) -> None:
        """Let time-limited episodes (reported events) expire."""
        if self.severe_hypo_at is not None and now - self.severe_hypo_at > SEVERE_HYPO_ACTIVE:
            self.episodes["GLU-HYPO-3"].expire()
            self.severe_hypo_at = None

    def outcomes(self) -> list[Outcome]:
        return [rule.outcome() for rule in self.episodes.values()]

    def ended_episodes(self, reading_ids: Collection[str]) -> list[Outcome]:
        """The episodes that fired and cleared again in the readings fed, as they last fired, of those
        with evidence among `reading_ids`: readings evaluated together for the first time (a
        gateway's backlog after an outage) may hold a whole episode, which no evaluation saw firing."""
        if not reading_ids:
            return []
        return [
            ended
            for rule in self.episodes.values()
            for ended in rule.ended
            if any(reading_id in reading_ids for reading_id in ended.reading_ids)
        ]

    def changed_outcomes(self) -> list[Outcome]:
        """Outcomes of the rules whose state changed since the last call (for timelines)."""
        changed = []
        for rule in self.episodes.values():
            if rule.changed:
                rule.changed = False
                changed.append(rule.outcome())
        return changed

    def orthostatic_report(self, now: datetime) -> PatientReport | None:
        report = self.orthostatic
        if report is not None and now - report.reported_at <= ORTHOSTATIC_ACTIVE:
            return report
        return None


ReadingCheck = Callable[[PatientReadings, NewReading], None]
ReportRule = Callable[[PatientReadings, PatientReport], None]


@dataclass(frozen=True, slots=True)
class ReadingRule:
    judges: int  # `Judged` flags
    check: ReadingCheck


def _rule(check: ReadingCheck, *judges: int) -> ReadingRule:
    flags = 0
    for judged in judges:
        flags |= judged
    return ReadingRule(flags, check)


# Rule id -> the rule's check of each new reading it judges. An excluded reading reaches DQ-02 alone.
ON_READING: dict[str, ReadingRule] = {
    "BP-CRIT-1": _rule(bp_crit_1, Judged.PRESSURE),
    "BP-CRIT-2": _rule(bp_crit_2, Judged.PRESSURE),
    "BP-CRIT-3": _rule(bp_crit_3, Judged.PRESSURE),
    "BP-LOW-1": _rule(bp_low_1, Judged.PRESSURE),
    "HR-LOW": _rule(hr_low, Judged.PULSE),
    "HR-HIGH": _rule(hr_high, Judged.PULSE),
    "HR-IRR": _rule(hr_irr, Judged.CUFF),
    "GLU-HYPO-1": _rule(glu_hypo_1, Judged.FINGERSTICK),
    "GLU-HYPO-2": _rule(glu_hypo_2, Judged.FINGERSTICK, Judged.CGM),
    "GLU-HIGH-1": _rule(glu_high_1, Judged.FINGERSTICK),
    "GLU-HIGH-2": _rule(glu_high_2, Judged.FINGERSTICK),
    "GLU-HIGH-3": _rule(glu_high_3, Judged.FINGERSTICK),
    "DQ-02": _rule(dq_02, Judged.EVERY),
}
# The checks to run on a reading of each combination of sorts (`Judged` flags), in table order.
_CHECKS_OF: list[tuple[ReadingCheck, ...]] = [
    tuple(rule.check for rule in ON_READING.values() if rule.judges & sorts)
    for sorts in range(2 * Judged.CGM)
]

# Rule id -> what the rule does with a patient's report (symptoms, a severe hypo event, ketones).
ON_REPORT: dict[str, ReportRule] = {
    "BP-CRIT-3": bp_crit_3_on_report,
    "BP-LOW-1": bp_low_1_on_report,
    "GLU-HYPO-3": glu_hypo_3_on_report,
    "GLU-HIGH-3": glu_high_3_on_report,
}
