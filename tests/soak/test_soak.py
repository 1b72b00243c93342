"""Soak runs (``make soak``; not part of ``make test``): many processes, many calls, real faults.

Scale with ``SOAK_CALLS`` (calls per app process, default 10,000) and ``SOAK_PROCESSES`` (default 4).
Each test prints its figures (calls, seconds, RSS, drops, websocket deliveries) as one JSON line,
which docs/operations.md quotes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from exporter import open_database, run_retention
from exporter.fixtures import load_fixture
from tests.soak.harness import (
    API,
    ListReader,
    WebsocketRecorder,
    app_result,
    fake_openai_process,
    start_admin,
    start_app_process,
    stop_admin,
)

pytestmark = pytest.mark.soak

CALLS = int(os.environ.get("SOAK_CALLS", "10000"))
PROCESSES = int(os.environ.get("SOAK_PROCESSES", "4"))
CLIENTS = 20
DAY_MS = 86_400_000
ENDED = ("succeeded", "failed", "cancelled")


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


def _check_feed(recorders: list[WebsocketRecorder], terminal_events: dict[str, int]) -> dict[str, Any]:
    """Every client: ids strictly increasing (in order, none twice), and every call's final event."""
    for recorder in recorders:
        assert recorder.errors == []
        ids = [event_id for event_id, *_ in recorder.calls]
        assert ids == sorted(set(ids)), "out of order or delivered twice"
        delivered = {call_id: event_id for event_id, _, call_id, _ in recorder.calls}
        missing = [
            call_id for call_id, event_id in terminal_events.items() if delivered.get(call_id) != event_id
        ]
        assert missing == [], f"{len(missing)} calls' final events not delivered"
    return {"clients": len(recorders), "messages_per_client": len(recorders[0].calls)}


def _terminal_events(path: Path, after: int) -> dict[str, int]:
    """call_id → id of its last event, for the calls whose events came after ``after``."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT call_id, max(id) FROM llm_call_events WHERE id > ? GROUP BY call_id", (after,)
        ).fetchall()
    return dict(rows)


def test_four_processes_one_sqlite_file_twenty_live_clients_and_retention(tmp_path: Path) -> None:
    path = tmp_path / "soak.db"
    url = f"sqlite:///{path}"
    old = load_fixture(
        "normal-day", url, now_ms=int(time.time() * 1000) - 9 * DAY_MS
    )  # for retention to delete
    after = _latest_event_id(path)
    with fake_openai_process() as base_url:
        admin = start_admin(url)
        try:
            recorders = [
                WebsocketRecorder(f"ws://127.0.0.1:{admin.port}{API}/llm/ws?after={after}").start()
                for _ in range(CLIENTS)
            ]
            reader = ListReader(admin).start()
            apps = [start_app_process(base_url, url, f"p{n}", CALLS) for n in range(PROCESSES)]
            retention = open_database(url)
            retention_runs = 0
            while any(app.poll() is None for app in apps):
                run_retention(retention, 7)  # beside each app's own: retention under sustained writing
                retention_runs += 1
                time.sleep(2)
            results = [app_result(app, timeout=60) for app in apps]
            time.sleep(2)  # the feed's last messages
            reader.stop()
            for recorder in recorders:
                recorder.stop()
        finally:
            stop_admin(admin)

    with sqlite3.connect(path) as connection:
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
    for result in results:
        assert result["errors"] == {}, result  # no app ever saw "database is locked" or any error
        assert result["store"]["dropped"] == 0
    assert per_prefix == {f"p{n}": CALLS for n in range(PROCESSES)}
    assert duplicates == 0
    assert left_old == 0 and old > 0
    _check_memory_flat(results)
    feed = _check_feed(recorders, _terminal_events(path, after))
    assert set(reader.statuses) == {200}, reader.statuses
    _report(
        "load",
        {
            "processes": PROCESSES,
            "calls": PROCESSES * CALLS,
            "seconds": [r["seconds"] for r in results],
            "rss_mb": [r["rss_mb"] for r in results],
            "old_calls_pruned": old,
            "retention_runs": retention_runs,
            "list_requests": reader.requests,
            "slowest_list_s": round(reader.slowest, 3),
            **feed,
        },
    )


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
    """A 512 MB tmpfs the test can fill up (root only: ``mount``)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(mount)]).returncode
    ):
        pytest.fail("the disk-full soak needs root to mount a small tmpfs", pytrace=False)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_faults_mid_run_lose_nothing_uncounted_and_writing_resumes(small_disk: Path) -> None:
    path = small_disk / "faults.db"
    url = f"sqlite:///{path}"
    load_fixture("empty", url)
    with fake_openai_process() as base_url:
        admin = start_admin(url)
        try:
            reader = ListReader(admin).start()
            apps = [start_app_process(base_url, url, f"p{n}", CALLS) for n in range(PROCESSES)]
            time.sleep(5)
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
    figures = []
    for result in results:
        assert result["errors"] == {}, result  # the app's calls all succeeded through both faults
        missing = CALLS - stored.get(result["prefix"], 0)
        dropped = result["store"]["dropped"]
        # A call not stored with its final status cost at least one dropped record, and the status
        # card showed the drops while the process ran.
        assert missing <= dropped, result
        assert reader.dropped_shown.get(result["process"], 0) >= min(dropped, 1) or dropped == 0
        figures.append(
            {
                "prefix": result["prefix"],
                "missing": missing,
                "dropped_records": dropped,
                "last_error": result["store"]["last_error"],
                "rss_mb": result["rss_mb"],
            }
        )
    assert any("full" in (r["store"]["last_error"] or "") for r in results), "the disk never filled"
    # writing resumed by itself: at the end every process's queue drained into the store
    assert all(r["flushed"] and r["store"]["queued"] == 0 for r in results), results
    _report("faults", {"processes": PROCESSES, "calls": PROCESSES * CALLS, "per_process": figures})


