"""Guideline profiles (cn, us, eu) and per-patient targets set by the doctor.

A profile chooses thresholds where guidelines differ (clinical-rules.md §7: "Locale profile parameters
in braces {US|EU|CN}"); a patient's targets override the profile where the doctor set them.
All glucose thresholds are held in mg/dL (canonical, DESIGN.md Storage); values the guideline states
in mmol/L are converted with vitals.units.MG_DL_PER_MMOL_L = 18.01559 ([58], clinical-rules.md intro).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from vitals.payload import AlertSeverity
from vitals.units import mmol_l_to_mg_dl

# Tiny tolerance so a meter value printed in mmol/L equal to the threshold compares as equal after
# conversion (3.9 mmol/L -> 70.2608 mg/dL).
THRESHOLD_EPSILON = 1e-6


class ProfileName(StrEnum):
    CN = "cn"
    US = "us"
    EU = "eu"


@dataclass(frozen=True, slots=True)
class Profile:
    name: ProfileName
    # BP-CRIT-*: SBP >= 180 or DBP >= {US/EU: 120 | CN: 110} ([4][5][17]).
    crisis_systolic_mmhg: float
    crisis_diastolic_mmhg: float
    # BP-CTRL-1: W7 mean >= {EU/CN: 135/85 | US: 130/80} ([1][6][9][11][12]).
    goal_systolic_mmhg: float
    goal_diastolic_mmhg: float
    # BP-CTRL-3: W7 mean >= 145/90 (ACC/AHA Table 7 [1]) or >= 150/95 (NICE [9]).
    stage2_systolic_mmhg: float
    stage2_diastolic_mmhg: float
    # GLU-HYPO-1: Level 1 < 70 mg/dL ([30]); CN: <= 3.9 mmol/L is urgent ([18]).
    hypo1_inclusive_mg_dl: float | None  # CN: "<= 3.9 mmol/L"; None = strict "< 70 mg/dL"
    hypo1_severity: AlertSeverity
    # GLU-CTRL-1: fasting mean not at target: CN/EU >= 7.0 mmol/L ([41][18]); US > 130 mg/dL (ADA
    # pre-prandial 80-130 [31]).
    fasting_limit_mg_dl: float
    fasting_limit_inclusive: bool
    utc_offset_default: str  # IANA zone used when a patient has none


PROFILES: dict[ProfileName, Profile] = {
    ProfileName.CN: Profile(
        ProfileName.CN,
        180.0,
        110.0,
        135.0,
        85.0,
        # CN has no home stage-2 equivalent in the table; DEFAULT: the ACC/AHA 145/90 ([1]).
        145.0,
        90.0,
        mmol_l_to_mg_dl(3.9),
        AlertSeverity.URGENT,
        mmol_l_to_mg_dl(7.0),
        True,
        "Asia/Shanghai",
    ),
    ProfileName.US: Profile(
        ProfileName.US,
        180.0,
        120.0,
        130.0,
        80.0,
        145.0,
        90.0,
        None,
        AlertSeverity.WARNING,
        130.0,
        False,
        "America/New_York",
    ),
    ProfileName.EU: Profile(
        ProfileName.EU,
        180.0,
        120.0,
        135.0,
        85.0,
        150.0,
        95.0,
        None,
        AlertSeverity.WARNING,
        mmol_l_to_mg_dl(7.0),
        True,
        "Europe/Berlin",
    ),
}


def profile(name: str | ProfileName) -> Profile:
    return PROFILES[ProfileName(name)]


@dataclass(frozen=True, slots=True)
class PatientTargets:
    """What the family doctor set for one patient; None = use the profile's value."""

    goal_systolic_mmhg: float | None = None  # e.g. 130/80 with diabetes/CHD/CKD ([11])
    goal_diastolic_mmhg: float | None = None
    fasting_limit_mg_dl: float | None = None
    postprandial_limit_mg_dl: float | None = None
    # Level-1 hypo threshold set by the doctor (strict "<"); reading-level rule only (GLU-HYPO-1/2
    # hysteresis); the vectorised GLU-HYPO-REC count keeps the profile's threshold.
    hypo1_mg_dl: float | None = None
    older_or_high_risk: bool = False  # CGM targets for older / high-risk adults ([33])
    titration: bool = False  # BP titration or insulin: DQ-01 after 3 days and warning ([58] DEFAULT)
    timezone: str | None = None  # IANA zone for morning/evening and day boundaries

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> PatientTargets:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown target fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class RuleParameters:
    """Parameters of every rule for one patient: profile values with the patient's targets applied.

    Everything not guideline-fixed is named DEFAULT in its comment (clinical-rules.md §8).
    """

    profile: Profile
    crisis_systolic_mmhg: float
    crisis_diastolic_mmhg: float
    goal_systolic_mmhg: float
    goal_diastolic_mmhg: float
    stage2_systolic_mmhg: float
    stage2_diastolic_mmhg: float
    fasting_limit_mg_dl: float
    fasting_limit_inclusive: bool
    postprandial_limit_mg_dl: float
    older_or_high_risk: bool
    titration: bool
    timezone: str
    hypo1_override: bool = False
    # Retest window of BP-CRIT-2 ("repeat within 15 min", §7) and the session of BP-LOW-1 / HR-*.
    session: timedelta = timedelta(minutes=15)
    # Symptom report near a crisis / low reading (BP-CRIT-3, BP-LOW-1 urgent): DEFAULT 60 min.
    symptom_window: timedelta = timedelta(minutes=60)
    # W7 (§7 conventions): 7 days, day 1 excluded, >= 12 valid readings, else insufficient.
    w7_days: int = 7
    w7_min_readings: int = 12
    w7_min_days: int = 3  # China 2019 HBPM: ">= 3 days" if 7 impossible ([14])
    am_min_readings: int = 3  # DEFAULT: per slot, for BP-AM-1/2
    # Morning 06-09 h and evening 18-21 h in the China 2019 HBPM guideline ([14]); DEFAULT widened so
    # that a reading a little early or late still counts: morning 04-12 h, evening 17-24 h local.
    morning_hours: tuple[int, int] = (4, 12)
    evening_hours: tuple[int, int] = (17, 24)
    am_systolic_mmhg: float = 135.0  # BP-AM-1 ([20][13])
    am_diastolic_mmhg: float = 85.0
    am_difference_mmhg: float = 20.0  # BP-AM-2 MEdif >= 20 ([21])
    low_systolic_mmhg: float = 90.0  # BP-LOW-1 ([28])
    low_diastolic_mmhg: float = 60.0
    low2_fall_mmhg: float = 20.0  # BP-LOW-2 ([9][29])
    # BP-TREND-1 (DEFAULT params [52][53][54]): EWMA lambda 0.2, L 3; CUSUM k 0.5 sigma, h 4 sigma;
    # 28-day baseline with >= 10 days; monitored window 14 days (DEFAULT); slope over >= 7 daily means.
    trend_baseline_days: int = 28
    trend_min_baseline_days: int = 10
    trend_window_days: int = 14
    ewma_lambda: float = 0.2
    ewma_l: float = 3.0
    cusum_k_sigma: float = 0.5
    cusum_h_sigma: float = 4.0
    slope_min_days: int = 7
    hr_low_bpm: float = 50.0  # HR-LOW ([23])
    hr_low_urgent_bpm: float = 40.0  # DEFAULT
    hr_high_bpm: float = 100.0  # HR-HIGH ([24][18])
    hr_high_urgent_bpm: float = 120.0  # DEFAULT
    irr_window: timedelta = timedelta(days=7)  # HR-IRR: >= 2 sessions / 7 days ([25a])
    hypo1_mg_dl: float = 70.0  # GLU-HYPO-1 Level 1 < 70 ([30])
    hypo2_mg_dl: float = 54.0  # GLU-HYPO-2 Level 2 < 54 ([30])
    high1_mg_dl: float = 250.0  # GLU-HIGH-1 > 250 on 2 consecutive ([32][40])
    ketone_check_mg_dl: float = 240.0  # ADA-attributed ketone check > 240 ([40])
    high2_mg_dl: float = 300.0  # GLU-HIGH-2 >= 300 mg/dL (16.7 mmol/L) ([18][40])
    high2_confirm: timedelta = timedelta(hours=2)  # DEFAULT: the confirming reading comes within 2 h
    high3_mg_dl: float = 600.0  # GLU-HIGH-3 HHS >= 600 ([39])
    dka_mg_dl: float = 200.0  # ketones/symptoms with >= 200 ([39])
    hypo_rec_l1_count: int = 2  # GLU-HYPO-REC DEFAULT: >= 2 Level-1 in 7 days
    hypo_rec_l1_days: int = 7
    hypo_rec_l2_days: int = 14  # or any Level-2 in 14 days
    glu_window_days: int = 7  # GLU-CTRL-1/2: 7-day mean
    glu_min_values: int = 3  # ">= 3 fasting values" (§7); DEFAULT for post-prandial too
    cgm_days: int = 14  # CGM-SUFF: 14 days, >= 70 % wear ([32][33])
    cgm_min_wear: float = 0.70
    cgm_slot_minutes: int = 15  # wear counted in 15-min slots (episodes >= 15 min, [34])
    gmi_rise_points: float = 0.5  # CGM-GMI DEFAULT
    stale_stable: timedelta = timedelta(days=7)  # DQ-01 DEFAULT
    stale_titration: timedelta = timedelta(days=3)
    stale_cgm: timedelta = timedelta(minutes=30)
    sufficiency_days: int = 30  # DQ-03: >= 16 distinct data days in rolling 30 ([57])
    sufficiency_min_days: int = 16
    clear_after_readings: int = 2  # ESC-1: auto-resolve after 2 consecutive in-range readings ([58])

    @property
    def hypo1_severity(self) -> AlertSeverity:
        return self.profile.hypo1_severity

    def is_hypo1(self, glucose_mg_dl: float) -> bool:
        inclusive = self.profile.hypo1_inclusive_mg_dl
        if inclusive is not None and not self.hypo1_override:
            return glucose_mg_dl <= inclusive + THRESHOLD_EPSILON
        return glucose_mg_dl < self.hypo1_mg_dl


