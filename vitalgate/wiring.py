"""The clinic's composition: every part of a clinic process built from the one Settings object, in the
one place every command and the demo use (DESIGN.md: `vitalgate` is the composition root).

- `build_reading_store`, `open_clinic_database`: the two stores. `ClinicDatabase.close` releases the
  clinic database's connections. `prepare_reading_store` sets InfluxDB's database or bucket and its
  retention (the longest in use) up at start; `prune_past_retention` deletes what is past its time,
  each clinic's readings by its own period.
- `ingest_config`, `open_ingest_pipeline_parts`: ingest's consumer and its pipeline process.
- `ClinicServices` (`start_clinic_services`, in vitalgate.clinic_services): the alert engine with its
  notification channels, the summary updater and the clinic's periodic jobs (alert sweeps, digest,
  retention). Every process that ingests readings runs one and hands it its committed batches
  (`ClinicServices.listeners`), standalone `vitalgate ingest` as much as `vitalgate api`, so a reading
  is evaluated as soon as it is committed, whichever process stored it.
  The periodic jobs run once per interval across all the clinic's processes (`DatabaseTurns`).
- `build_api_services`, `open_api_services`: the API's services (api.deps.ApiServices).
- `gateway_options`: the edge gateway's options (its own process; gateway modules are imported only
  there).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from vitalgate.settings import Settings

if TYPE_CHECKING:
    from api.deps import ApiServices
    from api.services import AlertApi, FleetCommands
    from gateway.app import GatewayOptions
    from ingest import IngestConfig, PipelineParts, PipelineProcess
    from storage.clinic.database import ClinicDatabase
    from storage.readings.protocol import ReadingStore

logger = logging.getLogger(__name__)


def build_reading_store(settings: Settings) -> ReadingStore:
    """The configured reading store: SQLite (embedded default) or InfluxDB."""
    if settings.storage.reading_store == "influxdb":
        from storage.readings.influxdb.connection import InfluxConfig
        from storage.readings.influxdb.store import InfluxReadingStore

        s = settings.storage
        return InfluxReadingStore(
            InfluxConfig(
                url=s.influx_url,
                database=s.influx_database,
                retention_policy=s.influx_retention_policy,
                bucket=s.influx_bucket,
                token=s.influx_token.get_secret_value() if s.influx_token else "",
                org=s.influx_org,
                timeout_s=s.influx_timeout_s,
            )
        )
    from storage.readings.sqlite import SqliteReadingStore

    path = settings.reading_store_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteReadingStore(path)


def prepare_reading_store(settings: Settings, store: ReadingStore, database: ClinicDatabase) -> str | None:
    """Set the reading store up for the configured retention: on InfluxDB create the database (1.x)
    or bucket (2.x, with its DBRP mapping) if missing and give it the longest readings retention in
    use, `retention.readings_days` or a clinic's own (storage.clinic.readings_retention); SQLite
    needs nothing (old readings are pruned, `prune_past_retention`). Idempotent: every clinic process
    runs it at start, and the daily prune again, so a clinic's longer period takes effect within a
    day. Returns what was set, for the operator."""
    if settings.storage.reading_store != "influxdb":
        return None
    from storage.clinic.readings_retention import readings_retention

    r = settings.retention
    days = readings_retention(
        database.sessions, r.readings_days, ceiling_days=r.clinic_readings_ceiling_days
    ).longest_days
    return _set_influx_retention(settings, store, days)


def _set_influx_retention(settings: Settings, store: ReadingStore, days: int | None) -> str:
    from storage.readings.influxdb.provisioning import ensure_bucket, ensure_dbrp_mapping
    from storage.readings.influxdb.store import InfluxReadingStore

    s = settings.storage
    retention = None if days is None else timedelta(days=days)
    if s.influx_bucket is not None and s.influx_org != "-":  # InfluxDB 2.x: a bucket, mapped for InfluxQL
        token = s.influx_token.get_secret_value() if s.influx_token else ""
        ensure_bucket(
            s.influx_url, token, s.influx_org, s.influx_bucket, retention, timeout_s=s.influx_timeout_s
        )
        ensure_dbrp_mapping(
            s.influx_url,
            token,
            s.influx_org,
            s.influx_bucket,
            s.influx_database,
            s.influx_retention_policy,
            timeout_s=s.influx_timeout_s,
        )
        return f"bucket {s.influx_bucket}: {days or 'unlimited'} days"
    assert isinstance(store, InfluxReadingStore)
    duration = store.ensure_database(retention)
    return f"database {s.influx_database}, retention policy {s.influx_retention_policy}: {duration}"


def prune_past_retention(
    settings: Settings, store: ReadingStore, database: ClinicDatabase, now: datetime
) -> dict[str, int]:
    """Delete what is past its retention (`settings.retention`, and each clinic's own period for its
    patients' readings) in the reading store and the clinic database; how many of each. SQLite:
    each patient's readings before their cut-off. InfluxDB: its retention policy (or bucket) is set
    to the longest period in use again, and drops older readings itself; the patients whose period
    is shorter lose their older readings here."""
    from storage.clinic.readings_retention import readings_retention
    from storage.clinic.retention import prune_clinic_records
    from storage.readings.sqlite import SqliteReadingStore

    r = settings.retention
    counts: dict[str, int] = {}
    pruned = prune_clinic_records(
        database.sessions,
        audit_before=None if r.audit_days is None else now - timedelta(days=r.audit_days),
        dead_letters_before=None
        if r.dead_letters_days is None
        else now - timedelta(days=r.dead_letters_days),
    )
    # The clinic database first: a reading store that fails (down, or InfluxDB 3, which deletes no
    # points) leaves the audit log and dead letters pruned.
    plan = readings_retention(database.sessions, r.readings_days, ceiling_days=r.clinic_readings_ceiling_days)
    if isinstance(store, SqliteReadingStore):
        default_before, patients_before = plan.cutoffs(now)
        counts["readings"] = store.prune(default_before, patients=patients_before)
    elif settings.storage.reading_store == "influxdb":
        from storage.readings.influxdb.store import InfluxReadingStore

        assert isinstance(store, InfluxReadingStore)
        _set_influx_retention(settings, store, plan.longest_days)
        counts["readings"] = store.delete_before(plan.cutoffs_shorter_than_longest(now))
    counts.update(
        audit_entries=pruned.audit_entries,
        dead_letters=pruned.dead_letters,
        webhook_dead_letters=pruned.webhook_dead_letters,
    )
    return counts


def open_clinic_database(settings: Settings, *, migrate: bool = True) -> ClinicDatabase:
    """The clinic database, migrated to the newest schema unless `migrate` is false."""
    from storage.clinic.database import ClinicDatabase

    url = settings.clinic_database_url
    if url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ClinicDatabase.open(url, migrate=migrate)


def runner_name(role: str) -> str:
    """How a process names itself in `periodic_runs`: role, host and process id (no person)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


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


def open_ingest_pipeline_parts(
    settings: Settings, log_level: str, log_format: Literal["auto", "json", "text"]
) -> PipelineParts:
    """Run in ingest's pipeline process (ingest.pipeline_process): logging as in the parent, then the
    reading store and the clinic database (already migrated by the parent)."""
    from ingest import PipelineParts
    from storage.clinic.repository import ClinicRepository
    from vitalgate.logs import configure_logging

    configure_logging(log_level, log_format)
    store = build_reading_store(settings)
    database = open_clinic_database(settings, migrate=False)

    def close() -> None:
        store.close()
        database.close()

    return PipelineParts(store, ClinicRepository(database.sessions), close)


def ingest_pipeline_process(
    settings: Settings, binding_cache_ttl_s: float, log_format: Literal["auto", "json", "text"] | None = None
) -> PipelineProcess:
    """Ingest's validation and storage in a child process (`ingest.pipeline_process`), not started
    yet, handing the committed readings back for the listeners (the alert engine): in one process
    they would compete for one GIL with paho's network thread and, in `vitalgate api`, with the
    alert engine's evaluations and the API (docs/ingest.md, "Two ways to run it")."""
    from ingest import PipelineProcess

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    return PipelineProcess(
        functools.partial(open_ingest_pipeline_parts, settings, level, log_format or settings.log_format),
        binding_cache_ttl_s=binding_cache_ttl_s,
        want_committed=True,
    )


# --- the API's services -----------------------------------------------------------------------------


def api_security_options(settings: Settings) -> dict[str, Any]:
    """The ApiServices fields that come from `api.*` settings: sessions, body limit, proxies, HSTS."""
    a = settings.api
    return {
        "access_token_ttl_s": a.access_token_ttl_s,
        "refresh_token_ttl_s": a.refresh_token_ttl_s,
        "session_max_s": a.session_max_s,
        "max_request_body_bytes": a.max_request_body_bytes,
        "trusted_proxies": tuple(a.trusted_proxies),
        "hsts": a.hsts,
    }


def jwt_secret_of(settings: Settings, jwt_secret: str | None = None) -> str:
    secret = jwt_secret or (settings.api.jwt_secret.get_secret_value() if settings.api.jwt_secret else None)
    if not secret:
        raise ValueError("api.jwt_secret is required")
    return secret


def build_api_services(
    settings: Settings,
    store: ReadingStore,
    database: ClinicDatabase,
    *,
    jwt_secret: str | None = None,
    alerts: AlertApi | None = None,
    fleet: FleetCommands | None = None,
    metrics: Sequence[Callable[[], str]] = (),
) -> ApiServices:
    """The API's services on `store` and `database`, with what this process serves besides: the alert
    service, the fleet's commands, metrics; the gateways' broker accounts and configurations where
    the settings name the broker's dynamic security plugin and a clinic account (vitalgate.administration)."""
    from api.deps import ApiServices
    from vitalgate.administration import ClinicMqttAccount, GatewayConfigSender
    from vitalgate.broker_accounts import accounts_from_settings

    config_account = ClinicMqttAccount.from_settings(settings)
    return ApiServices(
        reading_store=store,
        clinic_sessions=database.sessions,
        jwt_secret=jwt_secret_of(settings, jwt_secret),
        **api_security_options(settings),
        clinic_readings_max_days=settings.retention.clinic_readings_ceiling_days,
        alerts=alerts,
        fleet=fleet,
        metrics=list(metrics),
        gateway_accounts=(
            accounts_from_settings(settings) if settings.broker_accounts.gateway_host is not None else None
        ),
        gateway_configs=None
        if config_account is None
        else GatewayConfigSender(config_account, database.sessions),
    )


@contextlib.contextmanager
def open_api_services(settings: Settings, *, jwt_secret: str | None = None) -> Iterator[ApiServices]:
    """The API's services on their own stores, closed on leaving (tests, scripts): no alert service,
    no fleet."""
    store = build_reading_store(settings)
    try:
        database = open_clinic_database(settings)
        try:
            yield build_api_services(settings, store, database, jwt_secret=jwt_secret)
        finally:
            database.close()
    finally:
        store.close()


# --- the edge gateway -------------------------------------------------------------------------------


def gateway_options(settings: Settings) -> GatewayOptions:
    """Map the one Settings object onto the gateway's plain options; its state lives beside its
    outbox."""
    from gateway.app import GatewayOptions
    from gateway.meters import BleConfig
    from gateway.uplink import ForwarderConfig, UplinkConfig

    gw, mqtt = settings.gateway, settings.mqtt
    uplink = UplinkConfig(
        gateway_id=gw.gateway_id,
        host=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        tls_ca_file=mqtt.tls_ca_file,
        tls_ca_pem=mqtt.tls_ca_pem,
        tls_cert_file=mqtt.tls_cert_file,
        tls_key_file=mqtt.tls_key_file,
        tls=mqtt.tls,
        allow_plain_mqtt=mqtt.allow_plain_mqtt,
        client_id=mqtt.client_id,
        keepalive_s=mqtt.keepalive_s,
        connect_timeout_s=mqtt.connect_timeout_s,
    )
    return GatewayOptions(
        gateway_id=gw.gateway_id,
        state_dir=settings.outbox_path.parent,
        uplink=uplink,
        outbox_path=settings.outbox_path,
        bindings_path=gw.bindings_file,
        outbox_capacity=gw.outbox_capacity,
        unbound_capacity=gw.unbound_capacity,
        status_interval_s=gw.status_interval_s,
        forwarder=ForwarderConfig(ack_timeout_s=gw.ack_timeout_s, batch_size=gw.batch_size),
        ble=BleConfig(
            max_concurrent_connections=gw.max_concurrent_connections,
            scanner_watchdog_s=gw.scanner_watchdog_s,
            connect_timeout_s=gw.connect_timeout_s,
            session_timeout_s=gw.session_timeout_s,
            resync_after_s=gw.resync_after_s,
        ),
    )
