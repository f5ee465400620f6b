"""vitalgate: ingest — the MQTT consumer: validate, deduplicate, store, acknowledge, dead-letter.

`IngestConsumer` (paho-mqtt v5, manual ack after commit) over `IngestPipeline` (no MQTT).
"""

from ingest.config import IngestConfig
from ingest.consumer import IngestConsumer, IngestCounters, IngestError, ReadingsListener
from ingest.pipeline import ClinicAccess, CycleResult, IngestPipeline
from ingest.runtime import freeze_startup_heap
from ingest.validation import InboundMessage, parse_message

__all__ = [
    "ClinicAccess",
    "CycleResult",
    "InboundMessage",
    "IngestConfig",
    "IngestConsumer",
    "IngestCounters",
    "IngestError",
    "IngestPipeline",
    "ReadingsListener",
    "freeze_startup_heap",
    "parse_message",
]
