"""What the window rules judge (the figures of every patient and day, the patients' targets) and
what they give back (a status and severity per patient and day)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from alerts.daily_matrix import BoolArray, DailyMatrix, FloatArray
from alerts.profiles import RuleParameters
from alerts.summaries import (
    HomeBloodPressureWindows,
    at_or_above_goal,
    home_blood_pressure_windows,
    range_percentages,
)
from alerts.trends import rolling_sum
from vitals.payload import AlertSeverity

StatusCodes = npt.NDArray[np.int8]

UNKNOWN, CLEAR, FIRING = np.int8(0), np.int8(1), np.int8(2)
INFO, WARNING = 0, 1
SEVERITY_OF_RANK = {0: AlertSeverity.INFO, 1: AlertSeverity.WARNING, 2: AlertSeverity.URGENT}


@dataclass(slots=True)
class WindowResult:
    """One rule over (P, D): status codes, severity ranks and the values that explain it."""

    rule_id: str
    status: StatusCodes
    severity: StatusCodes
    values: dict[str, FloatArray]
    window_days: int


@dataclass(frozen=True, slots=True)
class PatientArrays:
    """Per-patient targets as arrays (P,), so the doctor's overrides apply inside the vectorised sweep."""

    goal_systolic_mmhg: FloatArray
    goal_diastolic_mmhg: FloatArray
    fasting_limit_mg_dl: FloatArray
    fasting_limit_inclusive: BoolArray
    postprandial_limit_mg_dl: FloatArray
    older_or_high_risk: BoolArray
    titration: BoolArray

    @classmethod
    def from_parameters(cls, params: Sequence[RuleParameters]) -> PatientArrays:
        return cls(
            np.array([one.goal_systolic_mmhg for one in params], dtype=np.float64),
            np.array([one.goal_diastolic_mmhg for one in params], dtype=np.float64),
            np.array([one.fasting_limit_mg_dl for one in params], dtype=np.float64),
            np.array([one.fasting_limit_inclusive for one in params], dtype=np.bool_),
            np.array([one.postprandial_limit_mg_dl for one in params], dtype=np.float64),
            np.array([one.older_or_high_risk for one in params], dtype=np.bool_),
            np.array([one.titration for one in params], dtype=np.bool_),
        )

    @classmethod
    def uniform(cls, params: RuleParameters, patients: int) -> PatientArrays:
        return cls.from_parameters([params]).repeat(patients)

    def repeat(self, patients: int) -> PatientArrays:
        return PatientArrays(*(np.repeat(getattr(self, name), patients) for name in _PATIENT_ARRAY_FIELDS))


_PATIENT_ARRAY_FIELDS = (
    "goal_systolic_mmhg",
    "goal_diastolic_mmhg",
    "fasting_limit_mg_dl",
    "fasting_limit_inclusive",
    "postprandial_limit_mg_dl",
    "older_or_high_risk",
    "titration",
)


def status_codes(fires: BoolArray, known: BoolArray) -> StatusCodes:
    codes = np.where(known, np.where(fires, FIRING, CLEAR), UNKNOWN)
    return codes.astype(np.int8)


@dataclass(frozen=True, slots=True)
class CgmWindows:
    """The CGM figures of the 14-day windows (CGM-* rules, Battelino 2019 [32][33])."""

    readings: FloatArray
    wear_fraction: FloatArray
    cgm_user: BoolArray  # CGM data in the last 28 days
    sufficient: BoolArray  # CGM user with >= 70 % of the 15-minute slots covered
    below_54_percent: FloatArray
    below_70_percent: FloatArray
    above_180_percent: FloatArray
    above_250_percent: FloatArray
    in_range_percent: FloatArray
    below_range_breach: BoolArray  # the CGM-TBR condition
    shown: dict[str, FloatArray]  # the values every CGM-* alert shows


