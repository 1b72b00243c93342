"""Faults of the database under a running SpanStore: the app never waits and never sees an error.

Each test injects one fault while the app keeps making calls, then checks: no exception reached the
app, the calls all returned while the fault lasted, drops and the last error are visible in
``stats()`` (and in the snapshot row once the database takes writes), and writing resumes by
itself once the fault clears. No timing assertions: "never blocks" is shown by the app finishing
its calls while the fault is still there.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peewee
import pytest
from opentelemetry.sdk.trace import Tracer, TracerProvider

import exporter.store
from exporter import open_database
from exporter._connection import StoreFile
from exporter.store import SpanStore
from tests.children import checkout_python
from tests.exporter.call_spans import finish, ns, start_call
from tests.sigkill import kill_while_writing


@pytest.fixture
def stores() -> Iterator[Callable[..., tuple[SpanStore, Tracer]]]:
    made: list[SpanStore] = []

    def make(url: str, **options: Any) -> tuple[SpanStore, Tracer]:
        store = SpanStore(url, **options)
        made.append(store)
        provider = TracerProvider()
        provider.add_span_processor(store.span_processor)
        return store, provider.get_tracer("tests")

    yield make
    for store in made:
        store.shutdown(2)


def make_calls(store: SpanStore, tracer: Tracer, prefix: str, count: int, *, prompt_kb: int = 0) -> None:
    """What the app does per call: a queued notice, then the span's end (both only enqueue)."""
    extra = {
        "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"%s"}]}]'
        % ("x" * 1024 * prompt_kb)
    }
    for i in range(count):
        span = start_call(tracer, f"{prefix}{i}", **(extra if prompt_kb else {}))
        store.on_call_event("queued", span, ns(0), {})
        finish(span, at_ms=10)


def calls_in(path: Path, prefix: str = "") -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT count(*) FROM llm_calls WHERE call_id LIKE ?", (prefix + "%",)
        ).fetchone()[0]


def snapshot(path: Path, scheduler: str = "") -> tuple[int, str | None]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT store_dropped, store_last_error FROM llm_scheduler_snapshots WHERE scheduler = ?",
            (scheduler,),
        ).fetchone()


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's connections wait 200 ms for a lock instead of 5 s, so that a 3 s lock shows what a
    30 s one does: ``database is locked`` errors, retries with backoff, then recovery."""
    monkeypatch.setattr(
        exporter.store, "open_database", functools.partial(open_database, busy_timeout_ms=200)
    )


def test_a_locked_database_costs_the_app_nothing(
    store: peewee.Database, stores: Callable[..., tuple[SpanStore, Tracer]], short_busy_timeout: None
) -> None:
    path = Path(store.database)
    roomy, roomy_tracer = stores(str(path))
    tight, tight_tracer = stores(str(path), queue_size=5)
    roomy.add_status_source(lambda: {"name": "roomy"})
    tight.add_status_source(lambda: {"name": "tight"})
    assert roomy.flush(5) and tight.flush(5)
    locked, released = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(3)  # 30 s behaves the same, only longer: the writers keep retrying with backoff
        connection.execute("COMMIT")
        connection.close()
        released.set()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(5)
    make_calls(roomy, roomy_tracer, "roomy-", 200)
    make_calls(tight, tight_tracer, "tight-", 200)
    returned_while_locked = not released.is_set()
    stats_while_locked = roomy.stats(), tight.stats()
    holder.join()

    assert returned_while_locked
    assert roomy.flush(10) and tight.flush(10)
    assert stats_while_locked[0]["dropped"] == 0
    assert stats_while_locked[1]["dropped"] > 0
    assert roomy.stats()["dropped"] == 0 and calls_in(path, "roomy-") == 200
    after = tight.stats()
    assert after["written"] + after["dropped"] == 400
    assert calls_in(path, "tight-") > 0
    assert "database is locked" in roomy.stats()["last_error"]
    assert snapshot(path, "tight") == (after["dropped"], after["last_error"])


@contextmanager
def read_only(path: Path) -> Iterator[bool]:
    """Make ``path`` truly read-only for this process, as a wrong owner or mode would; yields False
    when this process cannot be stopped from writing it (root where ``chattr`` does not work).

    As a normal user, mode 0444 does it. Root ignores modes; the immutable attribute (``chattr +i``)
    stops root too, where the file system supports it. Either way SQLite fails to open the file for
    writing and falls back to read-only, exactly as in production; nothing in the store is faked.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield True
        finally:
            path.chmod(mode)
        return
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode
    ):
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


_UNPRIVILEGED_WRITER = textwrap.dedent(
    """
    import json, os, sys
    from opentelemetry.sdk.trace import TracerProvider
    from exporter.store import SpanStore
    from tests.exporter.test_faults import make_calls

    provider = TracerProvider()   # its resource detectors import modules lazily
    os.setgid(65534)   # nobody: what needs root's files is loaded by now, the store is opened after
    os.setuid(65534)
    store = SpanStore(sys.argv[1], queue_size=10)
    provider.add_span_processor(store.span_processor)
    make_calls(store, provider.get_tracer("ro"), "ro-", 100)
    print(json.dumps({"flushed": store.flush(0.5), **store.stats()}), flush=True)
    sys.stdin.readline()   # the file has been made writable
    print(json.dumps({"flushed": store.flush(10), **store.stats()}), flush=True)
    sys.stdin.readline()   # the test has read the store (shutdown removes this process's snapshot)
    store.shutdown(2)
    """
)


