"""SpanStore: live call rows from notices, final rows from ended spans, tasks, flush and shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from opentelemetry.sdk.trace import Tracer, TracerProvider

from exporter import StoreConfigurationError, open_database, queries
from exporter.store import SpanStore
from tests.exporter.call_spans import (
    T0_MS,
    dispatch,
    dispatch_attributes,
    finish,
    first_token,
    first_token_attributes,
    ns,
    retry,
    retry_attributes,
    start_call,
    task_span,
)
from tests.polling import until_equal


@pytest.fixture
def span_store(store: peewee.Database) -> Iterator[SpanStore]:
    # The calls are stamped at T0 (when call_spans was imported): once the suite has run longer than
    # the heartbeat timeout, the store's start-up maintenance would close them as lost.
    span_store = SpanStore(f"sqlite:///{store.database}", heartbeat_timeout_s=3600)
    yield span_store
    span_store.shutdown(5)


@pytest.fixture
def tracer(span_store: SpanStore) -> Iterator[Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(span_store.span_processor)
    yield provider.get_tracer("tests")


def call_row(store: peewee.Database, call_id: str, columns: str = "status") -> Any:
    row = store.execute_sql(f"SELECT {columns} FROM llm_calls WHERE call_id = ?", (call_id,)).fetchone()
    return row if row is None or len(row) > 1 else row[0]


def event_kinds(store: peewee.Database, call_id: str) -> list[str]:
    rows = store.execute_sql("SELECT kind FROM llm_call_events WHERE call_id = ? ORDER BY id", (call_id,))
    return [kind for (kind,) in rows]


def test_a_call_is_written_live_from_queued_to_succeeded(
    span_store: SpanStore, tracer: Tracer, store: peewee.Database
) -> None:
    assert span_store.flush(5)  # the database is open and migrated
    span = start_call(tracer, "live")

    span_store.on_call_event("queued", span, ns(0), {})
    until_equal(lambda: call_row(store, "live"), "queued")
    assert store.execute_sql("SELECT input_messages IS NOT NULL FROM llm_call_bodies").fetchall() == [(1,)]

    dispatch(span, at_ms=250, wait=0.25)
    span_store.on_call_event("dispatched", span, ns(250), dispatch_attributes(0.25))
    until_equal(lambda: call_row(store, "live"), "running")
    assert call_row(store, "live", "started_at, wait_ms") == (T0_MS + 250, 250)

    retry(span, at_ms=300, attempt=1, status_code=429)
    span_store.on_call_event("retry", span, ns(300), retry_attributes(1, status_code=429))
    first_token(span, at_ms=900, ttft=0.65)
    span_store.on_call_event("first_token", span, ns(900), first_token_attributes(0.65))
    until_equal(
        lambda: call_row(store, "live", "retry_count, first_token_at, first_token_ms"), (1, T0_MS + 900, 650)
    )

    finish(span, at_ms=1500, retries=1)
    until_equal(lambda: call_row(store, "live"), "succeeded")

    assert call_row(store, "live", "ended_at, duration_ms, output_tokens") == (T0_MS + 1500, 1250, 40)
    assert event_kinds(store, "live") == ["queued", "dispatched", "retry", "first_token", "succeeded"]

    # A notice that arrives after the end changes nothing.
    span_store.on_call_event("dispatched", span, ns(2000), dispatch_attributes(9.0))
    span_store.on_call_event("retry", span, ns(2100), retry_attributes(5))
    assert span_store.flush(5)
    assert call_row(store, "live", "status, started_at, wait_ms, retry_count") == (
        "succeeded",
        T0_MS + 250,
        250,
        1,
    )
    assert event_kinds(store, "live") == ["queued", "dispatched", "retry", "first_token", "succeeded"]
    # Indexed once ended, from its body: the text parts, one a line.
    assert store.execute_sql(
        "SELECT c.call_id, f.prompt, f.response FROM llm_calls_fts AS f JOIN llm_calls AS c "
        "ON c.rowid = f.rowid WHERE llm_calls_fts MATCH ?",
        ('"wea"',),
    ).fetchall() == [
        (
            "live",
            "You are terse.\nWhat is the weather   in Paris?\nSunny.\nAnd  tomorrow,\nin 北京?",
            "Rain   expected.",
        )
    ]
    # And by its CJK characters, one or two (the short-query index, written in the same batch).
    assert [item["call_id"] for item in queries.list_calls(q="北京")["items"]] == ["live"]
    assert queries.list_calls(q="京")["total"] == 1


def test_an_ended_span_alone_writes_the_whole_call(
    span_store: SpanStore, tracer: Tracer, store: peewee.Database
) -> None:
    span = start_call(tracer, "late")
    dispatch(span, at_ms=10, wait=0.01)
    finish(span, at_ms=50)

    assert span_store.flush(5)
    assert call_row(store, "late", "status, wait_ms, duration_ms") == ("succeeded", 10, 40)
    assert event_kinds(store, "late") == ["queued", "dispatched", "succeeded"]
    assert store.execute_sql("SELECT count(*) FROM llm_call_bodies WHERE call_id = 'late'").fetchone() == (1,)


def test_a_call_whose_records_arrive_together_is_stored_as_one_whose_records_arrive_apart(
    span_store: SpanStore, tracer: Tracer, store: peewee.Database
) -> None:
    """The writer writes a call ended within its batch from the ended span alone: same rows."""
    assert span_store.flush(5)

    def run(call_id: str, *, flush_between: bool) -> None:
        # This process's heartbeat keeps the lost-calls job off the call while it is live.
        span = start_call(tracer, call_id, **{"llm_otel.process": span_store._writer.process})
        span_store.on_call_event("queued", span, ns(0), {})
        dispatch(span, at_ms=250, wait=0.25)
        span_store.on_call_event("dispatched", span, ns(250), dispatch_attributes(0.25))
        retry(span, at_ms=300, attempt=1, status_code=429)
        span_store.on_call_event("retry", span, ns(300), retry_attributes(1, status_code=429))
        if flush_between:
            assert span_store.flush(5)
            assert call_row(store, call_id, "status, retry_count") == ("running", 1)
        finish(span, at_ms=1500, retries=1)
        assert span_store.flush(5)

    run("apart", flush_between=True)
    run("together", flush_between=False)

    def stored(call_id: str) -> tuple[Any, ...]:
        columns = store.execute_sql(
            "SELECT status, enqueued_at, started_at, ended_at, wait_ms, duration_ms, retry_count, "
            "input_tokens, prompt_preview, response_preview FROM llm_calls WHERE call_id = ?",
            (call_id,),
        ).fetchone()
        body = store.execute_sql(
            "SELECT input_messages, output_messages, attributes FROM llm_call_bodies WHERE call_id = ?",
            (call_id,),
        ).fetchone()
        events = store.execute_sql(
            "SELECT kind, at, data FROM llm_call_events WHERE call_id = ? ORDER BY id", (call_id,)
        ).fetchall()
        return columns, body, events

    assert stored("together") == stored("apart")
    assert store.execute_sql(  # one rowid names a call and its body (exporter.migrations)
        "SELECT count(*) FROM llm_call_bodies AS b JOIN llm_calls AS c ON c.call_id = b.call_id "
        "WHERE b.rowid = c.rowid"
    ).fetchone() == (2,)
    assert [kind for kind, _, _ in stored("together")[2]] == ["queued", "dispatched", "retry", "succeeded"]
    assert span_store.stats()["written"] == 8  # every record counts as written, coalesced or not


def test_a_call_queued_and_dispatched_in_one_batch_is_stored_as_when_they_come_apart(
    tracer: Tracer, store: peewee.Database
) -> None:
    """The dispatch merged into the queued row (``RowBatch``) writes what the two upserts write."""
    from exporter._connection import StoreFile
    from exporter.mapping import RowBatch
    from exporter.records import CallNotice, QueuedCall

    writer = StoreFile(lambda: open_database(store.database))

    def records(call_id: str) -> tuple[QueuedCall, CallNotice]:
        span = start_call(tracer, call_id)
        queued = QueuedCall(call_id, span, dict(span.attributes or {}))
        return queued, CallNotice("dispatched", call_id, span.start_time, ns(250), dispatch_attributes(0.25))

    def write(*batches: tuple[Any, ...]) -> list[RowBatch]:
        written = []
        for records_of_batch in batches:
            batch = RowBatch()
            for record in records_of_batch:
                batch.add(record)
            writer.write(batch)
            written.append(batch)
        return written

    queued, dispatched = records("apart")
    assert write((queued,), (dispatched,))[1].updates
    queued, dispatched = records("together")
    assert not write((queued, dispatched))[0].updates  # one row: the dispatch is in the queued one
    queued, dispatched = records("again")  # written twice (a batch retried after a fault): no change
    write((queued,), (queued, dispatched), (queued, dispatched))

    def stored(call_id: str) -> tuple[Any, ...]:
        row = store.execute_sql("SELECT * FROM llm_calls WHERE call_id = ?", (call_id,))
        columns = [column[0] for column in row.description]
        values = dict(zip(columns, row.fetchone(), strict=True))
        for own in ("call_id", "trace_id", "span_id"):
            values.pop(own)
        events = store.execute_sql(
            "SELECT kind, at, data FROM llm_call_events WHERE call_id = ? ORDER BY id", (call_id,)
        ).fetchall()
        return values, events

    assert stored("together") == stored("apart") == stored("again")
    values, events = stored("together")
    assert (values["status"], values["started_at"], values["wait_ms"]) == ("running", T0_MS + 250, 250)
    assert [kind for kind, _, _ in events] == ["queued", "dispatched"]
    writer.close()


def test_task_spans_are_running_then_ended(
    span_store: SpanStore, tracer: Tracer, store: peewee.Database
) -> None:
    span = task_span(tracer, "t1", customer="acme")
    assert span_store.flush(5)
    started = store.execute_sql("SELECT status, attributes, process FROM llm_tasks").fetchall()

    span.end(end_time=ns(3000))
    assert span_store.flush(5)

    assert started == [("running", '{"customer":"acme"}', span_store._writer.process)]
    assert store.execute_sql("SELECT status, duration_ms FROM llm_tasks").fetchall() == [("succeeded", 3000)]


def test_other_spans_and_notices_are_ignored(
    span_store: SpanStore, tracer: Tracer, store: peewee.Database
) -> None:
    with tracer.start_as_current_span("GET /"):
        pass
    plain = tracer.start_span("not a call")
    span_store.on_call_event("dispatched", plain, ns(1), dispatch_attributes(0.1))
    span_store.on_call_event("something_new", start_call(tracer, "c"), ns(1), {})

    assert span_store.flush(5)
    assert store.execute_sql("SELECT count(*) FROM llm_calls").fetchone() == (0,)
    assert span_store.stats() == {
        "queued": 0,
        "written": 0,
        "dropped": 0,
        "dropped_calls": 0,
        "last_error": None,
    }


def test_flush_and_shutdown_write_everything_then_later_records_are_dropped(
    span_store: SpanStore, tracer: Tracer, store: peewee.Database
) -> None:
    spans = [start_call(tracer, f"c{i}") for i in range(1000)]
    for span in spans:
        span_store.on_call_event("queued", span, ns(0), {})
        finish(span, at_ms=20)

    started = time.perf_counter()
    span_store.shutdown(10)
    print(f"shutdown wrote 2000 records in {time.perf_counter() - started:.2f} s")

    assert store.execute_sql("SELECT count(*) FROM llm_calls WHERE status = 'succeeded'").fetchone() == (
        1000,
    )
    finish(start_call(tracer, "after"), at_ms=5)
    assert span_store.stats() == {
        "queued": 0,
        "written": 2000,
        "dropped": 1,
        "dropped_calls": 1,  # the call ended after shutdown
        "last_error": None,
    }
    assert span_store.flush(1)


def test_retention_and_lost_calls_run_when_the_store_starts(
    store: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exporter.store

    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        exporter.store,
        "run_retention",
        lambda database, retention_days, heartbeat_timeout_ms, write_lock: calls.append(
            ("retention", retention_days, heartbeat_timeout_ms, write_lock)
        ),
    )
    monkeypatch.setattr(
        exporter.store,
        "close_lost_calls",
        lambda database, heartbeat_timeout_ms, write_lock: calls.append(("lost", heartbeat_timeout_ms)),
    )
    monkeypatch.setenv("LLM_OTEL_RETENTION_DAYS", "0.5")

    span_store = SpanStore(str(store.database), heartbeat_timeout_s=30)
    try:
        until_equal(
            lambda: sorted(call[:3] for call in calls), [("lost", 30_000), ("retention", 0.5, 30_000)]
        )
    finally:
        span_store.shutdown(5)
    assert span_store.retention_days == 0.5
    retention = next(call for call in calls if call[0] == "retention")
    assert retention[3] is span_store._writer._write_lock  # it takes turns with the store's writer


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("mysql://u:p@localhost/db", {}, "writes SQLite or PostgreSQL"),
        ("nope://x", {}, "unknown database scheme"),
        ("sqlite:///{tmp}/x.db", {"retention_days": 0}, "positive number of days"),
        ("sqlite:///{tmp}/x.db", {"queue_size": 0}, "queue_size"),
        ("sqlite:///{tmp}/x.db", {"heartbeat_timeout_s": 0}, "heartbeat_timeout_s"),
    ],
)
def test_misuse_is_refused_at_once(url: str, options: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(StoreConfigurationError, match=message):
        SpanStore(url.format(tmp=tmp_path), **options)


def test_a_bad_retention_env_var_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLM_OTEL_RETENTION_DAYS", "a week")

    with pytest.raises(StoreConfigurationError, match="LLM_OTEL_RETENTION_DAYS must be a positive number"):
        SpanStore(str(tmp_path / "x.db"))


def test_a_call_whose_end_was_dropped_still_ends(
    store: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exporter.store

    entered, release = threading.Event(), threading.Event()

    def held_open(url: str) -> peewee.Database:
        if threading.current_thread().name == "llm-otel-store-writer":
            entered.set()
            release.wait(10)
        return open_database(url)

    monkeypatch.setattr(exporter.store, "open_database", held_open)
    span_store = SpanStore(str(store.database), queue_size=2)
    provider = TracerProvider()
    provider.add_span_processor(span_store.span_processor)
    tracer = provider.get_tracer("tests")
    assert entered.wait(5)  # the writer is held opening the file: the queue only fills

    kept = start_call(tracer, "kept")
    span_store.on_call_event("queued", kept, ns(0), {})
    dispatch(kept, at_ms=10, wait=0.01)
    span_store.on_call_event("dispatched", kept, ns(10), dispatch_attributes(0.01))
    finish(kept, at_ms=100)  # refused: the queue is full
    unseen = start_call(tracer, "unseen")
    finish(unseen, at_ms=50, status="failed", **{"error.type": "RateLimitError"})
    release.set()

    try:
        assert span_store.flush(5)
        assert span_store.stats()["dropped"] == 2
        assert call_row(store, "kept", "status, ended_at, duration_ms, wait_ms") == (
            "succeeded",
            T0_MS + 100,
            90,
            10,
        )
        assert call_row(store, "unseen", "status, error_type, duration_ms, model") == (
            "failed",
            "RateLimitError",
            50,
            "gpt-4o-mini",
        )
        assert event_kinds(store, "kept") == ["queued", "dispatched", "succeeded"]
        assert store.execute_sql("SELECT data FROM llm_call_events WHERE call_id = 'unseen'").fetchall() == [
            ('{"record_dropped":true}',)
        ]
    finally:
        span_store.shutdown(5)
