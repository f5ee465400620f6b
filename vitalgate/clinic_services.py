"""What every clinic process runs beside its front door (MQTT for ingest, HTTP for the API): the
alert engine with its notification channels, the summary updater, and the clinic's periodic jobs
(alert sweeps, digest, e-mail outbox, retention), each run once per interval across all the
clinic's processes (`DatabaseTurns`). Built by `start_clinic_services` from the one Settings object
and the stores of vitalgate.wiring."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from vitalgate.settings import Settings
from vitalgate.wiring import prune_past_retention, runner_name

if TYPE_CHECKING:
    from alerts.channels.email import EmailChannel
    from alerts.channels.mqtt import MqttAlertChannel
    from alerts.engine import AlertEngine
    from alerts.repository import SqlAlertRepository, SqlPatientDirectory
    from alerts.routing import Router
    from alerts.summary_updater import SummaryUpdater
    from ingest import ReadingsListener
    from storage.clinic.coordination import DatabaseTurns
    from storage.clinic.database import ClinicDatabase
    from storage.readings.protocol import ReadingStore


logger = logging.getLogger(__name__)


# A notification links to the alert's detail page in the web app (api/webapp/src/router.ts).
WEB_APP_ALERT_LINK: Final = "{base_url}/app/alerts/{alert_id}"
DIGEST_CHECK_S: Final = 300.0  # how often a process looks whether the daily digest is due
OUTBOX_FLUSH_S: Final = 30.0  # how often refused urgent e-mails are looked at (each has its own backoff)
# How long an evaluation waits for another process's evaluation of the same patient.
PATIENT_LOCK_TIMEOUT_S: Final = 30.0
DIGEST_JOB: Final = "alerts.digest"
OUTBOX_JOB: Final = "alerts.email_outbox"
RETENTION_JOB: Final = "retention"


@dataclass
class ClinicServices:
    """What every clinic process runs beside its front door (MQTT for ingest, HTTP for the API): the
    alert engine with its channels, the summary updater, and the clinic's periodic jobs (alert sweeps,
    digest, e-mail outbox, retention), each once per interval across the processes (module doc)."""

    settings: Settings
    store: ReadingStore
    database: ClinicDatabase
    engine: AlertEngine
    repository: SqlAlertRepository
    directory: SqlPatientDirectory
    router: Router
    summaries: SummaryUpdater
    turns: DatabaseTurns
    mqtt_alerts: MqttAlertChannel | None = None
    email: EmailChannel | None = None

    def listeners(self, loop: asyncio.AbstractEventLoop) -> list[ReadingsListener]:
        """What ingest calls with each committed batch (from its worker thread): the engine and the
        summary updater, each scheduling its work on `loop`."""
        return [self.engine.threadsafe_listener(loop), self.summaries.threadsafe_listener(loop)]

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: the alert sweeps and the poll for readings left unevaluated, the summary
        updater, with e-mail the daily digest and the outbox of refused urgent e-mails, and the
        retention pass."""
        from alerts.periodic import run_sweeps

        a = self.settings.alerts
        jobs = [
            run_sweeps(
                self.engine, a.sweep_interval_s, stop, recent_interval_s=a.recent_interval_s, turns=self.turns
            ),
            self.summaries.run(stop),
        ]
        if self.email is not None:
            jobs += [self._digests(stop, self.email), self._flush_email_outbox(stop, self.email)]
        jobs.append(self._retention(stop))
        await asyncio.gather(*jobs)

    async def _retention(self, stop: asyncio.Event) -> None:
        """Delete what is past its retention, one process per `retention.check_interval_s` across the
        clinic's processes."""
        every = timedelta(seconds=self.settings.retention.check_interval_s)
        while not stop.is_set():
            try:
                now = datetime.now(UTC)
                turn = await asyncio.to_thread(self.turns.claim, RETENTION_JOB, every, now)
                if turn is not None:
                    counts = await asyncio.to_thread(
                        prune_past_retention, self.settings, self.store, self.database, now
                    )
                    await asyncio.to_thread(self.turns.finish, turn, datetime.now(UTC))
                    logger.info("retention pass", extra=counts)
            except Exception:
                logger.exception("retention pass failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(every.total_seconds(), DIGEST_CHECK_S))

    async def _digests(self, stop: asyncio.Event, email: EmailChannel) -> None:
        """Warnings are batched into a daily e-mail digest (clinical-rules.md §7, ESC-2), sent by one
        process per check across the clinic's processes; each doctor's digest once a day."""
        every = timedelta(seconds=DIGEST_CHECK_S)
        while not stop.is_set():
            now = datetime.now(UTC)
            if now.hour >= self.settings.alerts.digest_hour_utc:
                turn = await asyncio.to_thread(self.turns.claim, DIGEST_JOB, every, now)
                if turn is not None:
                    try:
                        sent = await self.engine.send_digest(email, now)
                        if sent:
                            logger.info("alert digest sent", extra={"messages": sent})
                    except Exception:
                        logger.exception("alert digest failed; will retry")
                    await asyncio.to_thread(self.turns.finish, turn, datetime.now(UTC))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), DIGEST_CHECK_S)

    async def _flush_email_outbox(self, stop: asyncio.Event, email: EmailChannel) -> None:
        """Send the urgent e-mails the SMTP server refused earlier (alerts.channels.email), one
        process at a time, so none is sent twice."""
        every = timedelta(seconds=OUTBOX_FLUSH_S)
        while not stop.is_set():
            try:
                turn = await asyncio.to_thread(self.turns.claim, OUTBOX_JOB, every, datetime.now(UTC))
                if turn is not None:
                    await email.flush_outbox()
                    await asyncio.to_thread(self.turns.finish, turn, datetime.now(UTC))
            except Exception:
                logger.exception("e-mail outbox flush failed; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), OUTBOX_FLUSH_S)

    async def close(self) -> None:
        if self.mqtt_alerts is not None:
            await self.mqtt_alerts.stop()


async def start_clinic_services(
    settings: Settings, store: ReadingStore, database: ClinicDatabase, *, role: str
) -> ClinicServices:
    """The alert side of a clinic process (`role`: "api" or "ingest"), its MQTT alert publisher
    connected. Call from inside the running event loop that will run it."""
    from alerts.channels.base import Channel
    from alerts.channels.email import EmailChannel, SmtpConfig
    from alerts.channels.mqtt import MqttAlertChannel, MqttConfig
    from alerts.channels.webhook import WebhookChannel
    from alerts.engine import AlertEngine
    from alerts.repository import (
        SqlAlertRepository,
        SqlEmailOutbox,
        SqlPatientDirectory,
        SqlReportStore,
        SqlWebhookDeadLetters,
    )
    from alerts.routing import Router
    from alerts.summary_updater import SummaryUpdater
    from storage.clinic.coordination import DatabaseTurns, exclusive

    a = settings.alerts
    sessions = database.sessions
    if a.webhook_urls and a.webhook_secret is None:
        raise ValueError("alerts.webhook_secret is required when alerts.webhook_urls are set")
    # The live streams of the API replicas read every event from the clinic database
    # (alerts.event_feed), so this process's live channel is the clinic alert topic alone.
    live: list[Channel] = []
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
                # One publisher per process, with no session to resume: any unused client id will do.
                client_id=f"vitalgate-alerts-{role}-{secrets.token_hex(4)}",
                tls_ca_file=settings.mqtt.tls_ca_file,
                tls_cert_file=settings.mqtt.tls_cert_file,
                tls_key_file=settings.mqtt.tls_key_file,
            )
        )
        await mqtt_alerts.start()
        live.append(mqtt_alerts)
    webhooks: list[Channel] = []
    if a.webhook_urls and a.webhook_secret is not None:
        webhooks.append(
            WebhookChannel(
                a.webhook_urls, a.webhook_secret.get_secret_value().encode(), SqlWebhookDeadLetters(sessions)
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
        live=live, webhooks=webhooks, email=email, base_url=a.web_base_url, link_template=WEB_APP_ALERT_LINK
    )
    repository = SqlAlertRepository(sessions)
    directory = SqlPatientDirectory(sessions, a.profile)

    def patient_lock(patient_id: str) -> contextlib.AbstractContextManager[object]:
        return exclusive(database, "patient", patient_id, timeout_s=PATIENT_LOCK_TIMEOUT_S)

    engine = AlertEngine(
        store,
        repository,
        directory,
        router,
        reports=SqlReportStore(sessions),
        escalation_after=timedelta(seconds=a.escalation_after_s),
        patient_lock=patient_lock,
    )
    return ClinicServices(
        settings=settings,
        store=store,
        database=database,
        engine=engine,
        repository=repository,
        directory=directory,
        router=router,
        summaries=SummaryUpdater(store, sessions, default_profile=a.profile),
        turns=DatabaseTurns(database, runner_name(role)),
        mqtt_alerts=mqtt_alerts,
        email=email,
    )
