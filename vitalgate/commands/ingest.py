"""`vitalgate ingest`: consume readings from MQTT into the reading store until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import asdict
from types import FrameType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ingest import IngestConfig, ReadingsListener
    from storage.readings.protocol import ReadingStore
    from vitalgate.settings import Settings

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 60.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("ingest", help="consume gateway readings from MQTT into the store")
    parser.add_argument("--client-id", default=None, help="default: settings ingest.client_id")
    parser.add_argument(
        "--shared-group", default=None, help="MQTT v5 shared subscription group (default: settings)"
    )
    parser.add_argument(
        "--stats-interval",
        type=float,
        default=STATS_INTERVAL_S,
        help="seconds between counter log lines (0: never)",
    )
    parser.set_defaults(func=run)


def ingest_config(
    settings: Settings, *, client_id: str | None = None, shared_group: str | None = None
) -> IngestConfig:
    """Map Settings (mqtt, ingest sections) onto the consumer's plain config."""
    from ingest import IngestConfig

    mqtt = settings.mqtt
    return IngestConfig(
        host=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        tls_ca_file=mqtt.tls_ca_file,
        tls_cert_file=mqtt.tls_cert_file,
        tls_key_file=mqtt.tls_key_file,
        keepalive_s=mqtt.keepalive_s,
        connect_timeout_s=mqtt.connect_timeout_s,
        client_id=client_id or settings.ingest.client_id,
        shared_group=shared_group or settings.ingest.shared_group,
        session_expiry_s=settings.ingest.session_expiry_s,
        receive_maximum=settings.ingest.max_inflight_messages,
    )


def serve(
    settings: Settings,
    *,
    stop: threading.Event,
    listeners: Sequence[ReadingsListener] = (),
    client_id: str | None = None,
    shared_group: str | None = None,
    stats_interval_s: float = STATS_INTERVAL_S,
    log_format: Literal["auto", "json", "text"] | None = None,
) -> int:
    """Run ingest until `stop` is set; then finish the cycle in progress, ack, disconnect.

    With `ingest.pipeline_process` (the default) validation and storage run in a child process
    (ingest.pipeline_process): one process's GIL bounds ingest to about half of what paho alone
    receives (docs/ingest.md)."""
    from ingest import IngestConsumer, PipelineProcess, freeze_startup_heap
    from storage.clinic.repository import ClinicRepository
    from vitalgate.fleet import FleetConfig
    from vitalgate.fleet import run_in_thread as run_fleet_in_thread
    from vitalgate.wiring import build_clinic_sessions, build_reading_store, open_ingest_pipeline_parts

    config = ingest_config(settings, client_id=client_id, shared_group=shared_group)
    sessions = build_clinic_sessions(settings)  # migrates the clinic database, once, here
    store: ReadingStore | None = None
    pipeline: PipelineProcess | None = None
    if settings.ingest.pipeline_process:
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        pipeline = PipelineProcess(
            functools.partial(open_ingest_pipeline_parts, settings, level, log_format or settings.log_format),
            binding_cache_ttl_s=config.binding_cache_ttl_s,
            want_committed=bool(listeners),
        )
        pipeline.start()
        consumer = IngestConsumer(config, pipeline=pipeline, listeners=listeners)
    else:
        store = build_reading_store(settings)
        consumer = IngestConsumer(config, store, ClinicRepository(sessions), listeners=listeners)
    # The gateways' status and last will (vitalgate.fleet), with the clinic account configured for it
    # (ingest's own account does not read status).
    fleet_config = FleetConfig.from_settings(settings, role="ingest", process_account=False)
    fleet_stop = threading.Event()
    fleet = None if fleet_config is None else run_fleet_in_thread(fleet_config, sessions, fleet_stop)
    try:
        # Everything is wired: keep the start-up heap out of garbage collections (~20 % throughput,
        # docs/ingest.md).
        freeze_startup_heap()
        consumer.start()
        while not stop.wait(stats_interval_s if stats_interval_s > 0 else None):
            logger.info("ingest counters", extra=asdict(consumer.counters()))
    finally:
        consumer.stop()
        fleet_stop.set()
        if fleet is not None:
            fleet.join(timeout=15)
        if pipeline is not None:
            pipeline.close()
        if store is not None:
            store.close()
        bind = sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()
    return 0


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("ingest stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    # The composition root hands the alert engine in as a listener (DESIGN.md: ingest never
    # imports alerts); see vitalgate.wiring.
    return serve(
        args.settings,
        stop=stop,
        client_id=args.client_id,
        shared_group=args.shared_group,
        stats_interval_s=args.stats_interval,
        log_format=args.log_format,
    )
