"""FHIR R4 export over a real clinic database and SQLite store: the searchset Bundle validates with a
kept FHIR model library (fhir.resources; its R4B models, whose Bundle, Observation and Device
elements used here are R4's), the vital-signs profile's required elements are present by name
(clinical-rules.md §6.2), the codes are the LOINC, MDC and UCUM codes of vitals.codes, invalid readings
carry a dataAbsentReason, paging follows next links, the CSV and FHIR exports hold the same readings,
and tenancy and audit hold as for every patient read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from storage.clinic.models import AuditLogEntry
from vitals import codes
from vitals.readings import BloodPressureReading, GlucoseReading

from .conftest import ClinicApi
from .report_seed import cgm_patient_readings, meter_patient_readings
from .test_reports import _csv_rows

NOW = datetime.now(UTC)
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
VITAL_SIGNS = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.fixture
def readings(clinic_api: ClinicApi) -> list[BloodPressureReading | GlucoseReading]:
    stored = meter_patient_readings("p-1", NOW)
    clinic_api.services.reading_store.write_batch(stored)
    return stored


def _search(api: ClinicApi, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = api.client.get("/fhir/r4/Observation", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    return body


def _all_pages(api: ClinicApi, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    pages = [_search(api, headers, **params)]
    while (
        nxt := next((link["url"] for link in pages[-1]["link"] if link["relation"] == "next"), None)
    ) is not None:
        response = api.client.get(nxt, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages


def _observations(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["resource"] for p in pages for e in p["entry"] if e["search"]["mode"] == "match"]


def _codes(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in resource["code"]["coding"]}


def _required_elements(obs: dict[str, Any]) -> None:
    """The vital-signs profile's mandatory elements (clinical-rules.md §6.2) and PHD's device link."""
    assert obs["status"] == "final"
    assert obs["category"][0]["coding"][0]["system"] == VITAL_SIGNS
    assert any(system == LOINC for system, _ in _codes(obs))
    assert obs["subject"]["reference"] == "Patient/p-1"
    assert obs["effectiveDateTime"].endswith("Z")
    assert obs["device"]["reference"].startswith("Device/meter-")
    assert ("valueQuantity" in obs) != ("dataAbsentReason" in obs) or "component" in obs
    for component in obs.get("component", []):
        assert component["code"]["coding"]
        assert ("valueQuantity" in component) != (
            "dataAbsentReason" in component
        ) or "valueCodeableConcept" in component


def test_bundle_validates_and_holds_every_reading_with_its_codes(
    clinic_api: ClinicApi, readings: list[Any]
) -> None:
    """Every stored reading is in the Bundle (a blood pressure with its pulse as two Observations),
    each page validates as an R4 searchset Bundle, and the BP panel, heart rate and glucose carry the
    LOINC and MDC codes and UCUM units of vitals.codes; the meters are included as Devices."""
    doctor = clinic_api.auth("a@c1.example")
    pages = _all_pages(clinic_api, doctor, patient="Patient/p-1", _count=25)
    assert len(pages) > 2
    for page in pages:
        Bundle.model_validate(page)
        assert page["type"] == "searchset"
    observations = _observations(pages)
    for obs in observations:
        _required_elements(obs)
    ids = [o["identifier"][0]["value"].rsplit("-", 1)[0] for o in observations]
    assert set(ids) == {r.reading_id for r in readings}
    with_pulse = [
        r for r in readings if isinstance(r, BloodPressureReading) and r.valid and r.pulse_bpm is not None
    ]
    assert len(observations) == len(readings) + len(with_pulse)
    bp = next(
        o
        for o in observations
        if o["id"].startswith("bp-") and "valueQuantity" not in o and "dataAbsentReason" not in o
    )
    assert _codes(bp) == {(MDC, str(codes.MDC_PRESS_BLD_NONINV)), (LOINC, codes.LOINC_BP_PANEL)}
    systolic, diastolic = bp["component"][:2]
    assert (LOINC, codes.LOINC_SYSTOLIC) in _codes(systolic) and (MDC, "150021") in _codes(systolic)
    assert (LOINC, codes.LOINC_DIASTOLIC) in _codes(diastolic)
    assert (
        systolic["valueQuantity"]["code"] == "mm[Hg]"
        and systolic["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    )
    hr = next(o for o in observations if o["id"].startswith("hr-"))
    assert _codes(hr) == {(MDC, str(codes.MDC_PULS_RATE_NON_INV)), (LOINC, codes.LOINC_HEART_RATE)}
    assert hr["valueQuantity"] == {
        "value": 70.0,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    fasting = [o for o in observations if (LOINC, codes.LOINC_GLUCOSE_FASTING_MOLES) in _codes(o)]
    assert fasting and all(o["valueQuantity"]["code"] == "mmol/L" for o in fasting)
    assert all((MDC, str(codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD)) in _codes(o) for o in fasting)
    assert all(o["category"][0]["coding"][0]["code"] == "laboratory" for o in fasting)
    meal = fasting[0]["component"][0]
    assert meal["valueCodeableConcept"]["text"] == "fasting"
    devices = {
        e["resource"]["id"]: e["resource"]
        for p in pages
        for e in p["entry"]
        if e["search"]["mode"] == "include"
    }
    cuff = devices[bp["device"]["reference"].removeprefix("Device/")]
    assert (cuff["manufacturer"], cuff["modelNumber"], cuff["serialNumber"]) == (
        "Acme",
        "BP-1",
        "SN-CUFF-p-1",
    )
    assert cuff["version"][0]["value"] == "1.2"


def test_invalid_readings_are_kept_with_a_data_absent_reason(
    clinic_api: ClinicApi, readings: list[Any]
) -> None:
    """Per the PHD IG an error reading is exported as a final Observation without a value: a cuff's
    "Err" as not-a-number, a 0/0 as error; a control-solution test is labelled test data; a reading
    the cuff flagged keeps its value with the flag as interpretation."""
    observations = _observations(
        _all_pages(clinic_api, clinic_api.auth("a@c1.example"), patient="p-1", _count=1000)
    )
    absent = {o["dataAbsentReason"]["text"]: o for o in observations if "dataAbsentReason" in o}
    assert set(absent) == {
        "not_measured",
        "implausible_value",
        "control_solution",
        "result_too_high, not_measured",
    }
    assert absent["not_measured"]["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"
    assert absent["implausible_value"]["dataAbsentReason"]["coding"][0]["code"] == "error"
    assert all(c["dataAbsentReason"] for c in absent["implausible_value"]["component"])
    assert absent["control_solution"]["meta"]["security"][0]["code"] == "HTEST"
    assert all(o["status"] == "final" and "valueQuantity" not in o for o in absent.values())
    flagged = [o for o in observations if "interpretation" in o]
    assert len(flagged) == 1 and "body_movement" in flagged[0]["interpretation"][0]["text"]
    assert flagged[0]["component"][0]["valueQuantity"]["value"] == 182.0


def test_date_and_code_narrow_the_search(clinic_api: ClinicApi, readings: list[Any]) -> None:
    """`date=ge..&date=lt..` keeps the Observations of that range; `code` keeps those with that LOINC
    or MDC code; _count caps a page."""
    doctor = clinic_api.auth("a@c1.example")
    start, end = NOW - timedelta(days=3), NOW - timedelta(days=1)
    ranged = _observations(
        _all_pages(clinic_api, doctor, patient="p-1", date=[f"ge{start.isoformat()}", f"lt{end.isoformat()}"])
    )
    expected = {r.reading_id for r in readings if start <= r.measured_at < end}
    assert {o["identifier"][0]["value"].rsplit("-", 1)[0] for o in ranged} == expected
    panels = _observations(
        _all_pages(clinic_api, doctor, patient="p-1", code=f"{LOINC}|{codes.LOINC_BP_PANEL}")
    )
    assert panels and all(o["id"].startswith("bp-") for o in panels)
    assert len(panels) == sum(1 for r in readings if isinstance(r, BloodPressureReading))
    pulse = _observations(
        _all_pages(clinic_api, doctor, patient="p-1", code=str(codes.MDC_PULS_RATE_NON_INV))
    )
    assert pulse and all(o["id"].startswith("hr-") for o in pulse)
    page = _search(clinic_api, doctor, patient="p-1", _count=5)
    assert len([e for e in page["entry"] if e["search"]["mode"] == "match"]) == 5
    refused = clinic_api.client.get(
        "/fhir/r4/Observation", params={"patient": "p-1", "date": "sa2024"}, headers=doctor
    )
    assert refused.status_code == 422 and refused.json()["field"] == "date"


def test_csv_and_fhir_exports_of_a_range_hold_the_same_readings(
    clinic_api: ClinicApi, readings: list[Any]
) -> None:
    """The patient route's Bundle and the CSV of one range name the same reading ids."""
    doctor = clinic_api.auth("a@c1.example")
    params = {"start": (NOW - timedelta(days=10)).isoformat(), "end": (NOW - timedelta(days=2)).isoformat()}
    response = clinic_api.client.get(
        "/api/v1/patients/p-1/fhir/Observation", params={**params, "_count": 1000}, headers=doctor
    )
    assert response.status_code == 200
    Bundle.model_validate(response.json())
    fhir_ids = {o["identifier"][0]["value"].rsplit("-", 1)[0] for o in _observations([response.json()])}
    csv_ids = {
        r["reading_id"]
        for r in _csv_rows(
            clinic_api.client.get("/api/v1/patients/p-1/readings.csv", params=params, headers=doctor).text
        )
    }
    assert fhir_ids == csv_ids and len(csv_ids) > 20


