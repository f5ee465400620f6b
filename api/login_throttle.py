"""Login throttling against password guessing and credential stuffing (OWASP API2 broken
authentication, API4 unrestricted resource consumption; reliability.md scenario 13: "1,000 wrong logins
in 60 s" must meet 429 or a lockout).

Two counters of failed logins, each over a fixed observation window:

- per account, keyed by a keyed hash (BLAKE2b with a random per-process key) of the normalised e-mail
  address, so neither the address nor an unkeyed, dictionary-reversible hash of it is ever held in
  memory, logs or dumps. OWASP's Authentication Cheat Sheet ("Account Lockout") ties the counter to the
  account rather than the source address, so that guessing from many addresses is still stopped;
- per client address (also held only as a keyed hash), which stops one client spraying many accounts with a few passwords each.

Once a counter reaches its threshold, every login for that account (or from that address) gets 429
with Retry-After until its window ends, and the password is not even checked: a right password during
a lockout is refused like a wrong one, so a lockout tells a guesser nothing. (The account lock of
api/routes/auth.py, after 100 consecutive failures, answers 403 and so does tell that the account
exists; docs/clinic-database.md weighs that.) An attempt is counted
when it starts (before the password is checked), so concurrent attempts cannot slip past a threshold;
a success then takes its count back and clears the account's counter (the limits are on
consecutive failures, NIST SP 800-63B §5.2.2). A success does not clear the address counter: one valid account must
not reset a sprayer's allowance.

Memory is bounded: an entry expires with its window, and at most MAX_TRACKED_KEYS entries per kind are
held; past that the oldest are dropped (an attacker able to flush them needs MAX_TRACKED_KEYS /
CLIENT_ADDRESS_LOCKOUT_THRESHOLD addresses).

Per process: each API process (replica, worker) counts on its own, so N replicas allow N times the
thresholds. That still keeps far below NIST's ceiling; a shared store (e.g. the reverse proxy's or an
API gateway's rate limiting) is the way to exact limits across replicas (docs/clinic-database.md).
Behind a reverse proxy the client address is the proxy's unless the proxy is listed in
`api.trusted_proxies` (api/app.py): only then is its X-Forwarded-For believed, and nobody else's, so
a client cannot pick the address it is counted under; without it, one clinic's users share one
address counter.
The counters are not persistent: a restart clears them. NIST's hard cap of 100 consecutive failures
on one account is the persistent count in the clinic database (`users.failed_logins`,
api/routes/auth.py).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# NIST SP 800-63B (2017) §5.2.2: "the verifier SHALL limit consecutive failed authentication attempts
# on a single account to no more than 100". OWASP ASVS 4.0 V2.2.1: "no more than 100 failed attempts per
# hour is possible on a single account". 10 per 15 minutes allows at most 40 an hour. OWASP
# Authentication Cheat Sheet, "Account Lockout": lockout threshold, observation window, lockout
# duration (here: until the observation window that reached the threshold ends).
ACCOUNT_LOCKOUT_THRESHOLD: Final = 10
CLIENT_ADDRESS_LOCKOUT_THRESHOLD: Final = 100  # a shared clinic NAT has many users; still << 1,000/min
OBSERVATION_WINDOW_S: Final = 15 * 60
MAX_TRACKED_KEYS: Final = 100_000  # per kind; ~100 bytes each, so a few tens of MB at worst


@dataclass(frozen=True, slots=True)
class LoginRefused:
    """Too many failed logins: wait `retry_after_s` seconds (whole, for Retry-After)."""

    retry_after_s: int
    scope: str  # "account" or "client_address": which counter refused
    # The first refusal of that counter's window: the one to audit and log (api/routes/auth.py),
    # so that refused attempts, which cost nothing to send, cannot flood the audit log.
    first_in_window: bool = True


@dataclass(slots=True)
class _Window:
    started_at: float
    failures: int
    refusals: int = 0


class _FailureCounter:
    """Failures per key over a fixed window, bounded in keys. Not thread-safe (LoginThrottle locks)."""

    def __init__(self, threshold: int, window_s: float, max_keys: int) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.max_keys = max_keys
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # oldest window first

    def _current(self, key: str, now: float) -> _Window | None:
        window = self._windows.get(key)
        if window is not None and now - window.started_at >= self.window_s:
            del self._windows[key]
            return None
        return window

    def refused_for(self, key: str, now: float) -> float | None:
        """Seconds until `key` may try again, or None when it may try now."""
        window = self._current(key, now)
        if window is None or window.failures < self.threshold:
            return None
        return window.started_at + self.window_s - now

    def count_refusal(self, key: str, now: float) -> bool:
        """Count a refusal of `key` (refused_for said so); True for the window's first."""
        window = self._current(key, now)
        if window is None:
            return True
        window.refusals += 1
        return window.refusals == 1

    def count(self, key: str, now: float) -> None:
        window = self._current(key, now)
        if window is None:
            self._make_room(now)
            self._windows[key] = _Window(started_at=now, failures=1)
        else:
            window.failures += 1

    def uncount(self, key: str, now: float) -> None:
        window = self._current(key, now)
        if window is not None and window.failures > 0:
            window.failures -= 1

    def clear(self, key: str) -> None:
        self._windows.pop(key, None)

    def _make_room(self, now: float) -> None:
        # Windows are kept in start order, so expired ones are at the front.
        while self._windows:
            _key, oldest = next(iter(self._windows.items()))
            if now - oldest.started_at < self.window_s and len(self._windows) < self.max_keys:
                break
            self._windows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._windows)


