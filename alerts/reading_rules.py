"""Rules on single readings: one patient's observations and reports, streamed in time order.

Each rule is one function below, registered by its rule id in `ON_READING` (and, for the rules a
patient's report can set off, in `ON_REPORT`). A rule keeps its state as an episode
(alerts/episodes.py): a trigger opens or raises it, and ESC-1 hysteresis ends it only after
`clear_after_readings` (2) consecutive in-range readings (clinical-rules.md §7 ESC-1, [58]).
Streaming once over a history gives the state after every item, so replaying months of readings is
linear, and the live path keeps the last state.

Single-reading rules use only readings not excluded by DQ-02 ("R = single valid reading", §7
conventions): a cuff that flagged movement, cuff fit or position, or sent NaN, triggers nothing but
DQ-02. CGM (interstitial) values raise GLU-HYPO-2 only as an episode of >= 15 min below 54 mg/dL
([34]), and otherwise feed the CGM-* window rules (alerts/window_rules.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from alerts.episodes import RuleEpisodes
from alerts.model import (
    CRISIS_SYMPTOMS,
    DKA_SYMPTOMS,
    KETONE_POSITIVE_MMOL_L,
    LOW_BP_SYMPTOMS,
    Observation,
    ObservationKind,
    Outcome,
    PatientReport,
    ReportKind,
)
from alerts.profiles import RuleParameters
from vitals.payload import AlertSeverity

SEVERE_HYPO_ACTIVE = timedelta(days=14)  # GLU-HYPO-3 stays current for 14 days after the report (DEFAULT)
ORTHOSTATIC_ACTIVE = timedelta(days=7)  # BP-LOW-2 standing-fall report current for 7 days (DEFAULT)
DKA_WINDOW = timedelta(hours=2)  # GLU-HIGH-3: ketones/symptoms within 2 h of a >= 200 reading (DEFAULT)
CGM_EPISODE = timedelta(minutes=15)  # CGM hypo episodes last >= 15 min (ATTD 2017 [34])
LOW_PULSE_DAYS_KEPT = 4  # HR-LOW counts within one local day; a few days are kept for late readings
MG_DL_PER_MMOL_L = 18.01559  # vitals.units

# Every rule on single readings, in the order their outcomes are given.
READING_RULE_IDS = (
    "BP-CRIT-1",
    "BP-CRIT-2",
    "BP-CRIT-3",
    "BP-LOW-1",
    "HR-LOW",
    "HR-HIGH",
    "HR-IRR",
    "GLU-HYPO-1",
    "GLU-HYPO-2",
    "GLU-HYPO-3",
    "GLU-HIGH-1",
    "GLU-HIGH-2",
    "GLU-HIGH-3",
    "DQ-02",
)


@dataclass(slots=True)
class Session:
    """Cuff readings taken within 15 minutes of the previous one (§7 "sessions")."""

    start: datetime
    end: datetime
    pulses: list[float] = field(default_factory=list)
    reading_ids: list[str] = field(default_factory=list)
    irregular: bool = False

    @property
    def mean_pulse(self) -> float | None:
        return sum(self.pulses) / len(self.pulses) if self.pulses else None


class Judged(Enum):
    """Which readings a rule judges."""

    EVERY = "every reading, excluded ones too"
    CUFF = "a valid reading of the cuff, its pressures possibly missing"
    PRESSURE = "a valid blood pressure with both pressures"
    PULSE = "a valid reading of the cuff with a pulse"
    FINGERSTICK = "a valid fingerstick glucose"
    CGM = "a valid CGM glucose"


def judged_as(reading: Observation) -> frozenset[Judged]:
    if reading.excluded_from_averages:
        return _EXCLUDED
    if reading.kind is ObservationKind.BLOOD_PRESSURE:
        return _CUFF_READINGS[reading.usable_bp, reading.usable_pulse]
    if reading.usable_glucose:
        return _FINGERSTICK if reading.kind is ObservationKind.GLUCOSE else _CGM
    return _OTHER


_EXCLUDED = _OTHER = frozenset({Judged.EVERY})
_CUFF_READINGS = {
    (pressure, pulse): frozenset(
        {Judged.EVERY, Judged.CUFF}
        | ({Judged.PRESSURE} if pressure else set())
        | ({Judged.PULSE} if pulse else set())
    )
    for pressure in (False, True)
    for pulse in (False, True)
}
_FINGERSTICK = frozenset({Judged.EVERY, Judged.FINGERSTICK})
_CGM = frozenset({Judged.EVERY, Judged.CGM})


@dataclass(frozen=True, slots=True)
class NewReading:
    """A reading as the rules see it, with the patient's recent readings from before it."""

    reading: Observation
    judged_as: frozenset[Judged]
    earlier_in_session: list[Observation]  # valid blood pressures of the session before this one
    earlier_glucose: list[Observation]  # the latest valid fingerstick glucose readings before this one


