"""vitalgate: ingest — the MQTT consumer: validate, deduplicate, store, acknowledge, dead-letter.

`IngestConsumer` (paho-mqtt v5, manual ack after commit) over `IngestPipeline` (no MQTT), run in the
consumer's process or in a child process of its own (`PipelineProcess`).
"""

from ingest.config import IngestConfig
from ingest.consumer import IngestConsumer, IngestCounters, IngestError, ReadingsListener
from ingest.pipeline import ClinicAccess, CycleProcessor, CycleResult, IngestPipeline
from ingest.pipeline_process import PipelineParts, PipelineProcess, PipelineProcessError
from ingest.runtime import freeze_startup_heap
from ingest.validation import InboundMessage, parse_message

__all__ = [
    "ClinicAccess",
    "CycleProcessor",
    "CycleResult",
    "InboundMessage",
    "IngestConfig",
    "IngestConsumer",
    "IngestCounters",
    "IngestError",
    "IngestPipeline",
    "PipelineParts",
    "PipelineProcess",
    "PipelineProcessError",
    "ReadingsListener",
    "freeze_startup_heap",
    "parse_message",
]
