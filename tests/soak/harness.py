"""The moving parts of a soak run, each a real process or a real client: the fake OpenAI server and
the admin server as child processes (the admin can be SIGKILLed and started again on its port), app
processes (``tests.soak.app_process``), websocket clients and long polls that record every message
and resume after the last one when the admin goes away, as the page does, a slow export reader, and
a reader that keeps asking the list API.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import simple_websocket

REPO = Path(__file__).resolve().parents[2]
TOKEN = "soak-admin-token"
API = "/api/admin/jobs"

_ADMIN_SERVER = """
import sys
from werkzeug.serving import make_server
from admin_flask import create_app
app = create_app(db=sys.argv[1], token=sys.argv[2])
server = make_server("127.0.0.1", int(sys.argv[3]), app, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@contextmanager
def fake_openai_process() -> Iterator[str]:
    """``llm-otel fake-openai`` in a child process (the app processes must not share its GIL)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "llm_otel.testing", "--port", "0"],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            found = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
            if found:
                yield found.group(0)
                break
        else:
            raise RuntimeError("the fake OpenAI server did not start")
    finally:
        child.terminate()
        child.wait(10)


@dataclass
class AdminServer:
    port: int
    process: subprocess.Popen
    db_url: str
    log: Path | None = None
    restarts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, Any, float]:
        """(status, JSON body, seconds) of ``GET {api}{path}`` as the admin."""
        request = urllib.request.Request(self.base + API + path, headers={"Authorization": f"Bearer {TOKEN}"})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read()), time.monotonic() - started
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null"), time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: no request, long poll, export or websocket it holds gets an answer or a close."""
        self.process.kill()
        self.process.wait(10)

    def start_again(self) -> None:
        """A new admin process on the same port (the clients reconnect to the same URL)."""
        self.process = _spawn_admin(self.db_url, self.port, self.log)[1]
        self.restarts += 1


def _spawn_admin(db_url: str, port: int, log: Path | None) -> tuple[int, subprocess.Popen]:
    with open(log, "a") if log else open(os.devnull, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", _ADMIN_SERVER, db_url, TOKEN, str(port)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert child.stdout is not None
    return int(child.stdout.readline()), child


def start_admin(db_url: str, port: int = 0, log: Path | None = None) -> AdminServer:
    """The admin in a child process; its log (warnings, request lines) appended to ``log``."""
    port, child = _spawn_admin(db_url, port, log)
    return AdminServer(port=port, process=child, db_url=db_url, log=log)


def stop_admin(server: AdminServer) -> None:
    server.process.terminate()
    server.process.wait(10)


_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)  # the page's first reconnect delays (admin_flask/static/js/live.js)
_GIVE_UP_S = 60.0
_REQUEST_ERRORS = (OSError, http.client.HTTPException, ValueError)
"""A request cut by a dead admin: refused, reset, a body cut short (``IncompleteRead``), bad JSON."""


class _Background:
    """A daemon thread running ``_run`` from ``start()`` until ``stop()``, which waits ``JOIN_S`` for it
    (about its longest request)."""

    JOIN_S: ClassVar[float] = 10.0
    _stop: threading.Event
    _thread: threading.Thread

    def start(self) -> Self:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.JOIN_S)

    def _run(self) -> None:
        raise NotImplementedError


@dataclass
class _Retrying:
    """A live client's reconnect schedule, the page's: ``_BACKOFF_S``, given up after ``_GIVE_UP_S``."""

    failing_since: float | None = None
    attempt: int = 0

    def failed(self, stop: threading.Event) -> bool:
        """Wait the next delay (or until ``stop``); False once failing for longer than ``_GIVE_UP_S``."""
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > _GIVE_UP_S:
            return False
        stop.wait(_BACKOFF_S[min(self.attempt, len(_BACKOFF_S) - 1)])
        self.attempt += 1
        return True

    def succeeded(self) -> None:
        self.failing_since, self.attempt = None, 0


@dataclass
class FeedRecord:
    """What one live client received: every ``llm.call`` as (event_id, call_id, status), and the
    gaps it was told to fill from the store (``llm.reset``: from the last event it had to N)."""

    calls: list[tuple[int, str, str | None]] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    reset_reasons: list[str] = field(default_factory=list)
    disconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, message: dict[str, Any]) -> int:
        call = message["call"] or {}
        self.calls.append((message["event_id"], sys.intern(message["call_id"]), call.get("status")))
        return message["event_id"]


