"""`vitalgate api`: the API and the web app, the clinic services and (unless told not to) ingest, in one
process, wired by vitalgate.wiring.

Any number of these run side by side on PostgreSQL (DESIGN.md, Going past one machine): each hands
its committed batches to its own alert engine (ingest never imports alerts, alerts never consume
MQTT), the periodic jobs run once per interval across all of them, and each one's live streams carry
every alert event of the clinic database (alerts.event_feed), whichever process made it. An
acknowledgement in any channel or replica is one state for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

from alerts.channels.hub import EventHub
from alerts.engine import AlertEngine
from alerts.event_feed import AlertEventFeed, FeedWakeup
from api.app import create_app
from api.deps import ApiServices
from api.services import AlertApi
from ingest import IngestConsumer, PipelineProcess, freeze_startup_heap
from storage.clinic.database import ClinicDatabase
from storage.clinic.repository import ClinicRepository
from storage.readings.protocol import ReadingStore
from vitalgate.broker_monitor import BrokerMonitor, monitor_config
from vitalgate.clinic_services import ClinicServices, start_clinic_services
from vitalgate.fleet import FleetConfig, FleetService
from vitalgate.settings import Settings
from vitalgate.wiring import (
    build_api_services,
    build_reading_store,
    ingest_config,
    ingest_pipeline_process,
    open_clinic_database,
    prepare_reading_store,
)

logger = logging.getLogger(__name__)


@dataclass
class ClinicServer:
    settings: Settings
    store: ReadingStore
    database: ClinicDatabase
    api: ApiServices
    services: ClinicServices
    hub: EventHub
    feed: AlertEventFeed
    ingest: IngestConsumer | None
    # The gateways' status and last will, commands to them, operational alerts (vitalgate.fleet).
    fleet: FleetService | None = None
    # The broker's dropped messages, connections and refused logins (vitalgate.broker_monitor).
    broker_monitor: BrokerMonitor | None = None
    # Ingest's validation and storage, in a child process (`ingest.pipeline_process`).
    ingest_pipeline: PipelineProcess | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def engine(self) -> AlertEngine:
        return self.services.engine

    async def serve(self, stop: asyncio.Event, *, host: str, port: int) -> None:
        """Run until `stop` is set: API (uvicorn), the clinic services, the live-event feed, ingest."""
        await self.start_background(stop)
        server = api_server(create_app(self.api), host=host, port=port)
        api_task = asyncio.create_task(server.serve())
        await stop.wait()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(api_task, 10)
        await self.close()

    async def start_background(self, stop: asyncio.Event) -> None:
        """Everything but the HTTP server: ingest, the clinic services' jobs, the feed, the fleet and
        the broker monitor."""
        if self.ingest is not None:
            if self.ingest_pipeline is not None:
                await asyncio.to_thread(self.ingest_pipeline.start)
            freeze_startup_heap()  # everything is wired: keep it out of garbage collections (ingest.runtime)
            self.ingest.start()
        self._tasks.append(asyncio.create_task(self.services.run(stop)))
        self._tasks.append(asyncio.create_task(self.feed.run(stop)))
        if self.fleet is not None:
            await self.fleet.start()
            self._tasks.append(asyncio.create_task(self.fleet.run(stop)))
        if self.broker_monitor is not None:
            await self.broker_monitor.start()
            self._tasks.append(asyncio.create_task(self.broker_monitor.run(stop)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ingest is not None:
            await asyncio.to_thread(self.ingest.stop)
        if self.ingest_pipeline is not None:
            await asyncio.to_thread(self.ingest_pipeline.close)
        if self.fleet is not None:
            await self.fleet.close()
        if self.broker_monitor is not None:
            await self.broker_monitor.close()
        await self.services.close()
        self.store.close()
        self.database.close()


def api_server(app: FastAPI, *, host: str, port: int, **options: Any) -> uvicorn.Server:
    """The API's uvicorn server. uvicorn's own forwarded-header handling is off (by default it believes
    X-Forwarded-For from loopback): the app believes only `api.trusted_proxies` (api/app.py)."""
    return uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_config=None, lifespan="off", proxy_headers=False, **options
        )
    )


async def build_clinic_server(
    settings: Settings, *, jwt_secret: str | None = None, with_ingest: bool = True
) -> ClinicServer:
    """Build every part of `vitalgate api` from `settings`. Call from inside the running event loop."""
    store = build_reading_store(settings)
    try:
        database = await asyncio.to_thread(open_clinic_database, settings)
    except BaseException:
        store.close()
        raise
    try:
        await asyncio.to_thread(prepare_reading_store, settings, store, database)
    except BaseException:
        store.close()
        database.close()
        raise
    try:
        services = await start_clinic_services(settings, store, database, role="api")
    except BaseException:
        store.close()
        database.close()
        raise
    hub = EventHub()
    feed = AlertEventFeed(database, hub, services.directory, services.router)
    services.router.live.append(FeedWakeup(feed))  # this process's events reach its streams at once
    ingest = None
    metrics: list[Any] = []
    pipeline = None
    if with_ingest:
        config = ingest_config(settings)
        listeners = services.listeners(asyncio.get_running_loop())
        if settings.ingest.pipeline_process:
            pipeline = ingest_pipeline_process(settings, config.binding_cache_ttl_s)  # started with ingest
            ingest = IngestConsumer(config, pipeline=pipeline, listeners=listeners)
        else:
            ingest = IngestConsumer(config, store, ClinicRepository(database.sessions), listeners=listeners)
        consumer = ingest
        metrics.append(lambda: consumer.counters().prometheus_text())
    fleet_config = FleetConfig.from_settings(settings, role="api")
    fleet = (
        None
        if fleet_config is None
        else FleetService(fleet_config, database.sessions, engine=services.engine)
    )
    if fleet is not None:
        metrics.append(fleet.prometheus_text)
    monitor_settings = monitor_config(settings, fleet_config)
    monitor = (
        None
        if monitor_settings is None
        else BrokerMonitor(monitor_settings, database.sessions, engine=services.engine)
    )
    if monitor is not None:
        metrics.append(monitor.prometheus_text)
    api = build_api_services(
        settings,
        store,
        database,
        jwt_secret=jwt_secret,
        alerts=AlertApi(services.engine, services.repository, hub),
        fleet=fleet,
        metrics=metrics,
    )
    return ClinicServer(
        settings, store, database, api, services, hub, feed, ingest, fleet, monitor, ingest_pipeline=pipeline
    )
