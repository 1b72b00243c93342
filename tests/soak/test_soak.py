"""Soak runs (``make soak``; not part of ``make test``): many processes, many calls, real faults,
the admin SIGKILLed mid-run, a PostgreSQL server restarted mid-run, thousands of broken streams.

The defaults are the reliability issue's full scale. Scale down with ``SOAK_CALLS`` (calls per app
process, default 10,000), ``SOAK_PROCESSES`` (4), ``SOAK_CLIENTS`` (websocket clients of the load
run, 20) and ``SOAK_STREAMS`` (10,000). Each test prints its figures (calls, seconds, RSS, drops,
deliveries, resets) as ``SOAK <name>: {...}`` lines before it asserts, which docs/operations.md
quotes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter import open_database, run_retention
from exporter.fixtures import load_fixture
from tests.soak.harness import (
    API,
    ExportReader,
    FeedRecord,
    ListReader,
    LongPollRecorder,
    WebsocketRecorder,
    app_result,
    fake_openai_process,
    start_admin,
    start_app_process,
    stop_admin,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(3600)]  # make test's 120 s bound is for tests, not soaks

CALLS = int(os.environ.get("SOAK_CALLS", "10000"))
PROCESSES = int(os.environ.get("SOAK_PROCESSES", "4"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "20"))
LONG_POLLS = 2
ADMIN_DOWN_S = 2.0
DAY_MS = 86_400_000
ENDED = ("succeeded", "failed", "cancelled")


def _process_figures(result: dict[str, Any], stored: dict[str, int]) -> dict[str, Any]:
    """One app process's line of a run's report: its calls missing from the store (``stored``: the
    ended calls per source prefix) and its writer's state at the end."""
    return {
        "prefix": result["prefix"],
        "missing": CALLS - stored.get(result["prefix"], 0),
        "dropped": result["store"]["dropped"],
        "last_error": result["store"]["last_error"],
        "flushed": result["flushed"],
        "flush_s": result["flush_s"],
        "queued": result["store"]["queued"],
        "errors": result["errors"],
        "rss_mb": result["rss_mb"],
    }


def _report(name: str, figures: dict[str, Any]) -> None:
    print(f"\nSOAK {name}: {json.dumps(figures, ensure_ascii=False)}")