def test_another_clinics_search_is_not_found_and_audited(clinic_api: ClinicApi, readings: list[Any]) -> None:
    """Another clinic's administrator searching p-1 gets 404 on both routes and each refusal is audited;
    the care team's search is audited as allowed with its range; a search without patient is 422."""
    other = clinic_api.auth("admin@c2.example")
    for path, params in (
        ("/fhir/r4/Observation", {"patient": "p-1"}),
        ("/api/v1/patients/p-1/fhir/Observation", {}),
    ):
        refused = clinic_api.client.get(path, params=params, headers=other)
        assert refused.status_code == 404 and refused.json()["code"] == "patient.not_found"
    doctor = clinic_api.auth("a@c1.example")
    _search(clinic_api, doctor, subject="Patient/p-1")
    assert clinic_api.client.get("/fhir/r4/Observation", headers=doctor).status_code == 422
    assert clinic_api.client.get("/fhir/r4/Observation", params={"patient": "p-1"}).status_code == 401
    with clinic_api.services.clinic_sessions() as session:
        entries = [
            (e.actor, e.outcome, set(e.details))
            for e in session.query(AuditLogEntry)
            .filter(AuditLogEntry.action == "export_fhir_observations")
            .order_by(AuditLogEntry.audit_id)
        ]
    assert entries == [
        ("admin-2", "denied", set()),
        ("admin-2", "denied", set()),
        ("dr-a", "allowed", {"start", "end"}),
    ]


