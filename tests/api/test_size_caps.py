"""Bounds on what the API accepts (api/limits.py, api/security.py): bodies above the limit refused
before they are read, every request string bounded, dates far in the past or future a coded 422."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.openapi_schema import openapi_schema
from storage.clinic.models import PatientReportRecord

from .conftest import ClinicApi
from .test_audit import _with_alerts

DOCTOR = "a@c1.example"
TEN_MIB = 10 * 1024 * 1024


def _unbounded(
    schema: dict[str, Any], components: dict[str, Any], path: str, seen: frozenset[str]
) -> Iterator[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from _unbounded(components[name], components, path, seen | {name})
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _unbounded(sub, components, path, seen)
    bounded = {"maxLength", "enum", "const"} & set(schema)
    parsed = schema.get("format") in ("date", "date-time")  # parsed into a value of fixed size
    if schema.get("type") == "string" and not bounded and not parsed:
        yield path
    if schema.get("type") == "array":
        yield from _unbounded(schema.get("items", {}), components, f"{path}[]", seen)
    for name, sub in schema.get("properties", {}).items():
        yield from _unbounded(sub, components, f"{path}.{name}", seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _unbounded(extra, components, f"{path}.*", seen)


def test_every_string_in_every_request_body_has_a_maximum_length() -> None:
    """No request body field can make the server hold an arbitrarily long string (OWASP API4)."""
    spec = openapi_schema()
    components = spec["components"]["schemas"]
    found = [
        f"{method.upper()} {route} {media}{field}"
        for route, operations in spec["paths"].items()
        for method, operation in operations.items()
        for media, content in operation.get("requestBody", {}).get("content", {}).items()
        for field in _unbounded(content["schema"], components, "", frozenset())
    ]
    assert found == []


def _report(api: ClinicApi, body: bytes, **headers: str) -> httpx.Response:
    response: httpx.Response = api.client.post(
        "/api/v1/alerts/reports",
        content=body,
        headers={**api.auth(DOCTOR), "Content-Type": "application/json", **headers},
    )
    return response


def _stored_reports(api: ClinicApi) -> int:
    with api.services.clinic_sessions() as session:
        return int(session.scalar(select(func.count()).select_from(PatientReportRecord)) or 0)


def test_a_ten_mebibyte_patient_report_is_refused_before_it_is_read(clinic_api: ClinicApi) -> None:
    """The report that once stored 10 MiB is answered 413 with a code, and nothing is stored."""
    _with_alerts(clinic_api)
    symptom = "x" * TEN_MIB
    body = b'{"patient_id": "p-1", "kind": "symptoms", "symptoms": ["' + symptom.encode() + b'"]}'
    response = _report(clinic_api, body)
    assert response.status_code == 413
    assert response.json()["code"] == "request.too_large"
    assert _stored_reports(clinic_api) == 0


def test_a_body_streamed_without_a_length_is_cut_off_at_the_limit(clinic_api: ClinicApi) -> None:
    """A chunked upload cannot slip past the limit by not declaring its size."""
    _with_alerts(clinic_api)
    limit = clinic_api.services.max_request_body_bytes
    chunk = b" " * 65536
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"patient_id": "p-1", "kind": "symptoms", "symptoms": ["a"]'
        while sent <= 4 * limit:
            sent += len(chunk)
            yield chunk
        yield b"}"

    response = clinic_api.client.post(
        "/api/v1/alerts/reports",
        content=chunks(),
        headers={**clinic_api.auth(DOCTOR), "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["code"] == "request.too_large"
    assert _stored_reports(clinic_api) == 0


def test_a_long_symptom_within_the_body_limit_is_a_validation_error(clinic_api: ClinicApi) -> None:
    """Below the body limit, each string still has its own bound, answered with pydantic's code."""
    _with_alerts(clinic_api)
    body = {"patient_id": "p-1", "kind": "symptoms", "symptoms": ["x" * 1000]}
    response = clinic_api.client.post("/api/v1/alerts/reports", json=body, headers=clinic_api.auth(DOCTOR))
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "string_too_long"
    assert _stored_reports(clinic_api) == 0


def _date_queries() -> Iterator[tuple[str, str, str]]:
    """(path, parameter, format) of every date or date-time query parameter the API takes."""
    spec = openapi_schema()
    for route, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schemas = [parameter.get("schema", {}), *parameter.get("schema", {}).get("anyOf", [])]
                formats = {s.get("format") for s in schemas} & {"date", "date-time"}
                if parameter["in"] == "query" and formats:
                    yield route, parameter["name"], formats.pop()


DATE_QUERIES = sorted(set(_date_queries()))


def test_the_date_parameters_are_found() -> None:
    """The walk below covers the readings range, its CSV and FHIR exports, and the audit log."""
    names = {(route.rsplit("/", 1)[-1], name) for route, name, _ in DATE_QUERIES}
    assert {("readings", "end"), ("readings.csv", "end"), ("Observation", "end"), ("audit", "since")} <= names


@pytest.mark.parametrize(("route", "name", "kind"), DATE_QUERIES)
@pytest.mark.parametrize("year", ["0001", "9999"])
def test_dates_at_the_ends_of_the_calendar_are_a_coded_422_not_a_server_error(
    clinic_api: ClinicApi, route: str, name: str, kind: str, year: str
) -> None:
    """Year 1 and year 9999 are refused as invalid input, with the bound they broke."""
    value = f"{year}-01-01" if kind == "date" else f"{year}-01-01T00:00:00Z"
    path = re.sub(r"\{[^}]+\}", "p-1", route)
    response = clinic_api.client.get(path, params={name: value}, headers=clinic_api.auth("admin@c1.example"))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation" and body["field"] == name
    assert body["errors"][0]["code"] in {"greater_than_equal", "less_than"}


@pytest.mark.parametrize("year", ["0001", "9999"])
def test_a_report_dated_at_the_ends_of_the_calendar_is_a_coded_422(clinic_api: ClinicApi, year: str) -> None:
    """A body date far outside any clinic's life is refused before a rule computes windows with it."""
    _with_alerts(clinic_api)
    body = {
        "patient_id": "p-1",
        "kind": "symptoms",
        "symptoms": ["dizziness"],
        "reported_at": f"{year}-06-01T00:00:00Z",
    }
    response = clinic_api.client.post("/api/v1/alerts/reports", json=body, headers=clinic_api.auth(DOCTOR))
    assert response.status_code == 422 and response.json()["field"] == "reported_at"
