"""`vitalgate alerts webhooks list|resend|drop`: an operator gets undelivered alert webhooks to their
receiver once it is back.

Real parts: the clinic database migrated by Alembic (SQLite in the data directory), a local HTTP
receiver, the command line as an operator runs it (settings from the environment).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.channels.base import DeliveryError
from alerts.channels.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, DeadLetter, WebhookChannel, verify
from alerts.repository import KeptWebhook, SqlWebhookDeadLetters
from tests.alerts.test_channels import FAST, SECRET, _note, _Receiver
from vitalgate.cli import main
from vitalgate.settings import load_settings
from vitalgate.wiring import open_clinic_database


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver([])
    yield r
    r.close()


def _configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, urls: list[str], secret: bytes | None
) -> None:
    monkeypatch.setenv("VITALGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VITALGATE_ALERTS__WEBHOOK_URLS", json.dumps(urls))
    if secret is not None:
        monkeypatch.setenv("VITALGATE_ALERTS__WEBHOOK_SECRET", secret.decode())


def _sink() -> SqlWebhookDeadLetters:
    return SqlWebhookDeadLetters(open_clinic_database(load_settings(None)).sessions)


def _kept() -> list[KeptWebhook]:
    return _sink().kept(limit=None)


async def _dead_letter(url: str, event_id: str) -> None:
    """What the clinic server does when a receiver keeps refusing: three tries, then kept."""
    channel = WebhookChannel([url], SECRET, _sink(), policy=FAST)
    with pytest.raises(DeliveryError):
        await channel.deliver(_note(event_id))


def _cli(*args: str) -> int:
    return main(["--log-format", "text", "alerts", "webhooks", *args])


def test_kept_webhooks_reach_the_receiver_once_it_is_back(
    receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, tmp_path, [receiver.url], SECRET)
    receiver.statuses = [500] * (2 * FAST.attempts)  # down for both events
    asyncio.run(_dead_letter(receiver.url, "ev-first"))
    asyncio.run(_dead_letter(receiver.url, "ev-second"))
    refused = {headers[EVENT_ID_HEADER]: body for headers, body in receiver.requests}
    receiver.requests.clear()

    assert _cli("list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "id\tdead_at\tevent_id\turl\tattempts\tlast_error"
    assert [line.split("\t")[2:] for line in listed[1:]] == [
        ["ev-second", receiver.url, "3", "HTTP 500"],
        ["ev-first", receiver.url, "3", "HTTP 500"],
    ]

    assert _cli("resend", "--all") == 0  # the receiver answers 200 again
    assert [headers[EVENT_ID_HEADER] for headers, _ in receiver.requests] == ["ev-first", "ev-second"]
    for headers, body in receiver.requests:
        assert body == refused[headers[EVENT_ID_HEADER]]  # byte for byte the body first signed
        assert verify(SECRET, body, headers[SIGNATURE_HEADER])  # signed afresh: a current timestamp
    assert _kept() == []
    assert "2 delivered, 0 still undelivered, 0 skipped" in capsys.readouterr().err


def test_a_resend_that_fails_again_keeps_the_webhook_and_counts_its_attempts(
    receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, tmp_path, [receiver.url], SECRET)
    receiver.statuses = [500] * FAST.attempts + [503, 503]
    asyncio.run(_dead_letter(receiver.url, "ev-again"))
    [kept] = _kept()

    assert _cli("resend", "--id", str(kept.letter_id), "--attempts", "2") == 1
    [still] = _kept()
    assert still.letter_id == kept.letter_id
    assert (still.letter.attempts, still.letter.last_error) == (FAST.attempts + 2, "HTTP 503")
    assert still.letter.body == kept.letter.body
    assert still.letter.at > kept.letter.at
    assert f"{kept.letter_id}\tstill undelivered after 2 attempt(s): HTTP 503" in capsys.readouterr().out


def test_a_receiver_no_longer_configured_is_not_sent_to(
    receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    retired = _Receiver([])
    try:
        _configure(monkeypatch, tmp_path, [receiver.url], SECRET)
        letter = DeadLetter(
            retired.url, "ev-retired", b'{"event_id":"ev-retired"}', 5, "HTTP 500", datetime.now(UTC)
        )
        _sink().add(letter)
        assert _cli("resend", "--all") == 1
        assert retired.requests == [] and receiver.requests == []
        assert "receiver no longer in alerts.webhook_urls" in capsys.readouterr().out
        assert [k.letter for k in _kept()] == [letter]
    finally:
        retired.close()


def test_an_unknown_id_sends_nothing(
    receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, tmp_path, [receiver.url], SECRET)
    _sink().add(DeadLetter(receiver.url, "ev-known", b"{}", 5, "HTTP 500", datetime.now(UTC)))
    [kept] = _kept()
    assert _cli("resend", "--id", str(kept.letter_id), "--id", str(kept.letter_id + 1)) == 2
    assert f"not kept: {kept.letter_id + 1}; nothing sent" in capsys.readouterr().err
    assert receiver.requests == []
    assert len(_kept()) == 1


def test_resend_needs_the_webhook_secret(
    receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, tmp_path, [receiver.url], None)
    _sink().add(DeadLetter(receiver.url, "ev-unsigned", b"{}", 5, "HTTP 500", datetime.now(UTC)))
    assert _cli("resend", "--all") == 2
    assert "alerts.webhook_secret is not set" in capsys.readouterr().err
    assert receiver.requests == []
    assert len(_kept()) == 1


def test_drop_stops_keeping_only_the_named_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, tmp_path, [], None)
    now = datetime.now(UTC)
    for i in range(3):
        _sink().add(
            DeadLetter(
                "http://127.0.0.1:9/hook", f"ev-{i}", b"{}", 5, "ConnectError", now + timedelta(seconds=i)
            )
        )
    newest, middle, oldest = _kept()
    assert _cli("drop", "--id", str(middle.letter_id), "--id", str(oldest.letter_id)) == 0
    assert [k.letter.event_id for k in _kept()] == [newest.letter.event_id]
    assert _cli("drop", "--id", str(middle.letter_id)) == 1  # already gone
    assert "0 of 1 webhook(s) no longer kept" in capsys.readouterr().err


def _legacy_line(event_id: str, url: str, at: datetime) -> str:
    """A line as vitalgate wrote them before migration 0005 (alerts.channels.webhook at fa84014^)."""
    body = json.dumps({"event_id": event_id, "patient_id": "pt-1"}, sort_keys=True, separators=(",", ":"))
    record = {"url": url, "event_id": event_id, "body": body, "attempts": 5, "last_error": "HTTP 502"}
    return json.dumps({**record, "at": at.isoformat()})


def test_webhooks_an_older_vitalgate_wrote_to_a_file_are_imported_once_and_can_be_resent(
    receiver: _Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, tmp_path, [receiver.url], SECRET)
    at = datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
    legacy = tmp_path / "alerts" / "webhook-dead-letters.jsonl"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(
        "\n".join(
            [
                _legacy_line("ev-old-1", receiver.url, at),
                '{"url": "http://127.0.0.1:9/hook", "event_id": "ev-broken"',  # cut off mid-write
                _legacy_line("ev-old-2", receiver.url, at + timedelta(minutes=1)),
                json.dumps(
                    {
                        "url": receiver.url,
                        "event_id": "ev-naive",
                        "body": "{}",
                        "attempts": 1,
                        "last_error": "x",
                        "at": "2026-11-30T08:00:00",
                    }
                ),  # no UTC offset
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    assert _cli("import") == 1  # two lines refused; the two good ones kept
    err = capsys.readouterr().err
    assert "line 2 refused: not JSON" in err and "line 4 refused: 'at' has no UTC offset" in err
    assert "2 webhook(s) now kept, 0 already kept, 2 line(s) refused" in err
    kept = _kept()
    assert [(k.letter.event_id, k.letter.at, k.letter.attempts) for k in kept] == [
        ("ev-old-2", at + timedelta(minutes=1), 5),
        ("ev-old-1", at, 5),
    ]

    assert _cli("import", str(legacy)) == 1  # run again: nothing kept twice
    assert "0 webhook(s) now kept, 2 already kept" in capsys.readouterr().err
    assert len(_kept()) == 2

    assert _cli("resend", "--all") == 0
    bodies = {headers[EVENT_ID_HEADER]: body for headers, body in receiver.requests}
    assert json.loads(bodies["ev-old-1"]) == {"event_id": "ev-old-1", "patient_id": "pt-1"}
    assert all(verify(SECRET, body, headers[SIGNATURE_HEADER]) for headers, body in receiver.requests)
    assert _kept() == []


def test_import_of_a_missing_file_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _configure(monkeypatch, tmp_path, [], None)
    assert _cli("import") == 2
    assert "cannot read" in capsys.readouterr().err
