"""``llm-otel serve``, ``llm-otel export`` and the demo's admin page, run as a user runs them: the
console script in a subprocess, a real SQLite store, real HTTP to the printed URLs."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LLM_OTEL = Path(sys.executable).with_name("llm-otel")
ENV = {key: value for key, value in os.environ.items() if not key.startswith(("LLM_OTEL_", "OPENAI_"))}
API = "/api/admin/jobs"


def _count(db: Path, where: str = "1") -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute(f"SELECT count(*) FROM llm_calls WHERE {where}").fetchone()[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of the errors fixture (failures of several types, retries) and of a few seconds of demo."""
    db = tmp_path_factory.mktemp("admin") / "calls.db"
    done = subprocess.run(
        [str(LLM_OTEL), "demo", "--db", str(db), "--fixture", "errors", "--duration", "3s", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    assert _count(db, "status = 'failed'") > 0 and _count(db, "status = 'succeeded'") > 0
    return db


@dataclass
class Running:
    """A running ``llm-otel`` command: its banner lines; ``stdout``/``stderr`` (the rest) once it ended."""

    process: subprocess.Popen
    lines: list[str]
    stdout: str = ""
    stderr: str = ""

    def wait(self, timeout: float = 60) -> int:
        self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode


@contextmanager
def _running(*args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    """Start ``llm-otel *args`` and read its banner (up to "Ctrl-C stops."); Ctrl-C at the end."""
    process = subprocess.Popen(
        [str(LLM_OTEL), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV
    )
    assert process.stdout is not None
    running = Running(process, [])
    try:
        while not running.lines or not running.lines[-1].startswith(("Ctrl-C stops", "Stops after")):
            line = process.stdout.readline()
            assert line, f"llm-otel {args[0]} ended early: {process.communicate()[1]}"
            running.lines.append(line.rstrip("\n"))
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            running.wait(30)


def _after(lines: list[str], prefix: str) -> str:
    [line] = [line for line in lines if line.startswith(prefix)]
    return line[len(prefix) :].strip()


def _get(
    url: str | urllib.request.Request, token: str | None = None, opener: Any = None
) -> tuple[int, dict[str, str], bytes]:
    request = url if isinstance(url, urllib.request.Request) else urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _origin(url: str) -> str:
    return url.split("/admin/", 1)[0]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # hand the 30x back as it came


def _browser() -> Any:
    """An HTTP client that keeps cookies and does not follow redirects, as a test of a login needs."""
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirects
    )


def test_serve_prints_the_page_and_a_login_link_and_the_token_logs_a_browser_in(store: Path) -> None:
    with _running("serve", "--db", str(store), "--port", "0", "--token", "s3cret-token") as serve:
        lines = serve.lines
        page = _after(lines, "llm-otel admin on").split()[0]
        assert page.endswith("/admin/jobs/") and f"{_count(store)} calls" in lines[0]
        assert _after(lines, "Log in:") == f"{page}?token=s3cret-token"
        api = _origin(page) + f"{API}/llm/calls?page_size=1"

        assert _get(api)[0] == 401  # anonymous
        assert _get(api, token="wrong")[0] == 401
        status, _, body = _get(api, token="s3cret-token")
        assert status == 200 and json.loads(body)["total"] == _count(store)

        status, headers, _ = _get(page, opener=_browser())
        assert status == 303 and "/admin/jobs/login" in headers["Location"]  # anonymous: to the login form
        browser = _browser()  # the printed link logs in once and drops the token from the address
        status, headers, _ = _get(_after(lines, "Log in:"), opener=browser)
        assert (
            status == 303
            and headers["Location"].endswith("/admin/jobs/")
            and "token" not in headers["Location"]
        )
        status, headers, body = _get(page, opener=browser)
        assert status == 200 and headers["Content-Type"].startswith("text/html")

        browser = _browser()
        assert b'name="token"' in _get(page + "login", opener=browser)[2]  # the login form
        form = urllib.parse.urlencode({"token": "s3cret-token"}).encode()
        status, headers, _ = _get(urllib.request.Request(page + "login", data=form), opener=browser)
        assert status == 303 and "llm_otel_admin=" in headers["Set-Cookie"]
        status, _, body = _get(api, opener=browser)
        assert status == 200 and json.loads(body)["total"] == _count(store)
    assert serve.process.returncode == 0, serve.stderr
    assert "GET /api/admin/jobs/llm/calls?page_size=1" in serve.stderr  # the request log
    assert "s3cret-token" not in serve.stderr and "Traceback" not in serve.stderr


def test_serve_takes_every_option_from_the_environment(store: Path) -> None:
    env = {**ENV, "LLM_OTEL_DB": str(store), "LLM_OTEL_ADMIN_PORT": "0", "LLM_OTEL_ADMIN_TOKEN": "from-env"}
    with _running("serve", "--quiet", env=env) as serve:
        lines = serve.lines
        page = _after(lines, "llm-otel admin on").split()[0]
        assert _after(lines, "Log in:") == f"{page}?token=from-env"
        status, _, body = _get(_origin(page) + f"{API}/llm/calls?page_size=1", token="from-env")
        assert status == 200 and json.loads(body)["total"] == _count(store)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: connections are refused


def test_serve_starts_while_its_postgresql_store_is_down_and_says_so() -> None:
    url = f"postgresql://app:secret@127.0.0.1:{_closed_port()}/calls"
    with _running("serve", "--db", url, "--port", "0", "--token", "t", "--quiet") as serve:
        assert "the store cannot be reached" in serve.lines[0] and "the page answers 503" in serve.lines[0]
        page = _after(serve.lines, "llm-otel admin on").split()[0]
        assert _get(_origin(page) + f"{API}/llm/calls", token="t")[0] == 503
    assert serve.process.returncode == 0 and "secret" not in serve.stdout + serve.stderr + "".join(
        serve.lines
    )


def test_serve_on_a_taken_port_is_one_line_and_exit_code_2(store: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(LLM_OTEL), "serve", "--db", str(store), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
        )
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"Error: Invalid value for '--port': cannot listen on 127.0.0.1:{port}: ")


def _export(*args: str, status: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(LLM_OTEL), "export", *args], capture_output=True, text=True, timeout=120, env=ENV
    )
    assert done.returncode == status, done.stderr
    return done


def test_export_writes_the_same_lines_as_the_admin_apis_export(store: Path) -> None:
    lines = _export("--db", str(store)).stdout.splitlines()
    assert len(lines) == _count(store)
    first = json.loads(lines[0])
    assert {"call_id", "status", "enqueued_at", "input_messages", "output_messages"} <= first.keys()
    assert first["enqueued_at"].endswith("Z")  # ISO 8601 UTC, as the API writes it

    with _running("serve", "--db", str(store), "--port", "0", "--token", "t", "--quiet") as serve:
        page = _after(serve.lines, "llm-otel admin on").split()[0]
        status, headers, body = _get(_origin(page) + f"{API}/llm/calls/export", token="t")
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    assert body.decode().splitlines() == lines


def test_export_filters_sorts_and_writes_a_file(store: Path, tmp_path: Path) -> None:
    failed = [
        json.loads(line) for line in _export("--db", str(store), "--status", "failed").stdout.splitlines()
    ]
    assert len(failed) == _count(store, "status = 'failed'") > 0
    assert {call["status"] for call in failed} == {"failed"}

    error_type = failed[0]["error_type"]
    same_type = _export("--db", str(store), "--status", "failed,cancelled", "--error-type", error_type).stdout
    assert len(same_type.splitlines()) == _count(store, f"error_type = '{error_type}'")

    slowest = [
        json.loads(line)["duration_ms"]
        for line in _export("--db", str(store), "--sort", "duration").stdout.splitlines()
    ]
    timed = [ms for ms in slowest if ms is not None]
    assert timed == sorted(timed, reverse=True) and slowest[: len(timed)] == timed

    assert _export("--db", str(store), "--until", "2000-01-01").stdout == ""
    assert len(_export("--db", str(store), "--since", "30d").stdout.splitlines()) == _count(store)

    out = tmp_path / "calls.jsonl"
    done = _export("--db", str(store), "--slower-than", "2s", "-o", str(out))
    assert done.stdout == ""
    assert len(out.read_text().splitlines()) == _count(store, "duration_ms >= 2000")
    slow = _count(store, "duration_ms >= 2000")
    assert done.stderr.splitlines()[-1] == f"exported {slow:,} call{'' if slow == 1 else 's'} to {out}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "lost"], "Invalid value for '--status': lost: the statuses are queued, running"),
        (["--since", "yesterday"], "'yesterday' is not a time: write ISO 8601"),
        (["--slower-than", "2"], "'2' is not a duration"),
        (["--sort", "cheapest"], "'cheapest' is not one of"),
    ],
)
def test_export_answers_bad_input_with_one_line_and_exit_code_2(
    store: Path, args: list[str], message: str
) -> None:
    done = _export("--db", str(store), *args, status=2)
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: ") and message in line


