"""The background writer (exporter.writer.StoreWriter) over a real SQLite file."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from opentelemetry.sdk.trace import Tracer, TracerProvider

from exporter import migrate, open_database, queries
from exporter import writer as writer_module
from exporter._sql import CALL_COLUMNS, DEFER_INDEX_SQL, index_deferred, unindex
from exporter.migrations import UNINDEXED_TABLE
from exporter.records import CallNotice, EndedSpan, Record
from exporter.writer import Job, StoreWriter, current_process
from tests.exporter.call_spans import T0, finish, full_call, start_call
from tests.polling import until


def opener(path: Path) -> Callable[[], peewee.SqliteDatabase]:
    def connect() -> peewee.SqliteDatabase:
        database = open_database(str(path))
        migrate(database)
        return database

    return connect


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    provider = TracerProvider()
    yield provider.get_tracer("tests")
    provider.shutdown()


@pytest.fixture
def db_path(store: peewee.Database) -> Path:
    return Path(store.database)


@pytest.fixture
def make_writer(db_path: Path) -> Iterator[Callable[..., StoreWriter]]:
    writers: list[StoreWriter] = []

    def make(**options: Any) -> StoreWriter:
        options.setdefault("connect", opener(db_path))
        writer = StoreWriter(options.pop("connect"), **options)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.shutdown(5)


def ended(tracer: Tracer, call_id: str, **end_attributes: Any) -> Record:
    span = start_call(tracer, call_id)
    finish(span, at_ms=100, **end_attributes)
    return EndedSpan(span, call_id)


def count(store: peewee.Database, sql: str, *params: Any) -> int:
    return store.execute_sql(sql, params).fetchone()[0]


def test_flush_waits_until_every_record_is_written(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    writer = make_writer()
    records = [ended(tracer, f"c{i}") for i in range(1200)]

    accepted = [writer.put(record) for record in records]
    flushed = writer.flush(10)

    assert all(accepted) and flushed
    assert count(store, "SELECT count(*) FROM llm_calls WHERE status = 'succeeded'") == 1200
    assert count(store, "SELECT count(*) FROM llm_call_bodies") == 1200
    assert count(store, "SELECT count(*) FROM llm_call_events") == 2400
    assert writer.stats() == {
        "queued": 0,
        "written": 1200,
        "dropped": 0,
        "dropped_calls": 0,
        "last_error": None,
    }


def test_a_record_is_written_without_a_flush(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    writer = make_writer()
    assert writer.flush(5)  # connected and migrated
    writer.put(EndedSpan(full_call(tracer, "visible"), "visible"))

    # Nothing asks the writer to write: it does so by itself (how soon: bench/bench_live_feed.py).
    until(lambda: count(store, "SELECT count(*) FROM llm_calls WHERE call_id = 'visible'"), writer.stats)


def test_a_full_queue_drops_and_counts_then_writes_the_rest(
    tracer: Tracer, db_path: Path, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    entered, release = threading.Event(), threading.Event()
    connect = opener(db_path)

    def slow_connect() -> peewee.SqliteDatabase:
        entered.set()
        release.wait(10)
        return connect()

    writer = make_writer(connect=slow_connect, queue_size=10)
    assert entered.wait(5)  # the writer thread is held in connect(): nothing leaves the queue

    accepted = [writer.put(ended(tracer, f"c{i}")) for i in range(15)]
    stats = writer.stats()
    release.set()

    assert accepted == [True] * 10 + [False] * 5
    assert stats["queued"] == 10 and stats["dropped"] == 5
    assert writer.flush(5)
    assert count(store, "SELECT count(*) FROM llm_calls") == 10
    assert writer.stats()["dropped"] == 5


def test_a_record_that_fails_is_dropped_alone(
    tracer: Tracer,
    store: peewee.Database,
    make_writer: Callable[..., StoreWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = make_writer()
    assert writer.flush(5)

    unmappable = CallNotice("succeeded", "x", T0, T0, {})  # not a live notice kind
    refused = ended(tracer, "huge", **{"gen_ai.usage.input_tokens": 2**70})  # beyond SQLite's INTEGER

    with caplog.at_level(logging.WARNING, logger="exporter.writer"):
        for record in [ended(tracer, "a"), unmappable, ended(tracer, "b"), refused, ended(tracer, "c")]:
            writer.put(record)
        assert writer.flush(5)

    assert count(store, "SELECT count(*) FROM llm_calls") == 3
    stats = writer.stats()
    assert (stats["written"], stats["dropped"]) == (3, 2)
    assert "too large" in stats["last_error"]
    assert any("unknown live notice kind" in message for message in caplog.messages)


def test_heartbeat_rows_come_from_the_status_sources_and_go_at_shutdown(
    store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    writer = make_writer()
    status = {
        "name": "default",
        "queue_depth": 2,
        "in_flight": 1,
        "max_concurrency": 1,
        "min_interval": 0.5,
        "max_queue": 1000,
        "dispatched_total": 7,
        "last_dispatch_at": 1_767_225_600.25,
        "oldest_wait": 1.5,
        "waiting": [{"call_id": "c1", "source": "billing", "since": 1_767_225_599.0}],
    }
    assert writer.flush(5)
    assert store.execute_sql("SELECT process, scheduler FROM llm_scheduler_snapshots").fetchall() == [
        (current_process(), "")
    ]

    writer.add_status_source(lambda: status)
    assert writer.flush(5)
    assert store.execute_sql("SELECT process, scheduler FROM llm_scheduler_snapshots").fetchall() == [
        (current_process(), "default")
    ]

    row = store.execute_sql(
        "SELECT queue_depth, in_flight, max_concurrency, min_interval, max_queue, dispatched_total, "
        "last_dispatch_at, oldest_wait_ms, waiting, store_dropped, store_last_error, heartbeat_at "
        "FROM llm_scheduler_snapshots WHERE scheduler = 'default'"
    ).fetchone()
    assert row[:-1] == (
        2,
        1,
        1,
        0.5,
        1000,
        7,
        1_767_225_600_250,
        1500,
        '[{"call_id":"c1","source":"billing","since":1767225599000}]',
        0,
        None,
    )
    assert abs(row[-1] - time.time() * 1000) < 10_000
    writer.shutdown(5)
    assert count(store, "SELECT count(*) FROM llm_scheduler_snapshots") == 0


def test_jobs_run_at_start_on_their_own_connection_and_failures_are_logged(
    tracer: Tracer,
    store: peewee.Database,
    make_writer: Callable[..., StoreWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran = threading.Event()

    def ok(database: peewee.Database, write_lock: Any) -> None:
        assert database.execute_sql("SELECT count(*) FROM llm_calls").fetchone() is not None
        ran.set()

    def broken(database: peewee.Database, write_lock: Any) -> None:
        raise RuntimeError("retention exploded")

    with caplog.at_level(logging.WARNING, logger="exporter.writer"):
        writer = make_writer(jobs=[Job("broken", 3600, broken), Job("ok", 3600, ok)])
        assert ran.wait(5)
    writer.put(ended(tracer, "after"))

    assert writer.flush(5)
    assert count(store, "SELECT count(*) FROM llm_calls") == 1
    assert any("broken failed" in message and "retention exploded" in message for message in caplog.messages)


def test_the_writer_and_a_job_take_turns_on_the_write_lock(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    """A job holds the writer's lock around its transactions: the writer writes once it is free."""
    holding, release = threading.Event(), threading.Event()

    def job(database: peewee.Database, write_lock: Any) -> None:
        with write_lock:
            holding.set()
            release.wait(10)

    writer = make_writer(jobs=[Job("holds the lock", 3600, job)])
    assert holding.wait(5)
    writer.put(ended(tracer, "waits"))

    assert not writer.flush(0.3)  # the job holds the lock
    release.set()
    assert writer.flush(5)
    assert count(store, "SELECT count(*) FROM llm_calls") == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_writer_thread(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    writer = make_writer()
    writer.put(ended(tracer, "parent"))
    assert writer.flush(5)

    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        code = 1
        try:
            writer.put(ended(tracer, "child"))
            code = 0 if writer.flush(5) and writer.process.endswith(f":{os.getpid()}") else 1
            writer.shutdown(5)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert {row[0] for row in store.execute_sql("SELECT call_id FROM llm_calls")} == {"parent", "child"}
    writer.put(ended(tracer, "parent-again"))
    assert writer.flush(5)


def test_a_heartbeat_the_database_refuses_does_not_block_the_records(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    writer = make_writer()
    # max_concurrency passes through as given: a value SQLite cannot bind refuses the snapshot row.
    writer.add_status_source(lambda: {"name": "odd", "max_concurrency": object()})
    writer.put(ended(tracer, "a"))

    assert writer.flush(5)
    writer.put(ended(tracer, "b"))
    assert writer.flush(5)
    assert count(store, "SELECT count(*) FROM llm_calls") == 2
    assert count(store, "SELECT count(*) FROM llm_call_events WHERE call_id = 'a'") == 2
    assert writer.stats()["written"] == 2


def test_shutdown_while_failing_counts_only_records_as_dropped(
    tracer: Tracer, make_writer: Callable[..., StoreWriter]
) -> None:
    def unavailable() -> peewee.SqliteDatabase:
        raise peewee.OperationalError("database is locked")

    writer = make_writer(connect=unavailable)
    for i in range(3):
        assert writer.put(ended(tracer, f"c{i}"))
    assert not writer.flush(0.2)  # its marker stays in the queue

    writer.shutdown(0.5)
    writer._thread.join(5)

    assert not writer._thread.is_alive()
    stats = writer.stats()
    assert (stats["queued"], stats["written"], stats["dropped"]) == (0, 0, 3)
    assert not writer.flush(0.1)


# Full-text indexing in batches


def _found(q: str) -> set[str]:
    return {item["call_id"] for item in queries.list_calls(q=q, page_size=100)["items"]}


def _listed(store: peewee.Database) -> int:
    return count(store, f'SELECT count(*) FROM "{UNINDEXED_TABLE}"')


def test_an_ended_call_is_found_once_the_writer_indexes_its_batch(
    tracer: Tracer,
    store: peewee.Database,
    make_writer: Callable[..., StoreWriter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its end is written and it is listed unindexed; a search, whose matches are kept, does not
    find it yet; a flush indexes what is listed, and the same search then finds it."""
    monkeypatch.setattr(writer_module, "INDEX_DELAY_S", 3600.0)
    writer = make_writer()
    writer.put(ended(tracer, "first"))
    assert writer.flush(5)
    assert _found("Paris") == {"first"}  # kept for the next query of the term

    writer.put(ended(tracer, "second"))
    until(lambda: count(store, "SELECT count(*) FROM llm_calls WHERE call_id = 'second'"), writer.stats)

    assert _listed(store) == 1
    assert _found("Paris") == {"first"}
    assert writer.flush(5)
    assert _listed(store) == 0
    assert _found("Paris") == {"first", "second"}


def test_the_writer_indexes_what_it_listed_after_a_delay_or_a_batch_of_calls(
    tracer: Tracer,
    store: peewee.Database,
    make_writer: Callable[..., StoreWriter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writer_module, "INDEX_DELAY_S", 0.3)
    writer = make_writer()
    assert writer.flush(5)
    writer.put(ended(tracer, "waited"))

    until(lambda: _found("Paris") == {"waited"}, writer.stats)  # no flush: the delay ran out

    monkeypatch.setattr(writer_module, "INDEX_DELAY_S", 3600.0)
    monkeypatch.setattr(writer_module, "INDEX_BATCH", 3)
    writer.put(ended(tracer, "one"))
    assert writer.flush(5)  # the delay starts again with the next call listed
    for call_id in ("two", "three", "four"):
        writer.put(ended(tracer, call_id))

    until(lambda: _found("Paris") == {"waited", "one", "two", "three", "four"}, writer.stats)
    assert _listed(store) == 0


def test_a_writer_indexes_the_calls_another_one_left_listed(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    """As a writer that stopped (killed) before indexing them leaves them: listed, not indexed."""
    first = make_writer()
    first.put(ended(tracer, "left"))
    assert first.flush(5)
    first.shutdown(5)
    with store.atomic():
        unindex(store.cursor(), '["left"]')
        store.execute_sql(DEFER_INDEX_SQL, ('["left"]',))
    assert _found("Paris") == set()

    second = make_writer()

    until(lambda: _found("Paris") == {"left"}, second.stats)
    assert _listed(store) == 0


def test_a_listed_call_gone_or_in_flight_again_is_not_indexed_and_leaves_the_list(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    """A rowid listed for a call since deleted names nothing; one given again to a call in flight
    must not be indexed before its end (its response would never be)."""
    writer = make_writer()
    writer.put(ended(tracer, "again"))
    assert writer.flush(5)
    writer.shutdown(5)
    with store.atomic():
        unindex(store.cursor(), '["again"]')
        store.execute_sql("UPDATE llm_calls SET status = 'running' WHERE call_id = 'again'")
        store.execute_sql(DEFER_INDEX_SQL, ('["again"]',))
        store.execute_sql(f'INSERT INTO "{UNINDEXED_TABLE}" (call_rowid) VALUES (999999)')
    assert _listed(store) == 2

    with store.atomic():
        index_deferred(store.cursor())

    assert _listed(store) == 0
    assert count(store, "SELECT count(*) FROM llm_calls_fts_docsize") == 0


def _steps_to_index_one_listed_call(store: peewee.Database, calls: int) -> int:
    """Hundreds of SQLite VM instructions ``index_deferred`` runs for one listed call, in a store
    of ``calls`` ended calls (copies of the call ``seed``, unindexed) with the planner's statistics
    that retention keeps (``ANALYZE llm_calls``)."""
    copied = ", ".join("'copy-' || n" if name == "call_id" else f'"{name}"' for name in CALL_COLUMNS)
    with store.atomic():
        store.execute_sql(
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
            f"INSERT INTO llm_calls ({', '.join(CALL_COLUMNS)}) SELECT {copied} "
            "FROM seq, llm_calls WHERE call_id = 'seed'",
            (calls - 1,),
        )
        store.execute_sql(DEFER_INDEX_SQL, ('["seed"]',))
    store.execute_sql("ANALYZE llm_calls")
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection = store.connection()
    connection.set_progress_handler(step, 100)
    try:
        with store.atomic():
            index_deferred(store.cursor())
    finally:
        connection.set_progress_handler(None, 100)
    assert _listed(store) == 0
    return steps


def test_indexing_the_listed_calls_reads_them_not_the_whole_store(
    tracer: Tracer, store: peewee.Database, make_writer: Callable[..., StoreWriter]
) -> None:
    """The writer indexes its listed calls under the write lock: the work must grow with the list,
    not with the store (a join read every call: ~0.3 s at 1M calls, each 100 ended calls)."""
    writer = make_writer()
    writer.put(ended(tracer, "seed"))
    assert writer.flush(5)
    writer.shutdown(5)
    unindex(store.cursor(), '["seed"]')
    small = _steps_to_index_one_listed_call(store, 10)

    with store.atomic():
        store.execute_sql("DELETE FROM llm_calls WHERE call_id LIKE 'copy-%'")
        unindex(store.cursor(), '["seed"]')
    large = _steps_to_index_one_listed_call(store, 20_000)

    assert _found("Paris") == {"seed"}
    assert large <= 2 * small + 5, (small, large)