class PatientStream:
    """The reading-level rules for one patient. Feed items in time order; read `outcomes()`."""

    def __init__(self, patient_id: str, params: RuleParameters) -> None:
        self.patient_id = patient_id
        self.params = params
        self.zone = ZoneInfo(params.timezone)
        self.episodes = {
            rule_id: RuleEpisodes(rule_id, patient_id, params.clear_after_readings)
            for rule_id in READING_RULE_IDS
        }
        self.recent_bp: deque[Observation] = deque(maxlen=8)
        self.recent_glucose: deque[Observation] = deque(maxlen=8)
        self.reports: deque[PatientReport] = deque(maxlen=64)
        self.sessions: deque[Session] = deque(maxlen=32)
        self.low_pulse_by_day: dict[str, list[Observation]] = {}
        self.latest_at: datetime | None = None
        self.severe_hypo_at: datetime | None = None
        self.orthostatic: PatientReport | None = None
        self.cgm_last_at: datetime | None = None
        self.cgm_below_level_2_since: datetime | None = None
        self._seen_ids: set[str] = set()

    # ----------------------------------------------------------------------------------------------
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
            new = self._take(item)
            for check in _checks_of(new.judged_as):
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

    def symptoms_near(self, at: datetime, wanted: frozenset[str], window: timedelta) -> set[str]:
        found: set[str] = set()
        for report in self.reports:
            if report.kind is ReportKind.SYMPTOMS and abs(report.reported_at - at) <= window:
                found |= report.symptoms & wanted
        return found

    def _take(self, reading: Observation) -> NewReading:
        """The reading with what came before it, then kept among the recent readings. An excluded
        reading is kept nowhere: it only raises DQ-02."""
        sorts = judged_as(reading)
        if reading.excluded_from_averages:
            return NewReading(reading, sorts, [], [])
        earlier_in_session: list[Observation] = []
        earlier_glucose: list[Observation] = []
        if Judged.PRESSURE in sorts:
            earlier_in_session = [
                earlier
                for earlier in self.recent_bp
                if earlier.usable_bp and reading.measured_at - earlier.measured_at <= self.params.session
            ]
            self.recent_bp.append(reading)
        if Judged.CUFF in sorts:
            session = self.sessions[-1] if self.sessions else None
            if session is None or reading.measured_at - session.end > self.params.session:
                session = Session(reading.measured_at, reading.measured_at)
                self.sessions.append(session)
            else:
                session.end = reading.measured_at
            session.reading_ids.append(reading.reading_id)
            session.irregular |= reading.irregular_pulse
            if Judged.PULSE in sorts:
                assert reading.pulse_bpm is not None
                session.pulses.append(reading.pulse_bpm)
        elif Judged.FINGERSTICK in sorts:
            earlier_glucose = list(self.recent_glucose)
            self.recent_glucose.append(reading)
        return NewReading(reading, sorts, earlier_in_session, earlier_glucose)


# ==================================================================================================
# Blood pressure and pulse


def _at_crisis_level(reading: Observation, params: RuleParameters) -> bool:
    assert reading.systolic_mmhg is not None and reading.diastolic_mmhg is not None
    return (
        reading.systolic_mmhg >= params.crisis_systolic_mmhg
        or reading.diastolic_mmhg >= params.crisis_diastolic_mmhg
    )


