"""The moving parts of a soak run, each a real process or a real client: the fake OpenAI server and
the admin server as child processes, app processes (``tests.soak.app_process``), websocket clients
that record every message, and a reader that keeps asking the list API.
"""

from __future__ import annotations

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
from typing import Any

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


def start_admin(db_url: str, port: int = 0) -> AdminServer:
    child = subprocess.Popen(
        [sys.executable, "-c", _ADMIN_SERVER, db_url, TOKEN, str(port)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    return AdminServer(port=int(child.stdout.readline()), process=child)


def stop_admin(server: AdminServer) -> None:
    server.process.terminate()
    server.process.wait(10)


@dataclass
class WebsocketRecorder:
    """One admin's live feed: every ``llm.call`` message as (event_id, kind, call_id, status)."""

    url: str
    calls: list[tuple[int, str, str, str]] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> WebsocketRecorder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            client = simple_websocket.Client.connect(self.url, headers={"Authorization": f"Bearer {TOKEN}"})
        except Exception as exc:  # recorded: the test asserts there are none
            self.errors.append(f"connect: {exc!r}")
            return
        try:
            while not self._stop.is_set():
                text = client.receive(timeout=0.5)
                if text is None:
                    continue
                message = json.loads(text)
                if message.get("type") == "llm.call":
                    call = message["call"] or {}
                    self.calls.append(
                        (message["event_id"], message["kind"], call.get("call_id"), call.get("status"))
                    )
                else:
                    self.other.append(message)
        except simple_websocket.ConnectionClosed as exc:
            if not self._stop.is_set():
                self.errors.append(f"closed: {exc!r}")
        finally:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class ListReader:
    """Asks the list API in a loop, with a different filter each time; keeps the worst answers."""

    server: AdminServer
    statuses: dict[int, int] = field(default_factory=dict)
    dropped_shown: dict[str, int] = field(default_factory=dict)  # per process, the most the status showed
    slowest: float = 0.0
    requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    QUERIES = (
        "/llm/calls?page_size=50",
        "/llm/calls?status=failed,cancelled",
        "/llm/calls?q=%E5%AD%A3%E5%BA%A6%E9%94%80%E5%94%AE&page=2",
        "/llm/calls?sort=duration&page_size=20",
        "/llm/facets?window=1h",
        "/llm/status?window=1h",
    )

    def start(self) -> ListReader:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            path = self.QUERIES[self.requests % len(self.QUERIES)]
            try:
                status, body, seconds = self.server.get(path)
            except OSError:
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

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)


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
