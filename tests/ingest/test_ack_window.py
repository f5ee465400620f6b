"""The ack window (ingest.ack_window) on its own, without MQTT: readings messages are acked only once
their cycle's application acks are PUBACKed, in commit order, never on a later connection.

The sink stands in for paho's `ack` and flow control and records what the window asks of it; the
window itself is the real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ingest.ack_window import AckWindow, Delivery


class RecordingSink:
    """Records the PUBACKs the window queues and the deliveries it lets go."""

    def __init__(self) -> None:
        self.generation = 1
        self.acked: list[int] = []
        self.released_mids: list[int] = []
        self.acked_counts: list[int] = []

    def current_generation(self) -> int:
        return self.generation

    def ack(self, mid: int, qos: int) -> bool:
        assert qos > 0
        self.acked.append(mid)
        return True

    def released(self, deliveries: Sequence[Delivery], acked: int) -> None:
        self.released_mids.extend(d.mid for d in deliveries)
        self.acked_counts.append(acked)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _window(
    sink: RecordingSink,
    *,
    clock: Callable[[], float] | None = None,
    max_cycles: int = 8,
    timeout_s: float = 5.0,
) -> tuple[AckWindow, list[str]]:
    errors: list[str] = []
    window = AckWindow(
        sink,
        max_cycles=max_cycles,
        timeout_s=timeout_s,
        on_error=errors.append,
        clock=clock or Clock(),
    )
    return window, errors


def _deliveries(*mids: int, generation: int = 1, qos: int = 1) -> list[Delivery]:
    return [Delivery(mid, qos, generation, 100) for mid in mids]


def test_cycles_are_acked_in_commit_order_whatever_order_their_application_acks_are_confirmed() -> None:
    """A later cycle's confirmed application ack never lets its messages be acked before an earlier cycle's."""
    sink = RecordingSink()
    window, _ = _window(sink)
    window.add(_deliveries(1, 2), app_ack_mids=[101])
    window.add(_deliveries(3), app_ack_mids=[102])
    window.add(_deliveries(4, 5), app_ack_mids=[103, 104])

    window.on_puback(103)
    window.on_puback(104)
    window.on_puback(102)
    assert sink.acked == []
    assert len(window) == 3

    window.on_puback(101)
    assert sink.acked == [1, 2, 3, 4, 5]
    assert len(window) == 0


def test_a_cycle_is_acked_only_once_every_one_of_its_application_acks_is_confirmed() -> None:
    """A cycle of readings from two gateways waits for both gateways' application acks."""
    sink = RecordingSink()
    window, _ = _window(sink)
    window.add(_deliveries(1, 2), app_ack_mids=[101, 102])

    window.on_puback(101)
    assert sink.acked == []
    window.on_puback(102)
    assert sink.acked == [1, 2]


def test_a_puback_that_arrives_before_its_cycle_is_added_still_counts() -> None:
    """The broker may confirm an application ack before the worker has handed its cycle over."""
    sink = RecordingSink()
    window, _ = _window(sink)
    window.add(_deliveries(1), app_ack_mids=[101])
    window.on_puback(102)  # the next cycle's application ack, confirmed early
    window.add(_deliveries(2), app_ack_mids=[102])
    assert sink.acked == []

    window.on_puback(101)
    assert sink.acked == [1, 2]


def test_a_cycle_without_application_acks_follows_the_cycles_before_it() -> None:
    """A cycle with nothing to confirm (e.g. all dead-lettered) is acked, but not before earlier cycles."""
    sink = RecordingSink()
    window, _ = _window(sink)
    window.add(_deliveries(1), app_ack_mids=[101])
    window.add(_deliveries(2), app_ack_mids=[])
    assert sink.acked == []
    window.on_puback(101)
    assert sink.acked == [1, 2]

    window.add(_deliveries(3), app_ack_mids=[])
    assert sink.acked == [1, 2, 3]


