"""Virtual patients and stories: plausible series, and stories that do what they say."""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path

import pytest

from device_drivers.virtual.patients import PatientProfile, VirtualPatient
from device_drivers.virtual.stories import StoryError, available_stories, load_story

SHIPPED = {"stable", "bp-rising", "recurrent-hypos", "missed-days", "cuff-errors"}


def patient(story_name: str, seed: int = 3) -> VirtualPatient:
    story = load_story(story_name)
    return VirtualPatient("vp-test", story, PatientProfile.from_dict(story.patient), seed=seed)


def test_shipped_stories_are_listed_and_load() -> None:
    assert set(available_stories()) >= SHIPPED
    for name in SHIPPED:
        story = load_story(name)
        assert story.name == name and story.days > 0 and story.meters


def test_series_are_deterministic_per_seed_and_differ_between_seeds() -> None:
    first = [patient("stable", seed=1).blood_pressure_readings(day) for day in range(5)]
    again = [patient("stable", seed=1).blood_pressure_readings(day) for day in range(5)]
    other = [patient("stable", seed=2).blood_pressure_readings(day) for day in range(5)]
    assert first == again
    assert first != other


def test_blood_pressure_dips_at_night_and_surges_in_the_morning() -> None:
    subject = patient("stable")
    profile = subject.profile
    night, _, night_pulse = subject.true_blood_pressure(0, 3.0)
    afternoon, _, day_pulse = subject.true_blood_pressure(0, 15.0)
    surge, _, _ = subject.true_blood_pressure(0, profile.wake_hour + 1.0)
    assert night < afternoon * 0.92  # nocturnal dip of about 12 %
    assert surge > afternoon + 10  # morning surge
    assert night_pulse < day_pulse


def test_stable_patient_readings_are_plausible() -> None:
    subject = patient("stable")
    readings = [r for day in range(28) for r in subject.blood_pressure_readings(day)]
    assert len(readings) == 56  # morning and evening, every day
    assert all(90 <= (r.systolic_mmhg or 0) <= 180 for r in readings)
    assert all(50 <= (r.diastolic_mmhg or 0) <= 115 for r in readings)
    assert all((r.systolic_mmhg or 0) > (r.diastolic_mmhg or 0) for r in readings)
    glucose = [g for day in range(28) for g in subject.glucose_readings(day)]
    fasting = [g.glucose_mg_dl for g in glucose if g.meal == "fasting"]
    after_lunch = [g.glucose_mg_dl for g in glucose if g.meal == "postprandial"]
    assert 80 <= statistics.mean(fasting) <= 120
    assert statistics.mean(after_lunch) > statistics.mean(fasting) + 25  # meal excursion
    assert not any(g.hypo for g in glucose)


def test_bp_rising_story_raises_blood_pressure_over_three_weeks() -> None:
    subject = patient("bp-rising")

    def weekly_mean(week: int) -> float:
        days = range(week * 7, week * 7 + 7)
        return statistics.mean(r.systolic_mmhg or 0 for d in days for r in subject.blood_pressure_readings(d))

    assert weekly_mean(4) - weekly_mean(0) > 20
    assert weekly_mean(1) < weekly_mean(2) < weekly_mean(3)


def test_recurrent_hypos_story_produces_hypoglycaemic_readings() -> None:
    subject = patient("recurrent-hypos")
    hypos = [g for day in range(28) for g in subject.glucose_readings(day) if g.hypo]
    assert len(hypos) >= 6
    assert all(g.glucose_mg_dl < 70 for g in hypos)
    assert any(g.taken_at.date() == (subject.start + dt.timedelta(days=2)).date() for g in hypos)


def test_missed_days_have_no_readings() -> None:
    subject = patient("missed-days")
    for day in (6, 7, 8, 9, 15):
        assert subject.blood_pressure_readings(day) == [] and subject.glucose_readings(day) == []
    assert subject.blood_pressure_readings(5) and subject.glucose_readings(10)


def test_cuff_errors_story_yields_error_readings_without_values() -> None:
    subject = patient("cuff-errors")
    readings = [r for day in range(3, 21) for r in subject.blood_pressure_readings(day)]
    errors = [r for r in readings if r.error]
    assert 0.15 < len(errors) / len(readings) < 0.55
    assert all(r.systolic_mmhg is None for r in errors)
    assert not any(r.error for day in range(3) for r in subject.blood_pressure_readings(day))


def test_a_story_file_from_outside_the_package_loads(tmp_path: Path) -> None:
    path = tmp_path / "white-coat.json"
    path.write_text(
        json.dumps(
            {
                "name": "white-coat",
                "description": "test story",
                "days": 3,
                "meters": ["silvercrest-like"],
                "patient": {"systolic_mmhg": 150},
                "events": [{"kind": "missed_days", "days": [1]}],
            }
        )
    )
    story = load_story(path)
    subject = VirtualPatient("vp-x", story, PatientProfile.from_dict(story.patient))
    assert subject.blood_pressure_readings(1) == []
    assert statistics.mean(r.systolic_mmhg or 0 for r in subject.blood_pressure_readings(0)) > 140


def test_malformed_stories_are_refused_with_a_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "days": 3, "events": [{"kind": "alien_abduction"}]}))
    with pytest.raises(StoryError, match="alien_abduction"):
        load_story(bad)
    with pytest.raises(StoryError, match="no story named"):
        load_story("no-such-story")