def run_unprivileged_on_read_only_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Root whose file system has no ``chattr``: the writer runs in a child that drops to ``nobody``
    before opening a root-owned 0644 file (in a directory nobody may create the WAL files in); the
    file is then handed to nobody, the way an admin fixes a wrong owner. Returns (during, after)."""
    # Not under tmp_path: pytest's base directory is private to root, and nobody must reach the file.
    shared = Path(tempfile.mkdtemp(prefix="llm-otel-ro-"))
    shared.chmod(0o777)
    moved = shared / path.name
    shutil.copy(path, moved)
    child = checkout_python(_UNPRIVILEGED_WRITER, str(moved), stdin=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    during = json.loads(child.stdout.readline() or "{}")
    for name in (moved.name, moved.name + "-wal", moved.name + "-shm"):
        if (shared / name).exists():
            os.chown(shared / name, 65534, 65534)
    child.stdin.write("go\n")
    child.stdin.flush()
    after = json.loads(child.stdout.readline() or "{}")
    with sqlite3.connect(moved) as source, sqlite3.connect(path) as target:
        source.backup(target)  # what the child wrote, WAL included, back where the test reads it
    child.stdin.write("done\n")
    child.stdin.flush()
    assert child.wait(20) == 0
    shutil.rmtree(shared)
    return during, after


def test_a_read_only_file_drops_and_counts_then_recovers(
    store: peewee.Database, stores: Callable[..., tuple[SpanStore, Tracer]]
) -> None:
    path = Path(store.database)
    with read_only(path) as stops_this_process:
        if stops_this_process:
            span_store, tracer = stores(str(path), queue_size=10)
            make_calls(span_store, tracer, "ro-", 100)
            during = {"flushed": span_store.flush(0.5), **span_store.stats()}
    if stops_this_process:
        after = {"flushed": span_store.flush(10), **span_store.stats()}
    else:
        during, after = run_unprivileged_on_read_only_file(path)

    assert during["flushed"] is False
    assert "readonly" in during["last_error"]
    assert during["dropped"] >= 100  # of 200 records (a queued notice and an end per call)
    assert after["flushed"] is True
    assert after["written"] + after["dropped"] == 200
    assert calls_in(path, "ro-") > 0
    assert snapshot(path) == (after["dropped"], after["last_error"])


def test_a_full_disk_drops_and_counts_then_recovers(
    store: peewee.Database, stores: Callable[..., tuple[SpanStore, Tracer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_FULL comes from ``PRAGMA max_page_count`` on the store's own connections (a few pages
    above the file's size); lifting the limit is the disk getting space back."""
    path = Path(store.database)
    pages = store.execute_sql("PRAGMA page_count").fetchone()[0]
    limit: dict[str, int | None] = {"pages": pages + 8}

    def open_limited(url: str) -> peewee.Database:
        database = open_database(url)
        if limit["pages"] is not None:
            database.pragma("max_page_count", limit["pages"])
        return database

    monkeypatch.setattr(exporter.store, "open_database", open_limited)
    span_store, tracer = stores(str(path), queue_size=20)
    assert span_store.flush(5)

    make_calls(span_store, tracer, "full-", 100, prompt_kb=8)
    assert not span_store.flush(1)
    during = span_store.stats()
    limit["pages"] = None

    assert "database or disk is full" in during["last_error"]
    assert during["dropped"] > 0
    assert span_store.flush(10)
    after = span_store.stats()
    assert after["written"] + after["dropped"] == 200
    assert calls_in(path, "full-") > 0
    assert snapshot(path) == (after["dropped"], after["last_error"])
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_deleted_directory_is_created_again_and_writing_goes_on(
    tmp_path: Path, stores: Callable[..., tuple[SpanStore, Tracer]]
) -> None:
    path = tmp_path / "data" / "calls.db"
    span_store, tracer = stores(f"sqlite:///{path}")
    make_calls(span_store, tracer, "before-", 5)
    assert span_store.flush(5)

    shutil.rmtree(path.parent)
    make_calls(span_store, tracer, "after-", 5)
    assert span_store.flush(10)

    assert calls_in(path, "before-") == 0  # gone with the directory
    assert calls_in(path, "after-") == 5
    stats = span_store.stats()
    assert stats["dropped"] == 0 and "was deleted or moved away while open" in stats["last_error"]
    with sqlite3.connect(path) as connection:  # the new store says what went with the old one
        assert connection.execute("SELECT kind, records, calls FROM llm_store_losses").fetchall() == [
            ("file_replaced", 10, 5)
        ]