class WindowInputs:
    """What the window rules judge, for every patient and day; a figure several rules share is
    computed once, when the first of them asks for it."""

    def __init__(
        self, matrix: DailyMatrix, params: RuleParameters, targets: PatientArrays, now_s: float | None
    ) -> None:
        self.matrix = matrix
        self.params = params
        self.targets = targets
        self.now_s = now_s
        self.shape = matrix.shape

    def severity(self, rank: int) -> StatusCodes:
        return np.full(self.shape, rank, dtype=np.int8)

    @cached_property
    def home(self) -> HomeBloodPressureWindows:
        """The W7 home-BP average (§1.3, §7): days 2..7 of the 7-day window."""
        matrix = self.matrix
        return home_blood_pressure_windows(matrix["bp_n"], matrix["bp_sys"], matrix["bp_dia"], self.params)

    @cached_property
    def home_values(self) -> dict[str, FloatArray]:
        home = self.home
        return {
            "w7_systolic_mmhg": home.systolic_mmhg,
            "w7_diastolic_mmhg": home.diastolic_mmhg,
            "w7_readings": home.readings,
        }

    @cached_property
    def above_goal(self) -> BoolArray:
        """The W7 mean at or above the patient's goal: the BP-CTRL-1 condition."""
        home, targets = self.home, self.targets
        return at_or_above_goal(
            home.systolic_mmhg,
            home.diastolic_mmhg,
            targets.goal_systolic_mmhg[:, None],
            targets.goal_diastolic_mmhg[:, None],
        )

    @cached_property
    def above_goal_values(self) -> dict[str, FloatArray]:
        return dict(
            self.home_values,
            goal_systolic_mmhg=np.broadcast_to(self.targets.goal_systolic_mmhg[:, None], self.shape),
            goal_diastolic_mmhg=np.broadcast_to(self.targets.goal_diastolic_mmhg[:, None], self.shape),
        )

    @cached_property
    def morning_evening(self) -> dict[str, FloatArray]:
        """Morning and evening means over the W7 window (BP-AM-1, BP-AM-2)."""
        matrix, window = self.matrix, self.home.window
        morning_n, evening_n = window.sum(matrix["am_n"]), window.sum(matrix["pm_n"])
        return {
            "morning_systolic_mmhg": window.sum(matrix["am_sys"]) / morning_n,
            "morning_diastolic_mmhg": window.sum(matrix["am_dia"]) / morning_n,
            "morning_readings": morning_n,
            "evening_systolic_mmhg": window.sum(matrix["pm_sys"]) / evening_n,
            "evening_diastolic_mmhg": window.sum(matrix["pm_dia"]) / evening_n,
            "evening_readings": evening_n,
        }

    @cached_property
    def morning_evening_known(self) -> BoolArray:
        means, least = self.morning_evening, self.params.am_min_readings
        return np.asarray((means["morning_readings"] >= least) & (means["evening_readings"] >= least))

    @cached_property
    def cgm(self) -> CgmWindows:
        matrix, params, days = self.matrix, self.params, self.params.cgm_days
        readings = rolling_sum(matrix["cgm_n"], days)
        wear = rolling_sum(matrix["cgm_slots"], days) / (days * (24 * 60 // params.cgm_slot_minutes))
        cgm_user = rolling_sum(matrix["cgm_n"], 2 * days) > 0
        ranges = range_percentages(
            readings,
            *(rolling_sum(matrix[name], days) for name in ("cgm_lt54", "cgm_lt70", "cgm_gt180", "cgm_gt250")),
        )
        older = self.targets.older_or_high_risk[:, None]
        below_range_breach = (ranges["below_54"] >= 1.0) | (ranges["below_70"] >= np.where(older, 1.0, 4.0))
        return CgmWindows(
            readings=readings,
            wear_fraction=wear,
            cgm_user=cgm_user,
            sufficient=cgm_user & (wear >= params.cgm_min_wear),
            below_54_percent=ranges["below_54"],
            below_70_percent=ranges["below_70"],
            above_180_percent=ranges["above_180"],
            above_250_percent=ranges["above_250"],
            in_range_percent=ranges["in_range_70_180"],
            below_range_breach=below_range_breach,
            shown={
                "tbr_lt54_percent": ranges["below_54"],
                "tbr_lt70_percent": ranges["below_70"],
                "tar_gt180_percent": ranges["above_180"],
                "tar_gt250_percent": ranges["above_250"],
                "cgm_wear_fraction": wear,
            },
        )

    @cached_property
    def cgm_sum_mg_dl(self) -> FloatArray:
        """The sum of the CGM values of each 14-day window."""
        return rolling_sum(self.matrix["cgm_sum"], self.params.cgm_days)

    @cached_property
    def cgm_mean_mg_dl(self) -> FloatArray:
        return np.asarray(self.cgm_sum_mg_dl / self.cgm.readings)
