"""Webhooks: HMAC-SHA256 signed JSON, retried with exponential backoff, dead-lettered after the last try.

Signature: header `X-Vitalgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
The timestamp inside the MAC lets receivers refuse replays older than a few minutes; `X-Vitalgate-
Event-Id` lets them deduplicate retries. Webhook URLs come from configuration only, never from API
callers (OWASP API7 SSRF, reliability.md §5.2). Bodies carry opaque ids and a link, never names.
A webhook still undelivered after the last try is kept, with its exact signed body, by a
`DeadLetterSink`: the clinic database's `webhook_dead_letters` table in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import httpx

from alerts.channels.base import DeliveryError, Notification, RetryPolicy

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Vitalgate-Signature"
EVENT_ID_HEADER = "X-Vitalgate-Event-Id"
SIGNATURE_TOLERANCE_S = 300


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: bytes,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver does: constant-time compare, and refuse stale timestamps."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    try:
        return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))
    except UnicodeEncodeError:  # a forged header with non-ASCII characters: refused, never a crash
        return False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    url: str
    event_id: str
    body: bytes
    attempts: int
    last_error: str
    at: datetime


class DeadLetterSink(Protocol):
    """Where undelivered webhooks are kept: the clinic database in production
    (alerts.repository.SqlWebhookDeadLetters). `add` blocks; the channel calls it off the event loop."""

    def add(self, letter: DeadLetter) -> None: ...


@dataclass
class MemoryDeadLetters:
    letters: list[DeadLetter] = field(default_factory=list)

    def add(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


@dataclass(frozen=True, slots=True)
class Redelivery:
    """What one delivery (or an operator's re-send of a kept webhook) came to: the attempts it took,
    and the last error when it failed."""

    delivered: bool
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class _Undelivered:
    """One receiver's failure; `not_kept_because` names the exception if the sink refused it too."""

    error: str
    not_kept_because: str | None = None

    @property
    def kept(self) -> bool:
        return self.not_kept_because is None


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        urls: Sequence[str],
        secret: bytes,
        dead_letters: DeadLetterSink,
        *,
        policy: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required: unsigned webhooks are refused")
        self.urls = list(urls)
        self.secret = secret
        self.dead_letters = dead_letters
        self.policy = policy or RetryPolicy()
        self._client = client
        self._clock = clock

    async def deliver(self, notification: Notification) -> None:
        body = json.dumps(notification.body(), sort_keys=True, separators=(",", ":")).encode()
        failures = await asyncio.gather(*(self._post(url, notification.event_id, body) for url in self.urls))
        failed = [f for f in failures if f is not None]
        if failed:
            lost = [f for f in failed if not f.kept]
            kept = "" if not lost else f"; {len(lost)} not kept ({lost[0].not_kept_because})"
            raise DeliveryError(
                f"{len(failed)} webhook(s) dead-lettered for event {notification.event_id}{kept}"
            )

    async def _post(self, url: str, event_id: str, body: bytes) -> _Undelivered | None:
        sent = await self._send(url, event_id, body)
        if sent.delivered:
            return None
        error = sent.error
        letter = DeadLetter(url, event_id, body, sent.attempts, error, datetime.now(UTC))
        try:
            # a clinic-database insert (SqlWebhookDeadLetters): blocking I/O, off the event loop
            await asyncio.to_thread(self.dead_letters.add, letter)
        except Exception as exc:  # the clinic database is down too: say so, as a delivery failure
            logger.exception("undelivered webhook could not be kept", extra={"event_id": event_id})
            return _Undelivered(error, type(exc).__name__)
        logger.error("webhook dead-lettered", extra={"event_id": event_id, "error": error})
        return _Undelivered(error)

    async def redeliver(self, letter: DeadLetter) -> Redelivery:
        """Send a kept webhook again (an operator's re-send): its exact body, with a fresh signature
        and its own event id, retried as a new notification is. Nothing is dead-lettered again: the
        caller keeps or deletes the letter it already has."""
        return await self._send(letter.url, letter.event_id, letter.body)

    async def _send(self, url: str, event_id: str, body: bytes) -> Redelivery:
        """POST `body` to `url` until a 2xx or the policy's last try."""
        client = self._client or httpx.AsyncClient(timeout=self.policy.timeout_s)
        tries = 0
        try:
            async for attempt in self.policy.retry_context(on=_AttemptFailed):
                with attempt:
                    tries = attempt.num
                    try:
                        await self._post_once(client, url, event_id, body)
                    except _AttemptFailed as failure:
                        logger.warning(
                            "webhook attempt failed",
                            extra={"event_id": event_id, "attempt": tries, "error": str(failure)},
                        )
                        raise
                    return Redelivery(delivered=True, attempts=tries, error="")
        except (_AttemptFailed, _Refused) as failure:
            return Redelivery(delivered=False, attempts=tries, error=str(failure))
        finally:
            if self._client is None:
                await client.aclose()
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _post_once(self, client: httpx.AsyncClient, url: str, event_id: str, body: bytes) -> None:
        """One signed POST; raises `_Refused` (not retried) or `_AttemptFailed` (retried)."""
        ts = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body, ts),
            EVENT_ID_HEADER: event_id,
        }
        try:
            response = await client.post(url, content=body, headers=headers, timeout=self.policy.timeout_s)
        except httpx.HTTPError as exc:
            raise _AttemptFailed(type(exc).__name__) from exc
        if 200 <= response.status_code < 300:
            return
        error = f"HTTP {response.status_code}"
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise _Refused(error)  # the receiver refuses this event: retrying cannot help
        raise _AttemptFailed(error)


class _AttemptFailed(Exception):
    """One POST failed in a way a later one may not (no answer, 5xx, 408, 429): retried."""


class _Refused(Exception):
    """The receiver refused the event (any other 4xx): not retried."""
