"""One `Settings` object, built once at start from a TOML file plus `VITALGATE_*` environment variables,
and passed in (DESIGN.md, Conventions: no import-time globals, no hidden singletons).

Environment variables override the file; nested fields use a double underscore, e.g.
`VITALGATE_MQTT__PORT=8883` or `VITALGATE_STORAGE__READING_STORE=influxdb`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.outbox import DEFAULT_CAPACITY, DEFAULT_UNBOUND_CAPACITY

CONFIG_ENV_VAR = "VITALGATE_CONFIG"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "vitalgate"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls_ca_file: Path | None = None
    tls_ca_pem: str | None = Field(
        default=None, description="the CA certificate itself (PEM), instead of tls_ca_file"
    )
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls: bool | None = Field(
        default=None, description="default: TLS when a CA is set; true without a CA: the system's trust store"
    )
    allow_plain_mqtt: bool = Field(
        default=False,
        description="a gateway connects without TLS only when this is set: a broker on this machine or a "
        "development broker",
    )
    client_id: str | None = Field(default=None, description="default: derived from the gateway id")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _one_ca(self) -> MqttSettings:
        if self.tls_ca_file is not None and self.tls_ca_pem is not None:
            raise ValueError("set tls_ca_file or tls_ca_pem, not both")
        return self


class BrokerAccountsSettings(_Section):
    """The clinic's administration of gateway accounts on Mosquitto's dynamic security plugin
    (docs/broker.md). The clinic logs in on the broker's clinic listener with the certificate of the
    vitalgate-broker-admin account; gateways are told the gateway listener's address."""

    host: str = "127.0.0.1"
    port: int = Field(default=8884, ge=1, le=65535, description="the broker's clinic listener")
    client_id: str = Field(
        default="vitalgate-broker-admin",
        pattern=r"^vitalgate-[A-Za-z0-9_-]{1,40}$",
        description="prefix of the administration connections' client ids",
    )
    username: str | None = Field(
        default=None, description="with certificate logins the certificate names the account"
    )
    password: SecretStr | None = None
    tls_ca_file: Path | None = Field(default=None, description="CA of the broker's server certificate")
    tls_cert_file: Path | None = Field(
        default=None, description="the vitalgate-broker-admin client certificate"
    )
    tls_key_file: Path | None = None
    allow_plain_mqtt: bool = Field(default=False, description="development brokers only")
    timeout_s: float = Field(default=10.0, gt=0, description="for the broker's answer to each command")
    gateway_host: str | None = Field(
        default=None, description="the broker's name as gateways reach it (written into their settings files)"
    )
    gateway_port: int = Field(default=8883, ge=1, le=65535)
    gateway_ca_file: Path | None = Field(
        default=None,
        description="CA certificate gateways verify the broker with, copied into their settings files; "
        "unset: the gateway's system trust store",
    )


class GatewaySettings(_Section):
    gateway_id: str = Field(default="gw-local", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    outbox_path: Path | None = Field(default=None, description="default: DATA_DIR/gateway/outbox.sqlite3")
    outbox_capacity: int = Field(default=DEFAULT_CAPACITY, ge=10)
    unbound_capacity: int = Field(
        default=DEFAULT_UNBOUND_CAPACITY, ge=10, description="readings of unbound meters kept aside"
    )
    bindings_file: Path | None = Field(default=None, description="local bindings, used until config arrives")
    ack_timeout_s: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=500)
    max_concurrent_connections: int = Field(default=3, ge=1, le=10)
    scanner_watchdog_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=20.0, gt=0)
    session_timeout_s: float = Field(default=180.0, gt=0, description="one meter connection, start to end")
    resync_after_s: float = Field(
        default=60.0, ge=0, description="ignore a meter's adverts this long after a sync"
    )
    status_interval_s: float = Field(default=60.0, gt=0)


