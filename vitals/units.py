"""Units of measure and their conversion.

Store the device's native value and unit beside the canonical value (mmHg, mg/dL); round only for
display (DESIGN.md, Storage; ble-health-profiles.md Part 3).
"""

from __future__ import annotations

from enum import StrEnum

# Glucose molar mass 180.1559 g/mol / 10 -> mg/dL per mmol/L.
# Source: ble-health-profiles.md Part 3, Tidepool TidepoolApi docs/device-data/units.md.
MG_DL_PER_MMOL_L = 18.01559

# 1 mmHg = 0.133322387415 kPa.
# Source: ble-health-profiles.md Part 3, Nordic Android-BLE-Common-Library BloodPressureTypes.
KPA_PER_MMHG = 0.133322387415


class PressureUnit(StrEnum):
    """Blood-pressure unit as the cuff reports it (BPM flags bit 0: 0 = mmHg, 1 = kPa)."""

    MMHG = "mmHg"
    KPA = "kPa"


class GlucoseUnit(StrEnum):
    """Glucose concentration unit, as the meter reports it or as a clinician prefers to read it."""

    MG_DL = "mg/dL"
    MMOL_L = "mmol/L"


def kpa_to_mmhg(kpa: float) -> float:
    return kpa / KPA_PER_MMHG


def mmhg_to_kpa(mmhg: float) -> float:
    return mmhg * KPA_PER_MMHG


def mmol_l_to_mg_dl(mmol_l: float) -> float:
    return mmol_l * MG_DL_PER_MMOL_L


def mg_dl_to_mmol_l(mg_dl: float) -> float:
    return mg_dl / MG_DL_PER_MMOL_L


def pressure_to_mmhg(value: float, unit: PressureUnit) -> float:
    """Canonical mmHg from a value in `unit`."""
    return value if unit is PressureUnit.MMHG else kpa_to_mmhg(value)


def glucose_to_mg_dl(value: float, unit: GlucoseUnit) -> float:
    """Canonical mg/dL from a value in `unit`."""
    return value if unit is GlucoseUnit.MG_DL else mmol_l_to_mg_dl(value)


def glucose_from_mg_dl(mg_dl: float, unit: GlucoseUnit) -> float:
    """A canonical mg/dL value expressed in `unit` (for display and per-unit thresholds)."""
    return mg_dl if unit is GlucoseUnit.MG_DL else mg_dl_to_mmol_l(mg_dl)


def display_glucose(mg_dl: float, unit: GlucoseUnit) -> str:
    """Round for display only: whole mg/dL, or mmol/L to one decimal as meters show it."""
    if unit is GlucoseUnit.MG_DL:
        return f"{round(mg_dl):d} mg/dL"
    return f"{mg_dl_to_mmol_l(mg_dl):.1f} mmol/L"
