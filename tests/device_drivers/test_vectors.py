"""Every codec against vectors from the specification and published captures (vectors/*.json)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from device_drivers.profiles.errors import DecodeError
from device_drivers.profiles.ieee11073 import decode_float, decode_sfloat
from device_drivers.profiles.presentation import PROFILES
from device_drivers.profiles.racp import RacpRequestError, decode_racp_request

VECTORS = Path(__file__).parent / "vectors"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


PROFILE_FILES = sorted(p.name for p in VECTORS.glob("*.json") if "profile" in json.loads(p.read_text()))


def _cases(kind: str) -> list[Any]:
    cases = []
    for name in PROFILE_FILES:
        data = _load(name)
        for index, vector in enumerate(data[kind]):
            cases.append(pytest.param(data["profile"], vector, id=f"{data['profile']}-{index}"))
    return cases


def test_every_profile_has_vectors_and_error_cases() -> None:
    """Adding a profile to `vitalgate decode` without vectors and corrupt-input cases fails here."""
    covered = {_load(name)["profile"]: _load(name) for name in PROFILE_FILES}
    assert set(covered) == set(PROFILES)
    for profile, data in covered.items():
        assert data["vectors"], profile
        assert data["errors"], profile
        assert all(vector["source"] for vector in data["vectors"] + data["errors"]), profile


@pytest.mark.parametrize(("profile", "vector"), _cases("vectors"))
def test_decodes_vector(profile: str, vector: dict[str, Any]) -> None:
    """The decoded fields equal the values the source states, field for field."""
    assert PROFILES[profile](bytes.fromhex(vector["hex"])) == vector["expected"]


@pytest.mark.parametrize(("profile", "vector"), _cases("errors"))
def test_rejects_with_offset_and_reason(profile: str, vector: dict[str, Any]) -> None:
    """Undecodable bytes raise DecodeError naming the byte offset and the reason."""
    with pytest.raises(DecodeError) as caught:
        PROFILES[profile](bytes.fromhex(vector["hex"]))
    assert caught.value.offset == vector["offset"]
    assert vector["reason"] in caught.value.reason


@pytest.mark.parametrize(
    "vector", [v for v in _load("racp.json")["errors"] if v.get("response_code")], ids=lambda v: v["hex"]
)
def test_bad_racp_request_carries_the_response_code_a_meter_indicates(vector: dict[str, Any]) -> None:
    """A meter answering a malformed request knows which RACP response code to send."""
    with pytest.raises(RacpRequestError) as caught:
        decode_racp_request(bytes.fromhex(vector["hex"]))
    assert caught.value.response_code.name.lower() == vector["response_code"]


def _float_cases(name: str) -> list[Any]:
    return [pytest.param(v, id=v["raw"]) for v in _load(name)["vectors"]]


def _check_number(decoded: Any, expected: dict[str, Any]) -> None:
    assert decoded.mantissa == expected["mantissa"]
    assert decoded.exponent == expected["exponent"]
    assert (decoded.special.value if decoded.special else None) == expected["special"]
    value = decoded.to_decimal()
    if expected["value"] is None:
        assert value is None
    else:
        assert value == Decimal(expected["value"])


@pytest.mark.parametrize("vector", _float_cases("sfloat.json"))
def test_sfloat_vector(vector: dict[str, Any]) -> None:
    """SFLOAT: two's-complement exponent and the five special values (HL7 PHD, Wireshark)."""
    _check_number(decode_sfloat(bytes.fromhex(vector["hex"])), vector["expected"])


@pytest.mark.parametrize("vector", _float_cases("float.json"))
def test_float_vector(vector: dict[str, Any]) -> None:
    """FLOAT: 8-bit exponent, 24-bit mantissa and the five special values."""
    _check_number(decode_float(bytes.fromhex(vector["hex"])), vector["expected"])


@pytest.mark.parametrize(("name", "decoder"), [("sfloat.json", decode_sfloat), ("float.json", decode_float)])
def test_number_errors(name: str, decoder: Any) -> None:
    """Wrong-length numbers raise DecodeError with the offset."""
    for vector in _load(name)["errors"]:
        with pytest.raises(DecodeError) as caught:
            decoder(bytes.fromhex(vector["hex"]))
        assert caught.value.offset == vector["offset"]
        assert vector["reason"] in caught.value.reason