def parameters(prof: Profile, targets: PatientTargets | None = None) -> RuleParameters:
    t = targets or PatientTargets()
    return RuleParameters(
        profile=prof,
        crisis_systolic_mmhg=prof.crisis_systolic_mmhg,
        crisis_diastolic_mmhg=prof.crisis_diastolic_mmhg,
        goal_systolic_mmhg=t.goal_systolic_mmhg
        if t.goal_systolic_mmhg is not None
        else prof.goal_systolic_mmhg,
        goal_diastolic_mmhg=(
            t.goal_diastolic_mmhg if t.goal_diastolic_mmhg is not None else prof.goal_diastolic_mmhg
        ),
        stage2_systolic_mmhg=prof.stage2_systolic_mmhg,
        stage2_diastolic_mmhg=prof.stage2_diastolic_mmhg,
        fasting_limit_mg_dl=(
            t.fasting_limit_mg_dl if t.fasting_limit_mg_dl is not None else prof.fasting_limit_mg_dl
        ),
        fasting_limit_inclusive=prof.fasting_limit_inclusive if t.fasting_limit_mg_dl is None else True,
        # GLU-CTRL-2: 2-h PP >= 10.0 mmol/L (180 mg/dL) ([31][41]).
        postprandial_limit_mg_dl=(
            t.postprandial_limit_mg_dl if t.postprandial_limit_mg_dl is not None else 180.0
        ),
        older_or_high_risk=t.older_or_high_risk,
        titration=t.titration,
        timezone=t.timezone or prof.utc_offset_default,
        hypo1_override=t.hypo1_mg_dl is not None,
        hypo1_mg_dl=t.hypo1_mg_dl if t.hypo1_mg_dl is not None else 70.0,
    )


def with_overrides(params: RuleParameters, **changes: Any) -> RuleParameters:
    return replace(params, **changes)
