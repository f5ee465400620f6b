"""Channels against real servers: a local HTTP server for webhooks, aiosmtpd for e-mail, a private
Mosquitto for the clinic alert topic."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import stamina
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion

from alerts.channels.base import DeliveryError, Notification, Recipient, RetryPolicy
from alerts.channels.email import EmailChannel, SmtpConfig
from alerts.channels.mqtt import MqttAlertChannel, MqttConfig
from alerts.channels.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    MemoryDeadLetters,
    WebhookChannel,
    verify,
)
from vitalgate.mosquitto import MosquittoBroker, free_port
from vitals.payload import AlertEvent, AlertSeverity, AlertState

SECRET = b"test-webhook-secret"


def _note(event_id: str = "ev-1") -> Notification:
    event = AlertEvent(
        clinic_id="clinic-a",
        alert_id="al_1",
        patient_id="pt-1",
        rule_id="BP-CRIT-2",
        severity=AlertSeverity.URGENT,
        state=AlertState.OPEN,
        event="opened",
        at=datetime(2026, 3, 2, 8, tzinfo=UTC),
        actor="system",
    )
    return Notification(
        event_id,
        event,
        "Crisis confirmed by repeat within 15 min",
        "https://clinic.test/alerts/al_1",
        (Recipient("dr-li", "family_doctor", "dr-li@clinic.test"),),
    )


class _Receiver:
    """A webhook receiver answering from a script of status codes (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.got = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.end_headers()
                receiver.got.set()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver([500, 503])
    yield r
    r.close()


FAST = RetryPolicy(attempts=3, first_delay_s=0.01, factor=2.0, max_delay_s=0.05, timeout_s=5.0)


async def test_webhook_is_signed_and_retried_until_accepted(receiver: _Receiver) -> None:
    dead = MemoryDeadLetters()
    channel = WebhookChannel([receiver.url], SECRET, dead, policy=FAST)
    await channel.deliver(_note())
    assert len(receiver.requests) == 3 and dead.letters == []
    for headers, body in receiver.requests:
        assert verify(SECRET, body, headers[SIGNATURE_HEADER])
        assert headers[EVENT_ID_HEADER] == "ev-1"
        assert not verify(b"wrong-secret", body, headers[SIGNATURE_HEADER])
        assert not verify(SECRET, body + b" ", headers[SIGNATURE_HEADER])  # tampered body
    data = json.loads(receiver.requests[-1][1])
    assert data["patient_id"] == "pt-1" and data["rule_id"] == "BP-CRIT-2"
    assert data["link"] == "https://clinic.test/alerts/al_1"


async def test_webhook_dead_lettered_after_the_last_try() -> None:
    always_failing = _Receiver([500] * 10)
    try:
        dead = MemoryDeadLetters()
        channel = WebhookChannel([always_failing.url], SECRET, dead, policy=FAST)
        with pytest.raises(DeliveryError):
            await channel.deliver(_note("ev-2"))
        assert len(always_failing.requests) == 3
        [letter] = dead.letters
        assert letter.event_id == "ev-2" and letter.attempts == 3 and letter.last_error == "HTTP 500"
    finally:
        always_failing.close()


async def test_webhook_retries_wait_the_policys_backoff() -> None:
    """A receiver that keeps failing is tried again after the policy's waits: the first delay, times the factor, capped."""
    always_failing = _Receiver([500] * 10)
    waits: list[float] = []
    stamina.instrumentation.set_on_retry_hooks([lambda details: waits.append(details.wait_for)])
    policy = RetryPolicy(attempts=4, first_delay_s=0.01, factor=3.0, max_delay_s=0.05, timeout_s=5.0)
    try:
        with stamina.set_testing(False), pytest.raises(DeliveryError):
            await WebhookChannel([always_failing.url], SECRET, MemoryDeadLetters(), policy=policy).deliver(
                _note("ev-3")
            )
    finally:
        stamina.instrumentation.set_on_retry_hooks(())
        always_failing.close()
    assert len(always_failing.requests) == 4
    assert waits == pytest.approx([0.01, 0.03, 0.05])


async def test_webhook_refused_by_receiver_is_not_retried() -> None:
    refusing = _Receiver([400])
    try:
        dead = MemoryDeadLetters()
        with pytest.raises(DeliveryError):
            await WebhookChannel([refusing.url], SECRET, dead, policy=FAST).deliver(_note())
        assert len(refusing.requests) == 1 and len(dead.letters) == 1
    finally:
        refusing.close()


def test_stale_signature_is_refused() -> None:
    from alerts.channels.webhook import sign

    header = sign(SECRET, b"{}", 1_000)
    assert verify(SECRET, b"{}", header, now=1_100)
    assert not verify(SECRET, b"{}", header, now=1_000 + 301)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.got = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        self.got.set()
        return "250 OK"


async def test_email_goes_through_a_real_smtp_server_without_names() -> None:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await EmailChannel(SmtpConfig("127.0.0.1", port, sender="alerts@clinic.test")).deliver(_note())
        assert await asyncio.to_thread(inbox.got.wait, 10)
    finally:
        controller.stop()
    [envelope] = inbox.messages
    assert envelope.rcpt_tos == ["dr-li@clinic.test"]
    text = envelope.content.decode()
    assert "BP-CRIT-2" in text and "pt-1" in text and "https://clinic.test/alerts/al_1" in text
    assert "Subject: [vitalgate] URGENT BP-CRIT-2 patient pt-1" in text


async def test_email_with_unreachable_server_is_a_delivery_error() -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(DeliveryError, match="ConnectionRefusedError"):
        await EmailChannel(SmtpConfig("127.0.0.1", port, timeout_s=2), FAST).deliver(_note())


class _GreylistingInbox(_Inbox):
    """Answers the first `refusals` DATA commands with `reply`, then accepts (aiosmtpd sends it)."""

    def __init__(self, refusals: int, reply: str) -> None:
        super().__init__()
        self.refusals = refusals
        self.reply = reply
        self.attempts = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.attempts <= self.refusals:
            return self.reply
        return await super().handle_DATA(server, session, envelope)


async def _deliver_to(inbox: _Inbox) -> None:
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await EmailChannel(SmtpConfig("127.0.0.1", port), FAST).deliver(_note())
    finally:
        controller.stop()


async def test_an_urgent_email_refused_for_now_is_sent_again_and_arrives() -> None:
    inbox = _GreylistingInbox(refusals=2, reply="451 4.7.1 Greylisted, try again later")
    await _deliver_to(inbox)  # FAST: 3 attempts, so the third goes through
    assert inbox.attempts == 3
    [envelope] = inbox.messages
    assert "Subject: [vitalgate] URGENT BP-CRIT-2 patient pt-1" in envelope.content.decode()


async def test_an_email_refused_for_good_is_not_retried() -> None:
    inbox = _GreylistingInbox(refusals=10, reply="550 5.7.1 Relaying denied")
    with pytest.raises(DeliveryError, match="SMTPDataError 550") as raised:
        await _deliver_to(inbox)
    assert inbox.attempts == 1 and inbox.messages == []
    assert "dr-li" not in str(raised.value)  # no address in the error (it reaches logs)


async def test_an_email_still_refused_after_every_attempt_is_a_delivery_error() -> None:
    inbox = _GreylistingInbox(refusals=10, reply="421 4.3.2 Service shutting down")
    with pytest.raises(DeliveryError, match="421"):
        await _deliver_to(inbox)
    assert inbox.attempts == FAST.attempts and inbox.messages == []


@pytest.mark.mosquitto
async def _published_alert(broker: MosquittoBroker, *, tls: bool) -> mqtt.MQTTMessage:
    """Deliver one alert through MqttAlertChannel and return what a clinic subscriber received."""
    user, password = broker.credentials("clinic")
    got: list[mqtt.MQTTMessage] = []
    received = threading.Event()
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-alert-listener")
    sub.username_pw_set(user, password)
    sub.on_connect = lambda c, u, f, r, p: c.subscribe("vitalgate/v1/clinic/clinic-a/alerts", qos=1)
    sub.on_subscribe = lambda c, u, m, r, p: subscribed.set()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append(msg)
        received.set()

    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    port = broker.tls_port if tls and broker.tls_port else broker.port
    ca = broker.tls_files.ca_file if tls and broker.tls_files else None
    channel = MqttAlertChannel(
        MqttConfig(broker.host, port, user, password, client_id="test-alert-publisher", tls_ca_file=ca)
    )
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        await channel.start()
        await channel.deliver(_note())
        assert await asyncio.to_thread(received.wait, 10)
    finally:
        await channel.stop()
        sub.disconnect()
        sub.loop_stop()
    [msg] = got
    return msg


async def test_alert_event_published_on_the_clinic_topic_qos1(mosquitto_broker: MosquittoBroker) -> None:
    msg = await _published_alert(mosquitto_broker, tls=False)
    assert msg.qos == 1
    data = json.loads(msg.payload)
    assert data["schema_version"] == 1 and data["rule_id"] == "BP-CRIT-2" and data["event_id"] == "ev-1"
    AlertEvent.model_validate({k: v for k, v in data.items() if k in AlertEvent.model_fields})


async def test_alert_events_reach_a_tls_only_clinic_broker(tmp_path: Path) -> None:
    with MosquittoBroker(tmp_path / "tls-broker", tls=True) as broker:
        msg = await _published_alert(broker, tls=True)
    assert json.loads(msg.payload)["rule_id"] == "BP-CRIT-2"


def test_webhook_signature_with_non_ascii_characters_is_refused_not_a_crash() -> None:
    from alerts.channels.webhook import sign, verify

    good = sign(b"secret", b"{}", 1_700_000_000)
    assert verify(b"secret", b"{}", good, now=1_700_000_000)
    forged = good.split("v1=")[0] + "v1=" + "é" * 64
    assert verify(b"secret", b"{}", forged, now=1_700_000_000) is False
