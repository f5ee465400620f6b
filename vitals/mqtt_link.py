"""The one place a paho-mqtt client is built: options, TLS, socket settings and session options.

Every MQTT client of vitalgate (the gateway's uplink, ingest's consumer, the alert channel, the
fleet watch, the broker monitor, broker account administration, the admin commands) describes its
connection in a :class:`LinkConfig` and gets its client from :func:`build_client`. What each user
does with the client (callbacks, subscriptions, flow control, its session logic) stays with it.

The shape follows aiomqtt 2.5 (the last paho-based release): every option is keyword-only and
documented in one frozen class, the TLS parameters and the last will are frozen value types of their
own, and failures form one exception tree (:class:`MqttLinkError`).

This module sits on the ground floor (DESIGN.md, Layout) so the edge and the clinic can both use it;
it imports paho and the standard library only, and paho is in both the ``edge`` and the ``clinic``
extras. Nothing here touches the network: :func:`build_client` reads the TLS files, and connecting
is :func:`connect` (blocking) or :func:`connect_async` (paho's network thread connects).

Example::

    config = LinkConfig(
        host="broker.example", port=8883, client_id="vitalgate-ingest-1",
        tls=TlsParameters(ca_file=Path("/etc/vitalgate/ca.pem")),
        clean_start=False, session_expiry_s=7 * 24 * 3600, manual_ack=True,
    )
    client = build_client(config)
    client.on_message = ...
    connect_async(client, config)
    client.loop_start()
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = [
    "FIRST_ONLY",
    "LinkConfig",
    "LinkConfigError",
    "LinkTlsError",
    "MqttLinkError",
    "TlsParameters",
    "Will",
    "build_client",
    "connect",
    "connect_async",
    "connect_properties",
]

FIRST_ONLY: Final = "first_only"
"""``clean_start`` value: a new session on the first connect, the same one resumed on paho's own
reconnects (paho's ``MQTT_CLEAN_START_FIRST_ONLY``, its default)."""

# MQTT v5 limits (OASIS MQTT 5.0, 3.1.2.11.2 Session Expiry Interval: four bytes; 3.1.2.11.3
# Receive Maximum: two bytes, 0 is a protocol error).
_MAX_SESSION_EXPIRY_S: Final = 0xFFFFFFFF
_MAX_RECEIVE_MAXIMUM: Final = 0xFFFF


class MqttLinkError(Exception):
    """Root of the errors this module raises."""


class LinkConfigError(MqttLinkError, ValueError):
    """A :class:`LinkConfig`, :class:`TlsParameters` or :class:`Will` that cannot describe a connection."""


class LinkTlsError(MqttLinkError):
    """The TLS material could not be loaded: a file missing or unreadable, not PEM, or a key that
    does not match its certificate. The message names the file, never its content."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsParameters:
    """How the client verifies the broker and, optionally, proves who it is.

    Attributes:
        ca_file: PEM file of the CA(s) that signed the broker's certificate.
        ca_pem: the same as PEM text (a gateway's provisioning file carries its CA this way). With
            neither ``ca_file`` nor ``ca_pem``, the system's trust store is used.
        cert_file: the client certificate (PEM), for accounts that log in by certificate.
        key_file: its private key; ``None`` when ``cert_file`` holds the key as well.
        verify: verify the broker's certificate chain and host name (the default). ``False`` turns
            both checks off, which lets anyone on the path read and alter the traffic; no vitalgate
            setting maps onto it.

    The context is TLS 1.2 at least (reliability.md §2), built by :func:`ssl.create_default_context`.
    """

    ca_file: Path | None = None
    ca_pem: str | None = field(default=None, repr=False)
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise LinkConfigError("a TLS key file needs its certificate file (cert_file)")

    def context(self) -> ssl.SSLContext:
        """A client context for these parameters.

        Raises:
            LinkTlsError: a file is missing or unreadable, is not PEM, or the key does not match.
        """
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None, cadata=self.ca_pem
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            source = f"CA file {self.ca_file}" if self.ca_file is not None else "CA certificate"
            raise LinkTlsError(f"{source} not usable: {_reason(exc)}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            try:
                context.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file is not None else None
                )
            except OSError as exc:
                raise LinkTlsError(
                    f"client certificate {self.cert_file} (key {self.key_file or self.cert_file}) "
                    f"not usable: {_reason(exc)}"
                ) from exc
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _reason(exc: Exception) -> str:
    """What went wrong, without the bytes of the file (an ssl.SSLError's reason, else strerror)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class Will:
    """The message the broker publishes when the connection ends without a DISCONNECT.

    Attributes:
        topic: where it goes.
        payload: what it says (text is sent as UTF-8).
        qos: 0, 1 or 2.
        retain: whether the broker keeps it as the topic's retained message.
    """

    topic: str
    payload: str | bytes
    qos: int = 1
    retain: bool = False

    def __post_init__(self) -> None:
        if not self.topic:
            raise LinkConfigError("a will needs a topic")
        if self.qos not in (0, 1, 2):
            raise LinkConfigError("will qos must be 0, 1 or 2")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConfig:
    """One MQTT v5 connection, as every vitalgate client describes it. Frozen and keyword-only.

    Attributes:
        host: the broker's host name or address (checked against its certificate under TLS).
        port: the broker's port.
        client_id: the MQTT client id. A persistent session lives under it, so it must be stable
            where ``session_expiry_s`` > 0; a gateway's is fixed by its broker account.
        username: login name, or ``None`` to send none (certificate logins).
        password: its password (never shown by ``repr``).
        tls: TLS parameters, or ``None`` for plain MQTT (a broker on this machine or a development
            broker; the gateway and broker administration refuse plain MQTT unless told).
        keepalive_s: MQTT keep-alive interval, seconds.
        clean_start: ``True`` to start a new session on every connect, ``False`` to resume the
            stored one, or :data:`FIRST_ONLY` (paho's default): new on the first connect, resumed on
            paho's own reconnects.
        session_expiry_s: MQTT v5 Session Expiry Interval sent in CONNECT, seconds; ``None`` sends
            none, so the session ends with the connection.
        receive_maximum: MQTT v5 Receive Maximum sent in CONNECT (how many unacknowledged QoS 1 and
            2 messages the broker may send); ``None`` sends none (the protocol's 65,535).
        will: the last will, or ``None``.
        tcp_nodelay: set TCP_NODELAY on the socket as it opens. paho leaves Nagle's algorithm on,
            which holds a small packet (an ack, a PUBACK, an alert) while an earlier one waits for
            the peer's delayed TCP ACK, tens of milliseconds on Linux.
        manual_ack: paho sends no PUBACK for a received QoS 1 message until ``client.ack(mid, qos)``
            (for consumers that ack only after a commit).
        connect_timeout_s: how long paho waits for the TCP (and TLS) connection.
        reconnect_min_s: paho's first delay before reconnecting, seconds; doubled up to
            ``reconnect_max_s``. Only paho's network loop reconnects; :func:`connect` does not.
        reconnect_max_s: the longest delay between reconnect attempts, seconds.

    The defaults of ``keepalive_s``, ``clean_start``, ``connect_timeout_s`` and the reconnect delays
    are paho's own.

    Raises:
        LinkConfigError: a value out of its range (port, keep-alive, session options, delays).
    """

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsParameters | None = None
    keepalive_s: int = 60
    clean_start: bool | Literal["first_only"] = FIRST_ONLY
    session_expiry_s: int | None = None
    receive_maximum: int | None = None
    will: Will | None = None
    tcp_nodelay: bool = True
    manual_ack: bool = False
    connect_timeout_s: float = 5.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 120

    def __post_init__(self) -> None:
        if not self.host:
            raise LinkConfigError("host must not be empty")
        if not 1 <= self.port <= 0xFFFF:
            raise LinkConfigError("port must be 1..65535")
        if self.keepalive_s < 0:
            raise LinkConfigError("keepalive_s must be >= 0")
        if self.clean_start not in (True, False, FIRST_ONLY):
            raise LinkConfigError(f"clean_start must be True, False or {FIRST_ONLY!r}")
        if self.session_expiry_s is not None and not 0 <= self.session_expiry_s <= _MAX_SESSION_EXPIRY_S:
            raise LinkConfigError("session_expiry_s must be 0..4294967295 (MQTT v5)")
        if self.receive_maximum is not None and not 1 <= self.receive_maximum <= _MAX_RECEIVE_MAXIMUM:
            raise LinkConfigError("receive_maximum must be 1..65535 (MQTT v5)")
        if self.connect_timeout_s <= 0:
            raise LinkConfigError("connect_timeout_s must be > 0")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise LinkConfigError("reconnect delays must satisfy 0 < reconnect_min_s <= reconnect_max_s")


def _set_tcp_nodelay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: small packets leave at once (LinkConfig.tcp_nodelay)."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (a WebSocket wrapper)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def build_client(config: LinkConfig) -> mqtt.Client:
    """A paho client for ``config``: MQTT v5, callback API version 2, login, TLS, will, socket
    options and reconnect timing set; not connected, no callbacks of the caller's set.

    Assigning ``on_socket_open`` afterwards replaces the TCP_NODELAY hook.

    Raises:
        LinkTlsError: the TLS material could not be loaded.
    """
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=config.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=config.manual_ack,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls is not None:
        client.tls_set_context(config.tls.context())
    if config.will is not None:
        client.will_set(
            config.will.topic, config.will.payload, qos=config.will.qos, retain=config.will.retain
        )
    if config.tcp_nodelay:
        client.on_socket_open = _set_tcp_nodelay
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
    client.connect_timeout = config.connect_timeout_s
    return client


def connect_properties(config: LinkConfig) -> Properties | None:
    """The CONNECT packet's MQTT v5 properties (session expiry, receive maximum), or ``None``."""
    if config.session_expiry_s is None and config.receive_maximum is None:
        return None
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if config.session_expiry_s is not None:
        properties.SessionExpiryInterval = config.session_expiry_s
    if config.receive_maximum is not None:
        properties.ReceiveMaximum = config.receive_maximum
    return properties


def _clean_start(config: LinkConfig) -> mqtt.CleanStartOption:
    return mqtt.MQTT_CLEAN_START_FIRST_ONLY if config.clean_start == FIRST_ONLY else bool(config.clean_start)


def connect_async(client: mqtt.Client, config: LinkConfig) -> None:
    """Have paho's network loop (``loop_start``) connect to ``config``'s broker with its session
    options, and reconnect after a loss."""
    client.connect_async(
        config.host,
        config.port,
        keepalive=config.keepalive_s,
        clean_start=_clean_start(config),
        properties=connect_properties(config),
    )


def connect(client: mqtt.Client, config: LinkConfig) -> None:
    """Open the connection now, blocking up to ``connect_timeout_s``; the CONNACK arrives in
    ``on_connect`` once a network loop runs.

    Raises:
        OSError: the broker is unreachable; ssl.SSLError (an OSError) when the TLS handshake fails,
            e.g. a broker certificate that does not verify.
    """
    client.connect(
        config.host,
        config.port,
        keepalive=config.keepalive_s,
        clean_start=_clean_start(config),
        properties=connect_properties(config),
    )
