"""LOINC and IEEE 11073-10101 (MDC) codes for labelling readings.

Source: clinical-rules.md §6.1 (LOINC, FHIR R4 vital-signs profile) and §6.3 (MDC codes from the HL7
PHD implementation guide; code = partition x 65536 + term).
"""

from __future__ import annotations

from typing import Final

LOINC_BP_PANEL: Final = "85354-9"
LOINC_SYSTOLIC: Final = "8480-6"
LOINC_DIASTOLIC: Final = "8462-4"
LOINC_MEAN_ARTERIAL: Final = "8478-0"  # clinical-rules.md §6.1 notes: verify before external use
LOINC_HEART_RATE: Final = "8867-4"
LOINC_GLUCOSE_CAPILLARY_MASS: Final = "41653-7"  # mg/dL, capillary blood, glucometer
LOINC_GLUCOSE_CAPILLARY_MOLES: Final = "14743-9"  # mmol/L, capillary blood, glucometer
LOINC_GLUCOSE_FASTING_MASS: Final = "41604-0"
LOINC_GLUCOSE_FASTING_MOLES: Final = "14770-2"

MDC_PRESS_BLD_NONINV: Final = 150020
MDC_PRESS_BLD_NONINV_SYS: Final = 150021
MDC_PRESS_BLD_NONINV_DIA: Final = 150022
MDC_PRESS_BLD_NONINV_MEAN: Final = 150023
MDC_PULS_RATE_NON_INV: Final = 149546
MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD: Final = 160184
MDC_CONC_GLU_CAPILLARY_PLASMA: Final = 160188
MDC_DIM_MMHG: Final = 266016
MDC_DIM_BEAT_PER_MIN: Final = 264864
MDC_DIM_MILLI_G_PER_DL: Final = 264274
MDC_DIM_MILLI_MOLE_PER_L: Final = 266866

# UCUM units for FHIR export (clinical-rules.md §6.2).
UCUM_MMHG: Final = "mm[Hg]"
UCUM_PER_MIN: Final = "/min"
UCUM_MG_DL: Final = "mg/dL"
UCUM_MMOL_L: Final = "mmol/L"
