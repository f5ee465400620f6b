"""vitalgate: ingest — the MQTT consumer: validate, deduplicate, store, acknowledge, dead-letter.

`IngestConsumer` (paho-mqtt v5, manual ack after commit) over `IngestPipeline` (no MQTT), run in the
consumer's process or in a child process of its own (`PipelineProcess`, opening `PipelineParts`).
The consumer's rooms: ingest.flow (what is held unacked), ingest.worker (cycles, retries, dead
letters), ingest.ack_window (acks in commit order), ingest.metrics (`IngestCounters`).
"""

from ingest.config import IngestConfig
from ingest.consumer import IngestConsumer, IngestError, ReadingsListener
from ingest.metrics import IngestCounters
from ingest.pipeline import IngestPipeline
from ingest.pipeline_process import PipelineParts, PipelineProcess
from ingest.runtime import freeze_startup_heap
from ingest.validation import InboundMessage

__all__ = [
    "InboundMessage",
    "IngestConfig",
    "IngestConsumer",
    "IngestCounters",
    "IngestError",
    "IngestPipeline",
    "PipelineParts",
    "PipelineProcess",
    "ReadingsListener",
    "freeze_startup_heap",
]
