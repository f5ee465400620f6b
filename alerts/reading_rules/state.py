"""What the rules on single readings keep of one patient, and how a new reading reaches them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.episodes import RuleEpisodes
from alerts.model import Observation, ObservationKind, PatientReport, ReportKind
from alerts.profiles import RuleParameters

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


class Judged:
    """Which readings a rule judges, as bit flags: a reading is of one or more of these sorts."""

    EVERY = 1  # every reading, excluded ones too
    CUFF = 2  # a valid reading of the cuff, its pressures possibly missing
    PRESSURE = 4  # a valid blood pressure with both pressures
    PULSE = 8  # a valid reading of the cuff with a pulse
    FINGERSTICK = 16  # a valid fingerstick glucose
    CGM = 32  # a valid CGM glucose


def judged_as(reading: Observation) -> int:
    """The sorts (`Judged` flags) a reading is of."""
    if reading.excluded_from_averages:
        return Judged.EVERY
    if reading.kind is ObservationKind.BLOOD_PRESSURE:
        sorts = Judged.EVERY | Judged.CUFF
        if reading.usable_bp:
            sorts |= Judged.PRESSURE
        if reading.usable_pulse:
            sorts |= Judged.PULSE
        return sorts
    if reading.usable_glucose:
        return Judged.EVERY | (Judged.FINGERSTICK if reading.kind is ObservationKind.GLUCOSE else Judged.CGM)
    return Judged.EVERY


@dataclass(slots=True)
class NewReading:
    """A reading as the rules see it, with the patient's recent readings from before it."""

    reading: Observation
    judged_as: int  # `Judged` flags
    earlier_in_session: list[Observation]  # valid blood pressures of the session before this one
    earlier_glucose: list[Observation]  # the latest valid fingerstick glucose readings before this one


class PatientReadings:
    """What the reading rules keep of one patient: each rule's episode and the recent readings and
    reports they look back on."""

    def __init__(self, patient_id: str, params: RuleParameters) -> None:
        self.patient_id = patient_id
        self.params = params
        self.zone = ZoneInfo(params.timezone)
        self.episodes = {
            rule_id: RuleEpisodes(rule_id, patient_id, params.clear_after_readings)
            for rule_id in READING_RULE_IDS
        }
        self.recent_bp: deque[Observation] = deque(maxlen=8)  # valid blood pressures with both pressures
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

    def symptoms_near(self, at: datetime, wanted: frozenset[str], window: timedelta) -> set[str]:
        found: set[str] = set()
        for report in self.reports:
            if report.kind is ReportKind.SYMPTOMS and abs(report.reported_at - at) <= window:
                found |= report.symptoms & wanted
        return found

    def take(self, reading: Observation) -> NewReading:
        """The reading with what came before it, then kept among the recent readings. An excluded
        reading is kept nowhere: it only raises DQ-02."""
        sorts = judged_as(reading)
        if reading.excluded_from_averages:
            return NewReading(reading, sorts, [], [])
        earlier_in_session: list[Observation] = []
        earlier_glucose: list[Observation] = []
        if sorts & Judged.PRESSURE:
            earlier_in_session = [
                earlier
                for earlier in self.recent_bp
                if reading.measured_at - earlier.measured_at <= self.params.session
            ]
            self.recent_bp.append(reading)
        if sorts & Judged.CUFF:
            session = self.sessions[-1] if self.sessions else None
            if session is None or reading.measured_at - session.end > self.params.session:
                session = Session(reading.measured_at, reading.measured_at)
                self.sessions.append(session)
            else:
                session.end = reading.measured_at
            session.reading_ids.append(reading.reading_id)
            session.irregular |= reading.irregular_pulse
            if sorts & Judged.PULSE:
                assert reading.pulse_bpm is not None
                session.pulses.append(reading.pulse_bpm)
        elif sorts & Judged.FINGERSTICK:
            earlier_glucose = list(self.recent_glucose)
            self.recent_glucose.append(reading)
        return NewReading(reading, sorts, earlier_in_session, earlier_glucose)
