"""The summary module against worked examples from its sources (clinical-rules.md; sources named in
each test), over readings stored in a real SQLite reading store and read back as the panel and the
patient page read them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from alerts.evaluate import PatientHistory, evaluate_patient
from alerts.model import OutcomeStatus, observation_from_reading
from alerts.profiles import PatientTargets, RuleParameters, parameters, profile
from alerts.summaries import (
    PanelFigures,
    PatientSummary,
    coefficient_of_variation_percent,
    daily_figures,
    exclusion_reasons,
    glucose_ranges,
    glucose_target,
    gmi_percent,
    hypo_events,
    panel_figures,
    query_window,
    summarize,
)
from storage.readings.protocol import AnyReading
from storage.readings.records import day_window
from storage.readings.sqlite import SqliteReadingStore
from vitals.identity import blood_pressure_reading_id, glucose_reading_id
from vitals.readings import (
    BloodPressureReading,
    BloodPressureStatus,
    DeviceIdentity,
    GlucoseContext,
    GlucoseReading,
    Meal,
    ReadingKind,
    SampleLocation,
    SampleType,
    SensorStatus,
)
from vitals.units import GlucoseUnit, mmol_l_to_mg_dl

PATIENT = "p-sum"
CUFF = DeviceIdentity(manufacturer="Acme", model="BP-1", serial_number="SN-1")
METER = DeviceIdentity(manufacturer="Acme", model="GL-1", serial_number="SN-2")
SENSOR = DeviceIdentity(manufacturer="Acme", model="CGM-1", serial_number="SN-3")
# "Now" of every test: a Monday noon in the patient's zone (UTC here unless a test says otherwise).
NOW = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
_sequence = itertools.count()


def bp(
    at: datetime,
    systolic: float,
    diastolic: float,
    *,
    status: frozenset[BloodPressureStatus] = frozenset(),
) -> BloodPressureReading:
    device_time = at.replace(tzinfo=None)
    return BloodPressureReading(
        reading_id=blood_pressure_reading_id(
            CUFF, device_time, 1, systolic=systolic, diastolic=diastolic, mean_arterial=None, pulse_bpm=70.0
        ),
        device=CUFF,
        patient_id=PATIENT,
        measured_at=at,
        device_time=device_time,
        systolic=systolic,
        diastolic=diastolic,
        pulse_bpm=70.0,
        user_id=1,
        measurement_status=status,
    )


def glucose(
    at: datetime,
    value: float,
    *,
    unit: GlucoseUnit = GlucoseUnit.MG_DL,
    meal: Meal | None = None,
    sample_type: SampleType = SampleType.CAPILLARY_PLASMA,
    location: SampleLocation = SampleLocation.FINGER,
    sensor_status: frozenset[SensorStatus] = frozenset(),
    device: DeviceIdentity = METER,
) -> GlucoseReading:
    number = next(_sequence) % 65536
    return GlucoseReading(
        reading_id=glucose_reading_id(device, number, at.replace(tzinfo=None)),
        device=device,
        patient_id=PATIENT,
        measured_at=at,
        sequence_number=number,
        unit=unit,
        glucose=value,
        sample_type=sample_type,
        sample_location=location,
        sensor_status=sensor_status,
        context=None if meal is None else GlucoseContext(meal=meal),
    )


def cgm(at: datetime, value: float) -> GlucoseReading:
    return glucose(
        at,
        value,
        sample_type=SampleType.INTERSTITIAL_FLUID,
        location=SampleLocation.SUBCUTANEOUS_TISSUE,
        device=SENSOR,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteReadingStore]:
    reading_store = SqliteReadingStore(tmp_path / "readings.sqlite3")
    try:
        yield reading_store
    finally:
        reading_store.close()


def params_for(
    zone: str = "UTC",
    *,
    goal: tuple[float, float] | None = None,
    hypo: float | None = None,
    high: float | None = None,
) -> RuleParameters:
    return parameters(
        profile("cn"),
        PatientTargets(
            timezone=zone,
            goal_systolic_mmhg=goal[0] if goal else None,
            goal_diastolic_mmhg=goal[1] if goal else None,
            hypo1_mg_dl=hypo,
            postprandial_limit_mg_dl=high,
        ),
    )


def summary_of(
    store: SqliteReadingStore,
    readings: Sequence[AnyReading],
    *,
    days: int = 14,
    params: RuleParameters | None = None,
    now: datetime = NOW,
) -> PatientSummary:
    store.write_batch(list(readings))
    chosen = params or params_for()
    start, end = query_window(chosen, now, days)
    return summarize(
        PATIENT,
        store.reading_columns(PATIENT, ReadingKind.BLOOD_PRESSURE, start, end),
        store.reading_columns(PATIENT, ReadingKind.GLUCOSE, start, end),
        chosen,
        now=now,
        days=days,
    )


def day(n: int, hour: float = 8.0) -> datetime:
    """`n` days before NOW's date (0 = today), at `hour` UTC."""
    midnight = NOW.replace(hour=0, minute=0)
    return midnight - timedelta(days=n) + timedelta(hours=hour)


