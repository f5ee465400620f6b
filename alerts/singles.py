"""Reading-level rules: one patient's observations and reports, streamed in time order.

Each rule is a small state machine. A trigger opens (or raises) an episode; ESC-1 hysteresis ends it
only after `clear_after_readings` (2) consecutive in-range readings (clinical-rules.md §7 ESC-1, [58]).
Streaming once over a history gives the state after every item, so replaying months of readings is
linear, and the live path keeps the last state.

Single-reading rules use only readings not excluded by DQ-02 ("R = single valid reading", §7
conventions): a cuff that flagged movement, cuff fit or position, or sent NaN, triggers nothing but
DQ-02. CGM (interstitial) values raise GLU-HYPO-2 only as an episode of >= 15 min below 54 mg/dL
([34]), and otherwise feed the CGM-* window rules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts.catalogue import RULES, SEVERITY_RANK
from alerts.model import (
    CRISIS_SYMPTOMS,
    DKA_SYMPTOMS,
    KETONE_POSITIVE_MMOL_L,
    LOW_BP_SYMPTOMS,
    Observation,
    ObservationKind,
    Outcome,
    OutcomeStatus,
    PatientReport,
    ReportKind,
)
from alerts.profiles import RuleParameters
from vitals.payload import AlertSeverity

MAX_READING_IDS = 20
SEVERE_HYPO_ACTIVE = timedelta(days=14)  # GLU-HYPO-3 stays current for 14 days after the report (DEFAULT)
ORTHOSTATIC_ACTIVE = timedelta(days=7)  # BP-LOW-2 standing-fall report current for 7 days (DEFAULT)
DKA_WINDOW = timedelta(hours=2)  # GLU-HIGH-3: ketones/symptoms within 2 h of a >= 200 reading (DEFAULT)
CGM_EPISODE = timedelta(minutes=15)  # CGM hypo episodes last >= 15 min (ATTD 2017 [34])

SINGLE_RULES = (
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
_RANK_SEVERITY = {v: k for k, v in SEVERITY_RANK.items()}


@dataclass(slots=True)
class _Episode:
    severity: int
    start: datetime
    end: datetime
    values: dict[str, Any]
    reading_ids: list[str]
    key: str
    clear_count: int = 0


@dataclass(slots=True)
class _Tracker:
    rule_id: str
    patient_id: str
    clear_after: int
    episode: _Episode | None = None
    seen: bool = False
    dirty: bool = False  # changed since the last `changed_outcomes()`
    ended: list[Outcome] = field(default_factory=list)  # each episode that cleared, as it last fired

    def trigger(self, at: datetime, severity: AlertSeverity, values: dict[str, Any], ids: list[str]) -> None:
        self.seen = True
        self.dirty = True
        rank = SEVERITY_RANK[severity]
        ep = self.episode
        if ep is None:
            self.episode = _Episode(
                rank, at, at, dict(values), list(ids)[:MAX_READING_IDS], ids[0] if ids else ""
            )
            return
        ep.severity = max(ep.severity, rank)
        ep.end = max(ep.end, at)
        ep.values = dict(values)
        for rid in ids:
            if rid not in ep.reading_ids and len(ep.reading_ids) < MAX_READING_IDS:
                ep.reading_ids.append(rid)
        ep.clear_count = 0

    def in_range(self) -> None:
        if not self.seen:
            self.seen = self.dirty = True
        if self.episode is not None:
            self.episode.clear_count += 1
            if self.episode.clear_count >= self.clear_after:
                self.ended.append(self.outcome())
                self.episode = None
                self.dirty = True

    def neutral(self) -> None:
        """Neither a trigger nor back in range: the in-range streak is broken."""
        if not self.seen:
            self.seen = self.dirty = True
        if self.episode is not None:
            self.episode.clear_count = 0

    def expire(self) -> None:
        if self.episode is not None:
            self.dirty = True
        self.episode = None

    def outcome(self) -> Outcome:
        ep = self.episode
        if ep is not None:
            return Outcome(
                rule_id=self.rule_id,
                patient_id=self.patient_id,
                status=OutcomeStatus.FIRING,
                severity=_RANK_SEVERITY[ep.severity],
                window_start=ep.start,
                window_end=ep.end,
                values=dict(ep.values),
                reading_ids=tuple(ep.reading_ids),
                episode_key=ep.key,
            )
        return Outcome(
            rule_id=self.rule_id,
            patient_id=self.patient_id,
            status=OutcomeStatus.CLEAR if self.seen else OutcomeStatus.UNKNOWN,
        )


@dataclass(slots=True)
class _Session:
    start: datetime
    end: datetime
    pulses: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    irregular: bool = False

    @property
    def mean_pulse(self) -> float | None:
        return sum(self.pulses) / len(self.pulses) if self.pulses else None


class PatientStream:
    """The reading-level rules for one patient. Feed items in time order; read `outcomes()`."""

    def __init__(self, patient_id: str, params: RuleParameters) -> None:
        self.patient_id = patient_id
        self.params = params
        self.zone = ZoneInfo(params.timezone)
        self.trackers = {rid: _Tracker(rid, patient_id, params.clear_after_readings) for rid in SINGLE_RULES}
        self.recent_bp: deque[Observation] = deque(maxlen=8)
        self.recent_glucose: deque[Observation] = deque(maxlen=8)
        self.reports: deque[PatientReport] = deque(maxlen=64)
        self.sessions: deque[_Session] = deque(maxlen=32)
        self.low_pulse_by_day: dict[str, list[Observation]] = {}
        self.latest_at: datetime | None = None
        self._seen_ids: set[str] = set()
        self._severe_hypo_at: datetime | None = None
        self._orthostatic: PatientReport | None = None
        self._cgm_last: datetime | None = None
        self._cgm_low2_since: datetime | None = None

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
            self._report(item)
        else:
            self._observation(item)
        return True

    def advance(self, now: datetime) -> None:
        """Let time-limited episodes (reported events) expire."""
        if self._severe_hypo_at is not None and now - self._severe_hypo_at > SEVERE_HYPO_ACTIVE:
            self.trackers["GLU-HYPO-3"].expire()
            self._severe_hypo_at = None

    def outcomes(self) -> list[Outcome]:
        return [t.outcome() for t in self.trackers.values()]

    def ended_episodes(self, reading_ids: Collection[str]) -> list[Outcome]:
        """The episodes that fired and cleared again in the readings fed, as they last fired, of those
        with evidence among `reading_ids`: readings evaluated together for the first time (a
        gateway's backlog after an outage) may hold a whole episode, which no evaluation saw firing."""
        if not reading_ids:
            return []
        return [
            o
            for t in self.trackers.values()
            for o in t.ended
            if any(rid in reading_ids for rid in o.reading_ids)
        ]

    def changed_outcomes(self) -> list[Outcome]:
        """Outcomes of the rules whose state changed since the last call (for timelines)."""
        out = []
        for t in self.trackers.values():
            if t.dirty:
                t.dirty = False
                out.append(t.outcome())
        return out

    def orthostatic_report(self, now: datetime) -> PatientReport | None:
        rep = self._orthostatic
        if rep is not None and now - rep.reported_at <= ORTHOSTATIC_ACTIVE:
            return rep
        return None

    # ----------------------------------------------------------------------------------------------
    def _symptoms_near(self, at: datetime, wanted: frozenset[str], window: timedelta) -> set[str]:
        found: set[str] = set()
        for rep in self.reports:
            if rep.kind is ReportKind.SYMPTOMS and abs(rep.reported_at - at) <= window:
                found |= rep.symptoms & wanted
        return found

    def _observation(self, obs: Observation) -> None:
        p = self.params
        dq = self.trackers["DQ-02"]
        if obs.excluded_from_averages:
            dq.trigger(
                obs.measured_at,
                AlertSeverity.INFO,
                {"kind": obs.kind.value, "reasons": list(obs.exclusion_reasons)},
                [obs.reading_id],
            )
            return
        dq.in_range()
        if obs.kind is ObservationKind.BLOOD_PRESSURE:
            self._blood_pressure(obs, p)
        elif obs.kind is ObservationKind.GLUCOSE and obs.usable_glucose:
            self._glucose(obs, p)
        elif obs.kind is ObservationKind.CGM and obs.usable_glucose:
            self._cgm(obs, p)

    def _cgm(self, o: Observation, p: RuleParameters) -> None:
        """CGM Level 2 hypoglycaemia: < 54 mg/dL for an episode of >= 15 min ("episodes defined as
        >= 15 min", ATTD 2017 [34]; Level 2 "clinically significant / immediate action", [30][32])
        raises GLU-HYPO-2 as a fingerstick would. Level 1 time on CGM is judged over 14 days by
        CGM-TBR instead: a CGM user at the 4 % TBR target spends about an hour a day below 70, and
        one alert per dip would drown the family doctor (§3.2 alert fatigue). A gap in the sensor data
        longer than 15 min starts a new episode."""
        g = o.glucose_mg_dl
        assert g is not None
        tracker = self.trackers["GLU-HYPO-2"]
        if self._cgm_last is not None and o.measured_at - self._cgm_last > CGM_EPISODE:
            self._cgm_low2_since = None
        self._cgm_last = o.measured_at
        if not p.is_hypo1(g):
            self._cgm_low2_since = None
            tracker.in_range()
            return
        if g >= p.hypo2_mg_dl:
            self._cgm_low2_since = None
            tracker.neutral()
            return
        self._cgm_low2_since = self._cgm_low2_since or o.measured_at
        minutes = (o.measured_at - self._cgm_low2_since).total_seconds() / 60.0
        if o.measured_at - self._cgm_low2_since >= CGM_EPISODE:
            values: dict[str, Any] = {
                "glucose_mg_dl": g,
                "source": "cgm",
                "episode_minutes": minutes,
                "measured_at": o.measured_at.isoformat(),
            }
            tracker.trigger(o.measured_at, AlertSeverity.URGENT, values, [o.reading_id])
        else:
            tracker.neutral()

    def _crisis(self, o: Observation) -> bool:
        assert o.systolic_mmhg is not None and o.diastolic_mmhg is not None
        return o.systolic_mmhg >= self.params.crisis_systolic_mmhg or (
            o.diastolic_mmhg >= self.params.crisis_diastolic_mmhg
        )

    def _low(self, o: Observation) -> bool:
        assert o.systolic_mmhg is not None and o.diastolic_mmhg is not None
        return (
            o.systolic_mmhg < self.params.low_systolic_mmhg
            or o.diastolic_mmhg < self.params.low_diastolic_mmhg
        )

    def _bp_values(self, o: Observation) -> dict[str, Any]:
        return {
            "systolic_mmhg": o.systolic_mmhg,
            "diastolic_mmhg": o.diastolic_mmhg,
            "pulse_bpm": o.pulse_bpm,
            "measured_at": o.measured_at.isoformat(),
            "irregular_pulse": o.irregular_pulse,
        }

    def _blood_pressure(self, o: Observation, p: RuleParameters) -> None:
        t = self.trackers
        if o.usable_bp:
            previous = [
                q for q in self.recent_bp if q.usable_bp and o.measured_at - q.measured_at <= p.session
            ]
            thresholds = {
                "crisis_systolic_mmhg": p.crisis_systolic_mmhg,
                "crisis_diastolic_mmhg": p.crisis_diastolic_mmhg,
            }
            if self._crisis(o):
                values = self._bp_values(o) | thresholds
                values["advice"] = "re-measure after 1-5 min seated rest; check red-flag symptoms"
                # BP-CRIT-1: single reading at crisis level, provisional ([4][5][17]).
                t["BP-CRIT-1"].trigger(o.measured_at, AlertSeverity.WARNING, values, [o.reading_id])
                confirm = [q for q in previous if self._crisis(q)]
                if confirm:
                    # BP-CRIT-2: 2 of 2 readings at crisis level within 15 min ([1][4][17]).
                    t["BP-CRIT-2"].trigger(
                        o.measured_at,
                        AlertSeverity.URGENT,
                        values
                        | {
                            "confirming_systolic_mmhg": confirm[-1].systolic_mmhg,
                            "confirming_diastolic_mmhg": confirm[-1].diastolic_mmhg,
                            "advice": "same-day contact by the family doctor",
                        },
                        [confirm[-1].reading_id, o.reading_id],
                    )
                symptoms = self._symptoms_near(o.measured_at, CRISIS_SYMPTOMS, p.symptom_window)
                if symptoms:
                    # BP-CRIT-3: crisis + red-flag symptom ([4][9][17][19]).
                    t["BP-CRIT-3"].trigger(
                        o.measured_at,
                        AlertSeverity.URGENT,
                        values | {"symptoms": sorted(symptoms), "advice": "advise emergency services"},
                        [o.reading_id],
                    )
            else:
                for rid in ("BP-CRIT-1", "BP-CRIT-2", "BP-CRIT-3"):
                    t[rid].in_range()
            if self._low(o):
                low_prev = [q for q in previous if self._low(q)]
                if low_prev:
                    # BP-LOW-1: SBP < 90 or DBP < 60 on 2 readings in one session ([28][19]).
                    symptoms = self._symptoms_near(o.measured_at, LOW_BP_SYMPTOMS, p.symptom_window)
                    sev = AlertSeverity.URGENT if symptoms else AlertSeverity.WARNING
                    t["BP-LOW-1"].trigger(
                        o.measured_at,
                        sev,
                        self._bp_values(o)
                        | {
                            "previous_systolic_mmhg": low_prev[-1].systolic_mmhg,
                            "previous_diastolic_mmhg": low_prev[-1].diastolic_mmhg,
                            "symptoms": sorted(symptoms),
                        },
                        [low_prev[-1].reading_id, o.reading_id],
                    )
                else:
                    t["BP-LOW-1"].neutral()
            else:
                t["BP-LOW-1"].in_range()
            self.recent_bp.append(o)
        self._pulse(o, p)

    def _pulse(self, o: Observation, p: RuleParameters) -> None:
        t = self.trackers
        # Sessions: readings within 15 min of the previous one (§7 "sessions").
        last = self.sessions[-1] if self.sessions else None
        if last is None or o.measured_at - last.end > p.session:
            last = _Session(o.measured_at, o.measured_at)
            self.sessions.append(last)
        else:
            last.end = o.measured_at
        last.ids.append(o.reading_id)
        last.irregular |= o.irregular_pulse
        # HR-IRR: flag in >= 2 of 3 sequential readings, or >= 2 sessions / 7 days ([9][25a][25b][27]).
        recent3 = [*list(self.recent_bp)[-3:]]
        flagged3 = sum(q.irregular_pulse for q in recent3)
        flagged_sessions = [
            s for s in self.sessions if s.irregular and o.measured_at - s.start <= p.irr_window
        ]
        if o.irregular_pulse and (flagged3 >= 2 or len(flagged_sessions) >= 2):
            t["HR-IRR"].trigger(
                o.measured_at,
                AlertSeverity.WARNING,
                {
                    "flagged_of_last_3_readings": flagged3,
                    "flagged_sessions_7_days": len(flagged_sessions),
                    "advice": "12-lead ECG; BP accuracy reduced with irregular pulse",
                },
                [q.reading_id for q in recent3 if q.irregular_pulse],
            )
        elif o.irregular_pulse:
            t["HR-IRR"].neutral()
        else:
            t["HR-IRR"].in_range()
        if not o.usable_pulse:
            return
        assert o.pulse_bpm is not None
        last.pulses.append(o.pulse_bpm)
        # HR-LOW: pulse < 50 on >= 2 readings in one (local) day; DEFAULT urgent < 40 ([23]).
        day = o.measured_at.astimezone(self.zone).date().isoformat()
        if o.pulse_bpm < p.hr_low_bpm:
            lows = self.low_pulse_by_day.setdefault(day, [])
            lows.append(o)
            if len(lows) >= 2:
                urgent = sum(q.pulse_bpm is not None and q.pulse_bpm < p.hr_low_urgent_bpm for q in lows) >= 2
                t["HR-LOW"].trigger(
                    o.measured_at,
                    AlertSeverity.URGENT if urgent else AlertSeverity.WARNING,
                    {"pulse_bpm": [q.pulse_bpm for q in lows], "local_day": day},
                    [q.reading_id for q in lows],
                )
            else:
                t["HR-LOW"].neutral()
        else:
            t["HR-LOW"].in_range()
        if len(self.low_pulse_by_day) > 4:
            for old in sorted(self.low_pulse_by_day)[:-4]:
                del self.low_pulse_by_day[old]
        # HR-HIGH: session mean pulse > 100 in >= 2 consecutive sessions; DEFAULT urgent > 120 ([24][18]).
        means: list[float] = []
        for sess in reversed(self.sessions):
            mean = sess.mean_pulse
            if mean is not None:
                means.insert(0, mean)
                if len(means) == 2:
                    break
        current = means[-1]
        if current > p.hr_high_bpm and len(means) >= 2 and means[-2] > p.hr_high_bpm:
            urgent = current > p.hr_high_urgent_bpm and means[-2] > p.hr_high_urgent_bpm
            t["HR-HIGH"].trigger(
                o.measured_at,
                AlertSeverity.URGENT if urgent else AlertSeverity.WARNING,
                {"session_mean_pulse_bpm": [means[-2], current]},
                [o.reading_id],
            )
        elif current > p.hr_high_bpm:
            t["HR-HIGH"].neutral()
        else:
            t["HR-HIGH"].in_range()

    def _glucose(self, o: Observation, p: RuleParameters) -> None:
        t = self.trackers
        g = o.glucose_mg_dl
        assert g is not None
        vals: dict[str, Any] = {
            "glucose_mg_dl": g,
            "glucose_mmol_l": round(g / 18.01559, 2),
            "meal": o.meal.value if o.meal else None,
            "measured_at": o.measured_at.isoformat(),
        }
        # GLU-HYPO-1 / -2 (ADA Level 1 < 70, Level 2 < 54 [30]; CN <= 3.9 mmol/L urgent [18]).
        # Back in range for both means no longer hypoglycaemic (>= 70 mg/dL, or > 3.9 mmol/L in CN).
        if p.is_hypo1(g):
            if g < p.hypo2_mg_dl:
                t["GLU-HYPO-2"].trigger(o.measured_at, AlertSeverity.URGENT, vals, [o.reading_id])
                t["GLU-HYPO-1"].neutral()
            else:
                t["GLU-HYPO-1"].trigger(o.measured_at, p.hypo1_severity, vals, [o.reading_id])
                t["GLU-HYPO-2"].neutral()
        else:
            t["GLU-HYPO-1"].in_range()
            t["GLU-HYPO-2"].in_range()
        prev = self.recent_glucose[-1] if self.recent_glucose else None
        # GLU-HIGH-1: > 250 on 2 consecutive readings; prompt ketone check (> 240) ([32][40]).
        if g > p.high1_mg_dl:
            if prev is not None and prev.glucose_mg_dl is not None and prev.glucose_mg_dl > p.high1_mg_dl:
                t["GLU-HIGH-1"].trigger(
                    o.measured_at,
                    AlertSeverity.WARNING,
                    vals | {"previous_glucose_mg_dl": prev.glucose_mg_dl, "advice": "check ketones"},
                    [prev.reading_id, o.reading_id],
                )
            else:
                t["GLU-HIGH-1"].neutral()
        else:
            t["GLU-HIGH-1"].in_range()
        # GLU-HIGH-2: >= 300 mg/dL (16.7 mmol/L); urgent once confirmed ([18][40]); a single reading is
        # provisional (warning) until a second >= 300 within 2 h (DEFAULT) confirms it.
        if g >= p.high2_mg_dl:
            confirm = [
                q
                for q in self.recent_glucose
                if q.glucose_mg_dl is not None
                and q.glucose_mg_dl >= p.high2_mg_dl
                and o.measured_at - q.measured_at <= p.high2_confirm
            ]
            sev = AlertSeverity.URGENT if confirm else AlertSeverity.WARNING
            ids = [confirm[-1].reading_id, o.reading_id] if confirm else [o.reading_id]
            t["GLU-HIGH-2"].trigger(o.measured_at, sev, vals | {"confirmed": bool(confirm)}, ids)
        else:
            t["GLU-HIGH-2"].in_range()
        # GLU-HIGH-3: >= 600 mg/dL (HHS) or ketones/DKA symptoms with >= 200 ([39]).
        self.recent_glucose.append(o)
        self._high3(o.measured_at)

    def _high3(self, at: datetime) -> None:
        p = self.params
        tr = self.trackers["GLU-HIGH-3"]
        latest = self.recent_glucose[-1] if self.recent_glucose else None
        if latest is None or latest.glucose_mg_dl is None:
            return
        g = latest.glucose_mg_dl
        if g >= p.high3_mg_dl:
            tr.trigger(
                latest.measured_at,
                AlertSeverity.URGENT,
                {"glucose_mg_dl": g, "criterion": "HHS range >= 600 mg/dL", "advice": "emergency services"},
                [latest.reading_id],
            )
            return
        if g >= p.dka_mg_dl:
            ketone = [
                r
                for r in self.reports
                if r.kind is ReportKind.KETONES
                and r.ketones_mmol_l is not None
                and r.ketones_mmol_l >= KETONE_POSITIVE_MMOL_L
                and abs(r.reported_at - latest.measured_at) <= DKA_WINDOW
            ]
            symptoms = self._symptoms_near(latest.measured_at, DKA_SYMPTOMS, DKA_WINDOW)
            if ketone or symptoms:
                tr.trigger(
                    latest.measured_at,
                    AlertSeverity.URGENT,
                    {
                        "glucose_mg_dl": g,
                        "ketones_mmol_l": ketone[-1].ketones_mmol_l if ketone else None,
                        "symptoms": sorted(symptoms),
                        "criterion": "ketones/symptoms with >= 200 mg/dL",
                        "advice": "emergency services",
                    },
                    [latest.reading_id],
                )
                return
            tr.neutral()
            return
        tr.in_range()

    def _report(self, rep: PatientReport) -> None:
        self.reports.append(rep)
        t = self.trackers
        if rep.kind is ReportKind.SEVERE_HYPO_EVENT:
            # GLU-HYPO-3: assisted event reported by patient/family ([30]).
            t["GLU-HYPO-3"].trigger(
                rep.reported_at,
                AlertSeverity.URGENT,
                {"reported_at": rep.reported_at.isoformat(), "report_id": rep.report_id},
                ["report:" + rep.report_id],
            )
            self._severe_hypo_at = rep.reported_at
        elif rep.kind is ReportKind.ORTHOSTATIC:
            self._orthostatic = rep
        elif rep.kind is ReportKind.SYMPTOMS:
            # A report after the reading still counts (symptom window is two-sided).
            for o in self.recent_bp:
                if abs(o.measured_at - rep.reported_at) > self.params.symptom_window or not o.usable_bp:
                    continue
                red = rep.symptoms & CRISIS_SYMPTOMS
                if red and self._crisis(o):
                    t["BP-CRIT-3"].trigger(
                        o.measured_at,
                        AlertSeverity.URGENT,
                        self._bp_values(o) | {"symptoms": sorted(red), "advice": "advise emergency services"},
                        [o.reading_id],
                    )
                low_symptoms = rep.symptoms & LOW_BP_SYMPTOMS
                if low_symptoms and t["BP-LOW-1"].episode is not None:
                    t["BP-LOW-1"].trigger(
                        o.measured_at,
                        AlertSeverity.URGENT,
                        self._bp_values(o) | {"symptoms": sorted(low_symptoms)},
                        [o.reading_id],
                    )
            self._high3(rep.reported_at)
        elif rep.kind is ReportKind.KETONES:
            self._high3(rep.reported_at)


def rule_titles() -> dict[str, str]:
    return {rid: RULES[rid].title for rid in SINGLE_RULES}
