"""MQTT topic scheme and payload schema (DESIGN.md, MQTT)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from vitals.payload import ReadingsAck, ReadingsBatch, json_schemas
from vitals.readings import BloodPressureReading, GlucoseReading
from vitals.topics import (
    ALL_READINGS_FILTER,
    GatewayChannel,
    InvalidTopicError,
    clinic_alerts_topic,
    parse_gateway_topic,
    readings_topic,
    shared_subscription,
)

from .test_units_and_readings import bp, glucose

REPO = Path(__file__).resolve().parents[2]


def test_topics_follow_the_design_table() -> None:
    assert readings_topic("gw-7") == "vitalgate/v1/gw/gw-7/readings"
    assert clinic_alerts_topic("c1") == "vitalgate/v1/clinic/c1/alerts"
    assert shared_subscription(ALL_READINGS_FILTER, "ingest") == "$share/ingest/vitalgate/v1/gw/+/readings"
    parsed = parse_gateway_topic("vitalgate/v1/gw/gw-7/acks")
    assert (parsed.gateway_id, parsed.channel) == ("gw-7", GatewayChannel.ACKS)


@pytest.mark.parametrize("bad_id", ["", "a/b", "+", "#", "x" * 65, "张三"])
def test_ids_that_could_escape_a_topic_level_or_carry_names_are_refused(bad_id: str) -> None:
    with pytest.raises(InvalidTopicError):
        readings_topic(bad_id)


@pytest.mark.parametrize(
    "topic",
    ["vitalgate/v1/gw/gw-1", "vitalgate/v2/gw/gw-1/readings", "vitalgate/v1/gw/gw-1/other", "x/y/z/a/b"],
)
def test_foreign_topics_do_not_parse(topic: str) -> None:
    with pytest.raises(InvalidTopicError):
        parse_gateway_topic(topic)


def test_batch_round_trips_through_json_with_both_reading_kinds() -> None:
    batch = ReadingsBatch(
        gateway_id="gw-1", sent_at=datetime.now(UTC), readings=(bp(), glucose(unit="mmol/L", glucose=5.8))
    )
    again = ReadingsBatch.model_validate_json(batch.model_dump_json())
    assert again == batch
    assert isinstance(again.readings[0], BloodPressureReading)
    assert isinstance(again.readings[1], GlucoseReading)
    assert again.schema_version == 1


def test_unknown_schema_version_is_refused() -> None:
    text = (
        ReadingsAck(gateway_id="gw-1", stored=("a" * 32,))
        .model_dump_json()
        .replace('"schema_version":1', '"schema_version":2')
    )
    with pytest.raises(ValidationError):
        ReadingsAck.model_validate_json(text)


def test_exported_json_schemas_are_current() -> None:
    # docs/schema/ is what integrators read; it must match the models (`vitalgate schema --write`).
    for name, text in json_schemas().items():
        path = REPO / "docs" / "schema" / name
        assert path.is_file(), f"missing {path}"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `vitalgate schema --write`"