def _low(reading: Observation, params: RuleParameters) -> bool:
    assert reading.systolic_mmhg is not None and reading.diastolic_mmhg is not None
    return (
        reading.systolic_mmhg < params.low_systolic_mmhg or reading.diastolic_mmhg < params.low_diastolic_mmhg
    )


def _bp_values(reading: Observation) -> dict[str, Any]:
    return {
        "systolic_mmhg": reading.systolic_mmhg,
        "diastolic_mmhg": reading.diastolic_mmhg,
        "pulse_bpm": reading.pulse_bpm,
        "measured_at": reading.measured_at.isoformat(),
        "irregular_pulse": reading.irregular_pulse,
    }


def _crisis_values(reading: Observation, params: RuleParameters) -> dict[str, Any]:
    return _bp_values(reading) | {
        "crisis_systolic_mmhg": params.crisis_systolic_mmhg,
        "crisis_diastolic_mmhg": params.crisis_diastolic_mmhg,
        "advice": "re-measure after 1-5 min seated rest; check red-flag symptoms",
    }


def bp_crit_1(stream: PatientStream, new: NewReading) -> None:
    """BP-CRIT-1: a single reading at crisis level, provisional ([4][5][17])."""
    reading, rule = new.reading, stream.episodes["BP-CRIT-1"]
    if _at_crisis_level(reading, stream.params):
        values = _crisis_values(reading, stream.params)
        rule.trigger(reading.measured_at, AlertSeverity.WARNING, values, [reading.reading_id])
    else:
        rule.in_range()


def bp_crit_2(stream: PatientStream, new: NewReading) -> None:
    """BP-CRIT-2: 2 of 2 readings at crisis level within 15 min ([1][4][17])."""
    reading, params, rule = new.reading, stream.params, stream.episodes["BP-CRIT-2"]
    if not _at_crisis_level(reading, params):
        rule.in_range()
        return
    confirming = [earlier for earlier in new.earlier_in_session if _at_crisis_level(earlier, params)]
    if confirming:
        rule.trigger(
            reading.measured_at,
            AlertSeverity.URGENT,
            _crisis_values(reading, params)
            | {
                "confirming_systolic_mmhg": confirming[-1].systolic_mmhg,
                "confirming_diastolic_mmhg": confirming[-1].diastolic_mmhg,
                "advice": "same-day contact by the family doctor",
            },
            [confirming[-1].reading_id, reading.reading_id],
        )


def bp_crit_3(stream: PatientStream, new: NewReading) -> None:
    """BP-CRIT-3: a crisis-level reading with a red-flag symptom reported around it ([4][9][17][19])."""
    reading, params, rule = new.reading, stream.params, stream.episodes["BP-CRIT-3"]
    if not _at_crisis_level(reading, params):
        rule.in_range()
        return
    symptoms = stream.symptoms_near(reading.measured_at, CRISIS_SYMPTOMS, params.symptom_window)
    if symptoms:
        rule.trigger(
            reading.measured_at,
            AlertSeverity.URGENT,
            _crisis_values(reading, params)
            | {"symptoms": sorted(symptoms), "advice": "advise emergency services"},
            [reading.reading_id],
        )


def bp_crit_3_on_report(stream: PatientStream, report: PatientReport) -> None:
    """BP-CRIT-3 from a symptom report after the reading: the symptom window is two-sided."""
    if report.kind is not ReportKind.SYMPTOMS:
        return
    red_flags = report.symptoms & CRISIS_SYMPTOMS
    for reading in _pressures_near(stream, report):
        if red_flags and _at_crisis_level(reading, stream.params):
            stream.episodes["BP-CRIT-3"].trigger(
                reading.measured_at,
                AlertSeverity.URGENT,
                _bp_values(reading) | {"symptoms": sorted(red_flags), "advice": "advise emergency services"},
                [reading.reading_id],
            )


