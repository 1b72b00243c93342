"""Processes that die or exit: an app SIGKILLed mid-batch leaves a sound store whose calls in flight
another process closes as lost; the admin SIGKILLed during an export stream and a long poll harms
neither the store nor the app, and starts again on it; a loss an app's writer recorded stays on the
status card after that app has exited. Real app processes (``llm_otel.setup`` and the openai
client over HTTP to ``FakeOpenAI``), a real SQLite file, the real admin."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
from opentelemetry.sdk.trace import TracerProvider

import llm_otel
from admin_flask import create_app
from exporter.store import SpanStore
from llm_otel.testing import Behavior, FakeOpenAI
from tests.admin_flask.conftest import FAST_FEED, TOKEN, Admin
from tests.children import checkout_python
from tests.polling import until
from tests.sigkill import kill_while_writing
from tests.sqlite_file import rows

APP = textwrap.dedent(
    """
    import json, sys, threading, time
    import openai
    import llm_otel

    llm_otel.setup(db=sys.argv[2], scheduler=llm_otel.Scheduler(max_concurrency=4))
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-process-test", max_retries=0)

    def work(worker):
        i = 0
        while True:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"w{worker} {i}"}]
            )
            i += 1

    for worker in range(6):
        threading.Thread(target=work, args=(worker,), daemon=True).start()
    print("ready", flush=True)
    time.sleep(3600)
    """
)


def test_an_app_killed_mid_batch_leaves_a_sound_store_and_its_calls_are_closed_as_lost(
    tmp_path: Path, serve: Callable[..., Any]
) -> None:
    path = tmp_path / "killed.db"
    with FakeOpenAI() as server:
        server.set_default(Behavior(first_chunk_delay=0.02))  # calls in flight at any moment
        pid = kill_while_writing(  # once writing is in full swing: calls queued and running
            APP,
            [server.base_url, f"sqlite:///{path}"],
            lambda: path.exists() and rows(path, "SELECT count(*) FROM llm_calls")[0][0] >= 200,
            timeout=20,
        )
    process = f"{os.uname().nodename}:{pid}"

    assert rows(path, "PRAGMA integrity_check") == [("ok",)]
    assert rows(path, "SELECT count(*) FROM llm_calls")[0][0] >= 200
    # No half-written call: every row has its body and its queued event; every ended call its end event.
    assert rows(
        path,
        "SELECT count(*) FROM llm_calls LEFT JOIN llm_call_bodies USING (call_id) "
        "WHERE llm_call_bodies.call_id IS NULL",
    ) == [(0,)]
    assert rows(
        path,
        "SELECT count(*) FROM llm_calls c WHERE NOT EXISTS (SELECT 1 FROM llm_call_events e "
        "WHERE e.call_id = c.call_id AND e.kind = 'queued') OR (c.status IN ('succeeded', 'failed') "
        "AND NOT EXISTS (SELECT 1 FROM llm_call_events e WHERE e.call_id = c.call_id AND e.kind = c.status))",
    ) == [(0,)]
    in_flight = rows(path, "SELECT call_id FROM llm_calls WHERE status IN ('queued', 'running')")
    assert in_flight, "the app was killed with calls in flight"

    # Another process with a store (here: this one) closes them once the dead one's heartbeat is old.
    other = SpanStore(f"sqlite:///{path}", heartbeat_timeout_s=0.5)
    try:
        live = "SELECT count(*) FROM llm_calls WHERE status IN ('queued', 'running')"
        until(lambda: rows(path, live) == [(0,)], "the dead process's calls were not closed")
    finally:
        other.shutdown(2)
    config = {**FAST_FEED, "LLM_OTEL_ADMIN_STALE_AFTER_S": 0.5}
    admin = serve(create_app(db=f"sqlite:///{path}", token=TOKEN, config=config), Admin)
    lost = admin.json("/llm/calls", status="failed", error_type="process_lost", page_size=200)
    assert {item["call_id"] for item in lost["items"]} == {call_id for (call_id,) in in_flight}
    assert all(item["process"] == process and item["ended_at"] for item in lost["items"])
    dead = [row for row in admin.json("/llm/status")["schedulers"] if row["process"] == process]
    assert dead and not any(row["live"] for row in dead)  # listed, stale
    figures = {"calls_stored": admin.json("/llm/calls")["total"], "closed_as_lost": lost["total"]}
    print(f"FAULT sigkill mid-batch: {json.dumps(figures)}")


LOSING_APP = textwrap.dedent(
    """
    import functools, json, sys
    import openai
    import exporter
    import llm_otel

    exporter.SpanStore = functools.partial(exporter.SpanStore, queue_size=20)
    handle = llm_otel.setup(db=sys.argv[2])
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-process-test", max_retries=0)
    print("ready", flush=True)
    sys.stdin.readline()  # the store is locked now
    for i in range(100):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}])
    print("made", flush=True)
    sys.stdin.readline()  # the lock is released
    print(json.dumps({"flushed": handle.flush(10), **handle.store.stats()}), flush=True)
    llm_otel.shutdown()  # its scheduler snapshot (and the drop count in it) goes with it
    """
)


def test_a_loss_stays_on_the_status_card_after_the_app_exited(
    tmp_path: Path, serve: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    path = tmp_path / "lossy.db"
    child = checkout_python(LOSING_APP, fake_openai.base_url, f"sqlite:///{path}", stdin=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(120)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(5)
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "made"
    release.set()
    holder.join()
    child.stdin.write("go\n")
    child.stdin.flush()
    stats = json.loads(child.stdout.readline())
    assert child.wait(120) == 0

    assert stats["flushed"] and stats["dropped"] > 0
    admin = serve(create_app(db=f"sqlite:///{path}", token=TOKEN), Admin)
    store = admin.json("/llm/status")["store"]
    assert store["writers"] == []  # the process is gone, and its snapshot with it
    losses = store["losses"]
    assert (losses["dropped_records"], losses["dropped_calls"]) == (stats["dropped"], stats["dropped_calls"])
    (row,) = losses["items"]
    assert row["kind"] == "dropped" and row["process"].endswith(f":{child.pid}")
    assert "queue (20 records) was full" in row["reason"] and row["started_at"] <= row["ended_at"]
    stored = rows(path, "SELECT count(*) FROM llm_calls WHERE response_preview LIKE 'Echo: %'")[0][0]
    assert stored + stats["dropped_calls"] == 100  # every call stored in full or counted
    print(f"FAULT loss after exit: {json.dumps({'calls': 100, 'stored': stored, **losses, 'items': None})}")


ADMIN = textwrap.dedent(
    """
    import sys
    from werkzeug.serving import make_server
    from admin_flask import create_app

    app = create_app(db=sys.argv[1], token=sys.argv[2], config={"LLM_OTEL_ADMIN_STATUS_INTERVAL_S": 0.5})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()
    """
)


def start_admin(path: Path) -> tuple[subprocess.Popen[str], str]:
    admin = checkout_python(ADMIN, f"sqlite:///{path}", TOKEN, stderr=subprocess.DEVNULL)
    assert admin.stdout is not None
    return admin, f"http://127.0.0.1:{admin.stdout.readline().strip()}"


def test_the_admin_killed_mid_request_harms_neither_the_store_nor_the_app(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    path = tmp_path / "store.db"
    provider = TracerProvider()
    handle = llm_otel.setup(db=f"sqlite:///{path}", tracer_provider=provider)
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-process-test", max_retries=0)
    made, stop, failures = [0], threading.Event(), []

    def keep_calling() -> None:  # the app goes on the whole time
        while not stop.is_set():
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"a {made[0]}"}]
                )
                made[0] += 1
            except Exception as exc:  # pragma: no cover - what the test looks for
                failures.append(exc)

    caller = threading.Thread(target=keep_calling)
    admin, url = start_admin(path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        caller.start()
        until(lambda: made[0] >= 600, lambda: f"{made[0]} calls of 600 made; {failures[-3:]}", timeout=60)
        assert handle.flush(10)
        http = httpx2.Client(base_url=url, headers=headers, timeout=30)
        with http.stream("GET", "/api/admin/jobs/llm/calls/export") as export:  # a long export...
            assert export.status_code == 200
            lines = export.iter_lines()
            assert json.loads(next(lines))["call_id"]
            poll_started = threading.Event()

            def long_poll() -> None:  # ... and a long poll, both in flight when the admin dies
                poll_started.set()
                with contextlib.suppress(httpx2.HTTPError):
                    httpx2.get(f"{url}/api/admin/jobs/llm/events?timeout=25", headers=headers, timeout=30)

            poller = threading.Thread(target=long_poll)
            poller.start()
            assert poll_started.wait(5)
            time.sleep(0.2)
            admin.send_signal(signal.SIGKILL)
            admin.wait()
            killed_at = made[0]
            poller.join(10)
        http.close()

        assert rows(path, "PRAGMA integrity_check") == [("ok",)]
        admin, url = start_admin(path)  # starts again on the same store, and reads it
        until(  # the app goes on making calls, unaffected
            lambda: made[0] >= killed_at + 100,
            lambda: f"{made[0] - killed_at} calls of 100 made after the kill; {failures[-3:]}",
        )
        stop.set()
        caller.join(10)
        assert handle.flush(10) and failures == []
        stats = handle.store.stats()
        with httpx2.Client(base_url=url, headers=headers, timeout=30) as http:
            response = until(
                lambda: (answer := http.get("/api/admin/jobs/llm/calls")).status_code == 200 and answer,
                "the admin started again does not read the store",
            )
            assert response.json()["total"] == made[0]
            exported = http.get("/api/admin/jobs/llm/calls/export").text.splitlines()
            assert len(exported) == made[0] and http.get("/api/admin/jobs/llm/status").status_code == 200
        assert stats["dropped"] == 0
        assert rows(
            path,
            "SELECT count(*) FROM llm_calls LEFT JOIN llm_call_bodies USING (call_id) "
            "WHERE llm_call_bodies.call_id IS NULL",
        ) == [(0,)]
        print(
            f"FAULT admin killed mid-request: {json.dumps({'calls': made[0], 'dropped': stats['dropped']})}"
        )
    finally:
        stop.set()
        admin.kill()
        admin.wait()
        if admin.stdout is not None:
            admin.stdout.close()
        client.close()
        llm_otel.shutdown()
        provider.shutdown()
