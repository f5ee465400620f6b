"""Ingest configuration: plain values; the composition root maps `Settings` onto it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vitals.mqtt_link import LinkConfig, TlsParameters
from vitals.topics import ALL_READINGS_FILTER, shared_subscription

DEFAULT_SHARE_GROUP = "ingest"


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """How the ingest consumer connects and how much it holds.

    - `client_id` must be stable per replica: the broker keeps the persistent session under it
      (reliability.md §0 item 3: paho's default clean_start discards the session on restart).
    - `session_expiry_s` > 0 keeps the session while the process is down (MQTT v5 property 0x11;
      absent or 0 ends it with the connection, reliability.md §1.1).
    - `receive_maximum` is the MQTT v5 Receive Maximum sent in CONNECT: the broker sends at most that
      many unacknowledged QoS 1 messages, so it bounds what ingest holds in memory while the store
      is down (reliability.md §(a) 6: "memory stays bounded by receive-maximum / in-flight").
      Mosquitto 2.0.11 (Debian 12) keeps to it while nothing is acked, but not while acks flow:
      draining a session's backlog it sends many times that many, so `max_held_bytes` is the bound
      ingest keeps itself.
    - `shared_group`: subscribe through `$share/<group>/...` so replicas split the load.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    client_id: str = "vitalgate-ingest-1"
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    session_expiry_s: int = 7 * 24 * 3600
    shared_group: str | None = None
    receive_maximum: int = 100
    # Payload bytes ingest holds received and not yet acked, whatever the broker sends: past it,
    # later messages are left unacked until ingest has acked what it holds and reconnected, and the
    # broker then sends them again (ingest.flow; Mosquitto 2.0.11 sends past receive_maximum).
    # Set well above what a backlog drain holds (bench/ingest_throughput.py prints the peak), so it
    # bounds memory without engaging in normal operation.
    max_held_bytes: int = 64 * 1024 * 1024
    # Messages (and payload bytes) taken into one store transaction; bigger cycles amortise the
    # commit and the per-request cost of an InfluxDB write, smaller ones bound an InfluxDB request
    # (5,000-10,000 points, reliability.md §3). Large messages are bounded by max_cycle_bytes (~70
    # messages of 100 readings); the message count bounds small ones, which real cuffs and meters
    # mostly send (1-2 readings a sync). A cycle holds no more than the broker has sent unacked:
    # see receive_maximum. bench/ingest_throughput.py `--cycle N` measures other values.
    max_messages_per_cycle: int = 512
    max_cycle_bytes: int = 4_000_000
    # Store/database unavailable: retry with exponential backoff between these bounds.
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0
    # How long a binding lookup result is reused before the clinic database is asked again.
    binding_cache_ttl_s: float = 5.0
    # Committed cycles whose MQTT acks wait for the broker's PUBACK of their application ack while
    # the worker goes on (ingest.ack_window); the worker blocks when this many wait. Draining a
    # backlog, that PUBACK queues behind every PUBLISH the broker sent before it, so the window must
    # be deep enough for the worker not to wait on it (`--awaiting N` in bench/ingest_throughput.py).
    max_cycles_awaiting_ack: int = 64
    # How long a cycle may wait for more messages when the queue is shallow (0: take what is there).
    cycle_fill_s: float = 0.0
    # Bounded waits: the application ack's PUBACK, and the whole shutdown.
    ack_publish_timeout_s: float = 5.0
    shutdown_timeout_s: float = 30.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30

    def __post_init__(self) -> None:
        if self.session_expiry_s <= 0:
            raise ValueError("session_expiry_s must be > 0, or the broker forgets unacked readings")
        if not 1 <= self.receive_maximum <= 65_535:
            raise ValueError("receive_maximum must be 1..65535 (MQTT v5)")
        if self.max_held_bytes < 1:
            raise ValueError("max_held_bytes must be positive")
        if self.max_messages_per_cycle < 1 or self.max_cycle_bytes < 1:
            raise ValueError("cycle bounds must be positive")
        if self.max_cycles_awaiting_ack < 1:
            raise ValueError("max_cycles_awaiting_ack must be >= 1")
        if self.cycle_fill_s < 0:
            raise ValueError("cycle_fill_s must be >= 0")

    @property
    def subscription(self) -> str:
        if self.shared_group:
            return shared_subscription(ALL_READINGS_FILTER, self.shared_group)
        return ALL_READINGS_FILTER

    @property
    def use_tls(self) -> bool:
        return self.tls_ca_file is not None

    def link_config(self) -> LinkConfig:
        """The broker connection: the persistent session under `client_id`, Receive Maximum, and
        manual acks (paho sends no PUBACK until ingest acks after the commit)."""
        tls = (
            TlsParameters(ca_file=self.tls_ca_file, cert_file=self.tls_cert_file, key_file=self.tls_key_file)
            if self.use_tls
            else None
        )
        return LinkConfig(
            host=self.host,
            port=self.port,
            client_id=self.client_id,
            username=self.username,
            password=self.password,
            tls=tls,
            keepalive_s=self.keepalive_s,
            clean_start=False,
            session_expiry_s=self.session_expiry_s,
            receive_maximum=self.receive_maximum,
            manual_ack=True,
            connect_timeout_s=self.connect_timeout_s,
            reconnect_min_s=self.reconnect_min_s,
            reconnect_max_s=self.reconnect_max_s,
        )
