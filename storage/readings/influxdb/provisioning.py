"""Setting InfluxDB up for the store, idempotently at every start: the 1.x database and its default
retention policy, the 2.x bucket and its expiry, and the 2.x DBRP mapping InfluxQL reads need."""

from __future__ import annotations

import logging
import math
from datetime import timedelta

import urllib3
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException

from storage.readings.influxdb.connection import InfluxConnection, error_body
from storage.readings.influxdb.influxql import quote_ident
from storage.readings.protocol import ReadingStoreError, ReadingStoreUnavailable

logger = logging.getLogger(__name__)


def _influx_duration(retention: timedelta | None) -> str:
    """An InfluxQL duration literal of whole hours (INF: for ever)."""
    if retention is None:
        return "INF"
    hours = math.ceil(retention.total_seconds() / 3600)
    if hours < 1:
        raise ValueError("an InfluxDB retention policy lasts at least an hour")
    return f"{hours}h"


def ensure_database(connection: InfluxConnection, retention: timedelta | None) -> str:
    """InfluxDB 1.x (1.8 with its own databases): create the database if missing, and make the
    configured retention policy keep points `retention` long (None: for ever), as the database's
    default. InfluxDB then drops whole shards once they are past it. Idempotent: run at every
    start, so the setting is the one source of the duration. Returns the duration set."""
    config = connection.config
    duration = _influx_duration(retention)
    database, policy = quote_ident(config.database), quote_ident(config.retention_policy or "autogen")
    connection.query([f"CREATE DATABASE {database}"])
    (rows,) = connection.query([f"SHOW RETENTION POLICIES ON {database}"])
    if any(row.get("name") == (config.retention_policy or "autogen") for row in rows):
        statement = f"ALTER RETENTION POLICY {policy} ON {database} DURATION {duration} DEFAULT"
    else:
        statement = (
            f"CREATE RETENTION POLICY {policy} ON {database} DURATION {duration} REPLICATION 1 DEFAULT"
        )
    connection.query([statement])
    logger.info(
        "InfluxDB database and retention policy ready",
        extra={
            "database": config.database,
            "rp": config.retention_policy,
            "duration": duration,
        },
    )
    return duration


def ensure_bucket(
    url: str, token: str, org: str, bucket: str, retention: timedelta | None, *, timeout_s: float = 10.0
) -> bool:
    """InfluxDB 2.x: create `bucket` if missing, with points expiring after `retention` (None: never),
    or set that expiry on the existing bucket. Returns True if it created the bucket."""
    from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

    rules = []
    if retention is not None:
        seconds = int(retention.total_seconds())
        rules.append(BucketRetentionRules(type="expire", every_seconds=seconds))  # type: ignore[no-untyped-call]
    with InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000)) as client:
        try:
            api = client.buckets_api()
            found = api.find_bucket_by_name(bucket)
            if found is None:
                api.create_bucket(bucket_name=bucket, retention_rules=rules, org=org)
                created = True
            else:
                found.retention_rules = rules
                api.update_bucket(found)
                created = False
        except ApiException as exc:
            raise ReadingStoreUnavailable(
                f"bucket set-up failed: HTTP {exc.status}: {error_body(exc)}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ReadingStoreUnavailable(f"bucket set-up failed: {type(exc).__name__}: {exc}") from exc
    logger.info("InfluxDB bucket ready", extra={"bucket": bucket, "new_bucket": created})
    return created


def ensure_dbrp_mapping(
    url: str,
    token: str,
    org: str,
    bucket: str,
    database: str,
    retention_policy: str = "autogen",
    *,
    timeout_s: float = 10.0,
) -> bool:
    """On InfluxDB 2.x, map `database/retention_policy` to `bucket` so InfluxQL `/query` reaches it.

    "Because InfluxQL uses the 1.x data model, a bucket must be mapped to a database and retention
    policy (DBRP) before it can be queried using InfluxQL" (reliability.md §3). Returns True if it
    created the mapping, False if one existed. Not needed on 1.8 (databases are native) or 3.x.
    """
    from influxdb_client.domain.dbrp_create import DBRPCreate
    from influxdb_client.service.dbr_ps_service import DBRPsService

    with InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000)) as client:
        try:
            found = client.buckets_api().find_bucket_by_name(bucket)
            if found is None:
                raise ReadingStoreError(f"bucket {bucket!r} does not exist")
            service = DBRPsService(client.api_client)  # type: ignore[no-untyped-call]
            existing = service.get_dbr_ps(  # type: ignore[no-untyped-call]
                org=org, bucket_id=found.id, db=database, rp=retention_policy
            )
            if existing.content:
                return False
            service.post_dbrp(  # type: ignore[no-untyped-call]
                DBRPCreate(  # type: ignore[no-untyped-call]
                    org=org,
                    bucket_id=found.id,
                    database=database,
                    retention_policy=retention_policy,
                    default=True,
                )
            )
        except ApiException as exc:
            raise ReadingStoreUnavailable(
                f"DBRP mapping failed: HTTP {exc.status}: {error_body(exc)}"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ReadingStoreUnavailable(f"DBRP mapping failed: {type(exc).__name__}: {exc}") from exc
    logger.info(
        "created DBRP mapping", extra={"bucket": bucket, "database": database, "rp": retention_policy}
    )
    return True
