"""Websocket clients that misbehave: 50 connected, some dropped without a close frame (a TCP reset),
one that reads nothing, one that answers no ping. The healthy ones get every message in order, the
bad ones are cut off and their server threads freed.

Deadlines here are hang guards (``tests.polling``); the delivery latency with a stuck client
present is measured in bench/bench_live_feed.py.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import simple_websocket

from admin_flask import AdminConfigurationError, create_app, websocket
from tests.admin_flask.conftest import API, FAST_FEED, TOKEN, Admin, Running, Store
from tests.admin_flask.test_live import calls_of, insert_events, messages_until
from tests.polling import HANG_GUARD_S, until

SEND_TIMEOUT_S = 15.0  # the stuck client is cut after it; a healthy one is not, even while 90 threads of
# this process (45 clients, their server handlers) share a loaded machine (5 s failed once in a full run)
EVENT_DATA_BYTES = 3000
BURST_EVENTS = 2000
"""6 MB of messages: more than a client that reads nothing can buffer on loopback (~3-4 MB between
the server's autotuned send buffer and the client's receive buffer), so its writes must block."""


def raw_websocket(running: Running, *, receive_buffer: int | None = None) -> socket.socket:
    """A bare TCP socket that did the websocket handshake of the live feed, and nothing else."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    host, port = running.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {API}/llm/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # one byte at a time: nothing after the head is consumed
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    running.clients.append(sock)
    return sock


def reset(sock: socket.socket) -> None:
    """Drop the connection with a TCP RST, no close frame (a killed process, a dropped NAT entry)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def server_threads() -> dict[str, int]:
    """The admin server's threads of websocket connections: request handlers and socket readers."""
    counts = {"handlers": 0, "readers": 0}
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        if isinstance(getattr(target, "__self__", None), simple_websocket.Server):
            counts["readers"] += 1
        elif "process_request_thread" in thread.name:
            counts["handlers"] += 1
    return counts


def settled_threads() -> dict[str, int]:
    """``server_threads()`` once it has held still for half a second: the connections an earlier
    test closed may still be ending when the next one counts its baseline."""
    counts, since = server_threads(), time.monotonic()
    deadline = since + HANG_GUARD_S
    while time.monotonic() - since < 0.5 and time.monotonic() < deadline:
        time.sleep(0.05)
        now = server_threads()
        if now != counts:
            counts, since = now, time.monotonic()
    return counts