def test_export_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    done = _export("--db", str(tmp_path / "nope" / "calls.db"), status=2)
    assert "there is no store at" in done.stderr and not (tmp_path / "nope").exists()


def test_the_demo_serves_its_calls_live_in_the_admin_page(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    with _running("demo", "--db", str(db), "--port", "0", "--duration", "10s", "--seed", "5") as demo:
        page = _after(demo.lines, "Admin page:")
        login = _after(demo.lines, "Log in:")
        assert login.startswith(f"{page}?token=")
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(login).query)["token"][0]
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, headers, _ = _get(login, opener=browser)  # follows the login's redirect to the page
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        seen = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(set(seen)) < 3:  # the total grows while the page is open
            status, _, body = _get(_origin(page) + f"{API}/llm/calls?page_size=1", token=token)
            assert status == 200
            seen.append(json.loads(body)["total"])
            time.sleep(0.5)
        assert len(set(seen)) >= 3 and seen == sorted(seen)
        assert demo.wait(60) == 0, demo.stderr  # --duration ends it
    assert f"{_count(db)} calls recorded by this run ({_count(db)} in the store)" in demo.stdout
    with sqlite3.connect(db) as connection:
        sources = {row[0] for row in connection.execute("SELECT DISTINCT source FROM llm_calls")}
        tasks = connection.execute("SELECT count(DISTINCT name) FROM llm_tasks").fetchone()[0]
    assert len(sources) >= 3 and tasks >= 2