def bp_low_1(stream: PatientStream, new: NewReading) -> None:
    """BP-LOW-1: SBP < 90 or DBP < 60 on 2 readings in one session; urgent with dizziness, syncope or
    confusion reported ([28][19])."""
    reading, params, rule = new.reading, stream.params, stream.episodes["BP-LOW-1"]
    if not _low(reading, params):
        rule.in_range()
        return
    low_earlier = [earlier for earlier in new.earlier_in_session if _low(earlier, params)]
    if not low_earlier:
        rule.neutral()
        return
    symptoms = stream.symptoms_near(reading.measured_at, LOW_BP_SYMPTOMS, params.symptom_window)
    rule.trigger(
        reading.measured_at,
        AlertSeverity.URGENT if symptoms else AlertSeverity.WARNING,
        _bp_values(reading)
        | {
            "previous_systolic_mmhg": low_earlier[-1].systolic_mmhg,
            "previous_diastolic_mmhg": low_earlier[-1].diastolic_mmhg,
            "symptoms": sorted(symptoms),
        },
        [low_earlier[-1].reading_id, reading.reading_id],
    )


def bp_low_1_on_report(stream: PatientStream, report: PatientReport) -> None:
    """BP-LOW-1 becomes urgent when dizziness, syncope or confusion is reported near its readings."""
    if report.kind is not ReportKind.SYMPTOMS:
        return
    low_symptoms = report.symptoms & LOW_BP_SYMPTOMS
    rule = stream.episodes["BP-LOW-1"]
    for reading in _pressures_near(stream, report):
        if low_symptoms and rule.episode is not None:
            rule.trigger(
                reading.measured_at,
                AlertSeverity.URGENT,
                _bp_values(reading) | {"symptoms": sorted(low_symptoms)},
                [reading.reading_id],
            )


def _pressures_near(stream: PatientStream, report: PatientReport) -> list[Observation]:
    """The recent valid blood pressures within the symptom window of a report."""
    return [
        reading
        for reading in stream.recent_bp
        if abs(reading.measured_at - report.reported_at) <= stream.params.symptom_window and reading.usable_bp
    ]


def hr_irr(stream: PatientStream, new: NewReading) -> None:
    """HR-IRR: irregular-pulse flag in >= 2 of 3 sequential readings, or in >= 2 sessions within 7 days
    ([9][25a][25b][27])."""
    reading, rule = new.reading, stream.episodes["HR-IRR"]
    last_three = list(stream.recent_bp)[-3:]
    flagged_of_three = sum(earlier.irregular_pulse for earlier in last_three)
    flagged_sessions = [
        session
        for session in stream.sessions
        if session.irregular and reading.measured_at - session.start <= stream.params.irr_window
    ]
    if reading.irregular_pulse and (flagged_of_three >= 2 or len(flagged_sessions) >= 2):
        rule.trigger(
            reading.measured_at,
            AlertSeverity.WARNING,
            {
                "flagged_of_last_3_readings": flagged_of_three,
                "flagged_sessions_7_days": len(flagged_sessions),
                "advice": "12-lead ECG; BP accuracy reduced with irregular pulse",
            },
            [earlier.reading_id for earlier in last_three if earlier.irregular_pulse],
        )
    elif reading.irregular_pulse:
        rule.neutral()
    else:
        rule.in_range()


def hr_low(stream: PatientStream, new: NewReading) -> None:
    """HR-LOW: pulse < 50 on >= 2 readings in one (local) day; urgent when both are < 40 (DEFAULT)
    ([23])."""
    reading, params, rule = new.reading, stream.params, stream.episodes["HR-LOW"]
    assert reading.pulse_bpm is not None
    day = reading.measured_at.astimezone(stream.zone).date().isoformat()
    if reading.pulse_bpm < params.hr_low_bpm:
        lows = stream.low_pulse_by_day.setdefault(day, [])
        lows.append(reading)
        if len(lows) >= 2:
            below_urgent = sum(
                low.pulse_bpm is not None and low.pulse_bpm < params.hr_low_urgent_bpm for low in lows
            )
            rule.trigger(
                reading.measured_at,
                AlertSeverity.URGENT if below_urgent >= 2 else AlertSeverity.WARNING,
                {"pulse_bpm": [low.pulse_bpm for low in lows], "local_day": day},
                [low.reading_id for low in lows],
            )
        else:
            rule.neutral()
    else:
        rule.in_range()
    if len(stream.low_pulse_by_day) > LOW_PULSE_DAYS_KEPT:
        for old_day in sorted(stream.low_pulse_by_day)[:-LOW_PULSE_DAYS_KEPT]:
            del stream.low_pulse_by_day[old_day]


