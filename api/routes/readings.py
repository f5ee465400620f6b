"""A patient's readings as JSON: the raw series and daily aggregates (for trend charts).

Each request is one audit entry ("read_readings", "read_daily_aggregates"; object: the patient),
written with the access check before the store is read: no trail, no readings (api/deps.py)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel

from api.deps import Services, patient_access
from vitals.readings import Reading, ReadingKind

router = APIRouter(prefix="/api/v1/patients/{patient_id}", tags=["readings"])

DEFAULT_WINDOW = timedelta(days=30)
MAX_READINGS = 10_000
MAX_DAYS = 366

ReadingsAccess = Annotated[str, Depends(patient_access("read_readings"))]
DailyAggregatesAccess = Annotated[str, Depends(patient_access("read_daily_aggregates"))]


class ReadingList(BaseModel):
    patient_id: str
    kind: ReadingKind
    start: datetime
    end: datetime
    readings: list[Reading]


@router.get("/readings")
async def list_readings(
    patient_id: ReadingsAccess,
    services: Services,
    kind: ReadingKind = ReadingKind.BLOOD_PRESSURE,
    start: Annotated[AwareDatetime | None, Query(description="inclusive, default end - 30 days")] = None,
    end: Annotated[AwareDatetime | None, Query(description="exclusive, default now")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_READINGS)] = 1000,
) -> ReadingList:
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="start must be before end")
    readings = await asyncio.to_thread(
        services.reading_store.query_range, patient_id, kind, start, end, limit=limit
    )
    return ReadingList(patient_id=patient_id, kind=kind, start=start, end=end, readings=readings)


@router.get("/readings/daily")
async def daily_readings(
    patient_id: DailyAggregatesAccess,
    services: Services,
    kind: ReadingKind = ReadingKind.BLOOD_PRESSURE,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 30,
) -> dict[str, Any]:
    last_day = datetime.now(UTC).date()
    first_day: date = last_day - timedelta(days=days - 1)
    aggregates = await asyncio.to_thread(
        services.reading_store.daily_aggregates, patient_id, kind, first_day, last_day
    )
    return {"patient_id": patient_id, "kind": kind, "days": [asdict(a) for a in aggregates]}
