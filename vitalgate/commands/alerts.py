"""`vitalgate alerts replay` and `vitalgate alerts webhooks list|resend|drop|import`.

`replay READINGS.csv [--profile cn|us|eu] [--targets FILE]` runs a history of readings through the
alert rules, as the live engine would, and prints one JSON object per alert (rule id as in
clinical-rules.md §7, severity, patient, window, triggering values, citation), so clinicians can
check the rules on real histories. CSV columns: docs/alerts.md.

`webhooks` is for the operator of a clinic whose webhook receiver was down longer than the channel's
retries: `list` shows the signed alert webhooks kept in the clinic database (`webhook_dead_letters`),
`resend` posts them again once the receiver is back (exact body, fresh signature, same event id, so
the receiver can drop one it already has) and stops keeping those it took, `drop` stops keeping the
ones the operator gives up on, and `import` keeps those an older vitalgate wrote to a JSON-lines
file in the data directory (each once, however often it runs). Only receivers still in
`alerts.webhook_urls` are sent to: webhook URLs come from configuration, never from stored data
(alerts.channels.webhook).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alerts.channels.webhook import DeadLetter
    from alerts.repository import SqlWebhookDeadLetters


# Before migration 0005 undelivered webhooks went to this JSON-lines file, one object per line:
# url, event_id, body (the signed JSON as text), attempts, last_error, at (ISO 8601, UTC).
LEGACY_DEAD_LETTER_FILE = "alerts/webhook-dead-letters.jsonl"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("alerts", help="alert rules: replay a history of readings")
    sub = parser.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    p = sub.add_parser("replay", help="run READINGS.csv through the rules; print one JSON object per alert")
    p.add_argument("readings", type=Path, metavar="READINGS.csv", help="columns: see docs/alerts.md")
    p.add_argument(
        "--profile",
        choices=["cn", "us", "eu"],
        default=None,
        help="guideline profile (default: alerts.profile from the settings, else eu)",
    )
    p.add_argument("--targets", type=Path, default=None, help="JSON: patient_id -> targets ('*' = all)")
    p.set_defaults(func=_replay)

    hooks = sub.add_parser("webhooks", help="alert webhooks their receiver never took: list, re-send, drop")
    actions = hooks.add_subparsers(dest="webhooks_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="the kept webhooks, newest first: id, when, event, receiver, error")
    p.add_argument("--limit", type=_positive, default=50)
    p.set_defaults(func=_list_webhooks)
    p = actions.add_parser("resend", help="post kept webhooks again; those delivered are no longer kept")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", type=int, action="append", help="a kept webhook's id (repeatable)")
    which.add_argument("--all", action="store_true", help="every kept webhook")
    p.add_argument("--attempts", type=_positive, default=3, help="tries per webhook (default 3)")
    p.set_defaults(func=_resend_webhooks)
    p = actions.add_parser(
        "import", help=f"keep the webhooks an older vitalgate wrote to DATA_DIR/{LEGACY_DEAD_LETTER_FILE}"
    )
    p.add_argument("file", type=Path, nargs="?", default=None, help="default: the file in the data directory")
    p.set_defaults(func=_import_webhooks)
    p = actions.add_parser("drop", help="stop keeping webhooks that will not be delivered")
    p.add_argument("--id", dest="ids", type=int, action="append", required=True, help="repeatable")
    p.set_defaults(func=_drop_webhooks)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _replay(args: argparse.Namespace) -> int:
    from alerts.profiles import profile
    from alerts.replay import ReplayInputError, read_csv, read_targets, replay

    name = args.profile
    if name is None:
        settings = getattr(args, "settings", None)
        name = settings.alerts.profile if settings is not None else "eu"
    try:
        with args.readings.open(encoding="utf-8", newline="") as stream:
            histories = read_csv(stream)
        targets = read_targets(args.targets) if args.targets else {}
    except (OSError, ReplayInputError, ValueError) as exc:
        print(f"vitalgate alerts replay: {exc}", file=sys.stderr)
        return 2
    count = 0
    for alert in replay(histories, profile(name), targets):
        print(alert.json())
        count += 1
    print(f"{count} alerts for {len(histories)} patients (profile {name})", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _dead_letters(args: argparse.Namespace) -> Iterator[SqlWebhookDeadLetters]:
    """The webhooks kept in the clinic database, which is closed on leaving."""
    from alerts.repository import SqlWebhookDeadLetters
    from vitalgate.wiring import open_clinic_database

    with open_clinic_database(args.settings) as database:
        yield SqlWebhookDeadLetters(database.sessions)


def _list_webhooks(args: argparse.Namespace) -> int:
    with _dead_letters(args) as sink:
        kept = sink.kept(limit=args.limit)
    print("id\tdead_at\tevent_id\turl\tattempts\tlast_error")
    for item in kept:
        letter = item.letter
        print(
            f"{item.letter_id}\t{letter.at.isoformat(timespec='seconds')}\t{letter.event_id}\t"
            f"{letter.url}\t{letter.attempts}\t{letter.last_error}"
        )
    print(f"{len(kept)} undelivered webhook(s) shown", file=sys.stderr)
    return 0


def _resend_webhooks(args: argparse.Namespace) -> int:
    alerts = args.settings.alerts
    if alerts.webhook_secret is None:
        print("vitalgate alerts webhooks resend: alerts.webhook_secret is not set", file=sys.stderr)
        return 2
    with _dead_letters(args) as sink:
        return _resend(args, sink)


def _resend(args: argparse.Namespace, sink: SqlWebhookDeadLetters) -> int:
    from alerts.channels.base import RetryPolicy
    from alerts.channels.webhook import MemoryDeadLetters, WebhookChannel

    alerts = args.settings.alerts
    assert alerts.webhook_secret is not None  # checked by the caller
    kept = sink.kept(limit=None, letter_ids=None if args.all else args.ids)
    if not args.all:
        missing = sorted(set(args.ids) - {item.letter_id for item in kept})
        if missing:
            print(
                f"vitalgate alerts webhooks resend: not kept: {', '.join(map(str, missing))}; nothing sent",
                file=sys.stderr,
            )
            return 2
    channel = WebhookChannel(
        list(alerts.webhook_urls),
        alerts.webhook_secret.get_secret_value().encode(),
        MemoryDeadLetters(),  # redeliver keeps nothing: the letters stay in the database until taken
        policy=RetryPolicy(attempts=args.attempts),
    )
    configured = set(alerts.webhook_urls)
    delivered = failed = skipped = 0
    for item in reversed(kept):  # oldest first, the order the receiver would have had them in
        if item.letter.url not in configured:
            skipped += 1
            print(
                f"{item.letter_id}\tskipped: receiver no longer in alerts.webhook_urls (drop it, or add it)"
            )
            continue
        outcome = asyncio.run(channel.redeliver(item.letter))
        if outcome.delivered:
            sink.delivered(item.letter_id)
            delivered += 1
            print(f"{item.letter_id}\tdelivered")
        else:
            sink.failed_again(item.letter_id, outcome.attempts, outcome.error, datetime.now(UTC))
            failed += 1
            print(f"{item.letter_id}\tstill undelivered after {outcome.attempts} attempt(s): {outcome.error}")
    print(f"{delivered} delivered, {failed} still undelivered, {skipped} skipped", file=sys.stderr)
    return 0 if failed == skipped == 0 else 1


def _drop_webhooks(args: argparse.Namespace) -> int:
    with _dead_letters(args) as sink:
        dropped = sink.drop(args.ids)
    print(f"{dropped} of {len(set(args.ids))} webhook(s) no longer kept", file=sys.stderr)
    return 0 if dropped == len(set(args.ids)) else 1


def _legacy_letter(line: str) -> DeadLetter:
    """One line of the old JSON-lines file; ValueError naming what is wrong (never the content)."""
    from alerts.channels.webhook import DeadLetter

    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    fields = {"url": str, "event_id": str, "body": str, "attempts": int, "last_error": str, "at": str}
    for name, kind in fields.items():
        if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
            raise ValueError(f"{name!r} missing or not a {kind.__name__}")
    try:
        at = datetime.fromisoformat(record["at"])
    except ValueError:
        raise ValueError("'at' is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ValueError("'at' has no UTC offset")
    if not record["url"] or not record["event_id"] or record["attempts"] < 1:
        raise ValueError("empty url or event_id, or attempts below 1")
    return DeadLetter(
        record["url"],
        record["event_id"],
        record["body"].encode("utf-8"),
        record["attempts"],
        record["last_error"],
        at.astimezone(UTC),
    )


def _import_webhooks(args: argparse.Namespace) -> int:
    path = args.file or args.settings.data_dir / LEGACY_DEAD_LETTER_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"vitalgate alerts webhooks import: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    letters: list[DeadLetter] = []
    refused = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            letters.append(_legacy_letter(line))
        except ValueError as exc:
            refused += 1
            print(f"vitalgate alerts webhooks import: line {number} refused: {exc}", file=sys.stderr)
    with _dead_letters(args) as sink:
        added = sink.add_missing(letters)
    print(
        f"{added} webhook(s) now kept, {len(letters) - added} already kept, {refused} line(s) refused",
        file=sys.stderr,
    )
    return 0 if refused == 0 else 1