def hr_high(stream: PatientStream, new: NewReading) -> None:
    """HR-HIGH: session mean pulse > 100 in >= 2 consecutive sessions; urgent when both are > 120
    (DEFAULT) ([24][18])."""
    reading, params, rule = new.reading, stream.params, stream.episodes["HR-HIGH"]
    session_means: list[float] = []
    for session in reversed(stream.sessions):
        mean = session.mean_pulse
        if mean is not None:
            session_means.insert(0, mean)
            if len(session_means) == 2:
                break
    current = session_means[-1]
    if current > params.hr_high_bpm and len(session_means) >= 2 and session_means[-2] > params.hr_high_bpm:
        previous = session_means[-2]
        urgent = current > params.hr_high_urgent_bpm and previous > params.hr_high_urgent_bpm
        rule.trigger(
            reading.measured_at,
            AlertSeverity.URGENT if urgent else AlertSeverity.WARNING,
            {"session_mean_pulse_bpm": [previous, current]},
            [reading.reading_id],
        )
    elif current > params.hr_high_bpm:
        rule.neutral()
    else:
        rule.in_range()


# ==================================================================================================
# Glucose


def _glucose_values(reading: Observation) -> dict[str, Any]:
    glucose = reading.glucose_mg_dl
    assert glucose is not None
    return {
        "glucose_mg_dl": glucose,
        "glucose_mmol_l": round(glucose / MG_DL_PER_MMOL_L, 2),
        "meal": reading.meal.value if reading.meal else None,
        "measured_at": reading.measured_at.isoformat(),
    }


def _glucose(reading: Observation) -> float:
    assert reading.glucose_mg_dl is not None
    return reading.glucose_mg_dl


def glu_hypo_1(stream: PatientStream, new: NewReading) -> None:
    """GLU-HYPO-1: a level-1 fingerstick (ADA < 70 mg/dL [30]; CN <= 3.9 mmol/L, urgent [18]). Back in
    range means no longer hypoglycaemic (>= 70 mg/dL, or > 3.9 mmol/L in CN)."""
    reading, params, rule = new.reading, stream.params, stream.episodes["GLU-HYPO-1"]
    glucose = _glucose(reading)
    if not params.is_hypo1(glucose):
        rule.in_range()
    elif glucose < params.hypo2_mg_dl:
        rule.neutral()
    else:
        rule.trigger(
            reading.measured_at, params.hypo1_severity, _glucose_values(reading), [reading.reading_id]
        )


def glu_hypo_2(stream: PatientStream, new: NewReading) -> None:
    """GLU-HYPO-2: a level-2 fingerstick (ADA < 54 mg/dL [30]), or a CGM episode below 54 (below)."""
    if Judged.CGM in new.judged_as:
        _glu_hypo_2_cgm(stream, new.reading)
        return
    reading, params, rule = new.reading, stream.params, stream.episodes["GLU-HYPO-2"]
    glucose = _glucose(reading)
    if not params.is_hypo1(glucose):
        rule.in_range()
    elif glucose < params.hypo2_mg_dl:
        rule.trigger(
            reading.measured_at, AlertSeverity.URGENT, _glucose_values(reading), [reading.reading_id]
        )
    else:
        rule.neutral()


