"""Clinical summaries of a patient's stored readings: the one place that computes them (numpy).

The alert rules (alerts/window_rules/), the doctors' panel, the patient page and reports all take their
numbers from here, so a 7-day home mean, a time in range or a GMI is the same number wherever it is
shown or acted on. Invalid readings (cuff errors, control solution, meter faults) and readings the
cuff flagged unreliable (body movement, loose cuff, improper position) never enter a figure; they
are counted as excluded, each under one reason code (`ExclusionReason`).

The parts: `exclusions` (reason codes), `local_days` (readings placed in local days),
`blood_pressure`, `glucose`, and the figures of the patient page (`patient`), the trend chart
(`daily`) and the doctors' panel (`panel`). Import them from here.

What is implemented, with its source (clinical-rules.md):

- Home blood pressure, 7-day mean (§1.3, "W7" in §7): the 7 local calendar days ending on the day
  asked for, today included; the first of those days that holds readings is discarded ("discard
  day 1": ESH 2021 HBPM position paper and measurement guideline [7][8], NICE NG136 [9], Hypertension
  Canada [10], China 2019 HBPM [14]); every valid reading of the remaining days is averaged. The
  protocol asks for duplicate morning and evening readings; readings at other times of day are
  averaged too (as the rules do), and the morning and evening means are given beside it. The mean is
  "sufficient" with at least 12 valid readings (§7: "≥12 valid readings, else insufficient") on at
  least 3 days (China 2019 HBPM: "≥3 days" when 7 are impossible [14]).
- BP category against the patient's effective targets (what the rules use): `above_target` when the
  mean systolic or diastolic is at or above the goal (the BP-CTRL-1 condition, [1][6][9][11][12]);
  `below_target` when it is below 90 systolic or 60 diastolic (the hypotension cut-off of BP-LOW-1,
  §1.5 [28]); `at_target` between; `insufficient` when the mean is not sufficient.
- Glucose ranges (§2.4, Battelino 2019 [32][33]): very low < 54, low 54-69, in range 70-180, high
  181-250, very high > 250 mg/dL, with the in-range band taken from the patient's effective targets
  (level-1 hypo threshold to the post-meal limit; 70-180 unless the doctor set others). The consensus
  states its ranges in whole mg/dL and their mmol/L equivalents (3.9-10.0 mmol/L in range); a value
  is binned after rounding to whole mg/dL (half up), so a meter reading 10.0 mmol/L (180.16 mg/dL)
  is in range and 3.0 mmol/L (54.05) is low, in either unit. Percentages are of valid readings.
  `time_in_range_70_180_percent` is the consensus range itself, whatever the patient's band.
- Hypoglycaemia events by ADA level (§2.1 [30]): a run of consecutive valid readings below 70 mg/dL
  is one event, level 2 when any of its readings is below 54; it counts when the readings do not show
  it ending within 15 minutes (ATTD 2017: episodes last ≥ 15 min [34]), so a one-sample CGM dip does
  not count and a meter reading followed by the next one hours later does.
- GMI (§2.5, Bergenstal 2018 [35]): 3.31 + 0.02392 × mean glucose (mg/dL), in %.
- CV (§2.4 [32][34]): sample SD / mean × 100 (SD with n - 1), given from `MIN_READINGS_FOR_CV` valid
  readings (DEFAULT: no source fixes a minimum).
- Data sufficiency for GMI and the AGP (§2.4, §4 [32][33]): 14 days of data with ≥ 70 % wear. Wear
  is the share of the period's 15-minute slots that hold a valid reading (the CGM-SUFF rule's
  measure), so it is met by continuous monitoring and never by a few meter readings a day; the reason
  is given when it is not met.
- AGP (§2.7 [37]): 5th/25th/50th/75th/95th percentiles of valid readings by hour of day in the
  patient's time zone (numpy's linear interpolation, Hyndman-Fan type 7).
- Days with data in the last 30 (§4, CPT 99454: 16 days is the remote-monitoring threshold [57]):
  local days with any reading, valid or not (a transmitted error reading is still a day the patient
  measured), as the DQ-03 rule counts them.
"""