class LoginThrottle:
    """In-memory, per-process login throttle (see the module doc). Safe to share across threads."""

    def __init__(
        self,
        *,
        account_threshold: int = ACCOUNT_LOCKOUT_THRESHOLD,
        client_address_threshold: int = CLIENT_ADDRESS_LOCKOUT_THRESHOLD,
        window_s: float = OBSERVATION_WINDOW_S,
        max_keys: int = MAX_TRACKED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = _FailureCounter(account_threshold, window_s, max_keys)
        self._addresses = _FailureCounter(client_address_threshold, window_s, max_keys)
        self._clock = clock
        self._key = secrets.token_bytes(32)  # never leaves the process; hashes are useless elsewhere
        self._lock = threading.Lock()

    def account_key(self, email: str) -> str:
        """The keyed hash that stands for an e-mail address here (normalised: trimmed, lower case)."""
        normalised = email.strip().lower().encode("utf-8")
        return hashlib.blake2b(normalised, key=self._key, digest_size=16).hexdigest()

    def _address_key(self, client_address: str) -> str:
        # An IP address is personal data too (GDPR recital 30): held only as a keyed hash.
        return hashlib.blake2b(client_address.encode("utf-8"), key=self._key, digest_size=16).hexdigest()

    def begin_attempt(self, account_key: str, client_address: str) -> LoginRefused | None:
        """A refusal when either counter is at its threshold (nothing counted then); otherwise the
        attempt is counted as a failure until `succeeded` takes it back."""
        client_address = self._address_key(client_address)
        with self._lock:
            now = self._clock()
            waits = [
                (wait, scope)
                for wait, scope in (
                    (self._accounts.refused_for(account_key, now), "account"),
                    (self._addresses.refused_for(client_address, now), "client_address"),
                )
                if wait is not None
            ]
            if waits:
                wait, scope = max(waits)
                counter, key = (
                    (self._accounts, account_key) if scope == "account" else (self._addresses, client_address)
                )
                first = counter.count_refusal(key, now)
                return LoginRefused(retry_after_s=max(1, math.ceil(wait)), scope=scope, first_in_window=first)
            self._accounts.count(account_key, now)
            self._addresses.count(client_address, now)
            return None

    def succeeded(self, account_key: str, client_address: str) -> None:
        """The password was right: the account starts afresh and the address gets its attempt back."""
        client_address = self._address_key(client_address)
        with self._lock:
            self._accounts.clear(account_key)
            self._addresses.uncount(client_address, self._clock())

    def abandoned(self, account_key: str, client_address: str) -> None:
        """The attempt reached no verdict (the clinic database failed): both counters get it back, so
        retries during an outage cannot lock a doctor, or a clinic behind one address, out."""
        client_address = self._address_key(client_address)
        with self._lock:
            now = self._clock()
            self._accounts.uncount(account_key, now)
            self._addresses.uncount(client_address, now)

    def tracked_keys(self) -> tuple[int, int]:
        """(accounts, client addresses) currently held: for tests and metrics."""
        with self._lock:
            return len(self._accounts), len(self._addresses)
