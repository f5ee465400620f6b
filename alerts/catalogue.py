"""The alert rule table: rule ids, default severity, side and citation.

Every rule the engine can raise is listed here once, with the reference keys it rests on; each key is
an anchor of docs/references.md (`[30]` is docs/references.md#ref-30), where a reader of an alert's
citation finds the source. "DEFAULT" marks parameters that no guideline fixes (trend parameters, counts,
stale-data times are tunable defaults; docs/alerts.md).

The operational rules (OPS-*) watch the equipment, not the patient: a home whose gateway stopped
reporting, a meter whose battery runs down. They share the clinical alerts' lifecycle and channels but
go to the clinic staff who look after the equipment, never to the family doctor (`Audience`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vitals.payload import AlertSeverity


class Side(StrEnum):
    """Which side of normal a rule watches. A snooze on one side never hides the other (ESC-1, [59e])."""

    HIGH = "high"
    LOW = "low"
    NONE = "none"


class Audience(StrEnum):
    """Who is told about a rule's alerts."""

    CARE_TEAM = "care_team"  # the family doctor first, then staff on duty (alerts.routing)
    CLINIC_STAFF = "clinic_staff"  # the staff of the patient's care team only


@dataclass(frozen=True, slots=True)
class RuleSpec:
    rule_id: str
    title: str
    severity: AlertSeverity
    side: Side
    citation: str
    default_parameters: bool = False  # True where the rule table marks the parameters DEFAULT
    audience: Audience = Audience.CARE_TEAM


# Where every reference key a citation shows is listed, with its source (tests check each key resolves).
REFERENCES_PAGE = "docs/references.md"


def _cited(keys: str) -> str:
    """The citation users see: the rule's reference keys, each an anchor of REFERENCES_PAGE (checked by
    the tests). The keys alone, as guidelines cite: the alert reads the same in every language."""
    return keys


_I, _W, _U = AlertSeverity.INFO, AlertSeverity.WARNING, AlertSeverity.URGENT
_H, _L, _N = Side.HIGH, Side.LOW, Side.NONE

