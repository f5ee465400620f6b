"""A patient's readings as CSV: one row per stored reading, valid or not, with every field the store
keeps, in pages so that any range streams in bounded memory.

Columns: the reading's id and kind; the measurement time in UTC and in the patient's zone (with the
zone's name); whether it entered the summaries and, when not, why (alerts.summaries.ExclusionReason
codes, most telling first) beside the meter's or gateway's own invalid reasons; then every other field
of the stored model (vitals.readings: values in the meter's unit and canonical, device identity,
device time, clock offset, reception time, glucose context, raw bytes), nested fields as
`device.serial_number`, `context.meal`. Blood-pressure and glucose readings share one header; a field
the other kind lacks is empty. The header follows the models, so a field added to them is exported.

Text a spreadsheet would run as a formula (a cell starting with `=`, `+`, `-`, `@`, tab or carriage
return, as a meter's name could) is written with a leading apostrophe (OWASP, CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, tzinfo
from enum import Enum
from typing import Any, Final

from pydantic import BaseModel

from alerts.summaries import exclusion_reasons
from storage.readings.protocol import AnyReading
from vitals.readings import BloodPressureReading, DeviceIdentity, GlucoseContext, GlucoseReading

# How much of the range one store query reads: a week of readings is ~2,000 per kind from a CGM
# sampling every 5 minutes, a few dozen from home meters.
PAGE_SPAN: Final = timedelta(days=7)

_LEADING: Final = (
    "reading_id",
    "kind",
    "patient_id",
    "measured_at_utc",
    "measured_at_local",
    "timezone",
    "valid",
    "excluded_from_summaries",
    "exclusion_reasons",
    "invalid_reasons",
)
_NESTED: Final[dict[str, type[BaseModel]]] = {"device": DeviceIdentity, "context": GlucoseContext}
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _model_columns() -> tuple[str, ...]:
    columns: list[str] = []
    for model in (BloodPressureReading, GlucoseReading):
        for name in model.model_fields:
            if name in _NESTED:
                names = [f"{name}.{sub}" for sub in _NESTED[name].model_fields]
            elif name == "measured_at":
                continue
            else:
                names = [name]
            columns.extend(n for n in names if n not in columns and n not in _LEADING)
    return tuple(columns)


COLUMNS: Final = _LEADING + _model_columns()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return ";".join(sorted(_cell(v) for v in value))
    if isinstance(value, tuple | list):
        return ";".join(_cell(v) for v in value)
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def reading_row(reading: AnyReading, zone: tzinfo, zone_name: str) -> list[str]:
    """The CSV row of one reading, in `COLUMNS` order."""
    fields = dict(reading.__dict__)
    reasons = exclusion_reasons(reading)
    values: dict[str, Any] = {
        "reading_id": reading.reading_id,
        "kind": reading.kind,
        "patient_id": reading.patient_id,
        "measured_at_utc": reading.measured_at,
        "measured_at_local": reading.measured_at.astimezone(zone),
        "timezone": zone_name,
        "valid": reading.valid,
        "excluded_from_summaries": bool(reasons),
        "exclusion_reasons": tuple(reasons),
        "invalid_reasons": reading.invalid_reasons,
    }
    for name, model in _NESTED.items():
        nested = fields.pop(name, None)
        for sub in model.model_fields:
            values[f"{name}.{sub}"] = None if nested is None else getattr(nested, sub)
    for name, value in fields.items():
        values.setdefault(name, value)
    return [_cell(values.get(column)) for column in COLUMNS]


def encode_rows(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue()


def pages(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut into half-open spans of `PAGE_SPAN`: each reading falls in exactly one."""
    at = start
    while at < end:
        upto = min(at + PAGE_SPAN, end)
        yield at, upto
        at = upto


def in_order(*kinds: Sequence[AnyReading]) -> list[AnyReading]:
    """The readings of several kinds as one list, ordered as the store orders each kind."""
    merged = [r for readings in kinds for r in readings]
    merged.sort(key=lambda r: (r.measured_at, r.reading_id))
    return merged
