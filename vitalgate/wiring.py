"""Build each stage's parts from the one Settings object (the composition root's factory functions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from vitalgate.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from api.deps import ApiServices
    from ingest import PipelineParts
    from storage.readings.protocol import ReadingStore


def build_reading_store(settings: Settings) -> ReadingStore:
    """The configured reading store: SQLite (embedded default) or InfluxDB."""
    if settings.storage.reading_store == "influxdb":
        from storage.readings.influxdb import InfluxConfig, InfluxReadingStore

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


def build_clinic_sessions(settings: Settings, *, migrate: bool = True) -> sessionmaker[Session]:
    from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head

    url = settings.clinic_database_url
    if url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_clinic_engine(url)
    if migrate:
        upgrade_to_head(engine=engine)
    return session_factory(engine)


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
    sessions = build_clinic_sessions(settings, migrate=False)

    def close() -> None:
        store.close()
        bind = sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()

    return PipelineParts(store, ClinicRepository(sessions), close)


def build_api_services(settings: Settings, *, jwt_secret: str | None = None) -> ApiServices:
    from api.deps import ApiServices

    secret = jwt_secret or (settings.api.jwt_secret.get_secret_value() if settings.api.jwt_secret else None)
    if not secret:
        raise ValueError("api.jwt_secret is required")
    return ApiServices(
        reading_store=build_reading_store(settings),
        clinic_sessions=build_clinic_sessions(settings),
        jwt_secret=secret,
        **api_security_options(settings),
    )


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


def close_api_services(services: ApiServices) -> None:
    services.reading_store.close()
    bind = services.clinic_sessions.kw.get("bind")
    if bind is not None:
        bind.dispose()
