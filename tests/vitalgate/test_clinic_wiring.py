"""The clinic server keeps undelivered webhooks in its clinic database, not in a file.

Real parts: `build_clinic_server` from Settings (SQLite clinic database and reading store under a
temporary data dir, migrated at start), a local HTTP receiver that refuses the event.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.channels.base import DeliveryError
from alerts.repository import SqlWebhookDeadLetters
from tests.alerts.test_channels import SECRET, _note, _Receiver
from vitalgate.clinic import build_clinic_server
from vitalgate.settings import load_settings


async def test_undelivered_webhooks_go_to_the_clinic_database(tmp_path: Path) -> None:
    refusing = _Receiver([400])  # a 4xx is final: one try, no backoff to wait for
    settings = load_settings(
        None,
        data_dir=tmp_path,
        mqtt={"username": None},
        alerts={"webhook_urls": [refusing.url], "webhook_secret": SECRET.decode(), "mqtt_username": None},
    )
    server = await build_clinic_server(settings, jwt_secret="x" * 32, with_ingest=False)
    try:
        [webhook] = server.engine.router.webhooks
        with pytest.raises(DeliveryError, match="dead-lettered for event ev-wired"):
            await webhook.deliver(_note("ev-wired"))
        [letter] = SqlWebhookDeadLetters(server.api.clinic_sessions).recent()
    finally:
        await server.close()
        refusing.close()
    assert (letter.event_id, letter.url, letter.attempts, letter.last_error) == (
        "ev-wired",
        refusing.url,
        1,
        "HTTP 400",
    )
    assert letter.body == refusing.requests[0][1]
