"""The ack window: committed cycles whose MQTT acks wait for the broker's PUBACK of their
application acks, acked strictly in commit order.

Per cycle: commit -> publish the application ack (`ReadingsAck`, QoS 1) -> once the broker has
PUBACKed that ack, PUBACK the readings messages. A crash anywhere before the PUBACK means the broker
redelivers on reconnect, the store reports duplicates, and the ack is sent again; a crash after it
finds the application ack already at the broker. (Waiting for the application ack's own PUBACK, not
only for the commit, closes the window where a stored reading's message is acked but its
application ack dies with the process.)

That wait is pipelined, not synchronous: the worker hands the committed cycle to this window
(`add`) and goes on with the next cycle; paho's `on_publish` for the application ack (network
thread, `on_puback`) releases the cycle's MQTT acks, cycles strictly in commit order (PUBACKs must
follow PUBLISH order, [MQTT-4.6.0-2], reliability.md §1.1). At most `max_cycles` cycles wait; the
worker blocks beyond that (`wait_for_room`). A cycle whose application ack is not PUBACKed within
`timeout_s` is acked anyway (the readings are committed, the ack stays queued in paho, and holding
the slot would stall the stream). A synchronous wait would cost a broker round trip per cycle: most
of a small cycle's time.

A message that arrived on an earlier connection is never acked on a later one: its packet id may
have been reused after the broker's redelivery (MQTT-4.4.0-1 resends with the same ids). Each
`Delivery` carries the generation of the connection it arrived on (a count that changes with every
connect and disconnect), and only those of the sink's current generation are acked.

No MQTT here: the acks go to an `AckSink` (ingest.flow.FlowControl, over paho's `ack`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

logger = logging.getLogger(__name__)

# The longest a waiting thread sleeps before it looks at the head cycle's deadline again.
_POLL_S: Final = 0.2


class Delivery(NamedTuple):
    """One received message as its ack needs it, without its payload."""

    mid: int  # the packet id of the PUBLISH
    qos: int
    generation: int  # the connection it arrived on (AckSink.current_generation)
    size: int  # payload bytes, no longer held once the message is released


class AckSink(Protocol):
    """Where released cycles go: the MQTT acks, and what is held no more."""

    def current_generation(self) -> int:
        """The generation of the connection now up: only deliveries that arrived on it may be acked."""
        ...

    def ack(self, mid: int, qos: int) -> bool:
        """Queue the PUBACK of a message of the current connection; False when it was not queued."""
        ...

    def released(self, deliveries: Sequence[Delivery], acked: int) -> None:
        """The deliveries are no longer held (`acked` of them were acked, the rest were not ackable)."""
        ...


@dataclass(slots=True)
class _AwaitingCycle:
    """A committed cycle: its deliveries in arrival order, and the packet ids of its application
    acks not yet PUBACKed."""

    deliveries: list[Delivery]
    outstanding: set[int]
    deadline: float


class AckWindow:
    """Committed cycles awaiting their application acks' PUBACK, oldest first.

    `add`, `wait_for_room`, `expire_overdue` and `drain` are called by the worker; `on_puback` by
    paho's network thread with paho's outgoing-message lock held. Lock order: paho's
    _out_message_mutex -> this window's lock -> the sink's locks."""

    def __init__(
        self,
        sink: AckSink,
        *,
        max_cycles: int,
        timeout_s: float,
        on_error: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._max_cycles = max_cycles
        self._timeout_s = timeout_s
        self._on_error = on_error
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._awaiting: deque[_AwaitingCycle] = deque()
        self._awaiting_by_mid: dict[int, _AwaitingCycle] = {}
        # PUBACKs that arrived before their cycle was added, and application acks given up on.
        self._early_pubacks: set[int] = set()
        self._orphaned_mids: set[int] = set()

    def __len__(self) -> int:
        """Cycles awaiting."""
        with self._cond:
            return len(self._awaiting)

    def add(self, deliveries: Sequence[Delivery], app_ack_mids: Iterable[int]) -> None:
        """A cycle committed and its application acks were queued as `app_ack_mids` (none: it is
        released as soon as every cycle before it is). Does not wait for room: `wait_for_room`."""
        cycle = _AwaitingCycle(list(deliveries), set(), self._clock() + self._timeout_s)
        with self._cond:
            for mid in app_ack_mids:
                self._orphaned_mids.discard(mid)  # a packet id reused after wrapping round
                if mid in self._early_pubacks:
                    self._early_pubacks.discard(mid)
                    continue
                cycle.outstanding.add(mid)
                self._awaiting_by_mid[mid] = cycle
            self._awaiting.append(cycle)
            self._release_ready_locked()

    def on_puback(self, mid: int) -> None:
        """The broker PUBACKed an application ack: release the cycles now fully confirmed.

        A PUBACK of an ack no cycle awaits yet is kept for the cycle about to be added (the worker
        adds it just after publishing); one of an ack given up on is forgotten."""
        with self._cond:
            cycle = self._awaiting_by_mid.pop(mid, None)
            if cycle is not None:
                cycle.outstanding.discard(mid)
                self._release_ready_locked()
            elif mid in self._orphaned_mids:
                self._orphaned_mids.discard(mid)
            else:
                self._early_pubacks.add(mid)

    def wait_for_room(self) -> None:
        """Block while `max_cycles` cycles await; a head cycle past its deadline is released."""
        with self._cond:
            while len(self._awaiting) >= self._max_cycles:
                timeout = self._awaiting[0].deadline - self._clock()
                if timeout <= 0:
                    self._release_head_unconfirmed_locked()
                    continue
                self._cond.wait(min(timeout, _POLL_S))

    def expire_overdue(self) -> None:
        """Release, in order, the leading cycles past their deadline."""
        with self._cond:
            now = self._clock()
            while self._awaiting and self._awaiting[0].deadline <= now:
                self._release_head_unconfirmed_locked()

    def drain(self, deadline: float) -> bool:
        """At stop: let the awaiting cycles finish until `deadline` (on this window's clock). False
        when some still await: their messages stay unacked and the broker redelivers them to the
        next session (duplicates, stored once)."""
        with self._cond:
            while self._awaiting:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    logger.error(
                        "ingest stopped with cycles awaiting their application ack",
                        extra={"cycles": len(self._awaiting)},
                    )
                    return False
                self._cond.wait(min(remaining, _POLL_S))
        return True

    # -- caller holds the lock ---------------------------------------------------------------------

    def _release_head_unconfirmed_locked(self) -> None:
        """The head cycle's application ack was not PUBACKed in time: ack its messages anyway.

        The ack is still queued in paho and is sent while this process lives; holding the
        messages would stall the stream."""
        cycle = self._awaiting[0]
        self._on_error(
            f"application ack not confirmed within {self._timeout_s:g} s; "
            "acking the committed messages anyway"
        )
        for mid in cycle.outstanding:
            self._awaiting_by_mid.pop(mid, None)
            self._orphaned_mids.add(mid)
        cycle.outstanding.clear()
        self._release_ready_locked()

    def _release_ready_locked(self) -> None:
        """Ack, in commit order, every leading cycle whose application acks are all PUBACKed."""
        released = False
        while self._awaiting and not self._awaiting[0].outstanding:
            self._ack(self._awaiting.popleft().deliveries)
            released = True
        if released:
            self._cond.notify_all()

    def _ack(self, deliveries: list[Delivery]) -> None:
        generation = self._sink.current_generation()
        acked = 0
        for delivery in deliveries:
            if delivery.qos == 0:
                continue
            if delivery.generation != generation:
                # An old connection's packet id must not be acked on a new one; paho drops packets
                # queued before a reconnect, and reconnects no sooner than reconnect_min_s after.
                continue
            if self._sink.ack(delivery.mid, delivery.qos):
                acked += 1
        self._sink.released(deliveries, acked)
