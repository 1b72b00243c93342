"""Retention (exporter.retention) over a real SQLite file: what goes, what stays, batches, space."""

from __future__ import annotations

import datetime
import itertools
import os
import sqlite3
import threading
import time

import peewee
import pytest

from exporter import (
    RetentionResult,
    StoreConfigurationError,
    close_lost_calls,
    open_database,
    prune,
    queries,
    retention,
    retention_days_from_env,
    run_retention,
)
from exporter._fair_lock import FairLock
from tests.exporter.conftest import NOW_MS, Rows

DAY_MS = 86_400_000
OLD = NOW_MS - 8 * DAY_MS
RECENT = NOW_MS - 6 * DAY_MS


def _count(database: peewee.Database, table: str) -> int:
    return database.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _call_ids(database: peewee.Database) -> list[str]:
    return [row[0] for row in database.execute_sql("SELECT call_id FROM llm_calls")]


def _fts_ids(database: peewee.Database) -> set[str | None]:
    """The calls the full-text index holds entries of (None for entries whose call is gone)."""
    indexed = "SELECT c.call_id FROM llm_calls_fts_docsize AS d LEFT JOIN llm_calls AS c ON c.rowid = d.id"
    return {row[0] for row in database.execute_sql(indexed)}


def test_prune_deletes_what_is_older_than_the_cutoff_and_keeps_the_rest(
    store: peewee.Database, rows: Rows
) -> None:
    rows.each([{"status": status, "enqueued_at": OLD} for status in ("succeeded", "failed", "cancelled")])
    old_running = rows.call(status="running", enqueued_at=OLD)
    recent = rows.calls(2, enqueued_at=RECENT)
    old_task = rows.task(started_at=OLD)
    recent_task = rows.task(started_at=RECENT)
    rows.snapshot(process="gone:1", heartbeat_at=OLD)
    rows.snapshot(process="alive:2", heartbeat_at=NOW_MS)
    store.execute_sql(
        "INSERT INTO llm_call_events (call_id, kind, at) VALUES ('never-written', 'queued', ?)", (OLD,)
    )

    deleted = prune(store, older_than=datetime.timedelta(days=7), now_ms=NOW_MS)

    kept = {old_running, *recent}
    assert deleted == 3 + 1 + 1 + 1  # calls, orphan event, task, snapshot
    assert {row[0] for row in store.execute_sql("SELECT call_id FROM llm_calls")} == kept
    assert {row[0] for row in store.execute_sql("SELECT call_id FROM llm_call_bodies")} == kept
    assert {row[0] for row in store.execute_sql("SELECT DISTINCT call_id FROM llm_call_events")} == kept
    assert _fts_ids(store) == kept
    assert queries.list_calls(q="quarterly")["total"] == 3  # the FTS index forgot the pruned calls
    assert {row[0] for row in store.execute_sql("SELECT task_id FROM llm_tasks")} == {recent_task}
    assert old_task not in {row[0] for row in store.execute_sql("SELECT task_id FROM llm_tasks")}
    assert [row[0] for row in store.execute_sql("SELECT process FROM llm_scheduler_snapshots")] == ["alive:2"]
    assert prune(store, older_than=7, now_ms=NOW_MS) == 0  # days as a number; nothing left to do


def test_prune_accepts_a_url(tmp_path, rows: Rows) -> None:
    rows.calls(3, enqueued_at=OLD)

    assert prune(f"sqlite:///{tmp_path / 'store.db'}", older_than=7.0, now_ms=NOW_MS) == 3
    assert queries.list_calls()["total"] == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"older_than": -1}, "older_than must be zero or more"),
        ({"older_than": "7d"}, "older_than must be a timedelta or a number of days"),
        ({"older_than": 7, "batch_size": 0}, "batch_size must be an integer from 1 to 10000"),
        ({"older_than": 7, "batch_size": 20_000}, "batch_size must be an integer from 1 to 10000"),
    ],
)
def test_prune_rejects_bad_arguments(store: peewee.Database, arguments: dict, message: str) -> None:
    with pytest.raises(StoreConfigurationError, match=message):
        prune(store, **arguments)


