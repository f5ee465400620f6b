"""The rules' input from the reading store's columns (`ReadingStore.history_columns`): one range read
per patient, no reading model built per stored reading.

- `observations`: a patient's readings as `Observation`s for the per-reading evaluation
  (alerts.evaluate.evaluate_patient). A reading left out of averages arrives whole from the store
  and goes through `observation_from_reading`, so its exclusion reasons are the same as ever; every
  other row becomes an Observation straight from its columns.
- `sweep_columns`: many patients' readings as the window rules' numpy `Columns` (alerts.daily_matrix), with
  local days and hours computed per time zone over arrays (`utc_offsets_s`), for the sweep.

Both give what `columns_from_observations(observation_from_reading(...))` gives for the same readings
(tests/alerts/test_history.py holds them to that).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from alerts.daily_matrix import KIND_CODES, MEAL_CODES, SECONDS_PER_DAY, Columns
from alerts.model import Observation, ObservationKind, observation_from_reading
from storage.readings.protocol import HistoryColumns
from vitals.readings import Meal, ReadingKind

UNIX_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
# Offsets are looked up on a grid of this step and computed exactly where the grid shows a change
# within a step (a daylight-saving transition): every zone changes offset at most once in 15 min.
OFFSET_GRID_S: Final = 900
_MEAL_BY_VALUE: Final = {meal.value: meal for meal in Meal}
_MEAL_CODE_BY_VALUE: Final = {meal.value: MEAL_CODES[meal] for meal in Meal}


def _measured_at(us: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=us)


def observations(columns: HistoryColumns) -> dict[str, list[Observation]]:
    """Each patient's readings as the rules' observations, in the store's order."""
    out: defaultdict[str, list[Observation]] = defaultdict(list)
    for i, patient_id in enumerate(columns.patient_id):
        whole = columns.left_out[i]
        if whole is not None:
            out[patient_id].append(observation_from_reading(whole))
            continue
        if columns.kind[i] is ReadingKind.BLOOD_PRESSURE:
            obs = Observation(
                patient_id=patient_id,
                reading_id=columns.reading_id[i],
                measured_at=_measured_at(columns.measured_at_us[i]),
                kind=ObservationKind.BLOOD_PRESSURE,
                systolic_mmhg=columns.systolic_mmhg[i],
                diastolic_mmhg=columns.diastolic_mmhg[i],
                pulse_bpm=columns.pulse_bpm[i],
                irregular_pulse=columns.irregular_pulse[i],
                excluded_from_averages=not columns.in_averages[i],
            )
        else:
            meal = columns.meal[i]
            obs = Observation(
                patient_id=patient_id,
                reading_id=columns.reading_id[i],
                measured_at=_measured_at(columns.measured_at_us[i]),
                kind=ObservationKind.CGM if columns.continuous[i] else ObservationKind.GLUCOSE,
                glucose_mg_dl=columns.glucose_mg_dl[i],
                meal=None if meal is None else _MEAL_BY_VALUE.get(meal),
                excluded_from_averages=not columns.in_averages[i],
            )
        out[patient_id].append(obs)
    return dict(out)


def utc_offsets_s(zone: ZoneInfo, utc_s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The zone's UTC offset, in seconds, at each of the instants `utc_s` (seconds since the epoch)."""
    if utc_s.size == 0:
        return np.zeros(0)
    first = math.floor(float(utc_s.min()) / OFFSET_GRID_S) * OFFSET_GRID_S
    last = math.floor(float(utc_s.max()) / OFFSET_GRID_S) * OFFSET_GRID_S + OFFSET_GRID_S
    grid = range(first, last + 1, OFFSET_GRID_S)
    at_grid = np.array([_offset(zone, t) for t in grid], dtype=np.float64)
    slot = ((utc_s - first) // OFFSET_GRID_S).astype(np.int64)
    offsets = at_grid[slot]
    changing = np.flatnonzero(at_grid[slot] != at_grid[slot + 1])
    for i in changing:  # a transition inside this reading's grid step: the exact offset
        offsets[i] = _offset(zone, float(utc_s[i]))
    return offsets


def _offset(zone: ZoneInfo, utc_s: float) -> float:
    offset = datetime.fromtimestamp(utc_s, zone).utcoffset()
    return 0.0 if offset is None else offset.total_seconds()


def day_starts_s(day0: date, timezones: Sequence[str]) -> npt.NDArray[np.float64]:
    """The UTC instant at which `day0` begins in each zone (alerts.daily_matrix' `starts`)."""
    at: dict[str, float] = {}
    for zone in dict.fromkeys(timezones):
        start = datetime.combine(day0, datetime.min.time(), tzinfo=ZoneInfo(zone))
        at[zone] = start.astimezone(UTC).timestamp()
    return np.array([at[zone] for zone in timezones], dtype=np.float64)


def sweep_columns(
    columns: HistoryColumns, patient_ids: Sequence[str], day0: date, timezones: Sequence[str]
) -> tuple[Columns, npt.NDArray[np.float64]]:
    """The window rules' columns for `patient_ids` (with their time zones; every row of `columns`
    belongs to one of them), days counted from `day0` (local): what `columns_from_observations`
    builds, computed over arrays (a Python pass per column, no datetime per reading)."""
    index = {pid: i for i, pid in enumerate(patient_ids)}
    patient = np.array([index[pid] for pid in columns.patient_id], dtype=np.int64)
    us = np.array(columns.measured_at_us, dtype=np.int64)
    whole_s = (us // 1_000_000).astype(np.float64)  # local hours count whole seconds, as datetime does
    offsets = np.zeros(len(us))
    zone_index = {zone: z for z, zone in enumerate(dict.fromkeys(timezones))}
    zone_of_row = np.array([zone_index[zone] for zone in timezones], dtype=np.int64)[patient]
    for zone, z in zone_index.items():
        rows = np.flatnonzero(zone_of_row == z)
        offsets[rows] = utc_offsets_s(ZoneInfo(zone), whole_s[rows])
    local = whole_s + offsets
    local_day = np.floor(local / SECONDS_PER_DAY)
    day = (local_day + EPOCH_ORDINAL - day0.toordinal()).astype(np.int64)
    hour = (local - local_day * SECONDS_PER_DAY) / 3600.0
    blood_pressure = np.array(columns.kind, dtype=object) == ReadingKind.BLOOD_PRESSURE
    continuous = np.array(columns.continuous, dtype=np.bool_)
    kind = np.where(
        blood_pressure,
        KIND_CODES[ObservationKind.BLOOD_PRESSURE],
        np.where(continuous, KIND_CODES[ObservationKind.CGM], KIND_CODES[ObservationKind.GLUCOSE]),
    ).astype(np.int8)
    meal_of = _MEAL_CODE_BY_VALUE.get
    cols = Columns(
        patient=patient,
        day=day,
        local_hour=hour,
        local_seconds=day * SECONDS_PER_DAY + hour * 3600.0,
        utc_seconds=us / 1e6,
        kind=kind,
        excluded_from_averages=~np.array(columns.in_averages, dtype=np.bool_),
        # None becomes NaN
        systolic_mmhg=np.array(columns.systolic_mmhg, dtype=np.float64),
        diastolic_mmhg=np.array(columns.diastolic_mmhg, dtype=np.float64),
        glucose_mg_dl=np.array(columns.glucose_mg_dl, dtype=np.float64),
        meal=np.array([meal_of(m, 0) for m in columns.meal], dtype=np.int8),  # type: ignore[arg-type]
    )
    return cols, day_starts_s(day0, timezones)
