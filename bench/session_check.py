"""What the per-request session check costs (api/deps.py `_current_account`, api/sessions.py).

Every authenticated request reads the account (as it did before sessions existed) and now also its
session row, in one transaction; a live-event stream repeats it before each event and every 5 s.
Timed here, median of --runs rounds of --calls calls each, on the clinic database as the API opens it
(SQLite in a temporary directory; PostgreSQL on 127.0.0.1:5432 when it answers):

- account only: the user row and its roles (the check before sessions), for comparison;
- account + session: what every request runs now. Target: the session's share < 1 ms a request.

Usage: .venv/bin/python bench/session_check.py [--calls 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from api.deps import _current_account
from api.sessions import SessionPolicy, open_session
from storage.clinic.database import create_clinic_engine, session_factory, upgrade_to_head
from storage.clinic.models import GuidelineProfile, User, UserRole
from vitalgate.administration import add_clinic, add_user

TARGET_MS = 1.0


def _seed(sessions: sessionmaker[Session]) -> object:
    with sessions() as db:
        add_clinic(db, "c1", "Bench Clinic", profile=GuidelineProfile.EU)
        db.flush()
        add_user(db, clinic_id="c1", user_id="dr-1", email="dr@bench.example", display_name="dr",
                 roles=[UserRole.FAMILY_DOCTOR], password="bench password 1234")  # fmt: skip
        db.flush()
        user = db.get(User, "dr-1")
        assert user is not None
        issued = open_session(db, user, "s" * 32, SessionPolicy(), datetime.now(UTC))
        db.commit()
    return issued.principal


def _account_only(sessions: sessionmaker[Session]) -> None:
    with sessions() as db:
        user = db.get(User, "dr-1")
        assert user is not None and user.active and user.role_set


def _median_ms(call: Callable[[], object], calls: int, runs: int) -> float:
    rounds = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        rounds.append((time.perf_counter() - started) * 1000 / calls)
    return statistics.median(rounds)


def _measure(name: str, url: str, calls: int, runs: int) -> None:
    upgrade_to_head(url)
    engine = create_clinic_engine(url)
    sessions = session_factory(engine)
    principal = _seed(sessions)
    _current_account(sessions, principal)  # type: ignore[arg-type]  # warm-up
    before = _median_ms(lambda: _account_only(sessions), calls, runs)
    now = _median_ms(lambda: _current_account(sessions, principal), calls, runs)  # type: ignore[arg-type]
    share = now - before
    verdict = "ok" if share < TARGET_MS else "OVER"
    print(f"{name:<11} account only {before:6.3f} ms  account + session {now:6.3f} ms  "
          f"session's share {share:6.3f} ms  (target < {TARGET_MS} ms) {verdict}")  # fmt: skip
    engine.dispose()


def _postgres(calls: int, runs: int) -> None:
    admin_url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    name = f"vitalgate_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"postgresql  skipped: {type(exc).__name__}")
        return
    try:
        _measure("postgresql", admin_url.rsplit("/", 1)[0] + f"/{name}", calls, runs)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vitalgate-bench-sessions-") as tmp:
        _measure("sqlite", f"sqlite:///{tmp}/clinic.sqlite3", args.calls, args.runs)
    _postgres(args.calls, args.runs)


if __name__ == "__main__":
    main()