class StorageSettings(_Section):
    reading_store: Literal["sqlite", "influxdb"] = "sqlite"
    sqlite_path: Path | None = Field(default=None, description="default: DATA_DIR/readings.sqlite3")
    influx_url: str = "http://127.0.0.1:8086"
    influx_token: SecretStr | None = None
    influx_org: str = Field(default="-", description='2.x organisation; "-" for 1.8 and 3.x')
    influx_database: str = "vitalgate"
    influx_retention_policy: str = "autogen"
    influx_bucket: str | None = Field(
        default=None, description="2.x bucket; default DATABASE/RETENTION_POLICY"
    )
    influx_timeout_s: float = Field(default=10.0, gt=0)
    clinic_database_url: str | None = Field(
        default=None, description="default: sqlite:///DATA_DIR/clinic.sqlite3"
    )


class IngestSettings(_Section):
    client_id: str = Field(default="vitalgate-ingest-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    shared_group: str | None = Field(default=None, description="MQTT v5 shared subscription group")
    session_expiry_s: int = Field(default=7 * 24 * 3600, gt=0)
    max_inflight_messages: int = Field(default=100, ge=1, le=65535)
    pipeline_process: bool = Field(
        default=True,
        description="validate and store in a child process, so the MQTT process keeps its GIL for paho",
    )


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    jwt_secret: SecretStr | None = Field(default=None, description="required outside the demo")
    # Sessions (api/sessions.py, docs/security.md).
    access_token_ttl_s: int = Field(default=15 * 60, gt=0, description="access tokens; renewed by refresh")
    refresh_token_ttl_s: int = Field(default=60 * 60, gt=0, description="a session unused this long ends")
    session_max_s: int = Field(default=12 * 3600, gt=0, description="no session lasts longer; sign in again")
    max_request_body_bytes: int = Field(default=1024 * 1024, gt=0, description="larger bodies: 413")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="reverse proxies (addresses or networks) whose X-Forwarded-For/-Proto are believed; "
        "default none",
    )
    hsts: bool = Field(
        default=False,
        description="send Strict-Transport-Security on every response (the site is only reached over "
        "HTTPS); it is always sent on requests that came over TLS",
    )


class AlertSettings(_Section):
    profile: Literal["cn", "us", "eu"] = "eu"
    sweep_interval_s: float = Field(default=300.0, gt=0, description="full sweep of time-based rules")
    recent_interval_s: float = Field(
        default=60.0, gt=0, description="evaluate readings stored by other processes or left unevaluated"
    )
    escalation_after_s: float = Field(default=30 * 60, gt=0)  # clinical-rules.md §7 ESC-2
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: SecretStr | None = Field(default=None, description="required when webhook_urls are set")
    smtp_host: str | None = Field(default=None, description="e-mail channel off when unset")
    smtp_port: int = 25
    smtp_sender: str = "vitalgate@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    digest_hour_utc: int = Field(default=7, ge=0, le=23, description="daily e-mail digest of warnings")
    mqtt_username: str | None = Field(default=None, description="clinic account for the alerts topic")
    mqtt_password: SecretStr | None = None
    web_base_url: str = "http://127.0.0.1:8000"


class FleetSettings(_Section):
    """The clinic's watch over its gateways (vitalgate.fleet): their status reports, the commands
    sent to them, and the operational alerts to clinic staff (alerts.operations)."""

    mqtt_username: str | None = Field(
        default=None,
        description="clinic account that reads every gateway's status and writes commands; "
        "default: alerts.mqtt_username, then mqtt.username",
    )
    mqtt_password: SecretStr | None = None
    gateway_offline_after_s: float = Field(
        default=12 * 3600, gt=0, description="no status (or a last will) this long: gateway offline alert"
    )
    battery_low_percent: int = Field(default=20, ge=0, le=100, description="meter battery alert at or below")
    status_stale_after_s: float = Field(
        default=600, gt=0, description="a gateway whose last status is older is shown offline"
    )
    check_interval_s: float = Field(default=60, gt=0, description="operational alerts and gauges")
    command_resend_s: float = Field(
        default=300, gt=0, description="commands a gateway has not carried out are published again"
    )


