"""The gateways page keeps a meter's last sync when a gateway's report carries none (a restart)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage.clinic.fleet import fleet_gateways, record_status
from tests.ingest.helpers import CUFF, GLUCOMETER, seed_clinic
from vitals.payload import GatewayStatus, MeterHealth

GW = "gw-last-sync"


@pytest.fixture
def clinic_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    sessions = seed_clinic(f"sqlite:///{tmp_path / 'clinic.sqlite3'}", [GW])
    yield sessions
    sessions.kw["bind"].dispose()


def report(sessions: sessionmaker[Session], at: datetime, *meters: MeterHealth) -> None:
    with sessions() as session, session.begin():
        status = GatewayStatus(gateway_id=GW, online=True, reported_at=at, meters=meters)
        record_status(session, status, received_at=at, retained=False)


def test_a_report_without_a_last_sync_keeps_the_one_known(clinic_sessions: sessionmaker[Session]) -> None:
    """After a gateway restart that reports a meter with no last sync, the page still shows when it
    last synced; a meter reporting a newer sync shows the newer one."""
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    synced = t0 - timedelta(hours=3)
    report(
        clinic_sessions,
        t0,
        MeterHealth(meter_key=CUFF.meter_key, last_sync_at=synced),
        MeterHealth(meter_key=GLUCOMETER.meter_key, last_sync_at=synced),
    )
    later = t0 + timedelta(hours=1)
    report(
        clinic_sessions,
        later,
        MeterHealth(meter_key=CUFF.meter_key, battery_percent=80),
        MeterHealth(meter_key=GLUCOMETER.meter_key, last_sync_at=later),
    )
    with clinic_sessions() as session:
        (gateway,) = fleet_gateways(session, clinic_id="c1", now=later, stale_after=timedelta(hours=1))
    meters = {m.meter_key: m for m in gateway.meters}
    assert meters[CUFF.meter_key].last_sync_at == synced
    assert meters[CUFF.meter_key].battery_percent == 80
    assert meters[GLUCOMETER.meter_key].last_sync_at == later