def test_ten_thousand_abandoned_closed_and_cut_streams_leave_nothing_open(tmp_path: Path) -> None:
    path = tmp_path / "streams.db"
    streams = int(os.environ.get("SOAK_STREAMS", "10000"))
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
    _report("streams", {**result, "stored": statuses})


def test_four_processes_on_postgresql_with_the_server_restarted_mid_run(
    postgres_server, postgres_url
) -> None:
    from exporter import migrate

    migrate(open_database(postgres_url))
    clients = 5
    with fake_openai_process() as base_url:
        admin = start_admin(postgres_url)
        try:
            status, body, _ = admin.get("/llm/status")
            after = body["last_event_id"] if status == 200 and "last_event_id" in body else 0
            recorders = [
                WebsocketRecorder(f"ws://127.0.0.1:{admin.port}{API}/llm/ws?after={after}").start()
                for _ in range(clients)
            ]
            reader = ListReader(admin).start()
            apps = [start_app_process(base_url, postgres_url, f"p{n}", CALLS) for n in range(PROCESSES)]
            time.sleep(5)
            postgres_server.restart()  # every connection of every process is cut
            results = [app_result(app, timeout=900) for app in apps]
            time.sleep(3)
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
            cursor.execute(
                "SELECT call_id, max(id) FROM llm_call_events WHERE id > %s GROUP BY call_id", (after,)
            )
            terminal = dict(cursor.fetchall())
    finally:
        connection.close()
    figures = []
    for result in results:
        assert result["errors"] == {}, result
        missing = CALLS - stored.get(result["prefix"], 0)
        assert missing <= result["store"]["dropped"], result
        assert result["flushed"] and result["store"]["queued"] == 0, result
        figures.append(
            {
                "prefix": result["prefix"],
                "missing": missing,
                "dropped": result["store"]["dropped"],
                "last_error": result["store"]["last_error"],
                "rss_mb": result["rss_mb"],
            }
        )
    _check_memory_flat(results)
    feed = _check_feed(recorders, terminal)
    _report(
        "postgresql",
        {
            "processes": PROCESSES,
            "calls": PROCESSES * CALLS,
            "per_process": figures,
            "list_statuses": reader.statuses,
            **feed,
        },
    )