def morning_and_evening(days: Sequence[int], systolic: float, diastolic: float) -> list[BloodPressureReading]:
    """Duplicate readings morning (07:00, 07:02) and evening (19:00, 19:02), as the protocol asks."""
    return [
        bp(day(n, hour) + timedelta(minutes=minute), systolic, diastolic)
        for n in days
        for hour in (7.0, 19.0)
        for minute in (0, 2)
        if day(n, hour) < NOW
    ]


# --- GMI, CV ----------------------------------------------------------------------------------------


def test_gmi_of_a_mean_of_150_mg_dl_is_6_9_percent() -> None:
    """GMI (%) = 3.31 + 0.02392 x mean mg/dL; Bergenstal 2018 [35] check value: 150 mg/dL -> 6.9 %."""
    assert round(float(gmi_percent(150.0)), 1) == 6.9
    assert float(gmi_percent(150.0)) == pytest.approx(6.898)
    # And the other end of the paper's table: 100 mg/dL -> 5.7 %, 250 mg/dL -> 9.3 %.
    assert round(float(gmi_percent(100.0)), 1) == 5.7
    assert round(float(gmi_percent(250.0)), 1) == 9.3


def test_cv_is_the_sample_sd_over_the_mean() -> None:
    """%CV = SD / mean x 100 (Battelino 2019 [32], ATTD 2017 [34]): 80, 100, 120 mg/dL -> SD 20, CV 20 %."""
    values = np.array([80.0, 100.0, 120.0])
    cv = coefficient_of_variation_percent(
        np.array(3.0), np.array(values.sum()), np.array(float((values * values).sum()))
    )
    assert float(cv) == pytest.approx(20.0)


# --- glucose ranges ---------------------------------------------------------------------------------


def test_time_in_ranges_cut_points_at_their_boundaries_in_mg_dl() -> None:
    """Battelino 2019 [33] ranges: <54, 54-69, 70-180, 181-250, >250 mg/dL; each boundary value falls
    on its stated side."""
    values = np.array([53.0, 54.0, 69.0, 70.0, 180.0, 181.0, 250.0, 251.0])
    ranges = glucose_ranges(values, glucose_target(params_for()))
    assert ranges is not None
    assert (ranges.very_low, ranges.low, ranges.in_range, ranges.high, ranges.very_high) == (
        12.5,
        25.0,
        25.0,
        25.0,
        12.5,
    )


def test_time_in_ranges_in_mmol_l_match_the_consensus_mmol_l_ranges() -> None:
    """Battelino 2019 [33] states the same ranges in mmol/L: <3.0, 3.0-3.8, 3.9-10.0, 10.1-13.9, >13.9.
    A meter's 10.0 mmol/L (180.16 mg/dL) is in range and 3.0 mmol/L (54.05 mg/dL) is low, not very low."""
    mmol = [2.9, 3.0, 3.8, 3.9, 10.0, 10.1, 13.9, 14.0]
    values = np.array([mmol_l_to_mg_dl(v) for v in mmol])
    ranges = glucose_ranges(values, glucose_target(params_for()))
    assert ranges is not None
    assert (ranges.very_low, ranges.low, ranges.in_range, ranges.high, ranges.very_high) == (
        12.5,
        25.0,
        25.0,
        25.0,
        12.5,
    )