from alerts.summaries.blood_pressure import (
    HOME_BP_PROTOCOL,
    W7,
    BloodPressureSummary,
    BpCategory,
    BpDay,
    BpMean,
    BpTarget,
    HomeBloodPressureWindows,
    HomeBpMean,
    SessionMean,
    at_or_above_goal,
    blood_pressure_summary,
    bp_category,
    bp_target,
    home_blood_pressure_windows,
    home_mean,
)
from alerts.summaries.daily import (
    DayAggregate,
    MetricDay,
    daily_figures,
)
from alerts.summaries.exclusions import (
    EXCLUSION_REASONS,
    ExcludedCount,
    ExclusionReason,
    excluded_counts,
    exclusion_reasons,
)
from alerts.summaries.glucose import (
    AGP_PERCENTILES,
    GMI_INTERCEPT_PERCENT,
    GMI_SLOPE_PERCENT_PER_MG_DL,
    HIGH_ABOVE_MG_DL,
    HYPO_EVENT_MIN_S,
    HYPO_LEVEL_1_BELOW_MG_DL,
    HYPO_LEVEL_2_BELOW_MG_DL,
    LOW_BELOW_MG_DL,
    MIN_READINGS_FOR_CV,
    SUFFICIENT_DAYS,
    SUFFICIENT_WEAR,
    VERY_HIGH_ABOVE_MG_DL,
    VERY_LOW_BELOW_MG_DL,
    WEAR_SLOT_S,
    AgpHour,
    GlucoseRanges,
    GlucoseSummary,
    GlucoseTarget,
    HypoEvents,
    InsufficientReason,
    MealContext,
    MealMean,
    Sufficiency,
    agp_profile,
    cgm_sufficiency,
    coefficient_of_variation_percent,
    glucose_ranges,
    glucose_summary,
    glucose_target,
    gmi_percent,
    hypo_events,
    range_percentages,
    time_in_range_70_180,
    whole_mg_dl,
)
from alerts.summaries.local_days import (
    ADHERENCE_WINDOW_DAYS,
    MIN_QUERY_DAYS,
    REMOTE_MONITORING_MIN_DAYS,
    SECONDS_PER_DAY,
    BoolArray,
    FloatArray,
    IntArray,
    LocalDays,
    ReadingSeries,
    daily_sums,
    days_with_data,
    days_with_data_30,
    query_window,
    rounded,
    sample_sd,
)
from alerts.summaries.panel import (
    PANEL_GLUCOSE_DAYS,
    PanelBloodPressure,
    PanelFigures,
    PanelGlucose,
    panel_figures,
)
from alerts.summaries.patient import (
    PatientSummary,
    Period,
    summarize,
)

__all__ = [
    "ADHERENCE_WINDOW_DAYS",
    "AGP_PERCENTILES",
    "EXCLUSION_REASONS",
    "GMI_INTERCEPT_PERCENT",
    "GMI_SLOPE_PERCENT_PER_MG_DL",
    "HIGH_ABOVE_MG_DL",
    "HOME_BP_PROTOCOL",
    "HYPO_EVENT_MIN_S",
    "HYPO_LEVEL_1_BELOW_MG_DL",
    "HYPO_LEVEL_2_BELOW_MG_DL",
    "LOW_BELOW_MG_DL",
    "MIN_QUERY_DAYS",
    "MIN_READINGS_FOR_CV",
    "PANEL_GLUCOSE_DAYS",
    "REMOTE_MONITORING_MIN_DAYS",
    "SECONDS_PER_DAY",
    "SUFFICIENT_DAYS",
    "SUFFICIENT_WEAR",
    "VERY_HIGH_ABOVE_MG_DL",
    "VERY_LOW_BELOW_MG_DL",
    "W7",
    "WEAR_SLOT_S",
    "AgpHour",
    "BloodPressureSummary",
    "BoolArray",
    "BpCategory",
    "BpDay",
    "BpMean",
    "BpTarget",
    "DayAggregate",
    "ExcludedCount",
    "ExclusionReason",
    "FloatArray",
    "GlucoseRanges",
    "GlucoseSummary",
    "GlucoseTarget",
    "HomeBloodPressureWindows",
    "HomeBpMean",
    "HypoEvents",
    "InsufficientReason",
    "IntArray",
    "LocalDays",
    "MealContext",
    "MealMean",
    "MetricDay",
    "PanelBloodPressure",
    "PanelFigures",
    "PanelGlucose",
    "PatientSummary",
    "Period",
    "ReadingSeries",
    "SessionMean",
    "Sufficiency",
    "agp_profile",
    "at_or_above_goal",
    "blood_pressure_summary",
    "bp_category",
    "bp_target",
    "cgm_sufficiency",
    "coefficient_of_variation_percent",
    "daily_figures",
    "daily_sums",
    "days_with_data",
    "days_with_data_30",
    "excluded_counts",
    "exclusion_reasons",
    "glucose_ranges",
    "glucose_summary",
    "glucose_target",
    "gmi_percent",
    "home_blood_pressure_windows",
    "home_mean",
    "hypo_events",
    "panel_figures",
    "query_window",
    "range_percentages",
    "rounded",
    "sample_sd",
    "summarize",
    "time_in_range_70_180",
    "whole_mg_dl",
]
