"""FHIR R4 for a hospital's record system: a patient's readings as vital-signs Observations
(api/reports/fhir.py says how each reading maps).

- GET /fhir/r4/metadata       the CapabilityStatement (no patient data; no token needed)
- GET /fhir/r4/Observation    search: `patient` (required; `Patient/{id}` or the id), `date` (FHIR
                              prefixes ge, gt, le, lt, eq; repeat it for a range), `code` (LOINC or MDC,
                              `system|code` or a bare code; a comma for any of several), `_count` (page
                              size, default 100, at most 1000); answers a searchset Bundle with the
                              meters' Device resources included and a `next` link while more follow
- GET /api/v1/patients/{patient_id}/fhir/Observation?start=&end=
                              the same Bundle for one patient over [start, end), for the API's callers

Bearer tokens and tenancy as everywhere in the API: a patient outside the caller's care teams (or
clinic, for an administrator) is 404, and every search is audited on the patient
("export_fhir_observations", with the range, allowed or denied) before the store is read. Errors are
the API's coded error bodies (api/errors.py).

Paging is by position in the readings' order (measured_at, reading_id, then the blood pressure before
its pulse): the `next` link carries the position of the last Observation sent (`_cursor`), so a page
never repeats or skips an Observation when readings arrive meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.auth import Principal
from api.deps import ApiServices, AuditedAccess, CurrentUser, Services, check_patient_access
from api.errors import ApiError, ErrorCode, validation_error
from api.limits import BoundedDatetime
from api.reports import fhir
from storage.readings.protocol import AnyReading, ReadingStore
from vitals.readings import ReadingKind

router = APIRouter(tags=["fhir"])

DEFAULT_COUNT: Final = 100
MAX_COUNT: Final = 1000
EXPORT_ACTION: Final = "export_fhir_observations"
# Readings before this are not looked for when a search names no start (home meters in use here).
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_PATIENT_ID: Final = re.compile(r"^(Patient/)?([A-Za-z0-9_-]{1,64})$")
_DATE: Final = re.compile(
    r"^(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?"
    r"(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<hour>\d{2}):(?P<minute>\d{2})(:(?P<second>\d{2})(?P<fraction>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?$"
)


class FhirJSONResponse(JSONResponse):
    media_type = fhir.FHIR_JSON


def _date_interval(value: str) -> tuple[str, datetime, datetime]:
    """A FHIR `date` search value as its prefix and the [lower, upper) interval its precision spans."""
    m = _DATE.match(value)
    if m is None:
        raise validation_error(
            "date", "value_error", "date must be a FHIR date or dateTime", location="query"
        )
    prefix = m["prefix"] or "eq"
    if prefix not in ("eq", "gt", "lt", "ge", "le"):
        raise validation_error(
            "date", "value_error", f"date prefix {prefix} is not supported", location="query"
        )
    try:
        year = int(m["year"])
        if m["month"] is None:
            lower = datetime(year, 1, 1, tzinfo=UTC)
            return prefix, lower, lower.replace(year=year + 1)
        month = int(m["month"])
        if m["day"] is None:
            lower = datetime(year, month, 1, tzinfo=UTC)
            upper = lower.replace(year=year + 1, month=1) if month == 12 else lower.replace(month=month + 1)
            return prefix, lower, upper
        day = datetime(year, month, int(m["day"]), tzinfo=UTC)
        if m["hour"] is None:
            return prefix, day, day + timedelta(days=1)
        text = value[len(m["prefix"] or "") :].replace("Z", "+00:00")
        moment = datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise validation_error(
            "date", "value_error", "date is not a calendar date", location="query"
        ) from exc
    step = timedelta(minutes=1) if m["second"] is None else timedelta(seconds=1)
    if m["fraction"]:
        step = timedelta(microseconds=1)
    return prefix, moment, moment + step


def date_range(values: list[str]) -> tuple[datetime, datetime]:
    """The [start, end) all `date` parameters allow together (they combine with AND)."""
    start, end = EARLIEST, datetime.now(UTC) + timedelta(days=1)
    for value in values:
        prefix, lower, upper = _date_interval(value)
        if prefix in ("ge", "eq"):
            start = max(start, lower)
        if prefix == "gt":
            start = max(start, upper)
        if prefix in ("le", "eq"):
            end = min(end, upper)
        if prefix == "lt":
            end = min(end, lower)
    return start, end


def _codes(values: list[str]) -> frozenset[tuple[str | None, str]] | None:
    if not values:
        return None
    out: set[tuple[str | None, str]] = set()
    for value in values:
        for token in value.split(","):
            system, bar, code = token.strip().rpartition("|")
            if not code:
                raise validation_error(
                    "code", "value_error", "code must be system|code or code", location="query"
                )
            out.add((system if bar and system else None, code))
    return frozenset(out)


def _kinds(wanted: frozenset[tuple[str | None, str]] | None) -> list[ReadingKind]:
    if wanted is None:
        return [ReadingKind.BLOOD_PRESSURE, ReadingKind.GLUCOSE]

    def named(codes: frozenset[tuple[str, str]]) -> bool:
        return any((s, c) in codes or (s is None and any(c == k for _, k in codes)) for s, c in wanted)

    kinds = []
    if named(fhir.BP_CODES) or named(fhir.HEART_RATE_CODES):
        kinds.append(ReadingKind.BLOOD_PRESSURE)
    if named(fhir.GLUCOSE_CODES):
        kinds.append(ReadingKind.GLUCOSE)
    return kinds


Position = tuple[int, str, int]  # measured_at in µs, reading id, part (0: the reading, 1: its pulse)


def _parse_cursor(value: str | None) -> Position | None:
    if value is None:
        return None
    m = re.match(r"^(\d{1,20})\.([0-9a-f]{32})\.([01])$", value)
    if m is None:
        raise validation_error("_cursor", "value_error", "not a cursor this server gave", location="query")
    return int(m[1]), m[2], int(m[3])


def _position(reading: AnyReading, part: int) -> Position:
    at = reading.measured_at
    micros = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return micros, reading.reading_id, part


def search_page(
    store: ReadingStore,
    patient_id: str,
    kinds: list[ReadingKind],
    start: datetime,
    end: datetime,
    wanted: frozenset[tuple[str | None, str]] | None,
    count: int,
    after: Position | None,
) -> fhir.Page:
    """Up to `count` Observations after `after`, in order, and the cursor of the last when more
    follow. Blocking: reads the store (call it from a worker thread)."""
    if after is not None:
        start = max(start, datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=after[0]))
    # Blood pressure with pulse gives two Observations a reading: half a page of each kind is often
    # enough; the limit doubles when it is not.
    limit = count // 2 + 2
    while True:
        fetched = {k: store.query_range(patient_id, k, start, end, limit=limit) for k in kinds}
        readings = sorted(
            (r for rs in fetched.values() for r in rs), key=lambda r: (r.measured_at, r.reading_id)
        )
        # Readings beyond the earliest last reading of a full kind may be missing another kind's.
        full = [rs[-1] for rs in fetched.values() if len(rs) == limit]
        horizon = min((r.measured_at, r.reading_id) for r in full) if full else None
        chosen: list[tuple[Position, dict[str, Any], AnyReading]] = []
        for reading in readings:
            if len(chosen) > count or (
                horizon is not None and (reading.measured_at, reading.reading_id) > horizon
            ):
                break
            if after is not None and _position(reading, 1) <= after:
                continue  # sent on an earlier page
            for part, observation in enumerate(fhir.observations(reading)):
                position = _position(reading, part)
                if (after is None or position > after) and fhir.matches(observation, wanted):
                    chosen.append((position, observation, reading))
        if len(chosen) > count or horizon is None:
            page = chosen[:count]
            more = len(chosen) > count
            return fhir.Page(
                observations=[o for _, o, _ in page],
                devices=fhir.unique_devices(r for _, _, r in page),
                next_cursor="{}.{}.{}".format(*page[-1][0]) if more and page else None,
            )
        limit *= 2


def _patient_id(value: str | None) -> str:
    m = _PATIENT_ID.match(value or "")
    if m is None:
        raise validation_error(
            "patient", "value_error", "patient must be Patient/{id} or the patient's id", location="query"
        )
    return m[2]


async def _search(
    services: ApiServices,
    user: Principal,
    request: Request,
    patient_id: str,
    start: datetime,
    end: datetime,
    wanted: frozenset[tuple[str | None, str]] | None,
    count: int,
    cursor: str | None,
) -> FhirJSONResponse:
    after = _parse_cursor(cursor)
    details = {"start": start.isoformat(), "end": end.isoformat()}
    access = AuditedAccess(EXPORT_ACTION, details=details)
    if not await check_patient_access(services, user, patient_id, access):
        raise ApiError(ErrorCode.PATIENT_NOT_FOUND)
    kinds = _kinds(wanted)
    page = (
        await asyncio.to_thread(
            search_page, services.reading_store, patient_id, kinds, start, end, wanted, count, after
        )
        if kinds and start < end
        else fhir.Page([], [], None)
    )
    self_url = str(request.url)
    first_url = str(request.url.remove_query_params("_cursor"))
    next_url = str(request.url.include_query_params(_cursor=page.next_cursor)) if page.next_cursor else None
    body = fhir.bundle(page, self_url=self_url, next_url=next_url, first_url=first_url)
    return FhirJSONResponse(body)


@router.get("/fhir/r4/metadata", response_class=FhirJSONResponse)
async def capability_statement(request: Request) -> FhirJSONResponse:
    """The server's CapabilityStatement (FHIR R4)."""
    base = str(request.url).rsplit("/metadata", 1)[0]
    return FhirJSONResponse(fhir.capability_statement(base, datetime.now(UTC)))


