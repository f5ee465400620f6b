"""An account locks after 100 consecutive failed logins, counted in the clinic database, so the lock
holds where the in-memory throttle cannot: across API processes and restarts (NIST SP 800-63B
§5.2.2). A clinic administrator unlocks it with `vitalgate admin unlock-account`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine

from api.login_throttle import LoginThrottle
from api.routes.auth import LOCK_AFTER_FAILED_LOGINS, LOCKED_DETAIL, _authenticate
from api.sessions import SessionPolicy
from storage.clinic.database import session_factory
from storage.clinic.models import AuditLogEntry, GuidelineProfile, User, UserRole
from tests.fixtures.postgres import clinic_engine, clinic_url, postgres_database_url
from vitalgate.administration import add_clinic, add_user, cli_actor_id
from vitalgate.cli import main

from .conftest import PASSWORD, ClinicApi

__all__ = ["clinic_engine", "clinic_url", "postgres_database_url"]  # fixtures

TOKEN_URL = "/api/v1/auth/token"


def _login(clinic_api: ClinicApi, email: str, password: str) -> int:
    return clinic_api.client.post(TOKEN_URL, data={"username": email, "password": password}).status_code


def _failed_logins(clinic_api: ClinicApi, user_id: str) -> int:
    with clinic_api.services.clinic_sessions() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.failed_logins


def _set_failed_logins(clinic_api: ClinicApi, user_id: str, count: int) -> None:
    with clinic_api.services.clinic_sessions() as session:
        user = session.get(User, user_id)
        assert user is not None
        user.failed_logins = count
        session.commit()


def _login_entries(clinic_api: ClinicApi, object_id: str) -> list[dict[str, str]]:
    with clinic_api.services.clinic_sessions() as session:
        return [
            dict(e.details or {})
            for e in session.query(AuditLogEntry)
            .filter_by(action="login", object_id=object_id, outcome="denied")
            .order_by(AuditLogEntry.audit_id)
        ]


@pytest.fixture
def many_api_processes(clinic_api: ClinicApi) -> ClinicApi:
    """What the per-process throttle cannot see: attempts spread over API processes and restarts,
    stood in for by a throttle that never refuses."""
    clinic_api.services.login_throttle = LoginThrottle(
        account_threshold=10**6, client_address_threshold=10**6
    )
    return clinic_api


def test_failed_logins_are_counted_in_the_database_and_a_success_clears_them(
    many_api_processes: ClinicApi,
) -> None:
    api = many_api_processes
    assert [_login(api, "a@c1.example", f"guess {i}") for i in range(3)] == [401] * 3
    assert _failed_logins(api, "dr-a") == 3
    assert _failed_logins(api, "dr-b") == 0  # another account is not touched
    assert _login(api, "nobody@c1.example", "guess") == 401  # no account, nothing to count
    assert _login(api, "a@c1.example", PASSWORD) == 200
    assert _failed_logins(api, "dr-a") == 0


def test_the_hundredth_consecutive_failure_locks_until_an_administrator_unlocks(
    many_api_processes: ClinicApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = many_api_processes
    # 97 failures earlier, in other 15-minute windows or other API processes.
    _set_failed_logins(api, "dr-a", LOCK_AFTER_FAILED_LOGINS - 3)
    assert [_login(api, "a@c1.example", f"guess {i}") for i in range(3)] == [401] * 3
    assert _failed_logins(api, "dr-a") == LOCK_AFTER_FAILED_LOGINS

    # Locked: the right password is refused too, with a reason a doctor can act on.
    response = api.client.post(TOKEN_URL, data={"username": "a@c1.example", "password": PASSWORD})
    assert response.status_code == 403
    assert response.json() == {"detail": LOCKED_DETAIL, "code": "auth.locked", "field": None}
    assert _login(api, "b@c1.example", PASSWORD) == 200  # only that account
    assert _login_entries(api, "dr-a")[-4:] == [
        {"reason": "wrong_password"},
        {"reason": "wrong_password"},
        {"reason": "wrong_password", "locked": "true"},
        {"reason": "account_locked"},
    ]
    assert _failed_logins(api, "dr-a") == LOCK_AFTER_FAILED_LOGINS  # a locked login counts no further

    # The operator's shell: the same data directory as the server.
    monkeypatch.setenv("VITALGATE_DATA_DIR", str(tmp_path))
    capsys.readouterr()
    assert main(["admin", "unlock-account", "--user-id", "dr-a"]) == 0
    assert "100 consecutive failed logins cleared" in capsys.readouterr().out
    assert main(["admin", "unlock-account", "--user-id", "dr-nobody"]) == 2
    assert "no user dr-nobody" in capsys.readouterr().err

    assert _login(api, "a@c1.example", PASSWORD) == 200
    with api.services.clinic_sessions() as session:
        (unlock,) = session.query(AuditLogEntry).filter_by(action="unlock_account").all()
    assert (unlock.actor, unlock.object_id, unlock.clinic_id, unlock.details) == (
        cli_actor_id(),  # "cli:<os user>": the operator named no account (--actor)
        "dr-a",
        "c1",
        {"failed_logins": LOCK_AFTER_FAILED_LOGINS},
    )


def test_refusals_that_check_no_password_of_the_account_count_nothing(clinic_api: ClinicApi) -> None:
    """Throttled attempts (429), an unknown e-mail address and a deactivated account leave the
    consecutive-failure count where it was."""
    from api.login_throttle import ACCOUNT_LOCKOUT_THRESHOLD

    statuses = [
        _login(clinic_api, "a@c1.example", f"guess {i}") for i in range(ACCOUNT_LOCKOUT_THRESHOLD + 3)
    ]
    assert statuses == [401] * ACCOUNT_LOCKOUT_THRESHOLD + [429] * 3
    assert _failed_logins(clinic_api, "dr-a") == ACCOUNT_LOCKOUT_THRESHOLD

    with clinic_api.services.clinic_sessions() as session:
        user = session.get(User, "dr-b")
        assert user is not None
        user.active = False
        session.commit()
    assert _login(clinic_api, "b@c1.example", PASSWORD) == 401
    assert _failed_logins(clinic_api, "dr-b") == 0
    assert _login_entries(clinic_api, "dr-b") == [{"reason": "account_inactive"}]


def test_concurrent_attempts_never_check_more_than_the_limit_on_sqlite_and_postgresql(
    clinic_engine: Engine,
) -> None:
    """Attempts at the same moment (threads, API processes) each take their own count before the
    password is checked: ten wrong guesses at 95 check five passwords and refuse five as locked."""
    sessions = session_factory(clinic_engine)
    with sessions() as session:
        add_clinic(session, "c1", "Clinic One", profile=GuidelineProfile.CN)
        session.flush()
        add_user(
            session,
            clinic_id="c1",
            user_id="dr-a",
            email="a@c1.example",
            display_name="dr-a",
            roles=[UserRole.FAMILY_DOCTOR],
            password=PASSWORD,
        )
        session.flush()
        user = session.get(User, "dr-a")
        assert user is not None
        user.failed_logins = LOCK_AFTER_FAILED_LOGINS - 5
        session.commit()
    attempts = 10
    with ThreadPoolExecutor(max_workers=attempts) as pool:
        outcomes = list(
            pool.map(
                lambda i: _authenticate(sessions, "a@c1.example", f"guess {i}", "s" * 32, SessionPolicy()),
                range(attempts),
            )
        )
    reasons = sorted(getattr(o, "reason", "") for o in outcomes)
    assert reasons == ["account_locked"] * 5 + ["wrong_password"] * 5
    with sessions() as session:
        user = session.get(User, "dr-a")
        assert user is not None and user.failed_logins == LOCK_AFTER_FAILED_LOGINS
        denied = session.query(AuditLogEntry).filter_by(action="login", outcome="denied").count()
    assert denied == attempts
    # The right password, once locked, gets no token either.
    assert (
        getattr(_authenticate(sessions, "a@c1.example", PASSWORD, "s" * 32, SessionPolicy()), "reason", None)
        == "account_locked"
    )