class RetentionSettings(_Section):
    """How long the clinic keeps what it stores (docs/scaling.md, Retention). One clinic process a
    day removes what is older (SQLite readings, the audit log, dead letters); InfluxDB removes old
    readings itself, by the retention policy or bucket duration set at start. None: kept for ever.
    A clinic may keep its patients' readings for a period of its own (`clinics.
    readings_retention_days`, set by its administrator), at most `clinic_readings_max_days`;
    `readings_days` is every other clinic's."""

    readings_days: int | None = Field(
        default=730,
        ge=90,
        description="readings: two years by default, the charts' longest view (a year) and the year "
        "before it; at least 90 days, beyond what the alert rules (45 days) and the 90-day charts read",
    )
    audit_days: int | None = Field(
        default=2192,
        ge=1,
        description="audit log entries: six years by default, as HIPAA asks of Security Rule "
        "documentation (45 CFR 164.316(b)(2))",
    )
    dead_letters_days: int | None = Field(
        default=180,
        ge=1,
        description="payloads ingest could never store, and alert webhooks never delivered: an "
        "operator's work queue, which holds readings (health data), so not kept longer than needed",
    )
    clinic_readings_max_days: int | None = Field(
        default=None,
        ge=90,
        description="the longest period a clinic's administrator may give its own readings; None: "
        "`readings_days`, so clinics may only shorten it. InfluxDB's retention policy lasts the longest "
        "period in use, and every shorter one is then applied by per-patient deletes, so the operator "
        "decides how long that may be",
    )
    check_interval_s: float = Field(default=24 * 3600, gt=0, description="how often old records are removed")

    @model_validator(mode="after")
    def _ceiling_not_below_default(self) -> RetentionSettings:
        c, days = self.clinic_readings_max_days, self.readings_days
        if c is not None and (days is None or c < days):
            raise ValueError("clinic_readings_max_days must be at least readings_days (or unset)")
        return self

    @property
    def clinic_readings_ceiling_days(self) -> int | None:
        """The longest period a clinic may set (None: no ceiling, readings are kept for ever)."""
        return self.readings_days if self.clinic_readings_max_days is None else self.clinic_readings_max_days


class BrokerMonitorSettings(_Section):
    """The clinic's watch over its MQTT broker (vitalgate.broker_monitor): dropped messages, connected
    clients, refused logins; run beside the fleet service, with its clinic account."""

    enabled: bool = True
    drop_clear_after_s: float = Field(
        default=30 * 60, gt=0, description="the broker-drops alert clears after this long without a drop"
    )
    check_interval_s: float = Field(default=10, gt=0, description="how often the alert rule is applied")


class Settings(BaseSettings):
    """Everything a vitalgate process is configured with."""

    model_config = SettingsConfigDict(
        env_prefix="VITALGATE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    broker_monitor: BrokerMonitorSettings = Field(default_factory=BrokerMonitorSettings)
    broker_accounts: BrokerAccountsSettings = Field(default_factory=BrokerAccountsSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    # Derived paths: one place that turns the defaults into files under data_dir.
    @property
    def outbox_path(self) -> Path:
        return self.gateway.outbox_path or self.data_dir / "gateway" / "outbox.sqlite3"

    @property
    def reading_store_path(self) -> Path:
        return self.storage.sqlite_path or self.data_dir / "readings.sqlite3"

    @property
    def clinic_database_url(self) -> str:
        return self.storage.clinic_database_url or f"sqlite:///{self.data_dir / 'clinic.sqlite3'}"


class SettingsFileError(ValueError):
    """The settings file is missing or not valid TOML."""


def load_settings(path: Path | None = None, **overrides: object) -> Settings:
    """Build Settings from `path` (TOML) and the environment; environment wins over the file,
    explicit `overrides` win over both."""
    if path is not None and not path.is_file():
        raise SettingsFileError(f"settings file not found: {path}")
    toml_file = path

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if toml_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
            return tuple(sources)

    try:
        loaded = _Loaded(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        if "TOML" in type(exc).__name__ or "toml" in str(exc).lower()[:200]:
            raise SettingsFileError(f"settings file {path} is not valid TOML: {exc}") from exc
        raise
    return Settings.model_validate(loaded.model_dump())
