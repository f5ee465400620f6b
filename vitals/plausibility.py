"""Named plausibility limits: values outside them cannot be a real measurement of a living person.

A reading outside a limit is kept (with its raw bytes) but marked invalid with the reason, so it is
excluded from averages and never triggers a clinical alert (clinical-rules.md §7, DQ-02:
"physiologically impossible" readings are excluded). The limits are deliberately wide: they catch
decoding faults and meter errors, not illness.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlausibleRange:
    """An inclusive [low, high] range with the reason it was chosen."""

    name: str
    low: float
    high: float
    unit: str
    rationale: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def violation(self, value: float) -> str | None:
        """A reason naming the limit if `value` lies outside it, else None. No personal data."""
        if value != value:  # NaN
            return f"{self.name}: not a number"
        if value < self.low:
            return f"{self.name}: {value:g} {self.unit} below plausible minimum {self.low:g}"
        if value > self.high:
            return f"{self.name}: {value:g} {self.unit} above plausible maximum {self.high:g}"
        return None


SYSTOLIC_MMHG = PlausibleRange(
    "systolic_mmhg",
    40.0,
    300.0,
    "mmHg",
    "Oscillometric home cuffs display 0-299 mmHg; below 40 mmHg systolic no oscillometric reading is "
    "obtainable in a person able to measure at home.",
)
DIASTOLIC_MMHG = PlausibleRange(
    "diastolic_mmhg",
    20.0,
    200.0,
    "mmHg",
    "Diastolic above 200 mmHg has not been reported outside artefact; below 20 mmHg is cuff artefact.",
)
MEAN_ARTERIAL_MMHG = PlausibleRange(
    "mean_arterial_mmhg",
    30.0,
    250.0,
    "mmHg",
    "Mean arterial pressure lies between diastolic and systolic limits.",
)
PULSE_BPM = PlausibleRange(
    "pulse_bpm",
    20.0,
    250.0,
    "bpm",
    "Home cuffs specify a pulse range of about 40-180 bpm; we widen it so that an out-of-range "
    "flag from the cuff, not this limit, reports true bradycardia or tachycardia.",
)
GLUCOSE_MG_DL = PlausibleRange(
    "glucose_mg_dl",
    10.0,
    1000.0,
    "mg/dL",
    "Home glucose meters report 10-600 mg/dL (0.6-33.3 mmol/L) and show LO/HI outside; 1000 mg/dL "
    "leaves room for lab-grade meters while catching unit or exponent decoding faults.",
)

ALL_LIMITS = (SYSTOLIC_MMHG, DIASTOLIC_MMHG, MEAN_ARTERIAL_MMHG, PULSE_BPM, GLUCOSE_MG_DL)
