"""Login throttle: windows, the two counters, bounded memory, no e-mail address held (fake clock), and
reliability.md scenario 13's brute force ("1,000 wrong logins in 60 s") against the real API."""

from __future__ import annotations

from api.login_throttle import (
    ACCOUNT_LOCKOUT_THRESHOLD,
    CLIENT_ADDRESS_LOCKOUT_THRESHOLD,
    OBSERVATION_WINDOW_S,
    LoginRefused,
    LoginThrottle,
)
from storage.clinic.models import AuditLogEntry

from .conftest import ClinicApi


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle: LoginThrottle, email: str, address: str = "192.0.2.1") -> LoginRefused | None:
    return throttle.begin_attempt(throttle.account_key(email), address)


def test_attempts_that_reach_no_verdict_are_given_back() -> None:
    """A login the clinic database could not answer (503) is not a failure: retries during an outage
    must not lock a doctor out, nor a clinic behind one address."""
    throttle = LoginThrottle(clock=FakeClock())
    key = throttle.account_key("a@c1.example")
    for _ in range(CLIENT_ADDRESS_LOCKOUT_THRESHOLD * 2):
        assert throttle.begin_attempt(key, "192.0.2.1") is None
        throttle.abandoned(key, "192.0.2.1")
    assert [_fail(throttle, "a@c1.example") for _ in range(ACCOUNT_LOCKOUT_THRESHOLD)] == [
        None
    ] * ACCOUNT_LOCKOUT_THRESHOLD


def test_the_account_is_refused_past_its_threshold_until_the_window_ends() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    assert [_fail(throttle, "a@c1.example") for _ in range(ACCOUNT_LOCKOUT_THRESHOLD)] == [
        None
    ] * ACCOUNT_LOCKOUT_THRESHOLD
    clock.now += 60
    refused = _fail(throttle, "A@C1.example  ")  # the same account, however typed
    assert refused == LoginRefused(retry_after_s=OBSERVATION_WINDOW_S - 60, scope="account")
    assert _fail(throttle, "b@c1.example") is None  # another account is not affected
    clock.now += OBSERVATION_WINDOW_S - 60
    assert _fail(throttle, "a@c1.example") is None  # a new window


def test_one_address_spraying_many_accounts_is_refused() -> None:
    throttle = LoginThrottle(clock=FakeClock())
    for i in range(CLIENT_ADDRESS_LOCKOUT_THRESHOLD):
        assert _fail(throttle, f"user{i}@c1.example") is None
    refused = _fail(throttle, "fresh@c1.example")
    assert refused is not None and refused.scope == "client_address"
    assert _fail(throttle, "fresh@c1.example", address="198.51.100.7") is None


def test_a_success_clears_the_account_and_gives_the_address_its_attempt_back() -> None:
    throttle = LoginThrottle(account_threshold=3, client_address_threshold=3, clock=FakeClock())
    key = throttle.account_key("a@c1.example")
    for _ in range(3):
        assert throttle.begin_attempt(key, "192.0.2.1") is None
        throttle.succeeded(key, "192.0.2.1")
    assert throttle.begin_attempt(key, "192.0.2.1") is None


def test_memory_is_bounded_and_expired_windows_are_dropped() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_keys=50, client_address_threshold=10**6, clock=clock)
    for i in range(1000):
        _fail(throttle, f"user{i}@c1.example", address=f"10.0.{i // 250}.{i % 250}")
    accounts, addresses = throttle.tracked_keys()
    assert accounts <= 50 and addresses <= 50
    clock.now += OBSERVATION_WINDOW_S
    _fail(throttle, "late@c1.example")
    assert throttle.tracked_keys() == (1, 1)


def test_accounts_are_keyed_by_a_keyed_hash_not_the_address() -> None:
    one, other = LoginThrottle(), LoginThrottle()
    key = one.account_key("a@c1.example")
    assert len(key) == 32 and set(key) <= set("0123456789abcdef")  # 128 bits of BLAKE2b, nothing else
    assert key == one.account_key(" A@c1.EXAMPLE")
    assert key != other.account_key("a@c1.example")  # a random key per process


def test_a_thousand_wrong_logins_within_a_minute_meet_429(clinic_api: ClinicApi) -> None:
    """reliability.md scenario 13: brute force gets 429 (or a lockout); every checked password is
    audited, and the throttled attempts once per account window, not once each."""
    emails = ["a@c1.example", "b@c1.example", "admin@c1.example", "admin@c2.example", "x@c9.example"]
    # The thousand attempts fall within one observation window whatever the machine's speed: the
    # throttle's clock stands still (how fast the API answers is the benches' business).
    clinic_api.services.login_throttle = LoginThrottle(clock=lambda: 0.0)
    statuses = [
        clinic_api.client.post(
            "/api/v1/auth/token", data={"username": emails[i % len(emails)], "password": f"guess {i}"}
        ).status_code
        for i in range(1000)
    ]
    assert set(statuses) == {401, 429}
    # Each account reaches its threshold; then everything is refused without a password check.
    assert statuses.count(401) == len(emails) * ACCOUNT_LOCKOUT_THRESHOLD
    with clinic_api.services.clinic_sessions() as session:
        logins = session.query(AuditLogEntry).filter_by(action="login", outcome="denied").count()
    assert logins == len(emails) * ACCOUNT_LOCKOUT_THRESHOLD + len(emails)
