"""Whatever bytes arrive, parsing accounts for every reading and never raises (no stalled stream)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.validation import InboundMessage, parse_message
from tests.ingest.helpers import batch_json, bp_reading, glucose_reading
from vitals.topics import readings_topic

GATEWAY = "gw-fuzz"
TOPIC = readings_topic(GATEWAY)
BASE: dict[str, Any] = json.loads(batch_json(GATEWAY, [bp_reading(1), glucose_reading(2), bp_reading(3)]))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths += _paths(value, (*prefix, index))
    return paths


PATHS = [p for p in _paths(BASE) if p]


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(document))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


def _parse(document: Any) -> None:
    parsed = parse_message(InboundMessage(1, 1, TOPIC, json.dumps(document).encode(), datetime.now(UTC)))
    if parsed.poisoned:
        assert parsed.poison_reason and not parsed.accepted
    else:
        # Not poisoned: every reading sent is either accepted or rejected with a reason.
        assert len(parsed.accepted) + len(parsed.rejected) == len(document["readings"])
        assert all(r.reason for r in parsed.rejected)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=json_values)
def test_any_one_field_replaced_by_any_json_value_is_accounted_for(path: tuple[Any, ...], value: Any) -> None:
    _parse(_replaced(BASE, path, value))


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=200))
def test_arbitrary_bytes_are_dead_lettered_not_raised(payload: bytes) -> None:
    parsed = parse_message(InboundMessage(1, 1, TOPIC, payload, datetime.now(UTC)))
    assert parsed.poisoned
