"""The MQTT topic scheme (DESIGN.md, MQTT). Topics carry opaque ids only, never personal data."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

TOPIC_ROOT = "vitalgate/v1"
# Ids are opaque tokens: no MQTT wildcards or level separators, bounded length.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class GatewayChannel(StrEnum):
    READINGS = "readings"  # gateway -> clinic: a batch of readings
    ACKS = "acks"  # clinic -> gateway: reading ids stored or rejected
    STATUS = "status"  # gateway -> clinic: retained health report; last will says offline
    CONFIG = "config"  # clinic -> gateway: retained device bindings
    COMMANDS = "commands"  # clinic -> gateway: retained decisions on unbound readings


class InvalidTopicError(ValueError):
    """A topic or id that is not part of the vitalgate scheme."""


def _checked(kind: str, value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise InvalidTopicError(f"{kind} must match {ID_PATTERN.pattern}")
    return value


def gateway_topic(gateway_id: str, channel: GatewayChannel) -> str:
    return f"{TOPIC_ROOT}/gw/{_checked('gateway_id', gateway_id)}/{channel.value}"


def readings_topic(gateway_id: str) -> str:
    return gateway_topic(gateway_id, GatewayChannel.READINGS)


def acks_topic(gateway_id: str) -> str:
    return gateway_topic(gateway_id, GatewayChannel.ACKS)


def status_topic(gateway_id: str) -> str:
    return gateway_topic(gateway_id, GatewayChannel.STATUS)


def config_topic(gateway_id: str) -> str:
    return gateway_topic(gateway_id, GatewayChannel.CONFIG)


def commands_topic(gateway_id: str) -> str:
    return gateway_topic(gateway_id, GatewayChannel.COMMANDS)


def clinic_alerts_topic(clinic_id: str) -> str:
    return f"{TOPIC_ROOT}/clinic/{_checked('clinic_id', clinic_id)}/alerts"


# Subscription filter for every gateway's readings; `shared_group` spreads them over ingest replicas
# with an MQTT v5 shared subscription (reliability.md §1).
ALL_READINGS_FILTER = f"{TOPIC_ROOT}/gw/+/{GatewayChannel.READINGS.value}"
ALL_STATUS_FILTER = f"{TOPIC_ROOT}/gw/+/{GatewayChannel.STATUS.value}"


def shared_subscription(topic_filter: str, group: str) -> str:
    return f"$share/{_checked('share group', group)}/{topic_filter}"


@dataclass(frozen=True, slots=True)
class GatewayTopic:
    gateway_id: str
    channel: GatewayChannel


@functools.lru_cache(maxsize=16_384)
def parse_gateway_topic(topic: str) -> GatewayTopic:
    """Split `vitalgate/v1/gw/{gateway_id}/{channel}`; raise InvalidTopicError on anything else.

    Memoised (a result is immutable; a refusal raises and is not kept): ingest parses the topic of
    every message, and a clinic's topics are few, one per gateway and channel."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT or parts[2] != "gw":
        raise InvalidTopicError("not a vitalgate gateway topic")
    try:
        channel = GatewayChannel(parts[4])
    except ValueError as exc:
        raise InvalidTopicError("unknown gateway channel") from exc
    return GatewayTopic(_checked("gateway_id", parts[3]), channel)
