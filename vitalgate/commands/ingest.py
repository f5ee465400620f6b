"""`vitalgate ingest`: consume readings from MQTT into the reading store until SIGTERM/SIGINT, and
evaluate them for alerts as they are committed.

Ingest is thread-based (paho's network thread, the consumer's worker); the clinic services is async.
It runs on an event loop in a thread of its own (`ClinicLoop`), and ingest hands it each committed
batch through the listeners it returns (DESIGN.md, Data flow), as `vitalgate api` does: the same
readings open the same alerts at once whichever of the two stored them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import asdict
from types import FrameType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ingest import ReadingsListener
    from storage.clinic.database import ClinicDatabase
    from storage.readings.protocol import ReadingStore
    from vitalgate.clinic_services import ClinicServices
    from vitalgate.settings import Settings

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 60.0
LOOP_START_TIMEOUT_S = 60.0  # the clinic services connects its MQTT publisher before ingest starts
LOOP_STOP_TIMEOUT_S = 30.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ingest", help="consume gateway readings from MQTT into the store and evaluate them for alerts"
    )
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


class ClinicLoop:
    """An event loop in a thread of its own running this process's alert service and, where an
    account can read them, the gateways' status (vitalgate.fleet, without operational alerts: the API
    replicas apply those)."""

    def __init__(self, settings: Settings, store: ReadingStore, database: ClinicDatabase) -> None:
        self.settings = settings
        self.store = store
        self.database = database
        self.services: ClinicServices | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="clinic-loop", daemon=True)

    def start(self) -> list[ReadingsListener]:
        """Start the loop and the clinic services; the listeners ingest calls with committed batches."""
        self._thread.start()
        if not self._ready.wait(LOOP_START_TIMEOUT_S):
            raise RuntimeError("the clinic services did not start in time")
        if self._failure is not None:
            raise RuntimeError(f"the clinic services did not start: {self._failure}") from self._failure
        assert self.services is not None and self.loop is not None
        return self.services.listeners(self.loop)

    def stop(self) -> None:
        loop, stop = self.loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread.ident is not None:
            self._thread.join(LOOP_STOP_TIMEOUT_S)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from vitalgate.broker_monitor import BrokerMonitor, monitor_config
        from vitalgate.clinic_services import start_clinic_services
        from vitalgate.fleet import FleetConfig, FleetService

        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.services = await start_clinic_services(
                self.settings, self.store, self.database, role="ingest"
            )
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            return
        # The gateways' status and last will, with the clinic account configured for it (ingest's own
        # account does not read status).
        fleet_config = FleetConfig.from_settings(self.settings, role="ingest", process_account=False)
        fleet = None if fleet_config is None else FleetService(fleet_config, self.database.sessions)
        # The broker's drops and refused logins on the same account (vitalgate.broker_monitor): its
        # alert is one per patient and episode whichever process raises it first.
        monitor_settings = monitor_config(self.settings, fleet_config)
        monitor = (
            None
            if monitor_settings is None
            else BrokerMonitor(monitor_settings, self.database.sessions, engine=self.services.engine)
        )
        self._ready.set()
        tasks = [asyncio.create_task(self.services.run(self._stop))]
        if fleet is not None:
            await fleet.start()
            tasks.append(asyncio.create_task(fleet.run(self._stop)))
        if monitor is not None:
            await monitor.start()
            tasks.append(asyncio.create_task(monitor.run(self._stop)))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if fleet is not None:
                await fleet.close()
            if monitor is not None:
                await monitor.close()
            await self.services.close()


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
    """Run ingest and its alert service until `stop` is set; then finish the cycle in progress, ack,
    disconnect. `listeners` are called with each committed batch after the clinic services's.

    With `ingest.pipeline_process` (the default) validation and storage run in a child process
    (ingest.pipeline_process): in one process, validation competes with paho's network thread for
    one GIL (docs/ingest.md, "Two ways to run it")."""
    from ingest import IngestConsumer, PipelineProcess, freeze_startup_heap
    from storage.clinic.repository import ClinicRepository
    from vitalgate.wiring import (
        build_reading_store,
        ingest_config,
        ingest_pipeline_process,
        open_clinic_database,
        prepare_reading_store,
    )

    config = ingest_config(settings, client_id=client_id, shared_group=shared_group)
    database = open_clinic_database(settings)  # migrates the clinic database, once, here
    store = build_reading_store(settings)
    try:
        prepare_reading_store(settings, store, database)
    except BaseException:
        store.close()
        database.close()
        raise
    clinic = ClinicLoop(settings, store, database)
    pipeline: PipelineProcess | None = None
    try:
        every_listener = [*clinic.start(), *listeners]
        if settings.ingest.pipeline_process:
            pipeline = ingest_pipeline_process(settings, config.binding_cache_ttl_s, log_format)
            pipeline.start()
            consumer = IngestConsumer(config, pipeline=pipeline, listeners=every_listener)
        else:
            consumer = IngestConsumer(
                config, store, ClinicRepository(database.sessions), listeners=every_listener
            )
        try:
            # Everything is wired: keep the start-up heap out of garbage collections (ingest.runtime).
            freeze_startup_heap()
            consumer.start()
            while not stop.wait(stats_interval_s if stats_interval_s > 0 else None):
                logger.info("ingest counters", extra=asdict(consumer.counters()))
        finally:
            consumer.stop()
    finally:
        clinic.stop()
        if pipeline is not None:
            pipeline.close()
        store.close()
        database.close()
    return 0


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("ingest stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return serve(
        args.settings,
        stop=stop,
        client_id=args.client_id,
        shared_group=args.shared_group,
        stats_interval_s=args.stats_interval,
        log_format=args.log_format,
    )
