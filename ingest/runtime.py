"""Process-level tuning for an ingest process: opt-in, called once by the composition root.

Ingest's cost is per reading, and each reading allocates a few dozen container
objects (the pydantic models, their dicts and field sets, the store's row tuple). CPython's cyclic
garbage collector runs a young pass every 700 net allocations and, every so often, a full pass that
walks every tracked object in the process: after start-up that is ~100,000 objects of imported
modules, pydantic schemas and SQLAlchemy metadata that never become garbage, so full passes take a
large share of the ingest worker's time (bench/ingest_throughput.py `--no-freeze` shows how much).

`gc.freeze()` moves every object alive at that moment to a permanent generation that collections
skip (Python docs, gc.freeze: "Freeze all the objects tracked by gc - move them to a permanent
generation and ignore all the future collections"). Collection still runs for everything created
afterwards, so reference cycles made while ingesting are still reclaimed; only garbage that already
existed when freezing would stay, which is why a full collection runs first.

A process-wide setting, so a library class never does this on its own: call it after wiring, just
before consuming.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect garbage, then exempt every object alive now from future collections.

    Returns the number of objects frozen. Safe to call more than once (later calls freeze what was
    created in between)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("start-up heap frozen for the garbage collector", extra={"objects": frozen})
    return frozen
