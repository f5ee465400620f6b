"""Turn one MQTT message into readings to store and readings (or the whole payload) to reject.

Pure: no I/O. The binding check, which needs the clinic database, is applied by the pipeline.

Rules (DESIGN.md, Delivery; docs/ingest.md, "What it guarantees"):
- a payload above MAX_PAYLOAD_BYTES is refused before anything reads it: the dead-letter table keeps
  its size, SHA-256 and first OVERSIZED_PREFIX_BYTES bytes, never the payload (`oversized_summary`);
- the topic must be `vitalgate/v1/gw/{gateway_id}/readings`; the broker's ACL confines each gateway
  to its own topics, so the topic's gateway is the sender and the payload must name the same one;
- the payload must be JSON with a supported `schema_version` and a valid `ReadingsBatch` envelope;
  otherwise the whole message is dead-lettered;
- a reading that fails validation on its own is rejected with the reason while the other readings
  of the batch are stored (bad input loses nothing else);
- an implausible value is not a rejection: vitals' models keep it, marked invalid with the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from storage.readings.protocol import AnyReading
from vitals.payload import MAX_READINGS_PER_BATCH, SCHEMA_VERSION, ReadingsBatch
from vitals.readings import BloodPressureReading, Reading
from vitals.topics import GatewayChannel, InvalidTopicError, parse_gateway_topic

_READING_ID: Final = re.compile(r"^[0-9a-f]{32}$")
# The largest batch a gateway can send: MAX_READINGS_PER_BATCH (500) readings of at most 6,144 bytes
# of JSON each (a glucose reading with every field at its schema bound: 4,096 hex characters of raw
# bytes, five 64-character device strings, full context, every status and invalid reason), plus the
# envelope: 3,072,646 bytes (tests/ingest/test_oversized.py builds it). 4 MiB leaves a third more for
# the schema to grow; the broker's max_packet_size adds room for the MQTT header
# (deploy/mosquitto/vitalgate.conf).
MAX_PAYLOAD_BYTES: Final = 4 * 1024 * 1024
OVERSIZED_PREFIX_BYTES: Final = 256
_MAX_ERRORS_IN_REASON: Final = 3
REASON_MAX_CHARS: Final = 500  # vitals.payload.RejectedReading.reason max_length

_reading_adapter: TypeAdapter[AnyReading] = TypeAdapter(Reading)

# ReadingsBatch's envelope with the readings as raw JSON values: so a batch whose readings fail can
# be told apart from one whose envelope fails. Fields come from vitals.payload, not a copy of them.
_Envelope: type[BaseModel] = create_model(
    "_Envelope",
    __config__=ConfigDict(extra="forbid"),
    **{  # type: ignore[call-overload]
        name: (info.annotation, info)
        for name, info in ReadingsBatch.model_fields.items()
        if name != "readings"
    },
    readings=(list[Any], Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)),
)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One MQTT PUBLISH as received; `generation` is the connection it arrived on."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: datetime
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Rejection:
    """A reading that will never be stored, with why, and its own bytes for the dead-letter table."""

    reading_id: str | None
    reason: str
    raw: bytes


@dataclass(slots=True)
class ParsedMessage:
    message: InboundMessage
    gateway_id: str | None = None  # from the topic: the sender
    sent_at: datetime | None = None
    accepted: list[AnyReading] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    poison_reason: str | None = None  # set: the whole payload goes to the dead-letter table
    poison_reading_ids: tuple[str, ...] = ()  # ids we could still read, to reject them to the sender
    oversized: bool = False  # above MAX_PAYLOAD_BYTES: not read; only its summary is dead-lettered

    @property
    def poisoned(self) -> bool:
        return self.poison_reason is not None


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def clip(reason: str) -> str:
    """A reason fit for an ack and a database: control characters escaped, at most 500 chars."""
    reason = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", reason)
    return reason if len(reason) <= REASON_MAX_CHARS else reason[: REASON_MAX_CHARS - 1] + "…"


def describe(exc: ValidationError) -> str:
    """A short reason naming the failing fields, without echoing input values."""
    parts = []
    errors = exc.errors(include_input=False, include_url=False)
    for error in errors[:_MAX_ERRORS_IN_REASON]:
        loc = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{loc}: {error['msg']}")
    more = len(errors) - _MAX_ERRORS_IN_REASON
    if more > 0:
        parts.append(f"(+{more} more)")
    return clip("; ".join(parts))


def _ids_in(readings: Any) -> tuple[str, ...]:
    if not isinstance(readings, list):
        return ()
    return tuple(
        r["reading_id"]
        for r in readings
        if isinstance(r, dict) and isinstance(r.get("reading_id"), str) and _READING_ID.match(r["reading_id"])
    )


def parse_message(message: InboundMessage) -> ParsedMessage:
    parsed = ParsedMessage(message)
    try:
        topic = parse_gateway_topic(message.topic)
    except InvalidTopicError as exc:
        parsed.poison_reason = f"topic: {exc}"
        return parsed
    if topic.channel is not GatewayChannel.READINGS:
        parsed.poison_reason = f"topic: channel {topic.channel.value} carries no readings"
        return parsed
    parsed.gateway_id = topic.gateway_id
    size = len(message.payload)
    if size > MAX_PAYLOAD_BYTES:
        parsed.oversized = True
        parsed.poison_reason = (
            f"payload of {size} bytes is larger than ingest's limit of {MAX_PAYLOAD_BYTES}: not read; "
            f"kept as its SHA-256 and first {OVERSIZED_PREFIX_BYTES} bytes"
        )
        return parsed
    try:
        batch = ReadingsBatch.model_validate_json(message.payload)
    except Exception:
        # Untrusted bytes: besides ValidationError, a model validator may raise TypeError or the
        # like on a wrong JSON type. Whatever it is, the payload is examined piece by piece and
        # ends up stored or dead-lettered; it must never stall the stream (reliability.md §(a) 7).
        _salvage(parsed)
        return parsed
    if batch.gateway_id != topic.gateway_id:
        parsed.poison_reason = (
            f"gateway_id {batch.gateway_id} in the payload differs from the topic's {topic.gateway_id}"
        )
        parsed.poison_reading_ids = tuple(r.reading_id for r in batch.readings)
        return parsed
    parsed.sent_at = batch.sent_at
    parsed.accepted.extend(batch.readings)
    return parsed


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return describe(exc)
    return clip(f"{type(exc).__name__}: {exc}")


def _salvage(parsed: ParsedMessage) -> None:
    """The batch as a whole is invalid: find out whether the envelope or single readings are."""
    try:
        document = json.loads(parsed.message.payload)
    except (ValueError, UnicodeDecodeError) as json_exc:
        parsed.poison_reason = clip(f"not JSON: {type(json_exc).__name__}: {json_exc}")
        return
    if not isinstance(document, dict):
        parsed.poison_reason = "payload is not a JSON object"
        return
    readings = document.get("readings")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        parsed.poison_reason = clip(
            f"unsupported schema_version {version!r} (this ingest reads {SCHEMA_VERSION})"
        )
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        if not newer:
            parsed.poison_reading_ids = _ids_in(readings)
        # A newer version means the gateway was upgraded before ingest: its readings are not refused
        # (a rejection is final, the gateway would delete them). The gateway keeps them and resends
        # until an ingest that reads this version stores them; the dead letter tells the operator.
        return
    try:
        # The envelope alone: ReadingsBatch's own fields, with the readings left unparsed.
        envelope: dict[str, Any] = dict(_Envelope.model_validate(document))
    except ValidationError as envelope_exc:
        parsed.poison_reason = clip(f"invalid ReadingsBatch: {describe(envelope_exc)}")
        parsed.poison_reading_ids = _ids_in(readings)
        return
    if envelope["gateway_id"] != parsed.gateway_id:
        parsed.poison_reason = (
            f"gateway_id {envelope['gateway_id']} in the payload differs from the topic's {parsed.gateway_id}"
        )
        parsed.poison_reading_ids = _ids_in(readings)
        return
    parsed.sent_at = envelope["sent_at"]
    for item in envelope["readings"]:
        try:
            parsed.accepted.append(_reading_adapter.validate_python(item))
        except Exception as reading_exc:
            reading_id = item.get("reading_id") if isinstance(item, dict) else None
            parsed.rejected.append(
                Rejection(
                    reading_id if isinstance(reading_id, str) and _READING_ID.match(reading_id) else None,
                    clip(f"invalid reading: {_problem(reading_exc)}"),
                    json.dumps(item, separators=(",", ":")).encode(),
                )
            )


def oversized_summary(payload: bytes) -> bytes:
    """What the dead-letter table keeps of an oversized payload: a line with its size and SHA-256,
    then its first OVERSIZED_PREFIX_BYTES bytes (enough to see what it was, never the payload)."""
    digest = hashlib.sha256(payload).hexdigest()
    return f"size={len(payload)} sha256={digest}\n".encode() + payload[:OVERSIZED_PREFIX_BYTES]


def reading_bytes(reading: AnyReading) -> bytes:
    return reading.model_dump_json().encode()


def device_user_id(reading: AnyReading) -> int | None:
    """The cuff's user slot; glucose meters have none."""
    return reading.user_id if isinstance(reading, BloodPressureReading) else None