def test_prune_gives_the_free_pages_back_to_the_file_system(store: peewee.Database, rows: Rows) -> None:
    big = "lorem ipsum dolor sit amet " * 150  # ~4 KB of prompt per call: body, preview and FTS text
    rows.calls(500, enqueued_at=OLD, prompt=big, response=big)
    rows.calls(10, enqueued_at=RECENT)
    store.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = store.database
    size_before = os.path.getsize(path)

    prune(store, older_than=7, now_ms=NOW_MS)

    assert store.execute_sql("PRAGMA freelist_count").fetchone()[0] == 0
    store.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # prune checkpoints passively; make it visible
    # The bodies and FTS content are returned at once; the FTS5 index itself drops deleted entries
    # as its segments merge during later writes, so the file does not shrink to nothing at once.
    assert os.path.getsize(path) < size_before / 2
    assert _count(store, "llm_calls") == 10


def test_prune_works_in_bounded_batches_and_lets_writers_in(store: peewee.Database, rows: Rows) -> None:
    rows.calls(5000, enqueued_at=OLD, events=False, prompt="p", response="r")
    transactions = []
    store.connection().set_trace_callback(
        lambda sql: transactions.append(sql) if sql.startswith("BEGIN IMMEDIATE") else None
    )
    begun_at_commit: list[int] = []  # at each of the writer's commits, how many prune transactions had begun
    pruning = threading.Event()
    done = threading.Event()

    def writer() -> None:  # another connection inserting while prune runs
        pruning.wait()
        while not done.is_set():
            with store.atomic("IMMEDIATE"):
                store.execute_sql(
                    "INSERT INTO llm_call_events (call_id, kind, at) VALUES ('x', 'queued', ?)", (NOW_MS,)
                )
            begun_at_commit.append(len(transactions))
            time.sleep(0.001)
        store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        pruning.set()
        deleted = prune(store, older_than=7, batch_size=500, now_ms=NOW_MS)
    finally:
        done.set()
        thread.join()
        store.connection().set_trace_callback(None)

    assert deleted == 5000
    assert len(transactions) >= 10  # 10 batches of 500 calls (+ the empty last one, and the others)
    # The writer got in between prune's transactions, not only once prune was over.
    assert any(0 < begun < len(transactions) for begun in begun_at_commit), (
        f"no write between prune's {len(transactions)} transactions: {begun_at_commit[-5:]}"
    )


