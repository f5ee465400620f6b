"""Virtual patients: plausible blood pressure, pulse and glucose series, shaped by scripted stories.

The physiology is deliberately simple and stated here so nobody mistakes it for a clinical model:

* **Blood pressure** follows a circadian curve: daytime plateau, a nocturnal dip (about 10–15 %
  lower at night, "dipper" pattern) and a **morning surge** peaking about an hour after waking.
  Readings scatter with Gaussian noise (systolic SD 6 mmHg, diastolic 4). Stories add linear trends
  ("rising over three weeks").
* **Pulse** is higher by day than at night, with noise, and rises a little with the surge.
* **Glucose** sits at a fasting baseline; each meal adds a gamma-shaped excursion peaking about an
  hour after eating and fading by three hours. **Hypoglycaemic episodes** (stories) drop the value to
  45–65 mg/dL at night or before lunch; the patient measures when symptomatic.
* The patient measures blood pressure morning and evening and glucose fasting, two hours after
  lunch and at bedtime, each time with a few minutes of jitter, and sometimes forgets.

Only the stdlib (``random``, ``math``) is used, so the edge install needs no numpy. Every series is a
pure function of the patient's seed, the story and the day: the same inputs give the same readings.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field

from device_drivers.virtual.stories import Story

# Circadian blood-pressure model.
NIGHT_DIP_FRACTION = 0.12
MORNING_SURGE_PEAK_HOURS_AFTER_WAKE = 1.0
MORNING_SURGE_WIDTH_HOURS = 1.2
SYSTOLIC_NOISE_SD_MMHG = 6.0
DIASTOLIC_NOISE_SD_MMHG = 4.0
DIASTOLIC_SHARE_OF_SYSTOLIC_CHANGE = 0.6
PULSE_NIGHT_DROP_BPM = 8.0
PULSE_NOISE_SD_BPM = 3.5
PULSE_SURGE_BPM = 4.0
# Meal model: excursion = rise * (t/peak) * exp(1 - t/peak), t in minutes after eating.
MEAL_PEAK_MINUTES = 60.0
MEAL_EFFECT_END_MINUTES = 240.0
GLUCOSE_NOISE_SD_MG_DL = 7.0
HYPO_RANGE_MG_DL = (45.0, 65.0)
MEASUREMENT_JITTER_MINUTES = 20.0
MINUTES_PER_HOUR = 60.0
HOURS_PER_DAY = 24.0
# Plausibility bounds for the generator itself (the model never emits outside them).
SYSTOLIC_BOUNDS_MMHG = (80, 230)
DIASTOLIC_BOUNDS_MMHG = (45, 140)
PULSE_BOUNDS_BPM = (40, 150)
GLUCOSE_BOUNDS_MG_DL = (40, 450)


@dataclass(frozen=True)
class PatientProfile:
    """Baseline physiology of one virtual patient (daytime values)."""

    systolic_mmhg: float = 128.0
    diastolic_mmhg: float = 82.0
    pulse_bpm: float = 72.0
    morning_surge_mmhg: float = 14.0
    wake_hour: float = 6.5
    sleep_hour: float = 22.5
    glucose_fasting_mg_dl: float = 105.0
    #: Peak rise above fasting per meal: breakfast, lunch, dinner.
    meal_rise_mg_dl: tuple[float, float, float] = (55.0, 65.0, 60.0)
    meal_hours: tuple[float, float, float] = (7.25, 12.5, 19.0)
    carbohydrate_grams: tuple[float, float, float] = (45.0, 70.0, 60.0)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> PatientProfile:
        known = {name for name in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown patient fields: {', '.join(sorted(unknown))}")
        converted: dict[str, object] = {}
        for name, value in values.items():
            converted[name] = tuple(value) if isinstance(value, list) else value
        return cls(**converted)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BloodPressureSample:
    taken_at: dt.datetime
    systolic_mmhg: int | None
    diastolic_mmhg: int | None
    pulse_bpm: int | None
    #: The cuff showed "Err" (movement, loose cuff): no values.
    error: bool = False


@dataclass(frozen=True)
class GlucoseSample:
    taken_at: dt.datetime
    glucose_mg_dl: int
    #: "fasting", "postprandial", "bedtime", "casual" (GLS meal codes, reference §2.3).
    meal: str
    carbohydrate_grams: float | None = None
    hypo: bool = False


@dataclass
class VirtualPatient:
    """One patient: an opaque id, a profile, a story and a seed; readings on demand."""

    patient_id: str
    story: Story
    profile: PatientProfile = field(default_factory=PatientProfile)
    seed: int = 0
    #: Day 0 of the story (midnight, patient's local time expressed in UTC).
    start: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    utc_offset: dt.timedelta = dt.timedelta(0)

    def _rng(self, day: int, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.story.name}:{day}:{purpose}")

    # -- blood pressure ----------------------------------------------------------------------------

    def true_blood_pressure(self, day: int, hour: float) -> tuple[float, float, float]:
        """Noise-free systolic, diastolic, pulse at local ``hour`` of ``day``."""
        profile = self.profile
        systolic = profile.systolic_mmhg + self.story.systolic_offset(day)
        diastolic = profile.diastolic_mmhg + self.story.diastolic_offset(day)
        awake = profile.wake_hour <= hour < profile.sleep_hour
        dip = 0.0 if awake else NIGHT_DIP_FRACTION
        peak = profile.wake_hour + MORNING_SURGE_PEAK_HOURS_AFTER_WAKE
        surge = math.exp(-0.5 * ((hour - peak) / MORNING_SURGE_WIDTH_HOURS) ** 2)
        systolic = systolic * (1 - dip) + profile.morning_surge_mmhg * surge
        diastolic = (
            diastolic * (1 - dip) + DIASTOLIC_SHARE_OF_SYSTOLIC_CHANGE * profile.morning_surge_mmhg * surge
        )
        pulse = profile.pulse_bpm - (0.0 if awake else PULSE_NIGHT_DROP_BPM) + PULSE_SURGE_BPM * surge
        return systolic, diastolic, pulse

    def blood_pressure_readings(self, day: int) -> list[BloodPressureSample]:
        """The cuff readings the patient takes on ``day`` (morning and evening, unless missed)."""
        if self.story.is_missed(day):
            return []
        rng = self._rng(day, "bp")
        samples = []
        for base_hour in (self.profile.wake_hour + 0.75, self.profile.sleep_hour - 1.5):
            hour = base_hour + rng.uniform(-1, 1) * MEASUREMENT_JITTER_MINUTES / MINUTES_PER_HOUR
            taken_at = self._at(day, hour)
            if rng.random() < self.story.cuff_error_probability(day):
                samples.append(BloodPressureSample(taken_at, None, None, None, error=True))
                continue
            systolic, diastolic, pulse = self.true_blood_pressure(day, hour)
            samples.append(
                BloodPressureSample(
                    taken_at,
                    _clamp(round(systolic + rng.gauss(0, SYSTOLIC_NOISE_SD_MMHG)), SYSTOLIC_BOUNDS_MMHG),
                    _clamp(round(diastolic + rng.gauss(0, DIASTOLIC_NOISE_SD_MMHG)), DIASTOLIC_BOUNDS_MMHG),
                    _clamp(round(pulse + rng.gauss(0, PULSE_NOISE_SD_BPM)), PULSE_BOUNDS_BPM),
                )
            )
        return samples

    # -- glucose -----------------------------------------------------------------------------------

    def true_glucose(self, day: int, hour: float) -> float:
        """Noise-free glucose (mg/dL) at local ``hour``: fasting baseline plus meal excursions."""
        profile = self.profile
        value = profile.glucose_fasting_mg_dl + self.story.glucose_offset(day)
        for meal_hour, rise in zip(profile.meal_hours, profile.meal_rise_mg_dl, strict=True):
            minutes = (hour - meal_hour) * MINUTES_PER_HOUR
            if 0 < minutes < MEAL_EFFECT_END_MINUTES:
                ratio = minutes / MEAL_PEAK_MINUTES
                value += rise * ratio * math.exp(1 - ratio)
        return value

    def glucose_readings(self, day: int) -> list[GlucoseSample]:
        """The meter readings on ``day``: fasting, two hours after lunch, bedtime, and any hypo."""
        if self.story.is_missed(day):
            return []
        rng = self._rng(day, "glucose")
        profile = self.profile
        plan = [
            (profile.meal_hours[0] - 0.4, "fasting", None),
            (profile.meal_hours[1] + 2.0, "postprandial", profile.carbohydrate_grams[1]),
            (profile.sleep_hour - 0.3, "bedtime", None),
        ]
        samples = []
        for base_hour, meal, carbs in plan:
            hour = base_hour + rng.uniform(-1, 1) * MEASUREMENT_JITTER_MINUTES / MINUTES_PER_HOUR
            value = self.true_glucose(day, hour) + rng.gauss(0, GLUCOSE_NOISE_SD_MG_DL)
            samples.append(
                GlucoseSample(self._at(day, hour), _clamp(round(value), GLUCOSE_BOUNDS_MG_DL), meal, carbs)
            )
        for hypo_hour in self.story.hypo_hours(day, rng):
            value = rng.uniform(*HYPO_RANGE_MG_DL)
            samples.append(GlucoseSample(self._at(day, hypo_hour), round(value), "casual", hypo=True))
        samples.sort(key=lambda sample: sample.taken_at)
        return samples

    # -- helpers -----------------------------------------------------------------------------------

    def _at(self, day: int, local_hour: float) -> dt.datetime:
        local_hour = min(max(local_hour, 0.0), HOURS_PER_DAY - 1 / MINUTES_PER_HOUR)
        return (self.start + dt.timedelta(days=day, hours=local_hour) - self.utc_offset).replace(
            microsecond=0
        )

    def day_of(self, moment: dt.datetime) -> int:
        return int((moment + self.utc_offset - self.start) // dt.timedelta(days=1))


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return max(low, min(high, value))
