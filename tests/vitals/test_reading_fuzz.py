"""Any JSON value in any field of a reading gives a model or a ValidationError, never another
exception: ingest relies on this to dead-letter bad payloads instead of stalling the stream."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vitals.payload import ReadingsBatch
from vitals.readings import BloodPressureReading, GlucoseReading

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
BP = {
    "reading_id": "0" * 32,
    "device": {"manufacturer": "A", "model": "B", "serial_number": "1"},
    "measured_at": "2024-03-01T08:30:00Z",
    "kind": "blood_pressure",
    "systolic": 120,
    "diastolic": 80,
}
GLUCOSE = {
    "reading_id": "1" * 32,
    "device": {"manufacturer": "A", "model": "B", "serial_number": "1"},
    "measured_at": "2024-03-01T08:30:00Z",
    "kind": "glucose",
    "sequence_number": 5,
    "glucose": 105,
}


def accepted_or_refused(model: Any, data: dict[str, Any]) -> None:
    with contextlib.suppress(ValidationError):
        model.model_validate(data)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(BloodPressureReading.model_fields)), value=json_values)
def test_blood_pressure_field_replaced_by_any_json(field: str, value: object) -> None:
    accepted_or_refused(BloodPressureReading, {**BP, field: value})


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(GlucoseReading.model_fields)), value=json_values)
def test_glucose_field_replaced_by_any_json(field: str, value: object) -> None:
    accepted_or_refused(GlucoseReading, {**GLUCOSE, field: value})


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_batch_from_any_text(text: str) -> None:
    with contextlib.suppress(ValidationError):
        ReadingsBatch.model_validate_json(text)