RULES: dict[str, RuleSpec] = {
    r.rule_id: r
    for r in (
        RuleSpec(
            "BP-CRIT-1", "Single BP at crisis level: re-measure after rest", _W, _H, _cited("[4][5][17]")
        ),
        RuleSpec("BP-CRIT-2", "Crisis confirmed by repeat within 15 min", _U, _H, _cited("[1][4][17]")),
        RuleSpec(
            "BP-CRIT-3",
            "Crisis with a red-flag symptom: advise emergency services",
            _U,
            _H,
            _cited("[4][9][17][19]"),
        ),
        RuleSpec("BP-LOW-1", "Low BP (2 readings in one session)", _W, _L, _cited("[28][19]")),
        RuleSpec("BP-LOW-2", "Overtreatment signal: SBP fall >= 20 mmHg", _I, _L, _cited("[9][29]"), True),
        RuleSpec("BP-CTRL-1", "Home BP average not at goal", _W, _H, _cited("[1][6][9][11][12]")),
        RuleSpec(
            "BP-CTRL-2", "Home BP persistently uncontrolled (2 consecutive windows)", _W, _H, _cited("[17]")
        ),
        RuleSpec("BP-CTRL-3", "Stage-2-equivalent home average", _W, _H, _cited("[1][9]")),
        RuleSpec("BP-AM-1", "Morning hypertension", _I, _H, _cited("[20][13]")),
        RuleSpec("BP-AM-2", "Large morning-evening SBP difference", _I, _H, _cited("[21]")),
        RuleSpec(
            "BP-TREND-1",
            "Upward shift of daily mean SBP (EWMA / CUSUM)",
            _I,
            _H,
            _cited("[52][53][54] DEFAULT params"),
            True,
        ),
        RuleSpec("HR-LOW", "Bradycardia at rest", _W, _L, _cited("[23]"), True),
        RuleSpec("HR-HIGH", "Tachycardia at rest", _W, _H, _cited("[24][18]"), True),
        RuleSpec(
            "HR-IRR",
            "Irregular-pulse flag from the cuff: recommend 12-lead ECG",
            _W,
            _N,
            _cited("[9][25a][25b][27]"),
        ),
        RuleSpec("GLU-HYPO-1", "Level 1 hypoglycaemia", _W, _L, _cited("[30][18]")),
        RuleSpec("GLU-HYPO-2", "Level 2 hypoglycaemia", _U, _L, _cited("[30][32]")),
        RuleSpec("GLU-HYPO-3", "Level 3 hypoglycaemia (assisted event reported)", _U, _L, _cited("[30]")),
        RuleSpec(
            "GLU-HYPO-REC",
            "Recurrent hypoglycaemia: review regimen",
            _W,
            _L,
            _cited("[30] DEFAULT counts"),
            True,
        ),
        RuleSpec(
            "GLU-HIGH-1",
            "Level 2 hyperglycaemia on 2 consecutive readings: check ketones",
            _W,
            _H,
            _cited("[32][40]"),
        ),
        RuleSpec("GLU-HIGH-2", "Very high glucose", _U, _H, _cited("[18][40]")),
        RuleSpec("GLU-HIGH-3", "HHS range or DKA symptoms: emergency", _U, _H, _cited("[39]")),
        RuleSpec("GLU-CTRL-1", "Fasting glucose not at target", _W, _H, _cited("[41][18]")),
        RuleSpec("GLU-CTRL-2", "Post-prandial glucose above target", _I, _H, _cited("[31][41]")),
        RuleSpec("CGM-SUFF", "CGM data insufficient for metrics", _I, _N, _cited("[32][33]")),
        RuleSpec("CGM-TBR", "CGM time below range", _W, _L, _cited("[33]")),
        RuleSpec("CGM-TAR", "CGM time above range", _W, _H, _cited("[33]")),
        RuleSpec("CGM-TIR", "CGM time in range below goal", _I, _N, _cited("[33]")),
        RuleSpec("CGM-CV", "Glycaemic variability %CV > 36", _I, _N, _cited("[32][34]")),
        RuleSpec("CGM-GRI", "Glycaemia Risk Index zone D/E", _W, _N, _cited("[36]")),
        RuleSpec("CGM-GMI", "GMI rise vs previous 14 days", _I, _H, _cited("[35] DEFAULT delta"), True),
        RuleSpec("DQ-01", "Stale data: no readings", _I, _N, _cited("[58] DEFAULT"), True),
        RuleSpec("DQ-02", "Invalid or flagged reading excluded", _I, _N, _cited("[27][61]")),
        RuleSpec("DQ-03", "Fewer than 16 data days in 30", _I, _N, _cited("[57][17]")),
        RuleSpec(
            "OPS-GW-OFFLINE",
            "Gateway offline: the patient's readings cannot reach the clinic",
            _W,
            _N,
            "operational; DEFAULT time (fleet.gateway_offline_after_s)",
            True,
            Audience.CLINIC_STAFF,
        ),
        RuleSpec(
            "OPS-METER-BATTERY",
            "Meter battery low: replace or charge it",
            _I,
            _N,
            "operational; DEFAULT level (fleet.battery_low_percent)",
            True,
            Audience.CLINIC_STAFF,
        ),
        RuleSpec(
            "OPS-BROKER-DROPS",
            "Broker dropped messages: this home's readings are late until the gateway sends them again",
            _W,
            _N,
            _cited(
                "operational; [mosquitto-conf] Mosquitto drops once a queue is full (vitalgate.broker_monitor)"
            ),
            True,
            Audience.CLINIC_STAFF,
        ),
    )
}

# Rules about equipment rather than the patient's health: never in a doctor's digest or push.
OPERATIONAL = frozenset(r.rule_id for r in RULES.values() if r.audience is Audience.CLINIC_STAFF)

# A firing rule on the left supersedes (auto-resolves) an open alert of the rules on the right, so the
# care team sees one alert per episode at its highest confirmed level (ESC-1, [58]).
SUPERSEDES: dict[str, tuple[str, ...]] = {
    "BP-CRIT-2": ("BP-CRIT-1",),
    "BP-CRIT-3": ("BP-CRIT-1", "BP-CRIT-2"),
    "GLU-HYPO-2": ("GLU-HYPO-1",),
    "GLU-HIGH-3": ("GLU-HIGH-1", "GLU-HIGH-2"),
    "BP-CTRL-3": (),
}

# Shown in the inbox and on live streams but never pushed to people: DQ-02 is "info to patient"
# (§7); the clinic sees it in context, and a flagged reading is simply left out of averages.
INBOX_ONLY = frozenset({"DQ-02"})

SEVERITY_RANK: dict[AlertSeverity, int] = {_I: 0, _W: 1, _U: 2}


def rank(severity: AlertSeverity) -> int:
    return SEVERITY_RANK[severity]


def spec(rule_id: str) -> RuleSpec:
    try:
        return RULES[rule_id]
    except KeyError as exc:
        raise KeyError(f"unknown rule id {rule_id!r}") from exc
