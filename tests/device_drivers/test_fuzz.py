"""Hypothesis fuzzing: any byte string gets a result or a DecodeError, never another exception."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers.profiles import (
    battery,
    blood_pressure,
    device_information,
    glucose,
    ieee11073,
    racp,
    time,
)
from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.presentation import PROFILES

DECODERS: dict[str, Callable[[bytes], object]] = {
    "sfloat": ieee11073.decode_sfloat,
    "float": ieee11073.decode_float,
    "blood_pressure_measurement": blood_pressure.decode_blood_pressure_measurement,
    "intermediate_cuff_pressure": blood_pressure.decode_intermediate_cuff_pressure,
    "blood_pressure_feature": blood_pressure.decode_blood_pressure_feature,
    "enhanced_blood_pressure_measurement": blood_pressure.decode_enhanced_blood_pressure_measurement,
    "blood_pressure_record": blood_pressure.decode_blood_pressure_record,
    "blood_pressure_record_crc": lambda data: blood_pressure.decode_blood_pressure_record(
        data, e2e_crc_present=True
    ),
    "glucose_measurement": glucose.decode_glucose_measurement,
    "glucose_measurement_context": glucose.decode_glucose_measurement_context,
    "glucose_feature": glucose.decode_glucose_feature,
    "racp_request": racp.decode_racp_request,
    "racp_response": racp.decode_racp_response,
    "racp": racp.decode_racp,
    "date_time": time.decode_date_time,
    "current_time": time.decode_current_time,
    "local_time_information": time.decode_local_time_information,
    "utf8_string": device_information.decode_utf8_string,
    "pnp_id": device_information.decode_pnp_id,
    "battery_level": battery.decode_battery_level,
}
for _name, _present in PROFILES.items():
    DECODERS[f"cli:{_name}"] = _present

VECTOR_HEX = [
    bytes.fromhex(vector["hex"])
    for path in sorted((Path(__file__).parent / "vectors").glob("*.json"))
    for vector in json.loads(path.read_text()).get("vectors", [])
]


@st.composite
def mutated_vectors(draw: st.DrawFn) -> bytes:
    """A real vector with a few bytes changed, cut short or extended: reaches the deep branches."""
    data = bytearray(draw(st.sampled_from(VECTOR_HEX)))
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=4))


INPUTS = st.one_of(st.binary(max_size=32), mutated_vectors())


def _check(decoder: Callable[[bytes], object], data: bytes) -> None:
    problem: DecodeError | None = None
    try:
        result = decoder(data)
    except DecodeError as error:
        problem = error
    if problem is not None:
        assert 0 <= problem.offset <= len(data) + 8
        assert problem.reason
        return
    # Results are usable: validity can be asked, JSON output is strict JSON (no NaN).
    if isinstance(result, dict):
        json.dumps(result, allow_nan=False)
    valid = getattr(result, "valid", None)
    if valid is False:
        assert getattr(result, "invalid_reasons", None)
        assert getattr(result, "raw", None) == data


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=INPUTS)
def test_decoder_returns_value_or_decode_error(name: str, data: bytes) -> None:
    """No byte string makes a decoder raise anything but DecodeError."""
    _check(DECODERS[name], data)
