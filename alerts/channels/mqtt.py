"""Alert events on `vitalgate/v1/clinic/{clinic_id}/alerts` (vitals.topics), QoS 1 (DESIGN.md, MQTT).

paho-mqtt 2.x with its network loop in a thread; publish waits for the PUBACK with a timeout
(`wait_for_publish(timeout)`, reliability.md §1.3: never wait without one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from alerts.channels.base import DeliveryError, Notification
from vitals.mqtt_link import LinkConfig, TlsParameters, build_client, connect_async
from vitals.topics import clinic_alerts_topic

logger = logging.getLogger(__name__)
QOS_AT_LEAST_ONCE = 1


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    client_id: str = "vitalgate-alerts"
    keepalive_s: int = 30
    publish_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    # TLS exactly when a CA file is given (reliability.md §2: TLS towards the broker, tlsv1.2 minimum).
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def link_config(self) -> LinkConfig:
        """Paho's defaults apart from these fields; empty credentials send none."""
        tls = (
            None
            if self.tls_ca_file is None
            else TlsParameters(
                ca_file=self.tls_ca_file, cert_file=self.tls_cert_file, key_file=self.tls_key_file
            )
        )
        return LinkConfig(
            host=self.host,
            port=self.port,
            client_id=self.client_id,
            username=self.username or None,
            password=self.password,
            tls=tls,
            keepalive_s=self.keepalive_s,
        )


class MqttAlertChannel:
    name = "mqtt"

    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self._link = config.link_config()
        self._client = build_client(self._link)
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if not getattr(reason, "is_failure", False):
            self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._connected.clear()

    async def start(self) -> None:
        connect_async(self._client, self._link)
        self._client.loop_start()
        ok = await asyncio.to_thread(self._connected.wait, self.config.connect_timeout_s)
        if not ok:
            raise DeliveryError("MQTT broker did not accept the alerts publisher in time")

    async def stop(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    async def deliver(self, notification: Notification) -> None:
        topic = clinic_alerts_topic(notification.event.clinic_id)
        payload = json.dumps(notification.body(), sort_keys=True).encode()
        info = self._client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE)
        try:
            await asyncio.to_thread(info.wait_for_publish, self.config.publish_timeout_s)
        except (ValueError, RuntimeError) as exc:
            raise DeliveryError(f"MQTT publish failed: {exc}") from exc
        if not info.is_published():
            raise DeliveryError("MQTT publish not acknowledged in time")
