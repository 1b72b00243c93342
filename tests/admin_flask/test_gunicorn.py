"""The admin as README and docs/configuration.md run it in production: gunicorn's ``gthread``
workers, two of them, sharing ``LLM_OTEL_ADMIN_TOKEN``.

What only several worker processes can show: a browser session made by one worker is taken by the
other (the cookie's key comes from the shared token), each worker's own feed reader serves the
websockets it holds, the login link's token never reaches gunicorn's access log, and SIGTERM with
websockets open stops the server and closes them. Which worker served a request is read from
the access log (``%(p)s``, the worker's pid), not guessed.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import simple_websocket

from tests.admin_flask.conftest import API, FAST_FEED, TOKEN, ChildWriter, Store
from tests.admin_flask.test_live import call_ended, latest_event_id, messages_until
from tests.polling import until

REPO = Path(__file__).resolve().parents[2]
WORKERS = 2
GRACEFUL_TIMEOUT_S = 5
_LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
_ACCESS = re.compile(r'^<(\d+)> "(\S+) (\S+) [^"]*" (\d+) (\S+)$')


class Gunicorn:
    """``gunicorn -k gthread --workers 2`` serving ``admin_flask:create_app()`` over ``store``."""

    def __init__(self, store: Store, directory: Path) -> None:
        self.access_log = directory / "access.log"
        env = {
            **os.environ,
            "LLM_OTEL_DB": store.url,
            "LLM_OTEL_ADMIN_TOKEN": TOKEN,
            **{key: str(value) for key, value in FAST_FEED.items()},
        }
        command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--workers", str(WORKERS)]
        command += [
            "--threads",
            "16",
            "--no-control-socket",
            "--graceful-timeout",
            str(GRACEFUL_TIMEOUT_S),
            "-b",
            "127.0.0.1:0",
        ]
        command += [
            "--access-logfile",
            str(self.access_log),
            "--access-logformat",
            '%(p)s "%(r)s" %(s)s %({x-request-id}i)s',
        ]
        command += ["admin_flask:create_app()"]
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self._requests = itertools.count(1)
        self.url = self._listening()
        threading.Thread(target=self._drain, daemon=True).start()

    def _listening(self) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if match := _LISTENING.search(line):
                return match.group(1)
        raise AssertionError("gunicorn did not start:\n" + "".join(self.stderr))

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def served(self) -> list[tuple[int, str, int, str]]:
        """The access log: (worker pid, target, status, ``X-Request-Id``) per request answered."""
        if not self.access_log.exists():
            return []
        lines = self.access_log.read_text().splitlines()
        return [(int(m[1]), m[3], int(m[4]), m[5]) for line in lines if (m := _ACCESS.match(line))]

    def get(self, path: str, headers: dict[str, str], **params: Any) -> tuple[httpx2.Response, int]:
        """GET on a new connection; the response and the pid of the worker that answered it."""
        request_id = f"request-{next(self._requests)}"
        with httpx2.Client(base_url=self.url, headers=headers, timeout=30) as client:
            response = client.get(path, params=params, headers={"X-Request-Id": request_id})
        logged = lambda: [pid for pid, _, _, logged in self.served() if logged == request_id]  # noqa: E731
        [pid] = until(logged, f"{request_id} in the access log")
        return response, pid

    def stop(self) -> int:
        """SIGTERM, as a process manager stops it; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(GRACEFUL_TIMEOUT_S + 15)  # a hang guard, not a measure
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("gunicorn did not stop on SIGTERM:\n" + "".join(self.stderr)) from None


@pytest.fixture
def gunicorn(store: Store, tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(store, tmp_path)
    yield server
    server.stop()


def live(server: Gunicorn, **headers: str) -> simple_websocket.Client:
    return simple_websocket.Client.connect(
        server.url.replace("http://", "ws://") + f"{API}/llm/ws", headers=headers
    )


def test_a_session_made_by_one_worker_is_taken_by_the_other(gunicorn: Gunicorn) -> None:
    with httpx2.Client(base_url=gunicorn.url, timeout=30) as browser:
        login = browser.get(f"/admin/jobs/?token={TOKEN}")
        assert login.status_code == 303 and TOKEN not in login.headers["location"]
        cookie = browser.cookies["llm_otel_admin"]

    taken_by: set[int] = set()

    def every_worker_took_it() -> bool:
        response, pid = gunicorn.get(f"{API}/llm/calls", {"Cookie": f"llm_otel_admin={cookie}"}, page_size=1)
        assert response.status_code == 200, response.text
        taken_by.add(pid)
        return len(taken_by) == WORKERS

    until(every_worker_took_it, lambda: gunicorn.served()[-5:])
    logged = gunicorn.access_log.read_text()
    assert "token=[redacted]" in logged
    assert TOKEN not in logged, "the login link's token reached gunicorn's access log"


def test_each_worker_feeds_its_clients_a_call_another_process_made(
    gunicorn: Gunicorn, child: ChildWriter, store: Store
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    clients = [live(gunicorn, **bearer) for _ in range(8)]
    try:
        for ws in clients:
            messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
        before = latest_event_id(store)
        child.call("under-gunicorn")
        for ws in clients:
            messages = messages_until(ws, call_ended("under-gunicorn"))
            assert [m["call"]["requested_by"] for m in messages if m["type"] == "llm.call"][-1] == "child"
    finally:
        for ws in clients:
            ws.close()
    # gunicorn does not log a websocket; it logs a long poll, with the pid of the worker whose feed
    # answered it. Every worker's feed gives the same events.
    answers: dict[int, list[tuple[str, str]]] = {}

    def every_worker_answered() -> bool:
        response, pid = gunicorn.get(f"{API}/llm/events", bearer, after=before, timeout=0)
        assert response.status_code == 200, response.text
        messages = response.json()["events"]
        answers[pid] = [(m["call"]["source"], event["kind"]) for m in messages for event in m["events"]]
        return len(answers) == WORKERS

    until(every_worker_answered, lambda: gunicorn.served()[-5:])
    events = [("under-gunicorn", kind) for kind in ("queued", "dispatched", "succeeded")]
    assert list(answers.values()) == [events] * WORKERS, answers


def test_a_stop_with_websockets_open_ends_the_server_and_closes_them(gunicorn: Gunicorn) -> None:
    clients = [live(gunicorn, Authorization=f"Bearer {TOKEN}") for _ in range(4)]
    for ws in clients:
        messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    assert gunicorn.stop() == 0, "".join(gunicorn.stderr)
    for ws in clients:
        with pytest.raises(simple_websocket.ConnectionClosed):
            for _ in range(100):
                ws.receive(timeout=1)
    assert "Shutting down: Master" in "".join(gunicorn.stderr)
