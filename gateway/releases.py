"""The clinic's decisions on readings kept aside unattributed (the outbox's ``unbound`` table).

The clinic publishes, retained on ``vitalgate/v1/gw/{gateway_id}/commands``, the decisions this
gateway has not yet reported carried out (:class:`vitals.payload.GatewayCommands`): adopt the unbound
readings of a meter (user slot) measured in a time span to a patient, or discard them. Each command
is carried out once (:meth:`gateway.outbox.Outbox.release` records its id in the same transaction)
and reported in the status (``applied_commands``), after which the clinic drops it from the retained
message. A command that cannot be carried out yet (the outbox is full) is tried again with the next
status report.

When the bindings change, readings kept aside are attributed again (:meth:`UnboundReleases.
reattribute`): a binding that reached the gateway after the meter synced covers them now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import ValidationError

from gateway.outbox import Outbox, OutboxError, OutboxFullError
from vitals.payload import GatewayCommands, UnboundAction, UnboundReason, UnboundRelease
from vitals.readings import Reading

logger = logging.getLogger(__name__)


class UnboundReleases:
    """Receives command payloads, carries them out against the outbox, retries what waits."""

    def __init__(self, gateway_id: str, outbox: Outbox, *, on_change: Callable[[bool], None]) -> None:
        """``on_change(adopted)`` is called after anything left the unbound table; ``adopted``: some
        readings went to the outbox (the forwarder has work)."""
        self.gateway_id = gateway_id
        self.outbox = outbox
        self._on_change = on_change
        self._pending: dict[str, UnboundRelease] = {}
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self._pending)

    async def handle(self, payload: bytes) -> None:
        """A ``commands`` message (retained: also every reconnect)."""
        if not payload:
            return  # retained commands cleared: nothing waits
        try:
            commands = GatewayCommands.model_validate_json(payload)
        except ValidationError as exc:
            logger.error(
                "malformed clinic commands ignored",
                extra={"gateway_id": self.gateway_id, "errors": exc.error_count()},
            )
            return
        if commands.gateway_id != self.gateway_id:
            logger.error(
                "commands for another gateway ignored", extra={"commands_gateway_id": commands.gateway_id}
            )
            return
        for command in commands.commands:
            self._pending.setdefault(command.command_id, command)
        await self.apply_pending()

    async def apply_pending(self) -> int:
        """Carry out every command waiting; returns how many were carried out now."""
        done = 0
        adopted = False
        async with self._lock:
            for command_id, command in list(self._pending.items()):
                try:
                    result = await asyncio.to_thread(self.outbox.release, command)
                except OutboxFullError as exc:
                    logger.warning(
                        "clinic decision waits: the outbox has no room for the adopted readings",
                        extra={"command_id": command_id, "refused": exc.refused},
                    )
                    continue
                except OutboxError as exc:
                    logger.error(
                        "clinic decision not carried out", extra={"command_id": command_id, "error": str(exc)}
                    )
                    continue
                del self._pending[command_id]
                if not result.already_applied:
                    done += 1
                    adopted = adopted or (command.action is UnboundAction.ADOPT and result.readings > 0)
        if done:
            self._on_change(adopted)
        return done

    async def reattribute(self, attribute: Callable[[Reading], str | UnboundReason]) -> int:
        """Attribute the readings kept aside again under the bindings now held."""
        async with self._lock:
            try:
                moved = await asyncio.to_thread(self.outbox.reattribute, attribute)
            except OutboxFullError:
                return 0  # logged by the outbox; they stay aside, and are tried at the next change
        self._on_change(moved > 0)
        return moved
