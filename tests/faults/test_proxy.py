"""The black-hole proxy the partition scenario cuts the gateway's link with: while partitioned it
accepts connections and answers nothing, and drops what open connections send, without closing them;
healed, it closes what the partition broke and forwards again."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.faults.proxy import BlackHoleProxy

pytestmark = pytest.mark.faults

WAIT_S = 5.0
SILENCE_S = 0.5  # how long a black hole is listened to before it counts as silent


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[BlackHoleProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with BlackHoleProxy("127.0.0.1", server.server_address[1]) as proxy:
        yield proxy
    server.shutdown()
    server.server_close()


def connect(proxy: BlackHoleProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT_S)
    sock.settimeout(WAIT_S)
    return sock


def echoes(sock: socket.socket, data: bytes) -> bool:
    sock.sendall(data)
    return sock.recv(4096) == data


def silent(sock: socket.socket, data: bytes) -> bool:
    """Sent, and neither an answer nor a close within SILENCE_S: a black hole."""
    sock.sendall(data)
    sock.settimeout(SILENCE_S)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(WAIT_S)
    return False


def test_a_partition_black_holes_new_and_open_connections_and_healing_restores_the_link(
    proxy: BlackHoleProxy,
) -> None:
    """Partitioned: a new connection is accepted and never answered, an open one stays open but
    silent; healed: the broken connection is closed and a new one flows."""
    before = connect(proxy)
    assert echoes(before, b"ping")
    proxy.partition()
    assert silent(before, b"lost in the partition")
    during = connect(proxy)  # accepted: a refused connection would not be a black hole
    assert silent(during, b"CONNECT")
    assert proxy.dropped_bytes >= len(b"lost in the partition") + len(b"CONNECT")
    proxy.heal()
    assert before.recv(4096) == b"", "a connection broken by the partition must be closed on healing"
    after = connect(proxy)
    assert echoes(after, b"pong")
    for sock in (before, during, after):
        sock.close()
