"""`vitalgate ingest`: consume readings from MQTT into the reading store until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import asdict
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest import IngestConfig, ReadingsListener
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
) -> int:
    """Run ingest until `stop` is set; then finish the cycle in progress, ack, disconnect."""
    from ingest import IngestConsumer, freeze_startup_heap
    from storage.clinic.repository import ClinicRepository
    from vitalgate.wiring import build_clinic_sessions, build_reading_store

    store = build_reading_store(settings)
    sessions = build_clinic_sessions(settings)
    consumer = IngestConsumer(
        ingest_config(settings, client_id=client_id, shared_group=shared_group),
        store,
        ClinicRepository(sessions),
        listeners=listeners,
    )
    try:
        # Everything is wired: keep the start-up heap out of garbage collections (~20 % throughput,
        # docs/ingest.md).
        freeze_startup_heap()
        consumer.start()
        while not stop.wait(stats_interval_s if stats_interval_s > 0 else None):
            logger.info("ingest counters", extra=asdict(consumer.counters()))
    finally:
        consumer.stop()
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
    )