def saw_event(event_id: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda messages: any(message.get("event_id") == event_id for message in messages)


def plus(threads: dict[str, int], connections: int) -> dict[str, int]:
    """``threads`` with ``connections`` more websocket connections: a handler and a reader each."""
    return {kind: count + connections for kind, count in threads.items()}


def healthy_client(admin: Admin) -> simple_websocket.Client:
    client = simple_websocket.Client.connect(
        admin.url.replace("http://", "ws://") + f"{API}/llm/ws",
        headers={"Authorization": f"Bearer {TOKEN}"},
        receive_bytes=65536,
    )
    admin.clients.append(client)
    return client


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.fixture
def admin(store: Store, serve: Any) -> Admin:
    config = {**FAST_FEED, "LLM_OTEL_ADMIN_SEND_TIMEOUT_S": SEND_TIMEOUT_S}
    return serve(create_app(db=store.url, token=TOKEN, config=config), Admin)


def test_fifty_clients_with_dropped_and_stuck_ones(
    admin: Admin, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    feed = admin.state.feed
    baseline = settled_threads()
    healthy = [healthy_client(admin) for _ in range(45)]
    dropped = [raw_websocket(admin) for _ in range(4)]
    stuck = raw_websocket(admin, receive_buffer=4096)  # never reads a byte
    until(lambda: feed.counts()["subscribers"] == 50, feed.counts)
    until(lambda: server_threads() == plus(baseline, 50), server_threads)

    for sock in dropped:
        reset(sock)
    until(lambda: feed.counts()["subscribers"] == 46, feed.counts)
    until(lambda: server_threads() == plus(baseline, 46), server_threads)

    calls = sorted(store.ids())
    payload = "x" * EVENT_DATA_BYTES
    ids: list[int] = []
    for start in range(0, BURST_EVENTS, 500):  # four transactions, as a busy writer would commit them
        events = [(calls[number % len(calls)], "retry") for number in range(start, start + 500)]
        ids += insert_events(store, events, data={"attempt": 1, "error": payload})

    for ws in healthy:
        messages = calls_of(messages_until(ws, saw_event(ids[-1]), timeout=60))
        got = [event["id"] for message in messages for event in message["events"]]
        assert sorted(got) == ids and len(set(got)) == len(got)  # every event, none twice
        positions = [message["event_id"] for message in messages]
        assert positions == sorted(set(positions))  # in order

    # The stuck one is cut off one send timeout after its writes block (after the healthy ones got
    # everything, its first blocked write may be under way for up to that long already).
    cut_within = HANG_GUARD_S + SEND_TIMEOUT_S
    until(lambda: feed.counts()["subscribers"] == 45, feed.counts, timeout=cut_within)
    until(lambda: server_threads() == plus(baseline, 45), server_threads, timeout=cut_within)
    port = stuck.getsockname()[1]
    cut = [
        record.getMessage() for record in caplog.records if "cut off websocket client" in record.getMessage()
    ]
    assert len(cut) == 1 and f"127.0.0.1:{port}:" in cut[0], cut
    assert f"within {SEND_TIMEOUT_S:.1f} s" in cut[0]

    for ws in healthy:
        ws.close()
    until(lambda: server_threads() == baseline, server_threads)
    assert feed.counts()["subscribers"] == 0
    assert server_errors(caplog) == []


def test_a_client_that_answers_no_ping_is_closed(store: Store, serve: Any) -> None:
    """No close frame, no reset, nothing read, no pong: a client that vanished from the network."""
    options = {"ping_interval": 0.5, "max_message_size": 65536}
    app = create_app(db=store.url, token=TOKEN, config={**FAST_FEED, "SOCK_SERVER_OPTIONS": options})
    admin = serve(app, Admin)
    baseline = settled_threads()
    silent = raw_websocket(admin)
    feed = admin.state.feed
    until(lambda: feed.counts()["subscribers"] == 1, feed.counts)
    until(lambda: feed.counts()["subscribers"] == 0, feed.counts)
    until(lambda: server_threads() == baseline, server_threads)
    silent.settimeout(5)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := silent.recv(65536):
            received += chunk
    # Pings (opcode 9) came, then a close frame (opcode 8) with 1008 "Ping/Pong timeout".
    assert b"\x89\x00" in received and b"\x88" in received and b"Ping/Pong timeout" in received, received


def test_the_send_timeout_is_checked(store: Store) -> None:
    with pytest.raises(AdminConfigurationError, match="LLM_OTEL_ADMIN_SEND_TIMEOUT_S"):
        create_app(db=store.url, token=TOKEN, config={"LLM_OTEL_ADMIN_SEND_TIMEOUT_S": 0})


class _TricklingSocket:
    """A client that reads nothing, whose window opens a little once the send timeout is over: a
    send then would take the rest of the frame (a never-reading client's kernel does that now and
    then, too little for ``POLLOUT``)."""

    def __init__(self) -> None:
        self.taken = b""
        self.timed_out = False
        self.reset = False

    def send(self, data: memoryview, flags: int) -> int:
        if self.taken and not self.timed_out:
            raise BlockingIOError
        self.taken += bytes(data if self.taken else data[:10])
        return len(data) if self.timed_out else 10

    def fileno(self) -> int:
        return 0

    def setsockopt(self, *args: object) -> None:
        pass

    def shutdown(self, how: int) -> None:
        self.reset = True


def test_a_write_not_done_when_the_send_timeout_ends_cuts_the_client_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No last try at the deadline: a write that would finish just after the timeout is a client cut
    off, not a write done (a try there took what a never-reading client's window let in, and the
    client was cut a whole send timeout later, on its next write)."""
    sock = _TricklingSocket()

    class TimedOutPoll:
        def register(self, fd: int, events: int) -> None:
            pass

        def poll(self, timeout_ms: int) -> list[tuple[int, int]]:
            sock.timed_out = True  # the timeout went by with the socket never writable
            return []

    monkeypatch.setattr(websocket.select, "poll", TimedOutPoll)
    writes = websocket.BoundedWrites(sock, 15.0, client="127.0.0.1:5000", waiting=lambda: 3)  # type: ignore[arg-type]

    with pytest.raises(websocket.SendTimeout):
        writes.send(b"x" * 100)
    assert sock.taken == b"x" * 10 and sock.reset
    assert [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()] == [
        "the LLM admin's live feed cut off websocket client 127.0.0.1:5000: a write to it did not finish "
        "within 15.0 s (3 messages were waiting for it)"
    ]
