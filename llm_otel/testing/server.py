"""The fake OpenAI HTTP server: ``FakeOpenAI`` and its request handler (stdlib only).

A ``ThreadingHTTPServer`` on a daemon thread, one thread per connection, HTTP/1.1 keep-alive.
JSON answers carry ``Content-Length``; streams use chunked transfer encoding, so a stream cut by
``drop_after_chunks`` is an incomplete body that the client reports as an error (with
``Connection: close`` and no length, a cut would look like a normal end).

Every wait (``hang``, delays) waits on the server's stop event, so ``stop()`` ends them at once;
``stop()`` also shuts the open client connections down (idle keep-alive ones included) and joins
their threads, so it returns within about a second even while a request hangs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from . import payloads
from .behavior import Behavior, Playbook
from .calls import RecordedCall
from .payloads import InvalidRequest, Reply, StreamEvent

_log = logging.getLogger(__name__)

_CONTROL = "/_fake/"
_BAD_JSON = (
    "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload, "
    "but what was sent was not valid JSON."
)
_Validate = Callable[[Mapping[str, Any]], None]
_Build = Callable[[Mapping[str, Any], Behavior], Reply]
_ENDPOINTS: dict[str, tuple[_Validate | None, _Build]] = {
    "/v1/chat/completions": (payloads.validate_chat, payloads.chat_reply),
    "/v1/responses": (None, payloads.responses_reply),
    "/v1/embeddings": (payloads.validate_embeddings, payloads.embeddings_reply),
}


class FakeOpenAI:
    """An OpenAI-compatible server on ``host`` (a free port when ``port`` is 0).

    Use it as a context manager, or call ``start()`` / ``stop()``. Behaviours, scripts and the
    recorded calls survive a stop and a restart (which reuses the port). ``max_calls`` keeps only
    the latest that many recorded calls (a server that runs for hours: ``llm-otel demo``).
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, max_calls: int | None = None) -> None:
        self.host = host
        self.port = port
        self._playbook = Playbook()
        self._calls: deque[RecordedCall] = deque(maxlen=max_calls)
        self._calls_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``base_url`` for the OpenAI client, e.g. ``http://127.0.0.1:PORT/v1``."""
        if not self.port:
            raise RuntimeError("FakeOpenAI picks its port when it starts: call start() or use `with` first")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("FakeOpenAI is already running; stop() it before starting it again")
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._server = server
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving, end hanging requests, close every socket. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.close_connections(timeout)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def script(self, *behaviors: Behavior, model: str | None = None) -> None:
        """Queue one-shot behaviours, one per request, oldest first; ``model`` restricts them to
        requests for that model (they then go before the behaviours scripted for any model)."""
        self._playbook.script(behaviors, model)

    def set_default(self, behavior: Behavior, *, model: str | None = None) -> None:
        """Answer requests for ``model`` (``None``: any model) this way when nothing is scripted."""
        self._playbook.set_default(behavior, model)

    @property
    def calls(self) -> list[RecordedCall]:
        """Every request received (control requests aside; the latest ``max_calls``), in order: a copy."""
        with self._calls_lock:
            return list(self._calls)

    def reset(self) -> None:
        """Forget scripts, defaults and recorded calls."""
        self._playbook.reset()
        with self._calls_lock:
            self._calls.clear()

    def _record(self, call: RecordedCall) -> None:
        with self._calls_lock:
            self._calls.append(call)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeOpenAI) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            if self.stopping.is_set():
                _shut(connection)
            self._open[connection] = threading.current_thread()

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.pop(connection, None)

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection down and join the threads serving them."""
        with self._lock:
            opened = dict(self._open)
        for connection in opened:
            _shut(connection)
        deadline = time.monotonic() + timeout
        for thread in opened.values():
            thread.join(max(deadline - time.monotonic(), 0))


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer
        connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Send each write (headers, body, every stream chunk) at once: with Nagle's algorithm a
        # small write waits for the client's delayed ACK, ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the client went away (timeout, dropped stream, stop)
            super().handle()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            if not path.startswith(_CONTROL):
                self._record(path, None, None, 400)
            self._send_json(400, InvalidRequest(_BAD_JSON).body)
            return
        if path.startswith(_CONTROL):
            self._control(path, body)
        elif self.command == "POST" and path in _ENDPOINTS:
            self._api(path, body, *_ENDPOINTS[path])
        elif (self.command, path) == ("GET", "/v1/models"):
            self._record(path, body, None, 200)
            self._send_json(200, payloads.models_list())
        else:
            self._record(path, body, None, 404)
            self._send_json(404, payloads.not_found_body(self.command, path))

    def _api(self, path: str, body: Any, validate: _Validate | None, build: _Build) -> None:
        try:
            if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
                raise InvalidRequest("you must provide a model parameter")
            if validate is not None:
                validate(body)
        except InvalidRequest as refused:
            self._record(path, body, None, 400)
            self._send_json(400, refused.body)
            return
        behavior = self.server.fake._playbook.next_for(body["model"])
        reply = build(body, behavior) if behavior.status == 200 else None
        streaming = reply is not None and reply.events is not None
        dropped = streaming and behavior.drop_after_chunks is not None
        usage = reply.usage if reply is not None and not dropped else None
        self._record(path, body, behavior, behavior.status, usage, reply.response_id if reply else None)
        if self._pause(behavior.hang if streaming else behavior.hang + behavior.first_chunk_delay):
            return
        if reply is None:
            headers = (
                {} if behavior.retry_after_ms is None else {"retry-after-ms": f"{behavior.retry_after_ms:g}"}
            )
            self._send_json(
                behavior.status, payloads.error_body(behavior.status, behavior.error_message), headers
            )
        elif reply.events is not None:
            self._send_stream(reply.events, behavior)
        else:
            self._send_json(200, reply.body)

    def _control(self, path: str, body: Any) -> None:
        fake = self.server.fake
        route = (self.command, path.removeprefix(_CONTROL))
        try:
            if route == ("GET", "calls"):
                answer: dict[str, Any] = {"calls": [call.to_dict() for call in fake.calls]}
            elif route == ("POST", "script"):
                behaviors = [Behavior.from_dict(item) for item in _field(body, "behaviors", list)]
                fake.script(*behaviors, model=_model(body))
                answer = {"queued": len(behaviors)}
            elif route == ("POST", "default"):
                fake.set_default(Behavior.from_dict(_field(body, "behavior", dict)), model=_model(body))
                answer = {"ok": True}
            elif route == ("POST", "reset"):
                fake.reset()
                answer = {"ok": True}
            else:
                self._send_json(404, payloads.not_found_body(self.command, path))
                return
        except (TypeError, ValueError) as error:
            self._send_json(400, InvalidRequest(str(error)).body)
            return
        self._send_json(200, answer)

    def _record(
        self,
        path: str,
        body: Any,
        behavior: Behavior | None,
        status: int,
        usage: dict[str, Any] | None = None,
        response_id: str | None = None,
    ) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            retry_count: int | None = int(headers["x-stainless-retry-count"])
        except (KeyError, ValueError):
            retry_count = None
        self.server.fake._record(
            RecordedCall(path, self.command, headers, body, behavior, status, usage, response_id, retry_count)
        )

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; True (and the connection will close) when the server is stopping."""
        stopping = self.server.stopping
        if stopping.wait(seconds) if seconds > 0 else stopping.is_set():
            self.close_connection = True
            return True
        return False

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", payloads.new_id("req_", 32))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: list[StreamEvent], behavior: Behavior) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", payloads.new_id("req_", 32))
        self.end_headers()
        cut = len(events) if behavior.drop_after_chunks is None else _cut(events, behavior.drop_after_chunks)
        sent = 0
        for event in events[:cut]:
            if event.content:
                if self._pause(behavior.chunk_delay if sent else behavior.first_chunk_delay):
                    return
                sent += 1
            data = event.encode()
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        if cut < len(events):
            self.close_connection = True
            _shut(self.connection)
            return
        self.wfile.write(b"0\r\n\r\n")


def _cut(events: list[StreamEvent], content_chunks: int) -> int:
    """Where a stream is dropped: before content chunk ``content_chunks + 1``, else right after
    the last content chunk (so no finish chunk, usage or ``[DONE]`` is sent)."""
    positions = [index for index, event in enumerate(events) if event.content]
    if content_chunks < len(positions):
        return positions[content_chunks]
    return positions[-1] + 1 if positions else len(events) - 1


def _field(body: Any, name: str, kind: type) -> Any:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"the body must be a JSON object whose {name!r} is a {kind.__name__}")
    return value


def _model(body: Mapping[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError(f"'model' must be a string or null, not {model!r}")
    return model
