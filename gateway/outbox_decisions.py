"""The readings the outbox keeps aside (table ``unbound``): what is held, reported per meter, slot and
reason, and the decisions on them: attributed again when the bindings change, or adopted or
discarded by a person's command from the clinic, each command once. Mixed into
:class:`gateway.outbox.Outbox`."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence

from gateway.outbox_schema import (
    APPLIED_COMMANDS_KEPT,
    READING,
    OutboxFullError,
    ReleaseResult,
    count_rows,
    epoch_us,
    from_epoch_us,
    write_locked,
)
from vitals.payload import AppliedCommand, UnboundAction, UnboundReason, UnboundRelease, UnboundSummary
from vitals.readings import Reading

logger = logging.getLogger("gateway.outbox")


class UnboundDecisions:
    """What the outbox does with readings kept aside (the Outbox supplies the members below)."""

    capacity: int
    _clock: Callable[[], float]
    _lock: threading.Lock

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _known(self, db: sqlite3.Connection, table: str, ids: Sequence[str]) -> set[str]:
        raise NotImplementedError

    def _log_full(self, table: str, depth: int, capacity: int, refused: int) -> None:
        raise NotImplementedError

    def unbound_summary(self) -> dict[tuple[str, int | None], int]:
        """(meter_key, user slot) -> number of readings kept aside for want of a binding."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT meter_key, user_id, COUNT(*) FROM unbound GROUP BY meter_key, user_id"
            )
            return {(r[0], r[1]): int(r[2]) for r in rows}

    def unbound_groups(self) -> tuple[UnboundSummary, ...]:
        """Readings kept aside, by meter, user slot and reason: counts and measurement time spans."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT meter_key, user_id, reason, COUNT(*), MIN(measured_at_us), MAX(measured_at_us)"
                " FROM unbound GROUP BY meter_key, user_id, reason ORDER BY meter_key, user_id, reason"
            )
            return tuple(
                UnboundSummary(
                    meter_key=r[0],
                    user_id=r[1],
                    reason=UnboundReason(r[2]),
                    count=int(r[3]),
                    first_measured_at=from_epoch_us(int(r[4])),
                    last_measured_at=from_epoch_us(int(r[5])),
                )
                for r in rows
            )

    def reattribute(self, attribute: Callable[[Reading], str | UnboundReason]) -> int:
        """Attribute again every reading kept aside (the bindings changed): those that now belong to
        a patient move to the outbox, the others keep (or change) their reason. Returns how many moved.

        Raises :class:`OutboxFullError` (nothing moved) when they do not fit in the outbox."""
        with self._lock:
            db = self._conn()
            rows = db.execute("SELECT seq, payload, reason FROM unbound ORDER BY seq").fetchall()
            moved: list[tuple[int, Reading]] = []
            reasons: list[tuple[str, int]] = []
            for seq, payload, reason in rows:
                reading = READING.validate_json(payload)
                found = attribute(reading)
                if isinstance(found, UnboundReason):
                    if found.value != reason:
                        reasons.append((found.value, seq))
                else:
                    moved.append((seq, reading.model_copy(update={"patient_id": found})))
            if not moved and not reasons:
                return 0
            write_locked(db, lambda: self._move_to_outbox(db, moved, reasons))
        if moved:
            logger.info(
                "unbound readings attributed by the bindings now held", extra={"readings": len(moved)}
            )
        return len(moved)

    def _move_to_outbox(
        self, db: sqlite3.Connection, moved: Sequence[tuple[int, Reading]], reasons: Sequence[tuple[str, int]]
    ) -> None:
        depth = count_rows(db, "outbox")
        ids = [r.reading_id for _seq, r in moved]
        settled = self._known(db, "outbox", ids) | self._known(db, "delivered", ids)
        new = [r for _seq, r in moved if r.reading_id not in settled]
        if depth + len(new) > self.capacity:
            self._log_full("outbox", depth, self.capacity, len(new))
            raise OutboxFullError("outbox", depth, self.capacity, len(new))
        now = self._clock()
        db.executemany(
            "INSERT INTO outbox (reading_id, meter_key, patient_id, payload, committed_at) VALUES (?,?,?,?,?)",
            [(r.reading_id, r.device.meter_key, r.patient_id, r.model_dump_json(), now) for r in new],
        )
        db.executemany("DELETE FROM unbound WHERE seq = ?", [(seq,) for seq, _r in moved])
        db.executemany("UPDATE unbound SET reason = ? WHERE seq = ?", reasons)

    def release(self, command: UnboundRelease) -> ReleaseResult:
        """Carry out a person's decision on the readings of one meter (user slot) kept aside and
        measured within the command's span: adopt them to its patient (they move to the outbox and are
        sent like any reading) or discard them (remembered as delivered, so a meter sending its
        memory again does not bring them back). Once per command id, in one transaction with the
        record that it was done. Raises :class:`OutboxFullError` (nothing done) when adopted readings
        do not fit."""
        with self._lock:
            db = self._conn()
            if db.execute(
                "SELECT 1 FROM applied_commands WHERE command_id = ?", (command.command_id,)
            ).fetchone():
                return ReleaseResult(command.command_id, command.action, 0, already_applied=True)
            rows = db.execute(
                "SELECT seq, reading_id, payload FROM unbound WHERE meter_key = ? AND user_id IS ?"
                " AND measured_at_us BETWEEN ? AND ? ORDER BY seq",
                (
                    command.meter_key,
                    command.user_id,
                    epoch_us(command.measured_from),
                    epoch_us(command.measured_to),
                ),
            ).fetchall()

            def apply() -> None:
                if command.action is UnboundAction.ADOPT:
                    moved = [
                        (
                            seq,
                            READING.validate_json(payload).model_copy(
                                update={"patient_id": command.patient_id}
                            ),
                        )
                        for seq, _rid, payload in rows
                    ]
                    self._move_to_outbox(db, moved, ())
                else:
                    now = self._clock()
                    db.executemany("DELETE FROM unbound WHERE seq = ?", [(seq,) for seq, _rid, _p in rows])
                    db.executemany(
                        "INSERT OR REPLACE INTO delivered (reading_id, outcome, acked_at) VALUES (?,?,?)",
                        [(rid, "discarded", now) for _seq, rid, _p in rows],
                    )
                db.execute(
                    "INSERT INTO applied_commands (command_id, action, readings, applied_at) VALUES (?,?,?,?)",
                    (command.command_id, command.action.value, len(rows), self._clock()),
                )
                db.execute(
                    "DELETE FROM applied_commands WHERE command_id IN (SELECT command_id FROM applied_commands"
                    " ORDER BY applied_at DESC LIMIT -1 OFFSET ?)",
                    (APPLIED_COMMANDS_KEPT,),
                )

            write_locked(db, apply)
        logger.info(
            "clinic decision on unbound readings carried out",
            extra={"command_id": command.command_id, "action": command.action.value, "readings": len(rows)},
        )
        return ReleaseResult(command.command_id, command.action, len(rows))

    def applied_commands(self, limit: int) -> tuple[AppliedCommand, ...]:
        """The most recently carried-out commands, newest first."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT command_id, readings FROM applied_commands ORDER BY applied_at DESC, command_id LIMIT ?",
                (limit,),
            )
            return tuple(AppliedCommand(command_id=r[0], readings=int(r[1])) for r in rows)
