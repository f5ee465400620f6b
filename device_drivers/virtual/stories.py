"""Scripted stories: what happens to a virtual patient, as data (JSON files).

The stories shipped with vitalgate live in ``device_drivers/virtual/story_data/*.json``; tests and the
demo can add their own files and load them with :func:`load_story` (a path) or put them in a
directory passed to :func:`available_stories`. A story file::

    {
      "name": "bp-rising",
      "description": "Blood pressure rises over three weeks.",
      "days": 28,
      "meters": ["omron-like", "contour-like"],
      "patient": {"systolic_mmhg": 132},
      "events": [
        {"kind": "bp_trend", "start_day": 7, "days": 21,
         "systolic_mmhg_per_day": 1.4, "diastolic_mmhg_per_day": 0.6},
        {"kind": "glucose_trend", "start_day": 0, "days": 28, "mg_dl_per_day": 0.5},
        {"kind": "hypos", "start_day": 3, "days": 14, "per_week": 3},
        {"kind": "hypo", "day": 2, "hour": 3.5},
        {"kind": "missed_days", "days": [10, 11, 12]},
        {"kind": "cuff_errors", "start_day": 0, "days": 28, "probability": 0.2}
      ]
    }

Event kinds: ``bp_trend`` (linear rise from ``start_day`` for ``days``, held afterwards),
``glucose_trend``, ``hypos`` (random episodes, ``per_week`` on average, at night or before lunch),
``hypo`` (one episode at a given day and local hour), ``missed_days``, ``cuff_errors`` (probability
that a cuff reading comes out as "Err").
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

STORIES_PACKAGE = "device_drivers.virtual.story_data"
DAYS_PER_WEEK = 7.0
#: Hypo hours: night (02:00–04:30) or late morning before lunch (11:00–12:00), local time.
HYPO_WINDOWS_HOURS = ((2.0, 4.5), (11.0, 12.0))
KNOWN_EVENT_KINDS = frozenset({"bp_trend", "glucose_trend", "hypos", "hypo", "missed_days", "cuff_errors"})


class StoryError(ValueError):
    """A story file is malformed (unknown event kind, missing field)."""


def _ramp(day: int, start_day: int, days: int, per_day: float) -> float:
    if day < start_day:
        return 0.0
    return per_day * min(day - start_day, days)


def _within(day: int, start_day: int, days: int) -> bool:
    return start_day <= day < start_day + days


@dataclass(frozen=True)
class Story:
    """A parsed story: the patient's baseline overrides, the meters and the events."""

    name: str
    description: str
    days: int
    meters: tuple[str, ...]
    patient: dict[str, Any] = field(default_factory=dict)
    events: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Story:
        try:
            story = cls(
                name=str(data["name"]),
                description=str(data.get("description", "")),
                days=int(data["days"]),
                meters=tuple(str(meter) for meter in data.get("meters", ["omron-like", "contour-like"])),
                patient=dict(data.get("patient", {})),
                events=tuple(dict(event) for event in data.get("events", [])),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StoryError(f"malformed story: {error}") from error
        for event in story.events:
            if event.get("kind") not in KNOWN_EVENT_KINDS:
                raise StoryError(f"story {story.name}: unknown event kind {event.get('kind')!r}")
        return story

    def _events(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["kind"] == kind]

    def systolic_offset(self, day: int) -> float:
        return sum(
            _ramp(day, int(e["start_day"]), int(e["days"]), float(e.get("systolic_mmhg_per_day", 0.0)))
            for e in self._events("bp_trend")
        )

    def diastolic_offset(self, day: int) -> float:
        return sum(
            _ramp(day, int(e["start_day"]), int(e["days"]), float(e.get("diastolic_mmhg_per_day", 0.0)))
            for e in self._events("bp_trend")
        )

    def glucose_offset(self, day: int) -> float:
        return sum(
            _ramp(day, int(e["start_day"]), int(e["days"]), float(e.get("mg_dl_per_day", 0.0)))
            for e in self._events("glucose_trend")
        )

    def is_missed(self, day: int) -> bool:
        return any(day in [int(d) for d in e.get("days", [])] for e in self._events("missed_days"))

    def cuff_error_probability(self, day: int) -> float:
        probability = 0.0
        for event in self._events("cuff_errors"):
            if _within(day, int(event.get("start_day", 0)), int(event.get("days", self.days))):
                probability = max(probability, float(event["probability"]))
        return probability

    def hypo_hours(self, day: int, rng: random.Random) -> list[float]:
        """Local hours of the hypoglycaemic episodes on ``day``."""
        hours = [float(e["hour"]) for e in self._events("hypo") if int(e["day"]) == day]
        for event in self._events("hypos"):
            if not _within(day, int(event["start_day"]), int(event["days"])):
                continue
            if rng.random() < float(event["per_week"]) / DAYS_PER_WEEK:
                low, high = rng.choice(HYPO_WINDOWS_HOURS)
                hours.append(rng.uniform(low, high))
        return sorted(hours)


def load_story(name_or_path: str | Path) -> Story:
    """A shipped story by name (``"bp-rising"``) or a story file by path."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        return Story.from_dict(json.loads(path.read_text(encoding="utf-8")))
    resource = resources.files(STORIES_PACKAGE).joinpath(f"{name_or_path}.json")
    if not resource.is_file():
        known = ", ".join(available_stories())
        raise StoryError(f"no story named {name_or_path!r}; shipped stories: {known}")
    return Story.from_dict(json.loads(resource.read_text(encoding="utf-8")))


def available_stories() -> list[str]:
    """Names of the stories shipped in the package."""
    return sorted(
        entry.name.removesuffix(".json")
        for entry in resources.files(STORIES_PACKAGE).iterdir()
        if entry.name.endswith(".json")
    )
