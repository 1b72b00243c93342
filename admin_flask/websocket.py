"""``WS {api}/llm/ws?after=<event_id>``: the live feed over a websocket (flask-sock).

The handshake is an ordinary request until the upgrade: the API's ``before_request`` authorizes it
(401/403 JSON, no upgrade), and ``open_subscription`` below parses ``after`` (400) and subscribes to
the feed (503 when the store cannot be read), all before flask-sock answers ``101``. The handler
then only forwards what the feed queued for this client; it never reads the store itself.

A websocket holds a server thread for its lifetime: serve the admin with threads (Werkzeug's
threaded server, gunicorn ``-k gthread``), not with a worker per request.
"""

from __future__ import annotations

from flask import Blueprint, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from admin_flask import params
from admin_flask.feed import Behind, FeedClosed, Subscription
from admin_flask.state import current_state

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
    """Forward the client's queue until it goes, falls behind (``llm.reset``) or the app stops."""
    subscription: Subscription = g.llm_otel_subscription
    while ws.connected:
        try:
            texts = subscription.next(WAIT_S)
        except Behind as behind:
            ws.send(behind.text)
            ws.close(_POLICY, behind.reason)
            return
        except FeedClosed:
            ws.close(_GOING_AWAY, "the admin is stopping")
            return
        for text in texts:
            ws.send(text)
        try:
            while ws.receive(timeout=0) is not None:  # the client has nothing to say: drop it
                pass
        except ConnectionClosed:
            return
