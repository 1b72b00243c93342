"""The span store over a real PostgreSQL server: writes, reads, retention and migrations.

The same behaviour as on SQLite (the other test modules), minus what is SQLite's own: no FTS table
(``q`` is an ILIKE substring search), no ``incremental_vacuum``, no file checks. The server is the
session's throwaway cluster (``postgres_server`` in conftest.py); each test has its own database.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import peewee
import pytest
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from exporter import SQLiteSpanExporter, close_lost_calls, migrate, open_database, prune, queries
from exporter._connection import StoreFile
from exporter.mapping import RowBatch
from exporter.migrations import LATEST_VERSION, schema_version
from exporter.records import EndedSpan
from exporter.retention import run_retention
from exporter.store import SpanStore
from tests.exporter.call_spans import (
    T0_MS,
    dispatch,
    dispatch_attributes,
    finish,
    first_token,
    first_token_attributes,
    full_call,
    ns,
    retry,
    retry_attributes,
    start_call,
    task_span,
)
from tests.exporter.conftest import NOW_MS, Rows
from tests.exporter.test_queries import FILTERS, _all_pages, _expected
from tests.polling import until_equal


def select(database: peewee.Database, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return database.execute_sql(sql, params).fetchall()


# Schema


def test_migrate_twice_creates_the_schema_once_without_fts(postgres_url: str) -> None:
    database = open_database(postgres_url)

    assert migrate(database) == LATEST_VERSION
    assert migrate(database) == LATEST_VERSION

    assert schema_version(database) == LATEST_VERSION
    assert select(database, "SELECT COUNT(*) FROM llm_otel_schema") == [(LATEST_VERSION,)]
    tables = set(database.get_tables())
    assert {
        "llm_calls",
        "llm_call_bodies",
        "llm_call_events",
        "llm_tasks",
        "llm_scheduler_snapshots",
    } <= tables
    assert "llm_calls_fts" not in tables
    types = dict(
        select(
            database,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'llm_calls'",
        )
    )
    assert (types["enqueued_at"], types["stream"]) == ("bigint", "boolean")
    database.close()


# Writing


@pytest.fixture
def span_store(pg_store: peewee.Database, postgres_url: str) -> Iterator[SpanStore]:
    # The calls are stamped at T0 (when call_spans was imported): once the suite has run longer than
    # the heartbeat timeout, the store's start-up maintenance would close them as lost.
    span_store = SpanStore(postgres_url, heartbeat_timeout_s=3600)
    yield span_store
    span_store.shutdown(5)


@pytest.fixture
def tracer(span_store: SpanStore) -> Tracer:
    provider = TracerProvider()
    provider.add_span_processor(span_store.span_processor)
    return provider.get_tracer("tests")


def test_span_store_writes_a_call_live_from_queued_to_succeeded(
    span_store: SpanStore, tracer: Tracer, pg_store: peewee.Database
) -> None:
    def status() -> list[tuple[Any, ...]]:
        return select(pg_store, "SELECT status FROM llm_calls WHERE call_id = 'live'")

    assert span_store.path is None
    task = task_span(tracer, "task-1")
    span = start_call(tracer, "live")
    span_store.on_call_event("queued", span, ns(0), {})
    until_equal(status, [("queued",)])

    dispatch(span, at_ms=250, wait=0.25)
    span_store.on_call_event("dispatched", span, ns(250), dispatch_attributes(0.25))
    until_equal(status, [("running",)])
    assert select(pg_store, "SELECT started_at, wait_ms FROM llm_calls") == [(T0_MS + 250, 250)]

    retry(span, at_ms=300, attempt=1, status_code=429)
    span_store.on_call_event("retry", span, ns(300), retry_attributes(1, status_code=429))
    first_token(span, at_ms=900, ttft=0.65)
    span_store.on_call_event("first_token", span, ns(900), first_token_attributes(0.65))
    finish(span, at_ms=1500, retries=1)
    task.end(end_time=ns(2000))
    until_equal(status, [("succeeded",)])

    # A notice after the end changes nothing.
    span_store.on_call_event("dispatched", span, ns(2000), dispatch_attributes(9.0))
    assert span_store.flush(5)
    assert select(
        pg_store,
        "SELECT status, stream, started_at, wait_ms, retry_count, first_token_ms, duration_ms, "
        "output_tokens FROM llm_calls",
    ) == [("succeeded", True, T0_MS + 250, 250, 1, 650, 1250, 40)]
    call = queries.get_call("live")
    assert [event["kind"] for event in call["events"]] == [
        "queued",
        "dispatched",
        "retry",
        "first_token",
        "succeeded",
    ]
    assert call["input_messages"][2]["parts"][0]["content"] == "And  tomorrow,\nin 北京?"
    assert call["task"]["status"] == "succeeded"
    assert span_store.stats()["dropped"] == 0


def test_span_store_heartbeats_and_forgets_its_snapshots_at_shutdown(
    postgres_url: str, pg_store: peewee.Database
) -> None:
    span_store = SpanStore(postgres_url)
    span_store.add_status_source(lambda: {"name": "a", "queue_depth": 2, "min_interval": 0.1})
    span_store.add_status_source(lambda: {"name": "b", "in_flight": 1})
    assert span_store.flush(5)

    snapshots = queries.scheduler_snapshots()
    assert [(row["scheduler"], row["queue_depth"], row["live"]) for row in snapshots] == [
        ("a", 2, True),
        ("b", 0, True),
    ]
    assert snapshots[0]["min_interval"] == 0.1  # DOUBLE PRECISION, not a 4-byte REAL
    span_store.shutdown(5)
    assert queries.scheduler_snapshots(include_stale=True) == []


def test_the_writer_reconnects_after_its_connection_is_killed(
    span_store: SpanStore, tracer: Tracer, pg_store: peewee.Database
) -> None:
    full_call(tracer, "before")
    assert span_store.flush(5)
    killed = select(
        pg_store,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert killed and all(ok for (ok,) in killed)

    full_call(tracer, "after")

    until_equal(
        lambda: select(pg_store, "SELECT call_id FROM llm_calls ORDER BY call_id"), [("after",), ("before",)]
    )
    assert span_store.stats()["dropped"] == 0


def test_the_writer_statements_are_idempotent_and_keep_the_process_schedulers(
    pg_store: peewee.Database,
) -> None:
    tracer = TracerProvider().get_tracer("tests")
    batch = RowBatch()
    batch.add(EndedSpan(full_call(tracer, "c1"), "c1"))
    batch.snapshots = [_snapshot("a"), _snapshot("b")]
    store = StoreFile(lambda: pg_store)

    store.write(batch)
    store.write(batch)
    store.write(RowBatch(snapshots=[_snapshot("b")]))

    assert select(pg_store, "SELECT call_id, retry_count FROM llm_calls") == [("c1", 1)]
    assert len(select(pg_store, "SELECT id FROM llm_call_events")) == 5
    assert select(pg_store, "SELECT scheduler FROM llm_scheduler_snapshots") == [("b",)]


def _snapshot(scheduler: str) -> dict[str, Any]:
    return {
        "process": "host-a:100",
        "scheduler": scheduler,
        "queue_depth": 0,
        "in_flight": 0,
        "max_concurrency": None,
        "min_interval": 0.0,
        "max_queue": None,
        "dispatched_total": 0,
        "last_dispatch_at": None,
        "oldest_wait_ms": None,
        "waiting": "[]",
        "store_dropped": 0,
        "store_last_error": None,
        "heartbeat_at": NOW_MS,
    }


def test_the_span_exporter_writes_to_a_postgresql_url(postgres_url: str, pg_store: peewee.Database) -> None:
    span_exporter = SQLiteSpanExporter(postgres_url)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    tracer = provider.get_tracer("tests")

    task = task_span(tracer, "t1")
    full_call(tracer, "c1")
    task.end()
    provider.shutdown()

    assert span_exporter.path is None
    assert select(pg_store, "SELECT call_id, status, stream, input_tokens FROM llm_calls") == [
        ("c1", "succeeded", True, 120)
    ]
    assert [event["kind"] for event in queries.get_call("c1")["events"]] == [
        "queued",
        "dispatched",
        "retry",
        "first_token",
        "succeeded",
    ]
    assert select(pg_store, "SELECT task_id, status FROM llm_tasks") == [("t1", "succeeded")]


# Reading


@pytest.fixture
def mixed(pg_rows: Rows) -> list[dict[str, Any]]:
    """150 calls with random statuses, labels, models, tasks and times (as in test_queries)."""
    return pg_rows.mixed()


def test_list_calls_every_filter_with_exact_totals(mixed: list[dict[str, Any]]) -> None:
    for filters in FILTERS:
        expected = _expected(mixed, filters)

        listed, totals = _all_pages(page_size=40, **filters)

        assert listed == expected, filters
        assert set(totals) == {len(expected)}, filters


def test_q_is_a_case_insensitive_substring_of_previews_and_bodies(pg_rows: Rows) -> None:
    weather = pg_rows.call(prompt="What is the weather in Paris?", response="Sunny, 24 degrees.")
    rain = pg_rows.call(prompt="今天的天气预报说会下雨", response="记得带伞。")
    percent = pg_rows.call(prompt="Growth was 100% this year, his best", response="Great")
    long = pg_rows.call(prompt="x" * 300 + " needle at the end", response="ok", status="failed")

    def found(q: str, **filters: Any) -> set[str]:
        result = queries.list_calls(q=q, page_size=200, **filters)
        assert result["total"] == len(result["items"])
        return {item["call_id"] for item in result["items"]}

    assert found("weather") == found("WEATHER") == found("sunny, 24") == {weather}
    assert found("天气预报") == found("带伞") == {rain}
    assert found("%") == {percent}
    assert found("h_s") == set()  # "_" is literal: "his" does not match
    assert found("needle") == {long}  # past the 200-character preview: found in the body
    assert found("needle", status=["succeeded"]) == set()
    assert found("terse") == {weather, rain, percent, long}  # the system instructions


def test_get_call_and_status_aggregates(pg_rows: Rows) -> None:
    task = pg_rows.task(task_id="task-1")
    failed = pg_rows.call(status="failed", parent_task_id=task, retry_count=2, enqueued_at=NOW_MS - 500)
    pg_rows.each(
        [{"enqueued_at": NOW_MS - value * 1000, "duration_ms": value * 100} for value in range(1, 101)]
    )
    pg_rows.call(status="running", enqueued_at=NOW_MS - 500)

    call = queries.get_call(failed)
    assert (call["status"], call["error_type"], call["stream"]) == ("failed", "RateLimitError", False)
    assert call["task"]["task_id"] == task
    assert [event["kind"] for event in call["events"]] == ["queued", "dispatched", "failed"]
    assert queries.get_call("nope") is None

    stats = queries.status_aggregates(window_ms=3_600_000, now_ms=NOW_MS)
    assert stats["counts"] == {"queued": 0, "running": 1, "succeeded": 100, "failed": 1, "cancelled": 0}
    assert stats["error_rate"] == pytest.approx(1 / 101)
    assert stats["duration_ms"]["p95"] == 9500
    assert stats["tokens"]["input"] == 102 * 20
    assert type(stats["retries"]) is int and stats["retries"] == 2


# Retention


OLD = NOW_MS - 8 * 86_400_000
RECENT = NOW_MS - 86_400_000


def test_prune_and_close_lost_calls(pg_store: peewee.Database, pg_rows: Rows) -> None:
    pg_rows.each([{"status": status, "enqueued_at": OLD} for status in ("succeeded", "failed", "cancelled")])
    recent = pg_rows.call(enqueued_at=RECENT)
    pg_rows.task(started_at=OLD)
    pg_rows.snapshot(process="dead:1", heartbeat_at=NOW_MS - 120_000)
    lost = pg_rows.call(status="running", process="dead:1", enqueued_at=RECENT)
    alive = pg_rows.call(status="running", process="alive:2", enqueued_at=RECENT)
    pg_rows.snapshot(process="alive:2", heartbeat_at=NOW_MS - 1000)

    assert close_lost_calls(pg_store, heartbeat_timeout_ms=60_000, now_ms=NOW_MS) == 1
    assert prune(pg_store, older_than=datetime.timedelta(days=7), now_ms=NOW_MS) == 3 + 1

    assert {row[0] for row in select(pg_store, "SELECT call_id FROM llm_calls")} == {recent, lost, alive}
    assert {row[0] for row in select(pg_store, "SELECT DISTINCT call_id FROM llm_call_events")} == {
        recent,
        lost,
        alive,
    }
    assert select(pg_store, "SELECT COUNT(*) FROM llm_tasks") == [(0,)]
    assert queries.get_call(lost)["error_type"] == "process_lost"
    assert queries.get_call(lost)["events"][-1]["kind"] == "failed"
    assert run_retention(pg_store, 7, heartbeat_timeout_ms=60_000, now_ms=NOW_MS).rows_pruned == 0