def _glu_hypo_2_cgm(stream: PatientStream, reading: Observation) -> None:
    """CGM Level 2 hypoglycaemia: < 54 mg/dL for an episode of >= 15 min ("episodes defined as
    >= 15 min", ATTD 2017 [34]; Level 2 "clinically significant / immediate action", [30][32])
    raises GLU-HYPO-2 as a fingerstick would. Level 1 time on CGM is judged over 14 days by
    CGM-TBR instead: a CGM user at the 4 % TBR target spends about an hour a day below 70, and
    one alert per dip would drown the family doctor (§3.2 alert fatigue). A gap in the sensor data
    longer than 15 min starts a new episode."""
    params, rule = stream.params, stream.episodes["GLU-HYPO-2"]
    glucose = _glucose(reading)
    at = reading.measured_at
    if stream.cgm_last_at is not None and at - stream.cgm_last_at > CGM_EPISODE:
        stream.cgm_below_level_2_since = None
    stream.cgm_last_at = at
    if not params.is_hypo1(glucose):
        stream.cgm_below_level_2_since = None
        rule.in_range()
        return
    if glucose >= params.hypo2_mg_dl:
        stream.cgm_below_level_2_since = None
        rule.neutral()
        return
    since = stream.cgm_below_level_2_since = stream.cgm_below_level_2_since or at
    if at - since >= CGM_EPISODE:
        values: dict[str, Any] = {
            "glucose_mg_dl": glucose,
            "source": "cgm",
            "episode_minutes": (at - since).total_seconds() / 60.0,
            "measured_at": at.isoformat(),
        }
        rule.trigger(at, AlertSeverity.URGENT, values, [reading.reading_id])
    else:
        rule.neutral()


def glu_hypo_3_on_report(stream: PatientStream, report: PatientReport) -> None:
    """GLU-HYPO-3: a severe (assisted) hypo event reported by the patient or family ([30])."""
    if report.kind is not ReportKind.SEVERE_HYPO_EVENT:
        return
    stream.episodes["GLU-HYPO-3"].trigger(
        report.reported_at,
        AlertSeverity.URGENT,
        {"reported_at": report.reported_at.isoformat(), "report_id": report.report_id},
        ["report:" + report.report_id],
    )
    stream.severe_hypo_at = report.reported_at


def glu_high_1(stream: PatientStream, new: NewReading) -> None:
    """GLU-HIGH-1: > 250 mg/dL on 2 consecutive readings; prompt a ketone check (> 240) ([32][40])."""
    reading, params, rule = new.reading, stream.params, stream.episodes["GLU-HIGH-1"]
    if _glucose(reading) <= params.high1_mg_dl:
        rule.in_range()
        return
    previous = new.earlier_glucose[-1] if new.earlier_glucose else None
    if (
        previous is not None
        and previous.glucose_mg_dl is not None
        and previous.glucose_mg_dl > params.high1_mg_dl
    ):
        rule.trigger(
            reading.measured_at,
            AlertSeverity.WARNING,
            _glucose_values(reading)
            | {"previous_glucose_mg_dl": previous.glucose_mg_dl, "advice": "check ketones"},
            [previous.reading_id, reading.reading_id],
        )
    else:
        rule.neutral()


def glu_high_2(stream: PatientStream, new: NewReading) -> None:
    """GLU-HIGH-2: >= 300 mg/dL (16.7 mmol/L); urgent once confirmed ([18][40]). A single reading is
    provisional (warning) until a second >= 300 within 2 h (DEFAULT) confirms it."""
    reading, params, rule = new.reading, stream.params, stream.episodes["GLU-HIGH-2"]
    if _glucose(reading) < params.high2_mg_dl:
        rule.in_range()
        return
    confirming = [
        earlier
        for earlier in new.earlier_glucose
        if earlier.glucose_mg_dl is not None
        and earlier.glucose_mg_dl >= params.high2_mg_dl
        and reading.measured_at - earlier.measured_at <= params.high2_confirm
    ]
    rule.trigger(
        reading.measured_at,
        AlertSeverity.URGENT if confirming else AlertSeverity.WARNING,
        _glucose_values(reading) | {"confirmed": bool(confirming)},
        [confirming[-1].reading_id, reading.reading_id] if confirming else [reading.reading_id],
    )


def glu_high_3(stream: PatientStream, new: NewReading) -> None:
    """GLU-HIGH-3 on each fingerstick (see `_glu_high_3`)."""
    _glu_high_3(stream)


