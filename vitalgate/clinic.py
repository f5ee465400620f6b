"""The clinic server: ingest, the alert engine and the API in one process, wired from Settings.

The alert engine is an ingest listener (DESIGN.md: ingest announces each committed batch to
listeners handed to it at start; ingest never imports alerts, alerts never consume MQTT), and the
API's alert inbox, acknowledgements and live events go through the same engine and event hub, so an
acknowledgement in any channel is one state for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI

from alerts.channels.base import Channel
from alerts.channels.email import EmailChannel, SmtpConfig
from alerts.channels.hub import EventHub
from alerts.channels.mqtt import MqttAlertChannel, MqttConfig
from alerts.channels.webhook import WebhookChannel
from alerts.engine import AlertEngine, run_sweeps
from alerts.repository import (
    SqlAlertRepository,
    SqlEmailOutbox,
    SqlPatientDirectory,
    SqlReportStore,
    SqlWebhookDeadLetters,
)
from alerts.routing import Router
from alerts.summary_updater import SummaryUpdater
from api.app import create_app
from api.deps import ApiServices
from api.routes.alerts import AlertApi
from ingest import IngestConsumer, freeze_startup_heap
from storage.clinic.repository import ClinicRepository
from vitalgate.admin import ClinicMqttAccount, GatewayConfigSender
from vitalgate.broker_accounts import accounts_from_settings
from vitalgate.broker_monitor import BrokerMonitor, monitor_config
from vitalgate.commands.ingest import ingest_config
from vitalgate.fleet import FleetConfig, FleetService
from vitalgate.settings import Settings
from vitalgate.wiring import api_security_options, build_clinic_sessions, build_reading_store

logger = logging.getLogger(__name__)

DIGEST_CHECK_S = 300.0
OUTBOX_FLUSH_S = 30.0  # how often refused urgent e-mails are looked at (each has its own backoff)
# A notification links to the alert's detail page in the web app (api/webapp/src/router.ts).
WEB_APP_ALERT_LINK = "{base_url}/app/alerts/{alert_id}"


@dataclass
class ClinicServer:
    settings: Settings
    api: ApiServices
    engine: AlertEngine
    hub: EventHub
    ingest: IngestConsumer | None
    mqtt_alerts: MqttAlertChannel | None
    email: EmailChannel | None
    # The gateways' status and last will, commands to them, operational alerts (vitalgate.fleet).
    fleet: FleetService | None = None
    # Each patient's panel figures, kept current (alerts.summary_updater).
    summaries: SummaryUpdater | None = None
    # The broker's dropped messages, connections and refused logins (vitalgate.broker_monitor).
    broker_monitor: BrokerMonitor | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def serve(self, stop: asyncio.Event, *, host: str, port: int) -> None:
        """Run until `stop` is set: API (uvicorn), alert sweeps, the daily digest, ingest."""
        if self.ingest is not None:
            freeze_startup_heap()  # everything is wired (docs/ingest.md: ~20 % ingest throughput)
            self.ingest.start()
        self._tasks.append(
            asyncio.create_task(
                run_sweeps(
                    self.engine,
                    self.settings.alerts.sweep_interval_s,
                    stop,
                    recent_interval_s=self.settings.alerts.recent_interval_s,
                )
            )
        )
        if self.summaries is not None:
            self._tasks.append(asyncio.create_task(self.summaries.run(stop)))
        if self.fleet is not None:
            await self.fleet.start()
            self._tasks.append(asyncio.create_task(self.fleet.run(stop)))
        if self.broker_monitor is not None:
            await self.broker_monitor.start()
            self._tasks.append(asyncio.create_task(self.broker_monitor.run(stop)))
        if self.email is not None:
            self._tasks.append(asyncio.create_task(self._digests(stop)))
            self._tasks.append(asyncio.create_task(self._flush_email_outbox(stop)))
        server = api_server(create_app(self.api), host=host, port=port)
        api_task = asyncio.create_task(server.serve())
        await stop.wait()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(api_task, 10)
        await self.close()

    async def _digests(self, stop: asyncio.Event) -> None:
        """Warnings are batched into a daily e-mail digest (clinical-rules.md §7, ESC-2)."""
        assert self.email is not None
        last_day = None
        while not stop.is_set():
            now = datetime.now(UTC)
            if now.hour >= self.settings.alerts.digest_hour_utc and now.date() != last_day:
                try:
                    sent = await self.engine.send_digest(self.email, now)
                    logger.info("alert digest sent", extra={"messages": sent})
                    last_day = now.date()
                except Exception:
                    logger.exception("alert digest failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), DIGEST_CHECK_S)

    async def _flush_email_outbox(self, stop: asyncio.Event) -> None:
        """Send the urgent e-mails the SMTP server refused earlier (alerts.channels.email)."""
        assert self.email is not None
        while not stop.is_set():
            try:
                await self.email.flush_outbox()
            except Exception:
                logger.exception("e-mail outbox flush failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), OUTBOX_FLUSH_S)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ingest is not None:
            await asyncio.to_thread(self.ingest.stop)
        if self.fleet is not None:
            await self.fleet.close()
        if self.broker_monitor is not None:
            await self.broker_monitor.close()
        if self.mqtt_alerts is not None:
            await self.mqtt_alerts.stop()
        self.api.reading_store.close()
        bind = self.api.clinic_sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()


def api_server(app: FastAPI, *, host: str, port: int, **options: Any) -> uvicorn.Server:
    """The API's uvicorn server. uvicorn's own forwarded-header handling is off (by default it believes
    X-Forwarded-For from loopback): the app believes only `api.trusted_proxies` (api/app.py)."""
    return uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_config=None, lifespan="off", proxy_headers=False, **options
        )
    )


async def build_clinic_server(
    settings: Settings, *, jwt_secret: str, with_ingest: bool = True
) -> ClinicServer:
    """Build every clinic-side part from `settings`. Call from inside the running event loop."""
    store = build_reading_store(settings)
    sessions = build_clinic_sessions(settings)
    a = settings.alerts
    hub = EventHub()
    live: list[Channel] = [hub]
    mqtt_alerts = None
    mqtt_user = a.mqtt_username or settings.mqtt.username
    mqtt_password = a.mqtt_password or settings.mqtt.password
    if mqtt_user is not None:
        mqtt_alerts = MqttAlertChannel(
            MqttConfig(
                host=settings.mqtt.host,
                port=settings.mqtt.port,
                username=mqtt_user,
                password=mqtt_password.get_secret_value() if mqtt_password else None,
                client_id=f"vitalgate-alerts-{settings.ingest.client_id}",
                tls_ca_file=settings.mqtt.tls_ca_file,
                tls_cert_file=settings.mqtt.tls_cert_file,
                tls_key_file=settings.mqtt.tls_key_file,
            )
        )
        await mqtt_alerts.start()
        live.append(mqtt_alerts)
    webhooks: list[Channel] = []
    if a.webhook_urls:
        if a.webhook_secret is None:
            raise ValueError("alerts.webhook_secret is required when alerts.webhook_urls are set")
        webhooks.append(
            WebhookChannel(
                a.webhook_urls,
                a.webhook_secret.get_secret_value().encode(),
                SqlWebhookDeadLetters(sessions),
            )
        )
    email = None
    if a.smtp_host:
        email = EmailChannel(
            SmtpConfig(
                host=a.smtp_host,
                port=a.smtp_port,
                sender=a.smtp_sender,
                starttls=a.smtp_starttls,
                username=a.smtp_username,
                password=a.smtp_password.get_secret_value() if a.smtp_password else None,
            ),
            outbox=SqlEmailOutbox(sessions),
        )
    router = Router(
        live=live,
        webhooks=webhooks,
        email=email,
        base_url=a.web_base_url,
        link_template=WEB_APP_ALERT_LINK,
    )
    alert_repository = SqlAlertRepository(sessions)
    engine = AlertEngine(
        store,
        alert_repository,
        SqlPatientDirectory(sessions, a.profile),
        router,
        reports=SqlReportStore(sessions),
        escalation_after=timedelta(seconds=a.escalation_after_s),
    )
    summaries = SummaryUpdater(store, sessions, default_profile=a.profile)
    ingest = None
    if with_ingest:
        loop = asyncio.get_running_loop()
        ingest = IngestConsumer(
            ingest_config(settings),
            store,
            ClinicRepository(sessions),
            listeners=[engine.threadsafe_listener(loop), summaries.threadsafe_listener(loop)],
        )
    extras: dict[str, object] = {"alerts": AlertApi(engine, alert_repository, hub), "metrics": []}
    metrics: list[object] = []
    if ingest is not None:
        consumer = ingest
        metrics.append(lambda: consumer.counters().prometheus_text())
    fleet_config = FleetConfig.from_settings(settings, role="api")
    fleet = None if fleet_config is None else FleetService(fleet_config, sessions, engine=engine)
    if fleet is not None:
        extras["fleet"] = fleet
        metrics.append(fleet.prometheus_text)
    monitor_settings = monitor_config(settings, fleet_config)
    monitor = None if monitor_settings is None else BrokerMonitor(monitor_settings, sessions, engine=engine)
    if monitor is not None:
        metrics.append(monitor.prometheus_text)
    extras["metrics"] = metrics
    # Administration: gateways' broker accounts where the dynamic security plugin is configured, and
    # their configurations sent with the clinic's broker account (vitalgate.admin).
    gateway_accounts = (
        accounts_from_settings(settings) if settings.broker_accounts.gateway_host is not None else None
    )
    config_account = ClinicMqttAccount.from_settings(settings)
    api = ApiServices(
        reading_store=store,
        clinic_sessions=sessions,
        jwt_secret=jwt_secret,
        **api_security_options(settings),
        extras=extras,
        gateway_accounts=gateway_accounts,
        gateway_configs=None if config_account is None else GatewayConfigSender(config_account, sessions),
    )
    return ClinicServer(settings, api, engine, hub, ingest, mqtt_alerts, email, fleet, summaries, monitor)
