"""``WS {api}/llm/ws?after=<event_id>``: the live feed over a websocket (flask-sock).

The handshake is an ordinary request until the upgrade: the API's ``before_request`` authorizes it
(401/403 JSON, no upgrade), and ``open_subscription`` below parses ``after`` (400) and subscribes to
the feed (503 when the store cannot be read), all before flask-sock answers ``101``. The handler
then only writes what the feed queued for this client (frames the feed built once for every
client, ``admin_flask.frames``); it never reads the store itself.

A websocket holds a server thread for its lifetime (and simple-websocket a second one, reading the
socket and sending pings): serve the admin with threads (Werkzeug's threaded server, gunicorn
``-k gthread``), not with a worker per request. Both threads end when the client goes:

- **Closed or reset by the client** (a close frame, a FIN, a RST): simple-websocket's reader sees it
  at once; the handler notices within ``WAIT_S``.
- **Gone silent** (no close, no RST: a laptop lid, a dead network): the ping (``ping_interval`` of
  ``SOCK_SERVER_OPTIONS``, 25 s) goes unanswered and simple-websocket closes it at the next one.
- **Reading too slowly, or not at all**: every write to the socket (our messages and
  simple-websocket's pings, pongs and close frames, one at a time) must finish within
  ``LLM_OTEL_ADMIN_SEND_TIMEOUT_S``. A write that cannot is the client cut off: logged at WARNING,
  the connection reset (its unsent bytes dropped), both threads freed. A client that reads, only
  slowly, meets the feed's bound first: past ``LLM_OTEL_ADMIN_CLIENT_QUEUE`` waiting messages it is
  sent ``llm.reset`` and closed (1008). Either way the other clients are not held up: each has its
  own queue and thread, and the feed's reader never waits for a client.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from admin_flask import params
from admin_flask.feed import Behind, FeedClosed, Subscription
from admin_flask.state import current_state

logger = logging.getLogger(__name__)

ENDPOINT = "live"
WAIT_S = 1.0
"""How long the handler waits for a message before it checks the connection again."""
SERVER_OPTIONS = {"ping_interval": 25, "max_message_size": 64 * 1024}
"""simple-websocket options (flask-sock's ``SOCK_SERVER_OPTIONS``, when the app sets none)."""
_GOING_AWAY = 1001
_POLICY = 1008

_sock = Sock()


def register(blueprint: Blueprint) -> None:
    blueprint.before_request(open_subscription)
    blueprint.teardown_request(close_subscription)
    _sock.route("/llm/ws", bp=blueprint)(live)


def open_subscription() -> None:
    if (request.endpoint or "").rpartition(".")[2] != ENDPOINT:
        return
    after = params.LIVE.parse(request.args)["after"]
    g.llm_otel_subscription = current_state().feed.subscribe(after)


def close_subscription(_exc: BaseException | None) -> None:
    subscription: Subscription | None = g.pop("llm_otel_subscription", None)
    if subscription is not None:
        subscription.close()


def live(ws) -> None:
    """Forward the client's queue until it goes, falls behind (``llm.reset``), reads too slowly (cut
    off) or the app stops."""
    subscription: Subscription = g.llm_otel_subscription
    client = f"{request.remote_addr}:{request.environ.get('REMOTE_PORT', '?')}"
    timeout_s = current_state().settings.send_timeout_s
    # simple-websocket's own writes (pings, pongs, close frames) go through it too.
    ws.sock = BoundedWrites(ws.sock, timeout_s, client=client, waiting=lambda: subscription.pending)
    try:
        _forward(ws, subscription)
    except SendTimeout:
        return  # logged, and the connection reset, by BoundedWrites
    except OSError:
        return  # the client went in the middle of a write (reset, closed): nothing to tell it


def _forward(ws: Any, subscription: Subscription) -> None:
    while ws.connected:
        try:
            frames = subscription.next(WAIT_S)
        except Behind as behind:
            ws.send(behind.text)
            ws.close(_POLICY, behind.reason)
            return
        except FeedClosed:
            ws.close(_GOING_AWAY, "the admin is stopping")
            return
        for frame in frames:  # built once by the feed for every client (admin_flask.frames)
            if not ws.connected:
                return
            ws.sock.send(frame)
        try:
            while ws.receive(timeout=0) is not None:  # the client has nothing to say: drop it
                pass
        except ConnectionClosed:
            return


class SendTimeout(TimeoutError):
    """A write to a websocket client did not finish within the send timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the websocket client took more than {seconds} s to take a message")
        self.seconds = seconds


class BoundedWrites:
    """A connection's socket as simple-websocket uses it, with every write serialized and bounded.

    simple-websocket writes from two threads (the handler's messages; its reader's pings, pongs and
    close frames) with a plain blocking ``send``, which never returns while the client reads
    nothing. Here each write holds a lock (two frames never interleave) and must finish within
    ``timeout_s``, else the client is cut off: a WARNING names it, the connection is reset and
    ``SendTimeout`` raised (an ``OSError``: simple-websocket's reader takes it as the connection
    gone). Writes go out with ``MSG_DONTWAIT`` and ``poll``, so the socket itself stays
    blocking for the reader. Where that is not available (TLS sockets, Windows) writes are plain
    ``sendall``, bounded only by the ping.
    """

    def __init__(
        self, sock: socket.socket, timeout_s: float, *, client: str, waiting: Callable[[], int]
    ) -> None:
        self._sock = sock
        self.timeout_s = timeout_s
        self.client = client
        self._waiting = waiting
        self._cut_off = False
        self._lock = threading.Lock()
        self._bounded = (
            _NONBLOCKING is not None and hasattr(select, "poll") and not isinstance(sock, ssl.SSLSocket)
        )

    def send(self, data: bytes) -> int:
        with self._lock:
            if self._bounded:
                self._write(memoryview(data))
            else:
                self._sock.sendall(data)
        return len(data)

    sendall = send

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        with self._lock:  # never while a write is under way (its file descriptor could be reused)
            self._sock.close()

    def _cut(self) -> None:
        if not self._cut_off:
            self._cut_off = True
            logger.warning(
                "the LLM admin's live feed cut off websocket client %s: a write to it did not finish "
                "within %.1f s (%d messages were waiting for it)",
                self.client,
                self.timeout_s,
                self._waiting(),
            )
        self._abort()

    def _abort(self) -> None:
        """Reset the connection: drop what the client never read and wake simple-websocket's reader."""
        with contextlib.suppress(OSError):  # already closed by simple-websocket's reader
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._sock.shutdown(socket.SHUT_RDWR)

    def _write(self, view: memoryview) -> None:
        """Write ``view`` whole, or cut the client off once the send timeout has passed with the
        socket not writable: no last try then. A client that reads nothing still frees a little of
        its window now and then (too little for ``POLLOUT``); a try at the deadline took that, the
        write counted as done, and the client was cut only at the end of the next write's
        timeout, twice the setting (measured 30 s with 15 s)."""
        deadline = time.monotonic() + self.timeout_s
        poller: Any = None
        while view:
            with contextlib.suppress(BlockingIOError):  # the buffer is full: wait below
                view = view[self._sock.send(view, _NONBLOCKING) :]
            if not view:
                return
            remaining = deadline - time.monotonic()
            if poller is None:
                poller = select.poll()
                poller.register(self._sock.fileno(), select.POLLOUT)
            if remaining <= 0 or not poller.poll(max(1, int(remaining * 1000))):
                self._cut()
                raise SendTimeout(self.timeout_s)


_NONBLOCKING: int | None = getattr(socket, "MSG_DONTWAIT", None)