def test_the_in_range_band_follows_the_patients_targets() -> None:
    """The doctor's 4.4 mmol/L hypo threshold and 160 mg/dL post-meal limit bound the in-range band;
    < 54 and > 250 stay the consensus' level-2 ranges (Battelino 2019 [33])."""
    target = glucose_target(params_for(hypo=mmol_l_to_mg_dl(4.4), high=160.0))
    values = np.array([mmol_l_to_mg_dl(4.4), 75.0, 160.0, 165.0, 50.0, 260.0])
    ranges = glucose_ranges(values, target)
    assert ranges is not None
    # in range: 4.4 mmol/L itself and 160; low: 75; high: 165; very low 50; very high 260.
    assert ranges.in_range == pytest.approx(33.3)
    assert ranges.low == ranges.high == ranges.very_low == ranges.very_high == pytest.approx(16.7)


# --- home blood pressure (ESH) ------------------------------------------------------------------------


def test_home_mean_discards_day_one_and_averages_days_two_to_seven(store: SqliteReadingStore) -> None:
    """ESH 2021 HBPM protocol [7][8] (also NICE NG136 [9]): 7 days of morning and evening duplicates,
    day 1 discarded, the rest averaged: 24 readings of 130/80 on days 2-7, day 1's 170/100 left out."""
    readings = morning_and_evening([6], 170.0, 100.0) + morning_and_evening(range(6), 130.0, 80.0)
    # Today (day 0) has only its morning pair before noon.
    summary = summary_of(store, readings)
    home = summary.blood_pressure.home_mean
    assert home is not None
    assert (home.systolic, home.diastolic) == (130.0, 80.0)
    assert home.readings == 22  # days 2-6 x 4 + today's morning 2
    assert home.days == 6
    assert home.discarded_day == day(6).date()
    assert home.sufficient
    assert summary.blood_pressure.category == "at_target"


def test_day_one_is_the_first_measured_day_of_the_window(store: SqliteReadingStore) -> None:
    """Discard day 1 means the first day the patient measured (ESH 2021 [7][8]): starting on day 3 of
    the window, day 3 is left out, not the empty first day."""
    readings = morning_and_evening([4], 180.0, 110.0) + morning_and_evening(range(1, 4), 140.0, 90.0)
    home = summary_of(store, readings).blood_pressure.home_mean
    assert home is not None
    assert home.discarded_day == day(4).date()
    assert (home.systolic, home.diastolic, home.readings, home.days) == (140.0, 90.0, 12, 3)


def test_fewer_than_12_readings_or_3_days_are_insufficient(store: SqliteReadingStore) -> None:
    """W7 needs >= 12 valid readings (clinical-rules.md §7) on >= 3 days (China 2019 HBPM [14]): 11
    readings give a mean but the category "insufficient"; the 12th makes it sufficient."""
    # Days 5 (discarded), 4, 3 and 2, four readings each: all but the last one make 11 counted.
    readings = morning_and_evening([5, 4, 3, 2], 150.0, 95.0)
    summary = summary_of(store, readings[:-1])
    assert summary.blood_pressure.home_mean is not None
    assert summary.blood_pressure.home_mean.readings == 11
    assert summary.blood_pressure.category == "insufficient"
    store.write_batch(readings[-1:])
    assert summary_of(store, []).blood_pressure.category == "above_target"


def test_many_readings_on_two_days_are_insufficient(store: SqliteReadingStore) -> None:
    """ ">= 3 days" (China 2019 HBPM [14]): 16 readings on two days after the discarded one are not a
    home mean to judge control by."""
    readings = morning_and_evening([3], 150.0, 95.0) + [
        bp(day(n, 7) + timedelta(minutes=3 * i), 150.0, 95.0) for n in (2, 1) for i in range(8)
    ]
    home = summary_of(store, readings).blood_pressure
    assert home.home_mean is not None and (home.home_mean.readings, home.home_mean.days) == (16, 2)
    assert home.category == "insufficient"