def test_drops_counted_in_a_file_that_went_are_counted_again_in_the_new_one(
    store: peewee.Database, stores: Callable[..., tuple[SpanStore, Tracer]], short_busy_timeout: None
) -> None:
    path = Path(store.database)
    tight, tracer = stores(str(path), queue_size=5)
    assert tight.flush(5)
    holder = _hold_the_lock(path, 1)
    make_calls(tight, tracer, "dropped-", 50)
    holder.join()
    assert tight.flush(10) and tight.flush(10)  # the episode's row written twice alike: it is over
    dropped = tight.stats()
    assert dropped["dropped"] > 0
    assert losses(path) == [("dropped", dropped["dropped"], dropped["dropped_calls"])]

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for i in range(3):  # one at a time: the queue of 5 records takes each while the file is made
        make_calls(tight, tracer, f"after-{i}-", 1)
        assert tight.flush(10)

    after = tight.stats()
    assert after["dropped"] == dropped["dropped"] and calls_in(path, "after-") == 3
    written = 100 - dropped["dropped"], 50 - dropped["dropped_calls"]
    assert losses(path) == [
        ("dropped", dropped["dropped"], dropped["dropped_calls"]),  # their rows went with the old file
        ("file_replaced", *written),
    ]


def losses(path: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT kind, records, calls FROM llm_store_losses ORDER BY kind"
        ).fetchall()


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import time
    from opentelemetry.sdk.trace import TracerProvider
    from exporter.store import SpanStore
    from tests.exporter.call_spans import finish, ns, start_call

    store = SpanStore(sys.argv[1])
    provider = TracerProvider()
    provider.add_span_processor(store.span_processor)
    tracer = provider.get_tracer("killed")
    store.flush(10)
    print("ready", flush=True)
    i = 0
    while True:
        span = start_call(tracer, f"k{i}")
        store.on_call_event("queued", span, ns(0), {})
        finish(span, at_ms=10)
        i += 1
        # A busy app, but one that waits on I/O like any app making LLM calls: a loop that never
        # lets go of the GIL starves the writer thread (each row it binds needs the GIL back).
        time.sleep(0.0005)
    """
)


def test_sigkill_mid_batch_leaves_a_sound_database_without_half_written_calls(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    kill_while_writing(_KILLED_WRITER, [str(path)], lambda: calls_in(path) >= 300, timeout=10)

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        connection.execute("INSERT INTO llm_calls_fts (llm_calls_fts) VALUES ('integrity-check')")
        assert connection.execute("SELECT count(*) FROM llm_calls").fetchone()[0] >= 300
        assert connection.execute(
            "SELECT count(*) FROM llm_calls LEFT JOIN llm_call_bodies USING (call_id) "
            "WHERE llm_call_bodies.call_id IS NULL"
        ).fetchone() == (0,)
        assert connection.execute(
            "SELECT count(*) FROM llm_calls WHERE NOT EXISTS "
            "(SELECT 1 FROM llm_call_events e WHERE e.call_id = llm_calls.call_id AND e.kind = 'queued')"
        ).fetchone() == (0,)


def test_a_store_that_cannot_be_opened_at_start_still_starts_and_catches_up(
    tmp_path: Path, stores: Callable[..., tuple[SpanStore, Tracer]]
) -> None:
    path = tmp_path / "calls.db"
    path.mkdir()  # a directory where the file should be: SQLite cannot open it

    span_store, tracer = stores(str(path))
    make_calls(span_store, tracer, "early-", 5)
    assert not span_store.flush(0.3)
    during = span_store.stats()
    path.rmdir()

    assert "unable to open database file" in during["last_error"]
    assert span_store.flush(10)
    assert calls_in(path, "early-") == 5


def _hold_the_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection (as another process's writer would) holding the write lock ``seconds``."""
    held = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    return holder


def test_a_writer_waits_out_a_lock_shorter_than_busy_timeout_and_fails_past_it(
    store: peewee.Database,
) -> None:
    """The writer's connection has no busy handler: it polls for the lock (``when_unlocked``) as
    long as its ``busy_timeout``, then reports ``database is locked``, a fault the writer retries."""
    path = Path(store.database)
    writer = StoreFile(lambda: open_database(str(path), busy_timeout_ms=1000))
    insert = "INSERT INTO llm_call_events (call_id, kind, at) VALUES (?, 'queued', 0)"

    holder = _hold_the_lock(path, 0.3)
    with writer.transaction() as cursor:  # waits the 0.3 s out
        cursor.execute(insert, ("after-a-short-lock",))
    holder.join()
    assert writer.database().connection().execute("PRAGMA busy_timeout").fetchone() == (0,)

    holder = _hold_the_lock(path, 2.0)
    with (
        pytest.raises(sqlite3.OperationalError, match="database is locked"),
        writer.transaction() as cursor,
    ):
        cursor.execute(insert, ("during-a-long-lock",))
    holder.join()
    with writer.transaction() as cursor:  # the fault closed the connection: reopened, polling again
        cursor.execute(insert, ("after-the-long-lock",))
    writer.close()

    with sqlite3.connect(path) as connection:
        written = {call_id for (call_id,) in connection.execute("SELECT call_id FROM llm_call_events")}
    assert written == {"after-a-short-lock", "after-the-long-lock"}