@dataclass
class WebsocketRecorder(FeedRecord, _Background):
    """One admin's live feed, reconnecting as the page does: with ``after`` = the last event it got,
    or, after an ``llm.reset``, the reset's ``last_event_id`` (the gap is then read from the store)."""

    base: str = ""  # ws://127.0.0.1:port{API}/llm/ws
    after: int = 0

    def _run(self) -> None:
        position, retrying = self.after, _Retrying()
        while not self._stop.is_set():
            try:
                client = simple_websocket.Client.connect(
                    f"{self.base}?after={position}", headers={"Authorization": f"Bearer {TOKEN}"}
                )
            except Exception as exc:  # the admin is down: retry, as the page does
                if not retrying.failed(self._stop):
                    self.errors.append(f"connect: {exc!r}")
                    return
                continue
            retrying.succeeded()
            try:
                while not self._stop.is_set():
                    text = client.receive(timeout=0.5)
                    if text is None:
                        continue
                    message = json.loads(text)
                    if message.get("type") == "llm.call":
                        position = self.add(message)
                    elif message.get("type") == "llm.reset":
                        self.gaps.append((position, message["last_event_id"]))
                        self.reset_reasons.append(message["reason"])
                        position = message["last_event_id"]
            except simple_websocket.ConnectionClosed:
                if not self._stop.is_set():
                    self.disconnects += 1
            except Exception as exc:
                self.errors.append(f"receive: {exc!r}")
                return
            finally:
                with contextlib.suppress(simple_websocket.ConnectionClosed):
                    client.close()


@dataclass
class LongPollRecorder(FeedRecord, _Background):
    """A client of ``llm/events`` (the page's fallback): polls after its ``last_event_id``, retrying
    while the admin is down."""

    server: AdminServer | None = None
    after: int = 0
    polls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    JOIN_S: ClassVar[float] = 40.0

    def _run(self) -> None:
        assert self.server is not None
        position, retrying = self.after, _Retrying()
        while not self._stop.is_set():
            try:
                status, body, _ = self.server.get(f"/llm/events?after={position}&timeout=10", timeout=30)
            except _REQUEST_ERRORS:
                status, body = -1, None
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status != 200:
                self.disconnects += status == -1
                if not retrying.failed(self._stop):
                    self.errors.append(f"long poll: {status} {body!r}"[:300])
                    return
                continue
            retrying.succeeded()
            self.polls += 1
            for message in body["events"]:
                self.add(message)
            position = body["last_event_id"]


@dataclass
class ExportReader(_Background):
    """Downloads one filtered export after another, slowly (an export is always open, so the admin's
    death cuts one): counts the exports completed and cut, and any line that is not JSON."""

    server: AdminServer
    query: str
    bytes_per_s: int = 256 * 1024
    completed: int = 0
    cut: int = 0
    lines: int = 0
    bad_lines: list[str] = field(default_factory=list)
    JOIN_S: ClassVar[float] = 40.0

    def _run(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(
                self.server.base + API + "/llm/calls/export?" + self.query,
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    for line in response:
                        if self._stop.is_set():
                            return
                        self._check(line)
                        self._stop.wait(len(line) / self.bytes_per_s)
                self.completed += 1
            except _REQUEST_ERRORS:
                self.cut += 1
                self._stop.wait(0.5)

    def _check(self, line: bytes) -> None:
        if not line.endswith(b"\n"):
            return  # the tail of a body cut by the admin's death
        try:
            row = json.loads(line)
        except ValueError:
            self.bad_lines.append(line[:200].decode(errors="replace"))
            return
        if "error" in row:
            self.bad_lines.append(line[:200].decode(errors="replace"))
        self.lines += 1


@dataclass
class ListReader(_Background):
    """Asks the list API in a loop, with a different filter each time; keeps the worst answers."""

    server: AdminServer
    statuses: dict[int, int] = field(default_factory=dict)
    dropped_shown: dict[str, int] = field(default_factory=dict)  # per process, the most the status showed
    slowest: float = 0.0
    requests: int = 0
    JOIN_S: ClassVar[float] = 15.0

    QUERIES = (
        "/llm/calls?page_size=50",
        "/llm/calls?status=failed,cancelled",
        "/llm/calls?q=%E5%AD%A3%E5%BA%A6%E9%94%80%E5%94%AE&page=2",
        "/llm/calls?sort=duration&page_size=20",
        "/llm/facets?window=1h",
        "/llm/status?window=1h",
    )

    def _run(self) -> None:
        while not self._stop.is_set():
            path = self.QUERIES[self.requests % len(self.QUERIES)]
            try:
                status, body, seconds = self.server.get(path)
            except _REQUEST_ERRORS:
                status, body, seconds = -1, None, 0.0  # the server is being restarted
            if status == 200 and path.startswith("/llm/status"):
                for scheduler in body["schedulers"]:
                    process = scheduler["process"]
                    shown = max(self.dropped_shown.get(process, 0), scheduler["store_dropped"] or 0)
                    self.dropped_shown[process] = shown
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.slowest = max(self.slowest, seconds)
            self.requests += 1
            self._stop.wait(0.1)


def start_app_process(base_url: str, db_url: str, prefix: str, calls: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.soak.app_process", base_url, db_url, prefix, str(calls)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def app_result(process: subprocess.Popen, timeout: float) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])