def _latest_event_id(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT coalesce(max(id), 0) FROM llm_call_events").fetchone()[0]


def _check_memory_flat(results: list[dict[str, Any]]) -> None:
    for result in results:
        rss = result["rss_mb"]
        # Warm-up (imports, pools, caches) happens in the first quarter; after it, the RSS may not
        # keep growing with the number of calls.
        assert rss["end"] - rss["quarter"] < 25, result


FINAL_EVENTS_SQL = (
    "SELECT e.call_id, max(e.id), c.status FROM llm_call_events e JOIN llm_calls c ON c.call_id = e.call_id "
    "WHERE e.id > {p} GROUP BY e.call_id, c.status"
)


def _final_events(path: Path, after: int) -> dict[str, tuple[int, str]]:
    """call_id → (id of its last event, its stored status), for the calls with events after ``after``."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute(FINAL_EVENTS_SQL.format(p="?"), (after,)).fetchall()
    return {call_id: (event_id, status) for call_id, event_id, status in rows}


def _check_feed(clients: list[FeedRecord], final: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """Every client: event ids strictly increasing (in order, none twice, across its reconnections)
    and every call's last event delivered, showing the call's stored status; a call whose last event
    fell in a gap an ``llm.reset`` opened is read from the store instead (the contract's reload)."""
    for client in clients:
        assert client.errors == []
        ids = [event_id for event_id, _, _ in client.calls]
        assert ids == sorted(set(ids)), "out of order or delivered twice"
        last = {call_id: (event_id, status) for event_id, call_id, status in client.calls}
        missing, wrong = [], []
        for call_id, (event_id, status) in final.items():
            got = last.get(call_id)
            if got is not None and got[0] == event_id:
                if got[1] != status:
                    wrong.append((call_id, got[1], status))
            elif not any(start < event_id <= end for start, end in client.gaps):
                missing.append(call_id)
        assert missing == [], f"{len(missing)} calls' final events not delivered"
        assert wrong == [], f"{len(wrong)} calls' final messages show another status: {wrong[:3]}"
    messages = [len(client.calls) for client in clients]
    return {
        "clients": len(clients),
        "messages_per_client": [min(messages), max(messages)],
        "resets": sum(len(client.gaps) for client in clients),
        "reset_reasons": sorted({reason for client in clients for reason in client.reset_reasons}),
        "calls_read_from_the_store_after_a_reset": sum(
            sum(1 for event_id, _ in final.values() if any(a < event_id <= b for a, b in client.gaps))
            for client in clients
        ),
    }


def _wait_for_feed(clients: list[FeedRecord], latest: int, timeout: float = 60) -> None:
    """Until every client has received (or been told to skip to) the last event, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        positions = [
            max([c[0] for c in client.calls[-1:]] + [end for _, end in client.gaps[-1:]] + [0])
            for client in clients
        ]
        if min(positions) >= latest:
            return
        time.sleep(0.5)


def _when(ready: Callable[[], bool], apps: list[subprocess.Popen]) -> bool:
    """Waits until ``ready()`` (checked every second) while the apps run; whether it came true."""
    while any(app.poll() is None for app in apps):
        if ready():
            return True
        time.sleep(1)
    return False


def _stored_calls(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT count(*) FROM llm_calls WHERE source LIKE 'p%-%'").fetchone()[0]


def test_load_four_processes_one_sqlite_file_live_clients_retention_and_the_admin_killed_mid_run(
    tmp_path: Path,
) -> None:
    """The load run; when half the calls are stored the admin is SIGKILLed (with websockets, long
    polls, list requests and an export open) and started again on its port after 2 s."""
    path = tmp_path / "soak.db"
    url = f"sqlite:///{path}"
    old = load_fixture(
        "normal-day", url, now_ms=int(time.time() * 1000) - 9 * DAY_MS
    )  # for retention to delete
    after = _latest_event_id(path)
    started = time.monotonic()
    with fake_openai_process() as base_url:
        admin = start_admin(url, log=tmp_path / "admin.log")
        try:
            ws = f"ws://127.0.0.1:{admin.port}{API}/llm/ws"
            recorders = [WebsocketRecorder(base=ws, after=after).start() for _ in range(CLIENTS)]
            pollers = [LongPollRecorder(server=admin, after=after).start() for _ in range(LONG_POLLS)]
            reader = ListReader(admin).start()
            export = ExportReader(admin, "source=p0-threads&requested_by=user-3").start()
            apps = [start_app_process(base_url, url, f"p{n}", CALLS) for n in range(PROCESSES)]
            retention = open_database(url)
            retention_runs, killed_at_calls, down_s = 0, None, None
            while any(app.poll() is None for app in apps):
                run_retention(retention, 7)  # beside each app's own: retention under sustained writing
                retention_runs += 1
                if killed_at_calls is None and _stored_calls(path) >= PROCESSES * CALLS // 2:
                    killed_at_calls = _stored_calls(path)
                    killed = time.monotonic()
                    admin.kill()
                    time.sleep(ADMIN_DOWN_S)
                    admin.start_again()
                    down_s = time.monotonic() - killed
                time.sleep(2)
            results = [app_result(app, timeout=120) for app in apps]
            _wait_for_feed([*recorders, *pollers], _latest_event_id(path))
            reader.stop()
            export.stop()
            for client in [*recorders, *pollers]:
                client.stop()
        finally:
            stop_admin(admin)

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        per_prefix = dict(
            connection.execute(
                "SELECT substr(source, 1, instr(source, '-') - 1), count(*) FROM llm_calls "
                "WHERE source LIKE 'p%-%' AND status IN ('succeeded', 'failed', 'cancelled') GROUP BY 1"
            ).fetchall()
        )
        duplicates = connection.execute(
            "SELECT count(*) FROM (SELECT call_id FROM llm_call_events WHERE kind = 'queued' "
            "GROUP BY call_id HAVING count(*) > 1)"
        ).fetchone()[0]
        left_old = connection.execute(
            "SELECT count(*) FROM llm_calls WHERE enqueued_at < ?", (int(time.time() * 1000) - 8 * DAY_MS,)
        ).fetchone()[0]
    _report(  # first: the figures of a failed run are what tells why
        "load",
        {
            "processes": PROCESSES,
            "calls": PROCESSES * CALLS,
            "stored": per_prefix,
            "wall_s": round(time.monotonic() - started),
            "seconds": [r["seconds"] for r in results],
            "flush_s": [r["flush_s"] for r in results],
            "dropped": [r["store"]["dropped"] for r in results],
            "app_errors": [r["errors"] for r in results],
            "rss_mb": [r["rss_mb"] for r in results],
            "old_calls_pruned": old,
            "retention_runs": retention_runs,
            "list_requests": reader.requests,
            "list_statuses": reader.statuses,
            "slowest_list_s": round(reader.slowest, 3),
            "admin_killed_at_calls": killed_at_calls,
            "admin_down_s": round(down_s or 0, 1),
            "websocket_disconnects": [r.disconnects for r in recorders],
            "websocket_errors": [r.errors for r in recorders if r.errors],
            "long_poll_polls": [p.polls for p in pollers],
            "long_poll_statuses": pollers[0].statuses,
            "export": {"completed": export.completed, "cut": export.cut, "lines": export.lines},
        },
    )
    for result in results:
        assert result["errors"] == {}, result  # no app ever saw "database is locked" or any error
        assert result["store"]["dropped"] == 0
    assert per_prefix == {f"p{n}": CALLS for n in range(PROCESSES)}
    assert duplicates == 0
    assert left_old == 0 and old > 0
    _check_memory_flat(results)
    assert killed_at_calls is not None and admin.restarts == 1, "the admin was never killed"
    final = _final_events(path, after)
    feed = _check_feed(recorders, final)
    assert "store_reset" not in feed["reset_reasons"]  # retention pruning the newest events is no new store
    for recorder in recorders:  # each noticed the kill; no other drop than the kill and its resets
        assert 1 <= recorder.disconnects <= admin.restarts + len(recorder.gaps), recorder.disconnects
    polled = _check_feed(pollers, final)
    assert polled["resets"] == 0 and all(poller.disconnects >= 1 for poller in pollers)
    assert export.bad_lines == [] and export.completed >= 1 and export.cut >= 1, export
    assert set(reader.statuses) <= {200, -1}, reader.statuses  # -1: refused while the admin was down
    _report("load feed", {"websocket": feed, "long_poll": polled})


def _lock_for(path: Path, seconds: float) -> subprocess.Popen:
    """Another process holds the file's write lock (``BEGIN EXCLUSIVE``) for ``seconds``."""
    script = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(float(sys.argv[2]))\n"
        "c.execute('ROLLBACK')\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 GB tmpfs the test can fill up (root only: ``mount``)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(mount)]).returncode
    ):
        pytest.fail("the disk-full soak needs root to mount a small tmpfs", pytrace=False)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_faults_mid_run_lose_nothing_uncounted_and_writing_resumes(small_disk: Path) -> None:
    path = small_disk / "faults.db"
    url = f"sqlite:///{path}"
    load_fixture("empty", url)
    started = time.monotonic()
    with fake_openai_process() as base_url:
        admin = start_admin(url)
        try:
            reader = ListReader(admin).start()
            apps = [start_app_process(base_url, url, f"p{n}", CALLS) for n in range(PROCESSES)]
            struck_mid_run = _when(lambda: _stored_calls(path) >= PROCESSES * CALLS // 4, apps)
            locker = _lock_for(path, 30)  # the file locked by another process for 30 s
            locker.wait(60)
            filler = small_disk / "filler.bin"
            with open(filler, "wb") as f:  # then the disk fills up
                try:
                    while True:
                        f.write(b"\0" * 2**20)
                except OSError:
                    pass
            time.sleep(10)
            filler.unlink()  # space comes back
            results = [app_result(app, timeout=600) for app in apps]
            time.sleep(2)
            reader.stop()
        finally:
            stop_admin(admin)

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = dict(
            connection.execute(
                "SELECT substr(source, 1, instr(source, '-') - 1), count(*) FROM llm_calls "
                "WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY 1"
            ).fetchall()
        )
    figures = [
        {
            **_process_figures(result, stored),
            "dropped_shown_by_status": reader.dropped_shown.get(result["process"], 0),
        }
        for result in results
    ]
    _report(  # first: the figures of a failed run are what tells why
        "faults",
        {
            "processes": PROCESSES,
            "calls": PROCESSES * CALLS,
            "wall_s": round(time.monotonic() - started),
            "seconds": [r["seconds"] for r in results],
            "list_statuses": reader.statuses,
            "per_process": figures,
        },
    )
    for figure in figures:
        assert figure["errors"] == {}, figure  # the app's calls all succeeded through both faults
        # A call not stored with its final status cost at least one dropped record, and the status
        # card showed the drops while the process ran.
        assert figure["missing"] <= figure["dropped"], figure
        assert figure["dropped_shown_by_status"] >= min(figure["dropped"], 1), figure
        # writing resumed by itself: at the end the process's queue drained into the store
        assert figure["flushed"] and figure["queued"] == 0, figure
    assert struck_mid_run, "the apps ended before a quarter of their calls were stored"
    assert any("full" in (r["store"]["last_error"] or "") for r in results), "the disk never filled"


def test_ten_thousand_abandoned_closed_and_cut_streams_leave_nothing_open(tmp_path: Path) -> None:
    path = tmp_path / "streams.db"
    streams = int(os.environ.get("SOAK_STREAMS", "10000"))
    started = time.monotonic()
    with fake_openai_process() as base_url:
        done = subprocess.run(
            [sys.executable, "-m", "tests.soak.streams_process", base_url, f"sqlite:///{path}", str(streams)],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["unexpected"] == {}
    assert result["open_spans"] == 0
    assert result["in_flight"] == 0 and result["queue_depth"] == 0
    assert result["rss_mb"]["end"] - result["rss_mb"]["quarter"] < 25, result
    with sqlite3.connect(path) as connection:
        statuses = dict(
            connection.execute("SELECT status, count(*) FROM llm_calls GROUP BY status").fetchall()
        )
    third = streams // 3
    assert sum(statuses.values()) == streams
    assert statuses.get("failed", 0) >= third  # the cut ones
    assert statuses.get("cancelled", 0) >= 2 * third  # abandoned and closed early, partial output kept
    _report("streams", {**result, "wall_s": round(time.monotonic() - started), "stored": statuses})


def _pg_scalar(url: str, sql: str) -> int:
    """The one value ``sql`` selects, read on a connection of its own (the server restarts)."""
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    finally:
        connection.close()


def test_four_processes_on_postgresql_with_the_server_restarted_mid_run(
    postgres_server, postgres_url
) -> None:
    from exporter import migrate

    migrate(open_database(postgres_url))
    clients = 5
    started = time.monotonic()
    with fake_openai_process() as base_url:
        admin = start_admin(postgres_url)
        try:
            status, body, _ = admin.get("/llm/status")
            after = body["last_event_id"] if status == 200 and "last_event_id" in body else 0
            ws = f"ws://127.0.0.1:{admin.port}{API}/llm/ws"
            recorders = [WebsocketRecorder(base=ws, after=after).start() for _ in range(clients)]
            reader = ListReader(admin).start()
            apps = [start_app_process(base_url, postgres_url, f"p{n}", CALLS) for n in range(PROCESSES)]
            restarted_at_calls = _when(
                lambda: (
                    _pg_scalar(postgres_url, "SELECT count(*) FROM llm_calls WHERE source LIKE 'p%%-%%'")
                    >= PROCESSES * CALLS // 2
                ),
                apps,
            )
            postgres_server.restart()  # every connection of every process is cut
            results = [app_result(app, timeout=900) for app in apps]
            _wait_for_feed(
                recorders, _pg_scalar(postgres_url, "SELECT coalesce(max(id), 0) FROM llm_call_events")
            )
            reader.stop()
            for recorder in recorders:
                recorder.stop()
        finally:
            stop_admin(admin)

    import psycopg2

    connection = psycopg2.connect(postgres_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT split_part(source, '-', 1), count(*) FROM llm_calls "
                "WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY 1"
            )
            stored = dict(cursor.fetchall())
            cursor.execute(FINAL_EVENTS_SQL.format(p="%s"), (after,))
            final = {call_id: (event_id, status) for call_id, event_id, status in cursor.fetchall()}
    finally:
        connection.close()
    figures = [_process_figures(result, stored) for result in results]
    _report(  # first: the figures of a failed run are what tells why
        "postgresql",
        {
            "processes": PROCESSES,
            "calls": PROCESSES * CALLS,
            "restarted_at_calls": restarted_at_calls,
            "wall_s": round(time.monotonic() - started),
            "seconds": [r["seconds"] for r in results],
            "per_process": figures,
            "list_statuses": reader.statuses,
        },
    )
    for figure in figures:
        assert figure["errors"] == {}, figure
        assert figure["missing"] <= figure["dropped"], figure
        assert figure["flushed"] and figure["queued"] == 0, figure
    assert restarted_at_calls, "the server was not restarted mid-run"
    _check_memory_flat(results)
    _report("postgresql feed", _check_feed(recorders, final))