def test_a_writer_that_asks_during_a_prune_transaction_writes_before_the_next_one(
    store: peewee.Database, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the store's process retention and the writer take turns on the writer's ``FairLock``:
    a writer that asked while a delete transaction held it has it before retention's next
    transaction, with no pause between them (a writer thread waiting for a core would otherwise
    find it taken again, transaction after transaction)."""
    rows.calls(30, enqueued_at=OLD, events=False, prompt="p", response="r")
    monkeypatch.setattr(retention._Batches, "pause", staticmethod(lambda held_ms: None))
    lock, order = FairLock(), []

    def write() -> None:
        with lock:
            order.append("writer")

    writer = threading.Thread(target=write)

    class RetentionTurns:
        """The write lock as prune holds it: the same lock, its turns noted in ``order``."""

        def __enter__(self) -> None:
            lock.acquire()
            order.append("retention")
            if not writer.is_alive() and "writer" not in order:  # the first turn: the writer asks
                writer.start()
                deadline = time.monotonic() + 10
                while lock.waiting < 1 and time.monotonic() < deadline:
                    time.sleep(0.001)

        def __exit__(self, *exc_info: object) -> None:
            lock.release()

    deleted = prune(store, older_than=7, batch_size=10, now_ms=NOW_MS, write_lock=RetentionTurns())
    writer.join(10)

    assert deleted == 30
    assert order[:3] == ["retention", "writer", "retention"]
    assert order.count("writer") == 1


def test_prune_keeps_both_full_text_indexes_whole_and_their_merge_settings(
    store: peewee.Database, rows: Rows
) -> None:
    """Retention turns FTS5's automerge off inside its delete transactions and merges in steps of
    its own between them: the indexes stay consistent, searches see only what is kept, and the
    settings every other connection reads are unchanged."""
    store.execute_sql("INSERT INTO llm_calls_fts (llm_calls_fts, rank) VALUES ('automerge', 8)")
    for day in range(3):  # several transactions of each (one per call written): many segments
        for i in range(40):
            rows.call(enqueued_at=OLD - day, prompt=f"退款 request {day}-{i}", response="已退款 refund done")
    kept = rows.calls(5, enqueued_at=RECENT, prompt="退款 recent question", response="退款 ok")

    deleted = prune(store, older_than=7, batch_size=7, now_ms=NOW_MS)

    assert deleted == 120
    for table in ("llm_calls_fts", "llm_calls_cjk"):
        store.execute_sql(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")
    automerge = "SELECT v FROM {}_config WHERE k = 'automerge'"
    assert store.execute_sql(automerge.format("llm_calls_fts")).fetchall() == [(8,)]
    assert store.execute_sql(automerge.format("llm_calls_cjk")).fetchall() in ([], [(4,)])  # FTS5's default
    for q in ("退款", "退", "refund", "request"):
        found = {row["call_id"] for row in queries.list_calls(q=q, page_size=200)["items"]}
        assert found == (set() if q in ("refund", "request") else set(kept)), q


def test_each_full_text_index_merges_in_transactions_of_its_own(store: peewee.Database, rows: Rows) -> None:
    """Between the deletes, each index's merge step holds the lock alone: the two indexes' merges,
    each up to its own size, never add up in one transaction."""
    for i in range(60):  # one transaction each: many segments in both indexes
        rows.call(enqueued_at=OLD, prompt=f"退款 request {i}", response="已退款 refund done")
    statements: list[str] = []
    store.connection().set_trace_callback(statements.append)
    try:
        assert prune(store, older_than=7, batch_size=5, now_ms=NOW_MS) == 60
    finally:
        store.connection().set_trace_callback(None)

    merging: list[set[str]] = []  # per transaction, the indexes it merged
    for sql in statements:
        if sql.startswith("BEGIN"):
            merging.append(set())
        elif "'merge'" in sql and merging:
            merging[-1].add(sql.split()[2])
    assert {"llm_calls_fts", "llm_calls_cjk"} <= set().union(*merging)
    assert all(len(tables) <= 1 for tables in merging), [tables for tables in merging if len(tables) > 1]


def test_merge_and_vacuum_steps_are_sized_by_their_slowest_recent_pages() -> None:
    """A step grows a quarter at most over the last one, and after a costly one stays sized by that
    step's ms per page until ``PAGE_RATE_WINDOW`` steps have passed (a cost that varies 20x from
    step to step no longer meets a size grown on cheap steps)."""
    steps = retention._PageSteps(8, 256)
    sizes = []
    for _ in range(30):  # cheap pages: 0.01 ms each
        steps.took(steps.pages, steps.pages * 0.01)
        sizes.append(steps.pages)
    assert sizes[0] == 11 and sizes[-1] == 256
    assert all(later <= earlier * 1.25 + 1 for earlier, later in itertools.pairwise(sizes))

    steps.took(256, 100.0)  # one costly step: ~0.39 ms a page
    assert steps.pages == 25  # what that rate does in BATCH_TARGET_MS (10 ms)
    for _ in range(retention.PAGE_RATE_WINDOW - 1):
        steps.took(steps.pages, steps.pages * 0.01)
        assert steps.pages == 25
    steps.took(steps.pages, steps.pages * 0.01)  # the costly step has left the window
    assert steps.pages == 32


def test_close_lost_calls_closes_only_calls_of_dead_processes(store: peewee.Database, rows: Rows) -> None:
    timeout = 60_000
    rows.snapshot(process="dead:1", heartbeat_at=NOW_MS - 2 * timeout)
    rows.snapshot(process="alive:2", heartbeat_at=NOW_MS - 1000)
    rows.snapshot(process="alive:2", scheduler="other", heartbeat_at=NOW_MS - 10 * timeout)
    dead_running = rows.call(status="running", process="dead:1", updated_at=NOW_MS - 1000)
    dead_queued = rows.call(status="queued", process="dead:1", updated_at=NOW_MS - 1000)
    dead_ended = rows.call(status="succeeded", process="dead:1")
    alive = rows.call(status="running", process="alive:2", updated_at=NOW_MS - 10 * timeout)
    silent_old = rows.call(status="running", process="nosched:3", updated_at=NOW_MS - 2 * timeout)
    silent_recent = rows.call(status="running", process="nosched:3", updated_at=NOW_MS - 1000)

    closed = close_lost_calls(store, heartbeat_timeout_ms=timeout, now_ms=NOW_MS)

    assert closed == 3
    statuses = {call_id: queries.get_call(call_id)["status"] for call_id in _call_ids(store)}
    assert statuses == {
        dead_running: "failed",
        dead_queued: "failed",
        dead_ended: "succeeded",
        alive: "running",
        silent_old: "failed",
        silent_recent: "running",
    }
    call = queries.get_call(dead_running)
    assert call["error_type"] == "process_lost"
    assert "dead:1" in call["error_message"]
    assert call["ended_at"] == NOW_MS
    assert call["events"][-1]["kind"] == "failed"
    assert call["events"][-1]["at"] == NOW_MS
    assert call["events"][-1]["data"]["error_type"] == "process_lost"
    assert close_lost_calls(store, heartbeat_timeout_ms=timeout, now_ms=NOW_MS) == 0  # idempotent


def test_run_retention_closes_lost_calls_then_prunes_and_analyzes(store: peewee.Database, rows: Rows) -> None:
    lost_old = rows.call(status="running", process="gone:1", enqueued_at=OLD, updated_at=OLD)
    rows.call(enqueued_at=OLD)
    recent = rows.call(enqueued_at=RECENT)

    result = run_retention(store, 7, heartbeat_timeout_ms=60_000, now_ms=NOW_MS)

    assert result == RetentionResult(lost_calls_closed=1, rows_pruned=2)
    assert _call_ids(store) == [recent]
    assert lost_old not in _call_ids(store)
    assert store.table_exists("sqlite_stat1")


def test_retention_days_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_OTEL_RETENTION_DAYS", raising=False)
    assert retention_days_from_env() == 7
    assert retention_days_from_env(default=30) == 30
    monkeypatch.setenv("LLM_OTEL_RETENTION_DAYS", " 0.5 ")
    assert retention_days_from_env() == 0.5
    for bad in ("seven", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("LLM_OTEL_RETENTION_DAYS", bad)
        with pytest.raises(
            StoreConfigurationError, match="LLM_OTEL_RETENTION_DAYS must be a positive number"
        ):
            retention_days_from_env()


def test_event_ids_never_go_back_after_retention(store: peewee.Database, rows: Rows) -> None:
    # The feed resumes after the last id a client saw: no id may be given out twice, even when
    # retention deletes the newest events (here the ``failed`` event of a lost call, then the call).
    rows.call(enqueued_at=RECENT)
    rows.call(status="running", process="gone:1", enqueued_at=OLD, updated_at=OLD)
    assert close_lost_calls(store, heartbeat_timeout_ms=60_000, now_ms=NOW_MS) == 1
    seen = store.execute_sql("SELECT max(id) FROM llm_call_events").fetchone()[0]
    assert prune(store, older_than=7, now_ms=NOW_MS) == 1

    store.execute_sql("INSERT INTO llm_call_events (call_id, kind, at) VALUES ('new', 'queued', 1)")

    assert store.execute_sql("SELECT max(id) FROM llm_call_events").fetchone()[0] > seen


def test_prune_completes_while_another_connection_keeps_taking_the_lock(
    tmp_path, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention's connection has no busy handler while it writes: it polls for the lock as long as
    its ``busy_timeout``, and past that tries again after a backoff. Here the other connection holds
    the lock longer than that timeout, over and over, and prune still deletes everything."""
    rows.calls(300, enqueued_at=OLD, events=False, prompt="p", response="r")
    path = rows.database.database
    monkeypatch.setattr(retention, "LOCKED_RETRIES", 100)
    stop = threading.Event()

    def hog() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        while not stop.is_set():
            connection.execute("BEGIN IMMEDIATE")
            time.sleep(0.15)  # longer than prune's busy_timeout below
            connection.execute("COMMIT")
            time.sleep(0.02)
        connection.close()

    thread = threading.Thread(target=hog)
    thread.start()
    database = open_database(path, busy_timeout_ms=50)
    try:
        deleted = prune(database, older_than=7, batch_size=100, now_ms=NOW_MS)
        busy_timeout = database.execute_sql("PRAGMA busy_timeout").fetchone()[0]
    finally:
        stop.set()
        thread.join()
        database.close()

    assert deleted == 300
    assert _count(rows.database, "llm_calls") == 0
    assert busy_timeout == 50  # the connection's own, given back
