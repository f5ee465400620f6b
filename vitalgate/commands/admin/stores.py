"""Setting the stores up and pruning them: `vitalgate admin init-db` and `vitalgate admin storage`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Add `init-db` and `storage`."""
    p = sub.add_parser("init-db", help="create or migrate the clinic database to the newest schema")
    p.set_defaults(func=_init_db)

    p = sub.add_parser(
        "storage",
        help="set the stores up (init: clinic database schema; InfluxDB database or bucket and its "
        "retention) or delete what is past its retention now (prune)",
    )
    p.add_argument("storage_action", choices=["init", "prune"])
    p.set_defaults(func=_storage)


def _init_db(args: argparse.Namespace) -> int:
    from vitalgate.wiring import open_clinic_database

    open_clinic_database(args.settings).close()
    print("clinic database is at the newest schema")
    return 0


def _storage(args: argparse.Namespace) -> int:
    """`vitalgate admin storage init|prune` (settings: storage, retention)."""
    from datetime import UTC, datetime

    from vitalgate.wiring import (
        build_reading_store,
        open_clinic_database,
        prepare_reading_store,
        prune_past_retention,
    )

    settings = args.settings
    store = build_reading_store(settings)
    try:
        with open_clinic_database(settings) as database:
            if args.storage_action == "init":
                print("clinic database is at the newest schema")
                prepared = prepare_reading_store(settings, store, database)
                print(f"reading store: {prepared or 'SQLite (pruned daily)'}")
                return 0
            counts = prune_past_retention(settings, store, database, datetime.now(UTC))
            print(" ".join(f"{name}={count}" for name, count in counts.items()))
            return 0
    finally:
        store.close()
