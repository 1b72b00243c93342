"""A real workload through ``llm_otel.setup(db=...)``: the real openai client, the fake server over
HTTP, a real SQLite file. Every column must say what the span says, and calls show up live.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llm_otel
from llm_otel import attributes as attr
from llm_otel.testing import Behavior, FakeOpenAI
from tests.llm_otel.spans import API_KEY
from tests.polling import until


@pytest.fixture
def recorded(tmp_path, fake_openai: FakeOpenAI) -> Iterator[tuple[InMemorySpanExporter, sqlite3.Connection]]:
    """setup() on a provider that also keeps every span in memory; yields (spans, db connection).

    ``llm_otel.setup()`` with the same arguments returns the active handle (to flush it).
    """
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    db_path = tmp_path / "llm_calls.db"
    # The store's file is made and migrated by its writer: flush() waits for that.
    assert llm_otel.setup(db=f"sqlite:///{db_path}", tracer_provider=provider).flush(5)
    connection = sqlite3.connect(db_path)
    connection.row_factory = sqlite3.Row
    yield spans, connection
    llm_otel.shutdown()
    connection.close()
    provider.shutdown()


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _event_ms(span, name: str) -> int | None:
    times = [event.timestamp for event in span.events if event.name == name]
    return _ms(times[0]) if times else None


def test_every_column_matches_the_span(recorded, fake_openai) -> None:
    spans, connection = recorded
    fake_openai.script(
        Behavior(status=429, retry_after_ms=10),
        Behavior(cached_tokens=5, reasoning_tokens=7, first_chunk_delay=0.05),
        Behavior(status=500, retry_after_ms=10),
        Behavior(status=500, retry_after_ms=10),
    )
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key=API_KEY, max_retries=1)
    with llm_otel.task("digest", task_id="job-9"), llm_otel.labels(source="news", requested_by="ann"):
        for _chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "天气预报"}],
            stream=True,
            temperature=0.2,
        ):
            pass
        with pytest.raises(openai.InternalServerError):
            client.responses.create(model="gpt-4o-mini", input="fail please")
    client.close()
    assert llm_otel.setup().flush()

    calls = [span for span in spans.get_finished_spans() if attr.CALL_ID in span.attributes]
    assert len(calls) == 2
    for span in calls:
        a = span.attributes
        row = connection.execute("SELECT * FROM llm_calls WHERE call_id = ?", (a[attr.CALL_ID],)).fetchone()
        body = connection.execute(
            "SELECT * FROM llm_call_bodies WHERE call_id = ?", (a[attr.CALL_ID],)
        ).fetchone()
        assert row is not None and body is not None
        assert row["trace_id"] == format(span.context.trace_id, "032x")
        assert row["span_id"] == format(span.context.span_id, "016x")
        assert row["parent_span_id"] == format(span.parent.span_id, "016x")
        assert (row["parent_task_id"], row["parent_task_name"]) == ("job-9", "digest")
        assert (row["source"], row["requested_by"]) == ("news", "ann")
        assert row["status"] == a[attr.STATUS]
        assert row["operation"] == a[attr.OPERATION_NAME]
        assert row["model"] == a[attr.REQUEST_MODEL]
        assert row["response_model"] == a.get(attr.RESPONSE_MODEL)
        assert bool(row["stream"]) is a[attr.REQUEST_STREAM]
        assert row["enqueued_at"] == _ms(span.start_time)
        assert row["ended_at"] == _ms(span.end_time)
        assert row["started_at"] == _event_ms(span, attr.EVENT_DISPATCHED)
        assert row["first_token_at"] == _event_ms(span, attr.EVENT_FIRST_TOKEN)
        assert row["wait_ms"] == round(a[attr.QUEUE_WAIT] * 1000)
        assert row["retry_count"] == a[attr.HTTP_RESEND_COUNT]
        assert row["input_tokens"] == a.get(attr.USAGE_INPUT_TOKENS)
        assert row["output_tokens"] == a.get(attr.USAGE_OUTPUT_TOKENS)
        assert row["cached_tokens"] == a.get(attr.USAGE_CACHE_READ_INPUT_TOKENS)
        assert row["reasoning_tokens"] == a.get(attr.USAGE_REASONING_OUTPUT_TOKENS)
        assert row["error_type"] == a.get(attr.ERROR_TYPE)
        assert json.loads(body["input_messages"]) == json.loads(a[attr.INPUT_MESSAGES])
        if attr.OUTPUT_MESSAGES in a:
            assert json.loads(body["output_messages"]) == json.loads(a[attr.OUTPUT_MESSAGES])
        kinds = [
            r["kind"]
            for r in connection.execute(
                "SELECT kind FROM llm_call_events WHERE call_id = ? ORDER BY id", (a[attr.CALL_ID],)
            )
        ]
        assert kinds[:2] == ["queued", "dispatched"]
        assert kinds[-1] == a[attr.STATUS]
        assert kinds.count("retry") == a[attr.HTTP_RESEND_COUNT]

    streamed, failed = sorted(calls, key=lambda span: span.start_time)
    streamed_row = connection.execute(
        "SELECT * FROM llm_calls WHERE call_id = ?", (streamed.attributes[attr.CALL_ID],)
    ).fetchone()
    assert (streamed_row["status"], streamed_row["retry_count"]) == ("succeeded", 1)
    assert (streamed_row["cached_tokens"], streamed_row["reasoning_tokens"]) == (5, 7)
    assert streamed_row["first_token_ms"] == round(
        streamed.attributes[attr.RESPONSE_TIME_TO_FIRST_CHUNK] * 1000
    )
    assert streamed_row["first_token_ms"] >= 50
    failed_row = connection.execute(
        "SELECT * FROM llm_calls WHERE call_id = ?", (failed.attributes[attr.CALL_ID],)
    ).fetchone()
    assert (failed_row["status"], failed_row["error_type"]) == ("failed", "InternalServerError")
    assert failed_row["retry_count"] == 1
    task = connection.execute("SELECT * FROM llm_tasks WHERE task_id = 'job-9'").fetchone()
    assert (task["name"], task["status"]) == ("digest", "succeeded")


def _status_of(connection: sqlite3.Connection, call_id: str) -> str | None:
    row = connection.execute("SELECT status FROM llm_calls WHERE call_id = ?", (call_id,)).fetchone()
    return row["status"] if row else None


def test_a_slow_stream_is_visible_running_before_it_ends(recorded, fake_openai) -> None:
    _spans, connection = recorded
    fake_openai.script(
        Behavior(content="slow words arrive one by one", first_chunk_delay=0.3, chunk_delay=0.1)
    )
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key=API_KEY)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "go"}], stream=True
    )
    next(stream)  # the role chunk: the call is running, no token yet
    until(lambda: connection.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 1, "no call stored")
    call_id = connection.execute("SELECT call_id FROM llm_calls").fetchone()["call_id"]
    # Seen running while the app holds the stream open (its speed: bench/bench_live_feed.py).
    until(lambda: _status_of(connection, call_id) == "running", lambda: _status_of(connection, call_id))
    next(stream)  # the first word
    until(
        lambda: (
            connection.execute(
                "SELECT first_token_at FROM llm_calls WHERE call_id = ?", (call_id,)
            ).fetchone()["first_token_at"]
            is not None
        ),
        "no first token stored",
    )
    assert _status_of(connection, call_id) == "running"
    list(stream)
    until(lambda: _status_of(connection, call_id) == "succeeded", lambda: _status_of(connection, call_id))
    events = connection.execute(
        "SELECT kind, at FROM llm_call_events WHERE call_id = ? ORDER BY id", (call_id,)
    ).fetchall()
    assert [event["kind"] for event in events] == ["queued", "dispatched", "first_token", "succeeded"]
    times = [event["at"] for event in events]
    assert times == sorted(times)
    client.close()