@router.get("/fhir/r4/Observation", response_class=FhirJSONResponse)
async def search_observations(
    request: Request,
    user: CurrentUser,
    services: Services,
    patient: Annotated[str | None, Query(description="Patient/{id} or the id (required)")] = None,
    subject: Annotated[str | None, Query(description="the same as patient")] = None,
    date: Annotated[list[str] | None, Query(description="FHIR date search; repeat for a range")] = None,
    code: Annotated[list[str] | None, Query(description="system|code or code; comma for any of")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)] = DEFAULT_COUNT,
    cursor: Annotated[str | None, Query(alias="_cursor", description="from a next link")] = None,
) -> FhirJSONResponse:
    """A searchset Bundle of the patient's vital-signs Observations, with their Devices."""
    if patient is None and subject is None:
        raise validation_error("patient", "missing", "a search needs patient", location="query")
    start, end = date_range(date or [])
    return await _search(
        services,
        user,
        request,
        _patient_id(patient or subject),
        start,
        end,
        _codes(code or []),
        count,
        cursor,
    )


@router.get("/api/v1/patients/{patient_id}/fhir/Observation", response_class=FhirJSONResponse)
async def patient_observations(
    patient_id: str,
    request: Request,
    user: CurrentUser,
    services: Services,
    start: Annotated[BoundedDatetime | None, Query(description="inclusive; default: end - 30 days")] = None,
    end: Annotated[BoundedDatetime | None, Query(description="exclusive; default: now")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)] = DEFAULT_COUNT,
    cursor: Annotated[str | None, Query(alias="_cursor", description="from a next link")] = None,
) -> FhirJSONResponse:
    """The same Bundle as /fhir/r4/Observation for one patient over [start, end)."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=30)
    if start >= end:
        raise validation_error("start", "range_reversed", "start must be before end", location="query")
    if _PATIENT_ID.match(patient_id) is None:
        raise ApiError(ErrorCode.PATIENT_NOT_FOUND)
    return await _search(services, user, request, patient_id, start, end, None, count, cursor)