def test_an_application_ack_never_confirmed_is_given_up_after_the_timeout() -> None:
    """Committed readings are acked after the bounded wait, so one lost PUBACK does not stall the stream."""
    sink = RecordingSink()
    clock = Clock()
    window, errors = _window(sink, clock=clock, timeout_s=5.0)
    window.add(_deliveries(1), app_ack_mids=[101])
    window.add(_deliveries(2), app_ack_mids=[102])
    window.on_puback(102)

    clock.now += 4.9
    window.expire_overdue()
    assert sink.acked == []
    assert errors == []

    clock.now += 0.2
    window.expire_overdue()
    assert sink.acked == [1, 2]
    assert len(errors) == 1 and "not confirmed" in errors[0]


def test_the_late_puback_of_an_abandoned_ack_does_not_confirm_a_later_ack_reusing_its_packet_id() -> None:
    """A packet id given up on and reused later must not release the new cycle before its own PUBACK."""
    sink = RecordingSink()
    clock = Clock()
    window, _ = _window(sink, clock=clock, timeout_s=1.0)
    window.add(_deliveries(1), app_ack_mids=[101])
    clock.now += 2.0
    window.expire_overdue()
    assert sink.acked == [1]

    window.on_puback(101)  # the abandoned ack's PUBACK, late
    window.add(_deliveries(2), app_ack_mids=[101])  # paho reused the packet id
    assert sink.acked == [1]
    window.on_puback(101)
    assert sink.acked == [1, 2]


def test_messages_of_an_earlier_connection_are_released_but_never_acked() -> None:
    """A packet id from before a reconnect is never acked on the new connection, yet stops being held."""
    sink = RecordingSink()
    window, _ = _window(sink)
    window.add(_deliveries(1, 2, generation=1) + _deliveries(3, generation=3), app_ack_mids=[101])
    sink.generation = 3  # the connection dropped and came back meanwhile
    window.on_puback(101)

    assert sink.acked == [3]
    assert sink.released_mids == [1, 2, 3]
    assert sink.acked_counts == [1]


def test_qos_0_messages_are_released_without_an_ack() -> None:
    """QoS 0 has no PUBACK: it is let go without one."""
    sink = RecordingSink()
    window, _ = _window(sink)
    window.add(_deliveries(1, qos=0) + _deliveries(2), app_ack_mids=[])
    assert sink.acked == [2]
    assert sink.released_mids == [1, 2]


def test_the_worker_waits_while_the_window_is_full_until_a_puback_frees_it() -> None:
    """At most max_cycles committed cycles await confirmation; the worker resumes when the oldest is acked."""
    sink = RecordingSink()
    window, _ = _window(sink, clock=time.monotonic, max_cycles=2, timeout_s=60.0)
    window.add(_deliveries(1), app_ack_mids=[101])
    window.add(_deliveries(2), app_ack_mids=[102])
    resumed = threading.Event()

    def worker() -> None:
        window.wait_for_room()
        resumed.set()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    assert not resumed.wait(0.5)

    window.on_puback(101)  # paho's network thread
    assert resumed.wait(5.0)
    thread.join(5.0)
    assert sink.acked == [1]


def test_a_full_window_gives_up_on_the_oldest_cycle_after_the_timeout() -> None:
    """A worker blocked on a full window is released by the timeout, not only by a PUBACK."""
    sink = RecordingSink()
    window, errors = _window(sink, clock=time.monotonic, max_cycles=1, timeout_s=0.2)
    window.add(_deliveries(1), app_ack_mids=[101])

    started = time.monotonic()
    window.wait_for_room()
    assert time.monotonic() - started >= 0.2
    assert sink.acked == [1]
    assert errors


def test_stopping_reports_whether_every_awaiting_cycle_was_acked() -> None:
    """At stop, cycles still unconfirmed at the deadline stay unacked for the broker to redeliver."""
    sink = RecordingSink()
    clock = Clock()
    window, _ = _window(sink, clock=clock, timeout_s=60.0)
    window.add(_deliveries(1), app_ack_mids=[101])
    assert window.drain(deadline=clock.now) is False
    assert sink.acked == []

    window.on_puback(101)
    assert window.drain(deadline=clock.now) is True
    assert sink.acked == [1]
