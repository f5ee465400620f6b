"""Readings as FHIR R4 resources: vital-signs Observations per the FHIR vital-signs profile and the HL7
Personal Health Device (PHD) implementation guide, the meters as Device resources, a searchset Bundle,
and the server's CapabilityStatement (clinical-rules.md §6, [60][61]).

Observations, one per measured quantity:

- blood pressure: the panel 85354-9 (MDC 150020 beside it, PHD keeps the MDC coding and adds the LOINC
  one) with components systolic 8480-6 / MDC 150021 and diastolic 8462-4 / MDC 150022 in `mm[Hg]`,
  and the mean arterial pressure as MDC 150023 when the cuff sent it (PHD examples send MAP with its
  MDC code only; the LOINC code 8478-0 is not verified, clinical-rules.md §6.1). Values are the
  canonical mmHg: the profile fixes the unit;
- pulse rate from the cuff: heart rate 8867-4 / MDC 149546, `/min`, a separate Observation as in PHD;
- glucose: category laboratory (glucose is not one of FHIR's vital signs), in the meter's own unit
  (UCUM `mg/dL` or `mmol/L`) with the LOINC code for its specimen and unit: capillary blood by
  glucometer 41653-7 / 14743-9, fasting 41604-0 / 14770-2 (§6.1 [63][64]); any other or unstated
  specimen "glucose in blood" 2339-0 / 15074-8. The MDC code for capillary whole blood (160184) or
  plasma (160188) is added when the meter said which. The meal context is a component (MDC
  8417864, MDC_CTXT_GLU_MEAL) with the meal as text.

Invalid readings (clinical-rules.md §6.2, PHD "Measurement Status"): the IG reports every measurement
a device sent, errors included, so a downstream record shows the attempt; they are exported, never
dropped and never `entered-in-error` (which means a record withdrawn as a mistake). Such an
Observation is `final` with no value and a `dataAbsentReason`: `not-a-number` when the meter sent no
value (PHD's NaN case), `error` otherwise, its text naming our reasons (alerts.summaries
ExclusionReason codes). A control-solution test also carries the security label HTEST (test data, not
the patient's). A valid reading the cuff flagged (body movement, loose cuff, improper position) keeps
its value and gets an `interpretation` naming the flags: real values, which the clinic leaves out of
averages.

Each Observation refers to its meter, `Device/{device id}`, whose id is derived from the meter's
identity (manufacturer, model, serial or address: no personal data), and to `Patient/{patient id}`
(the clinic's opaque id). The reading id is the Observation's identifier, so a receiver can
deduplicate re-sent data.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from alerts.summaries import exclusion_reasons
from storage.readings.protocol import AnyReading
from vitals import codes
from vitals.readings import (
    BloodPressureReading,
    DeviceIdentity,
    GlucoseReading,
    Meal,
    SampleLocation,
    SampleType,
)
from vitals.units import GlucoseUnit

FHIR_VERSION: Final = "4.0.1"
FHIR_JSON: Final = "application/fhir+json"
LOINC: Final = "http://loinc.org"
MDC: Final = "urn:iso:std:iso:11073:10101"
UCUM: Final = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
READING_ID_SYSTEM: Final = "urn:vitalgate:reading-id"
METER_KEY_SYSTEM: Final = "urn:vitalgate:meter-key"
VITAL_SIGNS_PROFILE: Final = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
BP_PROFILE: Final = "http://hl7.org/fhir/StructureDefinition/bp"
HEART_RATE_PROFILE: Final = "http://hl7.org/fhir/StructureDefinition/heartrate"

# Glucose in blood by unspecified method: mass (clinical-rules.md §6.1 [63]) and moles per volume.
LOINC_GLUCOSE_BLOOD_MASS: Final = "2339-0"
LOINC_GLUCOSE_BLOOD_MOLES: Final = "15074-8"
MDC_CTXT_GLU_MEAL: Final = 8417864  # clinical-rules.md §6.3 [61]

_CAPILLARY_TYPES: Final = frozenset({SampleType.CAPILLARY_WHOLE_BLOOD, SampleType.CAPILLARY_PLASMA})
_CAPILLARY_SITES: Final = frozenset(
    {SampleLocation.FINGER, SampleLocation.ALTERNATE_SITE_TEST, SampleLocation.EARLOBE}
)

# What `code` searches can name, by kind of resource: (system, code) of each Observation's codings.
BP_CODES: Final = frozenset({(LOINC, codes.LOINC_BP_PANEL), (MDC, str(codes.MDC_PRESS_BLD_NONINV))})
HEART_RATE_CODES: Final = frozenset(
    {(LOINC, codes.LOINC_HEART_RATE), (MDC, str(codes.MDC_PULS_RATE_NON_INV))}
)
GLUCOSE_CODES: Final = frozenset(
    {
        (LOINC, c)
        for c in (
            codes.LOINC_GLUCOSE_CAPILLARY_MASS,
            codes.LOINC_GLUCOSE_CAPILLARY_MOLES,
            codes.LOINC_GLUCOSE_FASTING_MASS,
            codes.LOINC_GLUCOSE_FASTING_MOLES,
            LOINC_GLUCOSE_BLOOD_MASS,
            LOINC_GLUCOSE_BLOOD_MOLES,
        )
    }
    | {(MDC, str(codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD)), (MDC, str(codes.MDC_CONC_GLU_CAPILLARY_PLASMA))}
)


def device_id(device: DeviceIdentity) -> str:
    """The Device resource id of a meter: a hash of its identity (FHIR ids: [A-Za-z0-9-.]{1,64})."""
    return _meter_resource_id(device.meter_key)


@functools.lru_cache(maxsize=4096)
def _meter_resource_id(meter_key: str) -> str:
    return "meter-" + hashlib.sha256(meter_key.encode()).hexdigest()[:32]


def _coding(system: str, code: str | int, display: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system, "code": str(code)}
    if display:
        out["display"] = display
    return out


def _quantity(value: float, ucum: str) -> dict[str, Any]:
    return {"value": value, "unit": ucum, "system": UCUM, "code": ucum}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [_coding(OBSERVATION_CATEGORY, code, display)], "text": display}]


def _when(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# The codeable concepts every Observation of a kind shares, built once (shared, never changed).
_VITAL_SIGNS: Final = _category("vital-signs", "Vital Signs")
_LABORATORY: Final = _category("laboratory", "Laboratory")
_BP_META: Final = {"profile": [BP_PROFILE]}
_HR_META: Final = {"profile": [HEART_RATE_PROFILE]}
_BP_CODE: Final = {
    "coding": [
        _coding(MDC, codes.MDC_PRESS_BLD_NONINV, "MDC_PRESS_BLD_NONINV"),
        _coding(LOINC, codes.LOINC_BP_PANEL, "Blood pressure panel with all children optional"),
    ],
    "text": "Blood pressure",
}
_SYSTOLIC_CODE: Final = {
    "coding": [
        _coding(MDC, codes.MDC_PRESS_BLD_NONINV_SYS, "MDC_PRESS_BLD_NONINV_SYS"),
        _coding(LOINC, codes.LOINC_SYSTOLIC, "Systolic blood pressure"),
    ],
    "text": "Systolic blood pressure",
}
_DIASTOLIC_CODE: Final = {
    "coding": [
        _coding(MDC, codes.MDC_PRESS_BLD_NONINV_DIA, "MDC_PRESS_BLD_NONINV_DIA"),
        _coding(LOINC, codes.LOINC_DIASTOLIC, "Diastolic blood pressure"),
    ],
    "text": "Diastolic blood pressure",
}
_MEAN_CODE: Final = {
    "coding": [_coding(MDC, codes.MDC_PRESS_BLD_NONINV_MEAN, "MDC_PRESS_BLD_NONINV_MEAN")],
    "text": "Mean blood pressure",
}
_HR_CODE: Final = {
    "coding": [
        _coding(MDC, codes.MDC_PULS_RATE_NON_INV, "MDC_PULS_RATE_NON_INV"),
        _coding(LOINC, codes.LOINC_HEART_RATE, "Heart rate"),
    ],
    "text": "Pulse rate",
}
_MEAL_CODE: Final = {"coding": [_coding(MDC, MDC_CTXT_GLU_MEAL, "MDC_CTXT_GLU_MEAL")], "text": "Meal context"}


def _absent(reading: AnyReading, reasons: Sequence[str]) -> dict[str, Any]:
    code = "not-a-number" if "not_measured" in reasons else "error"
    return {"coding": [_coding(DATA_ABSENT_REASON, code)], "text": ", ".join(reasons) or "device_error"}


def _base(reading: AnyReading, kind: str, meter: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"{kind}-{reading.reading_id}",
        "identifier": [{"system": READING_ID_SYSTEM, "value": f"{reading.reading_id}-{kind}"}],
        "status": "final",
        "subject": {"reference": f"Patient/{reading.patient_id}"},
        "effectiveDateTime": _when(reading.measured_at),
        "device": {"reference": f"Device/{meter}"},
    }


def _blood_pressure(reading: BloodPressureReading) -> list[dict[str, Any]]:
    reasons = [str(r) for r in exclusion_reasons(reading)]
    meter = device_id(reading.device)
    bp = _base(reading, "bp", meter)
    bp["meta"] = _BP_META
    bp["category"] = _VITAL_SIGNS
    bp["code"] = _BP_CODE
    components: list[dict[str, Any]] = []
    for code, value in ((_SYSTOLIC_CODE, reading.systolic_mmhg), (_DIASTOLIC_CODE, reading.diastolic_mmhg)):
        component: dict[str, Any] = {"code": code}
        if reading.valid and value is not None:
            component["valueQuantity"] = _quantity(value, codes.UCUM_MMHG)
        else:
            component["dataAbsentReason"] = _absent(reading, reasons)
        components.append(component)
    if reading.valid and reading.mean_arterial_mmhg is not None:
        components.append(
            {"code": _MEAN_CODE, "valueQuantity": _quantity(reading.mean_arterial_mmhg, codes.UCUM_MMHG)}
        )
    bp["component"] = components
    if not reading.valid:
        bp["dataAbsentReason"] = _absent(reading, reasons)
    elif reasons:
        bp["interpretation"] = [{"text": "cuff flagged: " + ", ".join(reasons)}]
    out = [bp]
    if reading.valid and reading.pulse_bpm is not None:
        hr = _base(reading, "hr", meter)
        hr["meta"] = _HR_META
        hr["category"] = _VITAL_SIGNS
        hr["code"] = _HR_CODE
        hr["valueQuantity"] = _quantity(reading.pulse_bpm, codes.UCUM_PER_MIN)
        hr["derivedFrom"] = [{"reference": f"Observation/{bp['id']}"}]
        out.append(hr)
    return out


def glucose_codes(reading: GlucoseReading) -> list[dict[str, Any]]:
    """The glucose Observation's codings: MDC when the sample type says capillary whole blood or
    plasma, and the LOINC code for specimen, fasting context and the meter's unit."""
    moles = reading.unit is GlucoseUnit.MMOL_L
    capillary = reading.sample_type in _CAPILLARY_TYPES or reading.sample_location in _CAPILLARY_SITES
    fasting = reading.context is not None and reading.context.meal is Meal.FASTING
    if capillary and fasting:
        loinc = codes.LOINC_GLUCOSE_FASTING_MOLES if moles else codes.LOINC_GLUCOSE_FASTING_MASS
    elif capillary:
        loinc = codes.LOINC_GLUCOSE_CAPILLARY_MOLES if moles else codes.LOINC_GLUCOSE_CAPILLARY_MASS
    else:
        loinc = LOINC_GLUCOSE_BLOOD_MOLES if moles else LOINC_GLUCOSE_BLOOD_MASS
    out = []
    if reading.sample_type is SampleType.CAPILLARY_WHOLE_BLOOD:
        out.append(_coding(MDC, codes.MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"))
    elif reading.sample_type is SampleType.CAPILLARY_PLASMA:
        out.append(_coding(MDC, codes.MDC_CONC_GLU_CAPILLARY_PLASMA, "MDC_CONC_GLU_CAPILLARY_PLASMA"))
    out.append(_coding(LOINC, loinc))
    return out


def _glucose(reading: GlucoseReading) -> dict[str, Any]:
    reasons = [str(r) for r in exclusion_reasons(reading)]
    obs = _base(reading, "glu", device_id(reading.device))
    obs["category"] = _LABORATORY
    obs["code"] = {"coding": glucose_codes(reading), "text": "Glucose"}
    if reading.valid and reading.glucose is not None:
        ucum = codes.UCUM_MMOL_L if reading.unit is GlucoseUnit.MMOL_L else codes.UCUM_MG_DL
        obs["valueQuantity"] = _quantity(reading.glucose, ucum)
    else:
        obs["dataAbsentReason"] = _absent(reading, reasons)
    if "control_solution" in reasons:
        obs["meta"] = {"security": [_coding(ACT_REASON, "HTEST", "test health data")]}
    meal = reading.context.meal if reading.context is not None else None
    if meal is not None:
        obs["component"] = [{"code": _MEAL_CODE, "valueCodeableConcept": {"text": meal.value}}]
    return obs


def observations(reading: AnyReading) -> list[dict[str, Any]]:
    """The Observations of one stored reading (blood pressure and pulse, or glucose)."""
    if isinstance(reading, BloodPressureReading):
        return _blood_pressure(reading)
    return [_glucose(reading)]


def device(identity: DeviceIdentity) -> dict[str, Any]:
    """The meter as a Device resource (PHD device profile's identity: manufacturer, model, serial,
    firmware, from the Device Information Service strings)."""
    out: dict[str, Any] = {
        "resourceType": "Device",
        "id": device_id(identity),
        "identifier": [{"system": METER_KEY_SYSTEM, "value": identity.meter_key}],
        "manufacturer": identity.manufacturer,
        "deviceName": [{"name": identity.model, "type": "model-name"}],
        "modelNumber": identity.model,
    }
    if identity.serial_number:
        out["serialNumber"] = identity.serial_number
    if identity.address:
        out["identifier"].append({"type": {"text": "Bluetooth address"}, "value": identity.address})
    if identity.firmware_revision:
        out["version"] = [{"type": {"text": "firmware-revision"}, "value": identity.firmware_revision}]
    return out


def matches(observation: dict[str, Any], wanted: frozenset[tuple[str | None, str]] | None) -> bool:
    """Whether an Observation's code matches a `code` search (system|code, or a bare code)."""
    if wanted is None:
        return True
    for coding in observation["code"]["coding"]:
        if (coding["system"], coding["code"]) in wanted or (None, coding["code"]) in wanted:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Page:
    observations: list[dict[str, Any]]
    devices: list[dict[str, Any]]
    next_cursor: str | None


def bundle(
    page: Page, *, self_url: str, next_url: str | None, first_url: str, total: int | None = None
) -> dict[str, Any]:
    """A searchset Bundle of one page: the Observations (search mode match) and the Devices they
    refer to (mode include, as `_include=Observation:device` would give)."""
    base = self_url.split("/Observation", 1)[0]
    links = [{"relation": "self", "url": self_url}, {"relation": "first", "url": first_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": []}
    if total is not None:
        out["total"] = total
    for resource in page.observations:
        out["entry"].append(
            {
                "fullUrl": f"{base}/Observation/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
        )
    for resource in page.devices:
        out["entry"].append(
            {
                "fullUrl": f"{base}/Device/{resource['id']}",
                "resource": resource,
                "search": {"mode": "include"},
            }
        )
    return out


def unique_devices(readings: Iterable[AnyReading]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for reading in readings:
        key = device_id(reading.device)
        if key not in seen:
            seen[key] = device(reading.device)
    return list(seen.values())


def capability_statement(base_url: str, now: datetime) -> dict[str, Any]:
    """What this server offers: Observation search (patient, date, code, _count) with the meters
    included, JSON, bearer tokens."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now.date().isoformat(),
        "kind": "instance",
        "software": {"name": "vitalgate"},
        "implementation": {
            "description": "vitalgate clinic server: home BP and glucose readings",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "description": "OAuth2 bearer token of a clinic user (POST /api/v1/auth/token); a "
                    "user reads only the patients of their care teams, an administrator the clinic's.",
                },
                "resource": [
                    {
                        "type": "Observation",
                        "profile": VITAL_SIGNS_PROFILE,
                        "interaction": [{"code": "search-type"}],
                        "searchInclude": ["Observation:device"],
                        "searchParam": [
                            {"name": "patient", "type": "reference", "documentation": "required"},
                            {
                                "name": "date",
                                "type": "date",
                                "documentation": "ge, gt, le, lt, eq; repeat for a range",
                            },
                            {
                                "name": "code",
                                "type": "token",
                                "documentation": "system|code or code; comma for any of",
                            },
                            {"name": "_count", "type": "number", "documentation": "page size, at most 1000"},
                        ],
                    },
                ],
            }
        ],
    }