def glu_high_3_on_report(stream: PatientStream, report: PatientReport) -> None:
    """GLU-HIGH-3 again when ketones or symptoms are reported, against the latest fingerstick."""
    if report.kind in (ReportKind.SYMPTOMS, ReportKind.KETONES):
        _glu_high_3(stream)


def _glu_high_3(stream: PatientStream) -> None:
    """GLU-HIGH-3: the latest fingerstick >= 600 mg/dL (HHS range), or >= 200 mg/dL with ketones
    >= 3.0 mmol/L or DKA symptoms reported within 2 h ([39])."""
    params, rule = stream.params, stream.episodes["GLU-HIGH-3"]
    latest = stream.recent_glucose[-1] if stream.recent_glucose else None
    if latest is None or latest.glucose_mg_dl is None:
        return
    glucose = latest.glucose_mg_dl
    if glucose >= params.high3_mg_dl:
        rule.trigger(
            latest.measured_at,
            AlertSeverity.URGENT,
            {"glucose_mg_dl": glucose, "criterion": "HHS range >= 600 mg/dL", "advice": "emergency services"},
            [latest.reading_id],
        )
        return
    if glucose < params.dka_mg_dl:
        rule.in_range()
        return
    ketones = [
        report
        for report in stream.reports
        if report.kind is ReportKind.KETONES
        and report.ketones_mmol_l is not None
        and report.ketones_mmol_l >= KETONE_POSITIVE_MMOL_L
        and abs(report.reported_at - latest.measured_at) <= DKA_WINDOW
    ]
    symptoms = stream.symptoms_near(latest.measured_at, DKA_SYMPTOMS, DKA_WINDOW)
    if not (ketones or symptoms):
        rule.neutral()
        return
    rule.trigger(
        latest.measured_at,
        AlertSeverity.URGENT,
        {
            "glucose_mg_dl": glucose,
            "ketones_mmol_l": ketones[-1].ketones_mmol_l if ketones else None,
            "symptoms": sorted(symptoms),
            "criterion": "ketones/symptoms with >= 200 mg/dL",
            "advice": "emergency services",
        },
        [latest.reading_id],
    )


# ==================================================================================================
# Data quality


def dq_02(stream: PatientStream, new: NewReading) -> None:
    """DQ-02: an invalid or flagged reading, left out of averages and of every other rule ([27][61])."""
    reading, rule = new.reading, stream.episodes["DQ-02"]
    if not reading.excluded_from_averages:
        rule.in_range()
        return
    rule.trigger(
        reading.measured_at,
        AlertSeverity.INFO,
        {"kind": reading.kind.value, "reasons": list(reading.exclusion_reasons)},
        [reading.reading_id],
    )


ReadingCheck = Callable[[PatientStream, NewReading], None]
ReportRule = Callable[[PatientStream, PatientReport], None]


@dataclass(frozen=True, slots=True)
class ReadingRule:
    judges: frozenset[Judged]
    check: ReadingCheck


def _rule(check: ReadingCheck, *judges: Judged) -> ReadingRule:
    return ReadingRule(frozenset(judges), check)


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
_CHECKS_OF: dict[frozenset[Judged], tuple[ReadingCheck, ...]] = {}


def _checks_of(sorts: frozenset[Judged]) -> tuple[ReadingCheck, ...]:
    """The checks of the rules that judge a reading of these sorts, in table order."""
    checks = _CHECKS_OF.get(sorts)
    if checks is None:
        checks = _CHECKS_OF[sorts] = tuple(rule.check for rule in ON_READING.values() if rule.judges & sorts)
    return checks


# Rule id -> what the rule does with a patient's report (symptoms, a severe hypo event, ketones).
ON_REPORT: dict[str, ReportRule] = {
    "BP-CRIT-3": bp_crit_3_on_report,
    "BP-LOW-1": bp_low_1_on_report,
    "GLU-HYPO-3": glu_hypo_3_on_report,
    "GLU-HIGH-3": glu_high_3_on_report,
}
