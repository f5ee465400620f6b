"""The figures of a patient's row in the doctors' panel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from alerts.profiles import RuleParameters
from alerts.summaries.blood_pressure import BpCategory, bp_category, home_mean, home_window_readings
from alerts.summaries.glucose import glucose_ranges, glucose_target
from alerts.summaries.local_days import ADHERENCE_WINDOW_DAYS, LocalDays, ReadingSeries, days_with_data_30
from storage.readings.protocol import ReadingColumns

# --- Windows of the panel ------------------------------------------------------------------------------
PANEL_GLUCOSE_DAYS: Final = 14  # the panel's time in range and reading count


class PanelBloodPressure(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean_systolic_mmhg: float
    mean_diastolic_mmhg: float
    readings: int
    days: int
    category: BpCategory
    target_systolic_mmhg: float
    target_diastolic_mmhg: float


class PanelGlucose(BaseModel):
    model_config = ConfigDict(frozen=True)

    latest_mg_dl: float
    latest_at: datetime
    time_in_range_percent: float | None = Field(description="in-range percent of the last 14 days' readings")
    readings_14d: int


class PanelFigures(BaseModel):
    """What the panel shows of one patient besides alerts and gateway, as of `computed_at`."""

    model_config = ConfigDict(frozen=True)

    computed_at: datetime
    valid_until: datetime = Field(description="the next local midnight: the windows move then")
    last_reading_at: datetime | None
    blood_pressure: PanelBloodPressure | None
    bp_not_counted_7d: int = Field(
        description="valid blood pressures of the 7-day window left out of its home mean: those of the "
        "first measured day, which the home protocol discards (ESH 2021 [7][8])"
    )
    glucose: PanelGlucose | None
    days_with_data_30: int


def panel_figures(
    blood_pressure: ReadingColumns,
    glucose: ReadingColumns,
    params: RuleParameters,
    *,
    now: datetime,
    latest_valid_glucose: tuple[float, datetime] | None,
    last_reading_at: datetime | None,
) -> PanelFigures:
    """The panel row's figures from the columns of the last 30 days (`query_window(params, now, 30)`),
    with the newest valid glucose (mg/dL, when) and the newest reading's time, which may be older."""
    zone = ZoneInfo(params.timezone)
    today = now.astimezone(zone).date()
    local = LocalDays.ending(zone, today, ADHERENCE_WINDOW_DAYS)
    end_s = now.timestamp()
    bp = ReadingSeries.of(blood_pressure, local, end_s)
    glu = ReadingSeries.of(glucose, local, end_s)
    home = home_mean(bp, local, params)
    in_window = home_window_readings(bp, local, params)
    panel_bp = None
    if home is not None:
        panel_bp = PanelBloodPressure(
            mean_systolic_mmhg=round(home.systolic, 1),
            mean_diastolic_mmhg=round(home.diastolic, 1),
            readings=home.readings,
            days=home.days,
            category=bp_category(home.systolic, home.diastolic, home.sufficient, params),
            target_systolic_mmhg=params.goal_systolic_mmhg,
            target_diastolic_mmhg=params.goal_diastolic_mmhg,
        )
    first = local.count - PANEL_GLUCOSE_DAYS
    recent = glu.since(first) & glu.included & np.isfinite(glu.glucose)
    ranges = glucose_ranges(glu.glucose[recent], glucose_target(params))
    panel_glucose = None
    if latest_valid_glucose is not None:
        value, measured_at = latest_valid_glucose
        panel_glucose = PanelGlucose(
            latest_mg_dl=round(value, 1),
            latest_at=measured_at,
            time_in_range_percent=None if ranges is None else ranges.in_range,
            readings_14d=int(np.count_nonzero(recent)),
        )
    return PanelFigures(
        computed_at=now.astimezone(UTC),
        valid_until=datetime.fromtimestamp(float(local.starts_s[-1]), UTC),
        last_reading_at=last_reading_at,
        blood_pressure=panel_bp,
        bp_not_counted_7d=in_window - (home.readings if home is not None else 0),
        glucose=panel_glucose,
        days_with_data_30=days_with_data_30((bp, glu), local),
    )