@pytest.mark.parametrize(
    ("systolic", "diastolic", "goal", "expected"),
    [
        (135.0, 84.0, None, "above_target"),
        (134.0, 84.0, None, "at_target"),
        (132.0, 78.0, (130.0, 80.0), "above_target"),
        (88.0, 58.0, None, "below_target"),
    ],
)
def test_category_against_the_effective_goal(
    store: SqliteReadingStore,
    systolic: float,
    diastolic: float,
    goal: tuple[float, float] | None,
    expected: str,
) -> None:
    """BP-CTRL-1: a home mean at or above the goal is above target (CN profile 135/85 [6][12]); with the
    doctor's 130/80 goal (diabetes, CKD [11]) 132/78 is above it too; below 90 or 60 is below target
    (BP-LOW-1 cut-off [28])."""
    readings = morning_and_evening(range(6), systolic, diastolic)
    summary = summary_of(store, readings, params=params_for(goal=goal))
    assert summary.blood_pressure.category == expected
    assert summary.blood_pressure.target.systolic_mmhg == (goal[0] if goal else 135.0)


# --- what never enters a summary ---------------------------------------------------------------------


def test_error_and_flagged_readings_never_enter_and_are_counted_with_their_reason(
    store: SqliteReadingStore,
) -> None:
    """DQ-02 (clinical-rules.md §7, [27][61]): a cuff's "Err" (NaN), a 0/0 reading, a body-movement flag,
    a control-solution test, a meter's "HI" and a strip error are left out of every figure and counted
    under their reason."""
    good = morning_and_evening(range(6), 130.0, 80.0)
    bad_bp = [
        bp(day(3, 9), float("nan"), float("nan")),
        bp(day(3, 10), 0.0, 0.0),
        bp(day(2, 9), 210.0, 130.0, status=frozenset({BloodPressureStatus.BODY_MOVEMENT})),
    ]
    good_glucose = [glucose(day(n, 7), 100.0, meal=Meal.FASTING) for n in range(6)]
    bad_glucose = [
        glucose(day(1, 9), 40.0, sample_type=SampleType.CONTROL_SOLUTION),
        glucose(day(1, 10), 600.0, sensor_status=frozenset({SensorStatus.RESULT_TOO_HIGH})),
        glucose(day(1, 11), 300.0, sensor_status=frozenset({SensorStatus.STRIP_INSERTION_ERROR})),
    ]
    summary = summary_of(store, [*good, *bad_bp, *good_glucose, *bad_glucose])
    b, g = summary.blood_pressure, summary.glucose
    assert b.home_mean is not None and (b.home_mean.systolic, b.home_mean.diastolic) == (130.0, 80.0)
    assert b.valid_readings == len(good)
    assert {(e.reason, e.count) for e in b.excluded} == {
        ("not_measured", 1),
        ("implausible_value", 1),
        ("body_movement", 1),
    }
    assert g.readings == 6 and g.mean_mg_dl == 100.0
    assert g.ranges is not None and g.ranges.in_range == 100.0
    assert {(e.reason, e.count) for e in g.excluded} == {
        ("control_solution", 1),
        ("result_too_high", 1),
        ("sensor_fault", 1),
    }
    assert max(d.mean_systolic for d in b.daily) == 130.0


def test_exclusion_reasons_of_single_readings() -> None:
    """The reason codes the web app words for each kind of error reading (DQ-02, ble-health-profiles)."""
    assert exclusion_reasons(bp(NOW, 90.0, 95.0)) == ["implausible_value"]  # diastolic not below systolic
    assert exclusion_reasons(bp(NOW, 120.0, 80.0)) == []
    moved = bp(NOW, 120.0, 80.0, status=frozenset({BloodPressureStatus.IMPROPER_POSITION}))
    assert exclusion_reasons(moved) == ["improper_position"]
    irregular = bp(NOW, 120.0, 80.0, status=frozenset({BloodPressureStatus.IRREGULAR_PULSE}))
    assert exclusion_reasons(irregular) == []  # kept in averages; it feeds HR-IRR
    low = glucose(NOW, 15.0, sensor_status=frozenset({SensorStatus.RESULT_TOO_LOW}))
    assert exclusion_reasons(low) == ["result_too_low"]


# --- hypoglycaemia events ----------------------------------------------------------------------------