def test_capability_statement(clinic_api: ClinicApi) -> None:
    """/fhir/r4/metadata answers an R4 CapabilityStatement naming the Observation search parameters."""
    response = clinic_api.client.get("/fhir/r4/metadata")
    assert response.status_code == 200
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    params = {p["name"] for p in statement["rest"][0]["resource"][0]["searchParam"]}
    assert params == {"patient", "date", "code", "_count"}


def test_paging_neither_repeats_nor_skips_when_readings_arrive(clinic_api: ClinicApi) -> None:
    """14 days of readings every 15 minutes paged 200 at a time: readings stored between two pages
    before the cursor do not shift the pages; every Observation comes exactly once."""
    doctor = clinic_api.auth("a@c1.example")
    stored = cgm_patient_readings("p-1", NOW)
    clinic_api.services.reading_store.write_batch(stored)
    first = _search(clinic_api, doctor, patient="p-1", _count=200)
    seen = [e["resource"]["id"] for e in first["entry"] if e["search"]["mode"] == "match"]
    late = meter_patient_readings("p-1", NOW - timedelta(days=30))  # all older than the cursor
    clinic_api.services.reading_store.write_batch(late)
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while nxt:
        page = clinic_api.client.get(nxt, headers=doctor).json()
        seen += [e["resource"]["id"] for e in page["entry"] if e["search"]["mode"] == "match"]
        nxt = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen))
    assert {f"glu-{r.reading_id}" for r in stored} <= set(seen)
