"""InfluxQL pieces (pure): quoted identifiers and literals, the patient clause, whole-second bounds."""

from __future__ import annotations

from datetime import datetime

from storage.readings.influxdb.points import NS_PER_S
from storage.readings.records import epoch_us


def quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def patient_clause(patient_id: str | None) -> str:
    # A missing tag compares equal to '' in InfluxQL, which selects readings without a patient.
    return f'"patient_id" = {quote_literal(patient_id or "")}'


def second_floor_ns(moment: datetime) -> int:
    return (epoch_us(moment) // 1_000_000) * NS_PER_S