def test_hypo_events_by_ada_level_and_15_minute_episodes() -> None:
    """ADA levels [30]: level 1 < 70 and >= 54, level 2 < 54; an episode lasts >= 15 min (ATTD 2017
    [34]): a CGM dip that recovers 5 minutes later is not one; a meter reading followed by the next
    hours later is."""
    t0 = NOW.timestamp()
    times = np.array(
        [t0, t0 + 5 * 60, t0 + 3600, t0 + 3600 + 300, t0 + 3600 + 600, t0 + 3600 + 1200, t0 + 6 * 3600]
    )
    values = np.array([65.0, 100.0, 60.0, 50.0, 62.0, 90.0, 68.0])
    events = hypo_events(times, values)
    # 65 at t0 recovered 5 min later: no event. 60-50-62 from t0+1h to the 90 at +20 min: level 2.
    # 68 at +6 h with nothing after it: level 1.
    assert (events.level_1, events.level_2) == (1, 1)


# --- AGP, GMI sufficiency ---------------------------------------------------------------------------


def test_agp_percentiles_by_local_hour_with_14_days_of_cgm(store: SqliteReadingStore) -> None:
    """AGP (IDC, [37]): 5/25/50/75/95th percentiles by hour of day in the patient's time zone, given
    14 days of data with >= 70 % wear (Battelino 2019 [32][33]). Each UTC hour h reads 100 + h mg/dL, so
    Shanghai's 08:00 (00:00 UTC) holds 100 mg/dL."""
    start = NOW - timedelta(days=14)
    readings = [
        cgm(start + timedelta(minutes=15 * i), 100.0 + (start + timedelta(minutes=15 * i)).hour)
        for i in range(14 * 96)
    ]
    summary = summary_of(store, readings, params=params_for("Asia/Shanghai"))
    g = summary.glucose
    assert g.agp_sufficient and g.agp_reason is None
    assert g.agp is not None and len(g.agp) == 24
    by_hour = {h.hour: h for h in g.agp}
    assert (by_hour[8].p5, by_hour[8].p50, by_hour[8].p95) == (100.0, 100.0, 100.0)
    assert by_hour[7].p50 == 123.0  # 23:00 UTC
    assert g.gmi_percent == pytest.approx(float(gmi_percent(g.mean_mg_dl or 0)), abs=0.01)
    assert g.wear_percent >= 70.0


def test_meter_readings_do_not_suffice_for_agp_or_gmi_and_say_why(store: SqliteReadingStore) -> None:
    """Four meter readings a day fill ~4 % of 15-minute slots, not the 70 % (Battelino 2019 [32][33]);
    a 7-day period is shorter than the 14 days either way."""
    readings = [glucose(day(n, h), 120.0) for n in range(14) for h in (7, 11, 17, 21) if day(n, h) < NOW]
    summary = summary_of(store, readings, days=30)
    assert summary.glucose.agp is None and not summary.glucose.agp_sufficient
    assert summary.glucose.agp_reason == "wear_below_70_percent"
    assert summary.glucose.gmi_percent is None and summary.glucose.gmi_reason == "wear_below_70_percent"
    assert summary.glucose.mean_mg_dl == 120.0
    week = summary_of(store, [], days=7)
    assert week.glucose.agp_reason == "period_shorter_than_14_days"


def test_readings_by_meal_context(store: SqliteReadingStore) -> None:
    """Means by the Glucose Measurement Context's meal field (ble-health-profiles.md §2.3)."""
    readings = [
        glucose(day(1, 7), 110.0, meal=Meal.FASTING),
        glucose(day(2, 7), 130.0, meal=Meal.FASTING),
        glucose(day(1, 13), 190.0, meal=Meal.POSTPRANDIAL),
        glucose(day(1, 22), 140.0),
    ]
    by_meal = {m.meal: (m.readings, m.mean_mg_dl) for m in summary_of(store, readings).glucose.by_meal}
    assert by_meal == {"fasting": (2, 120.0), "postprandial": (1, 190.0), "unknown": (1, 140.0)}


# --- adherence ------------------------------------------------------------------------------------------


def test_days_with_data_in_the_last_30_count_local_days_and_error_readings(store: SqliteReadingStore) -> None:
    """CPT 99454 [57]: days with data in 30 (16 is the threshold); a day with only an error reading is a
    day the patient measured (DQ-03); days are the patient's local days: 23:30 UTC is the next day in
    Shanghai. A reading 31 days ago does not count."""
    zone = "Asia/Shanghai"
    shanghai_now = datetime(2026, 3, 16, 12, 0, tzinfo=ZoneInfo(zone))
    readings: list[AnyReading] = [
        glucose(shanghai_now - timedelta(days=n), 100.0) for n in range(1, 15)
    ]  # 14 local days
    readings.append(bp(shanghai_now - timedelta(days=20), float("nan"), float("nan")))  # an "Err" only
    late = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)  # 07:30 on 11 March in Shanghai: a day of its own?
    readings.append(glucose(late, 100.0))  # 11 March already has a reading (n=5): no new day
    readings.append(glucose(datetime(2026, 2, 24, 16, 30, tzinfo=UTC), 100.0))  # 25 Feb 00:30 local
    readings.append(glucose(shanghai_now - timedelta(days=31), 100.0))
    summary = summary_of(store, readings, params=params_for(zone), now=shanghai_now, days=30)
    assert summary.days_with_data_30 == 16


# --- the rules and the summaries agree -------------------------------------------------------------------


def test_the_bp_rule_judges_the_home_mean_the_summary_shows(store: SqliteReadingStore) -> None:
    """BP-CTRL-1 fires on the same 7-day mean (and readings) that the panel and patient page show."""
    readings = morning_and_evening([6], 120.0, 70.0) + morning_and_evening(range(6), 137.0, 83.0)
    summary = summary_of(store, readings)
    outcomes = evaluate_patient(
        PatientHistory(PATIENT, [observation_from_reading(r) for r in readings]), params_for(), NOW
    )
    ctrl1 = next(o for o in outcomes if o.rule_id == "BP-CTRL-1")
    home = summary.blood_pressure.home_mean
    assert home is not None and ctrl1.status is OutcomeStatus.FIRING
    assert summary.blood_pressure.category == "above_target"
    assert (ctrl1.values["w7_systolic_mmhg"], ctrl1.values["w7_diastolic_mmhg"]) == (
        home.systolic,
        home.diastolic,
    )
    assert ctrl1.values["w7_readings"] == home.readings


def test_the_cgm_rule_and_the_summary_bin_10_mmol_l_alike(store: SqliteReadingStore) -> None:
    """CGM-TIR's time in range and the summary's agree, also on a meter's 10.0 mmol/L boundary value
    (in range per Battelino 2019 [33])."""
    start = NOW - timedelta(days=14)
    values = [mmol_l_to_mg_dl(10.0), 150.0, 200.0, 100.0]
    readings = [cgm(start + timedelta(minutes=15 * i), values[i % 4]) for i in range(14 * 96)]
    summary = summary_of(store, readings)
    outcomes = evaluate_patient(
        PatientHistory(PATIENT, [observation_from_reading(r) for r in readings]), params_for(), NOW
    )
    tir = next(o for o in outcomes if o.rule_id == "CGM-TIR")
    assert summary.glucose.time_in_range_70_180_percent == pytest.approx(75.0, abs=0.1)
    assert tir.values["tir_percent"] == pytest.approx(summary.glucose.time_in_range_70_180_percent, abs=0.1)


def test_panel_figures_are_the_summarys_figures(store: SqliteReadingStore) -> None:
    """The panel row shows the patient page's 7-day mean and category, and the 14-day time in range."""
    readings: list[AnyReading] = [*morning_and_evening(range(7), 142.0, 86.0)]
    readings += [glucose(day(n, 7), 60.0 if n == 3 else 150.0) for n in range(14)]
    readings += [glucose(day(20, 7), 300.0)]  # outside the 14 days of the panel's time in range
    summary = summary_of(store, readings, days=14)
    params = params_for()
    start, end = query_window(params, NOW, 30)
    figures = panel_figures(
        store.reading_columns(PATIENT, ReadingKind.BLOOD_PRESSURE, start, end),
        store.reading_columns(PATIENT, ReadingKind.GLUCOSE, start, end),
        params,
        now=NOW,
        latest_valid_glucose=(150.0, day(0, 7)),
        last_reading_at=day(0, 19) if day(0, 19) < NOW else day(0, 7),
    )
    home = summary.blood_pressure.home_mean
    assert figures.blood_pressure is not None and home is not None
    assert figures.blood_pressure.mean_systolic_mmhg == home.systolic
    assert figures.blood_pressure.category == summary.blood_pressure.category == "above_target"
    assert figures.glucose is not None and summary.glucose.ranges is not None
    assert figures.glucose.time_in_range_percent == summary.glucose.ranges.in_range
    assert figures.glucose.readings_14d == summary.glucose.readings == 14
    assert figures.days_with_data_30 == summary.days_with_data_30 == 15
    assert figures.valid_until == datetime(2026, 3, 17, tzinfo=UTC)


def test_daily_figures_match_the_stores_daily_aggregates_across_a_clock_change(
    store: SqliteReadingStore,
) -> None:
    """The chart's days (daily_figures) are the store's daily aggregates: local days of the patient,
    the spring-forward day in Berlin included; flagged and error readings only counted as excluded."""
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 27, 22, 30, tzinfo=UTC)  # 23:30 local on the 27th; clocks change on the 29th
    readings: list[AnyReading] = [
        bp(start + timedelta(hours=5 * i), 120.0 + i, 75.0 + i % 4) for i in range(20)
    ]
    readings.append(bp(start + timedelta(hours=26), 0.0, 0.0))
    readings.append(
        bp(start + timedelta(hours=27), 190.0, 110.0, status=frozenset({BloodPressureStatus.BODY_MOVEMENT}))
    )
    store.write_batch(readings)
    first, last = datetime(2026, 3, 27).date(), datetime(2026, 4, 1).date()
    window = day_window(first, last, zone)
    figures = daily_figures(
        store.reading_columns(PATIENT, ReadingKind.BLOOD_PRESSURE, *window), zone, first, last
    )
    aggregates = store.daily_aggregates(PATIENT, ReadingKind.BLOOD_PRESSURE, first, last, tz=zone)
    assert [(f.day, f.count, f.excluded_count) for f in figures] == [
        (a.day, a.count, a.excluded_count) for a in aggregates
    ]
    for f, a in zip(figures, aggregates, strict=True):
        assert f.systolic_mmhg is not None and a.systolic_mmhg is not None
        assert (f.systolic_mmhg.mean, f.systolic_mmhg.min, f.systolic_mmhg.max) == pytest.approx(
            (a.systolic_mmhg.mean, a.systolic_mmhg.min, a.systolic_mmhg.max)
        )
    assert sum(f.excluded_count for f in figures) == 2


def test_a_weeks_only_blood_pressures_on_the_first_measured_day_are_counted_as_left_out(
    store: SqliteReadingStore,
) -> None:
    """Readings only on the 7-day window's first measured day give no home mean (the protocol discards
    that day), and the panel row says how many were left out; a full week leaves out that day's only."""
    params = params_for()
    start, end = query_window(params, NOW, 30)

    def figures_of(readings: list[BloodPressureReading]) -> PanelFigures:
        store.write_batch(readings)
        return panel_figures(
            store.reading_columns(PATIENT, ReadingKind.BLOOD_PRESSURE, start, end),
            store.reading_columns(PATIENT, ReadingKind.GLUCOSE, start, end),
            params,
            now=NOW,
            latest_valid_glucose=None,
            last_reading_at=day(0, 7),
        )

    first_day_only = figures_of(
        [bp(day(0, 6), 186.0, 100.0), bp(day(0, 6) + timedelta(minutes=2), 184.0, 98.0)]
    )
    assert first_day_only.blood_pressure is None
    assert first_day_only.bp_not_counted_7d == 2
    week = figures_of(morning_and_evening(range(1, 7), 142.0, 86.0))  # days 6..1 before today, 4 a day
    assert week.blood_pressure is not None and week.blood_pressure.readings == 5 * 4 + 2
    assert week.bp_not_counted_7d == 4  # the first measured day (6 days back), now that today counts
