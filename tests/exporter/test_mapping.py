"""Spans → rows (exporter.mapping): every column of a full call, the edge cases, task rows."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.trace import Status, StatusCode

from exporter.mapping import (
    PREVIEW_CHARS,
    RowBatch,
    call_update,
    preview,
    queued_rows,
    span_to_rows,
    span_to_task_row,
    task_start_row,
)
from exporter.records import EndedSpan, QueuedCall
from tests.exporter.call_spans import (
    MESSAGES,
    OUTPUT,
    SYSTEM,
    T0,
    T0_MS,
    dispatch,
    dispatch_attributes,
    finish,
    first_token_attributes,
    full_call,
    retry_attributes,
    start_call,
    task_span,
)


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    provider = TracerProvider()
    yield provider.get_tracer("tests")
    provider.shutdown()


def test_full_call_maps_every_column(tracer: Tracer) -> None:
    span = full_call(tracer)

    rows = span_to_rows(span)

    assert rows is not None
    assert rows.call == {
        "call_id": "call-1",
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_span_id": None,
        "parent_task_id": "task-1",
        "parent_task_name": "nightly-digest",
        "status": "succeeded",
        "operation": "chat",
        "provider": "openai",
        "api_type": "chat_completions",
        "model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "response_id": "chatcmpl-1",
        "source": "billing",
        "requested_by": "alice",
        "stream": True,
        "enqueued_at": T0_MS,
        "started_at": T0_MS + 250,
        "first_token_at": T0_MS + 900,
        "ended_at": T0_MS + 1500,
        "wait_ms": 250,
        "first_token_ms": 650,
        "duration_ms": 1250,
        "retry_count": 1,
        "input_tokens": 120,
        "output_tokens": 40,
        "cached_tokens": 64,
        "reasoning_tokens": 16,
        "finish_reasons": '["stop"]',
        "error_type": None,
        "error_message": None,
        "prompt_preview": "And tomorrow, in 北京?",
        "response_preview": "Rain expected.",
        "server_address": "api.openai.com",
        "process": "host-a:100",
        "updated_at": T0_MS + 1500,
    }
    assert json.loads(rows.body["input_messages"]) == MESSAGES
    assert json.loads(rows.body["output_messages"]) == OUTPUT
    assert json.loads(rows.body["system_instructions"]) == SYSTEM
    assert json.loads(rows.body["request_params"]) == {"temperature": 0.2, "stream": True}
    assert json.loads(rows.body["attributes"]) == {
        "gen_ai.request.temperature": 0.2,
        "openai.response.service_tier": "default",
        "server.port": 443,
    }
    assert [(event["kind"], event["at"] - T0_MS, event["data"]) for event in rows.events] == [
        ("queued", 0, None),
        ("dispatched", 250, '{"wait_ms":250}'),
        ("retry", 300, '{"attempt":1,"status_code":429,"backoff_ms":500}'),
        ("first_token", 900, '{"first_token_ms":650}'),
        ("succeeded", 1500, '{"duration_ms":1250}'),
    ]
    assert {event["call_id"] for event in rows.events} == {"call-1"}


def test_failed_call_takes_its_error_from_the_attributes(tracer: Tracer) -> None:
    span = start_call(tracer, "c")
    dispatch(span, at_ms=10, wait=0.01)
    finish(
        span,
        at_ms=60,
        status="failed",
        retries=2,
        **{"error.type": "RateLimitError", "llm_otel.error.message": "429 slow down"},
    )

    rows = span_to_rows(span)

    assert rows is not None
    assert (rows.call["status"], rows.call["error_type"], rows.call["error_message"]) == (
        "failed",
        "RateLimitError",
        "429 slow down",
    )
    assert rows.call["retry_count"] == 2
    assert rows.call["response_preview"] is None
    assert rows.events[-1] == {
        "call_id": "c",
        "kind": "failed",
        "at": T0_MS + 60,
        "data": '{"duration_ms":50,"error_type":"RateLimitError","error_message":"429 slow down"}',
    }


def test_an_error_span_without_llm_otel_status_is_failed_with_the_exception_event(tracer: Tracer) -> None:
    span = start_call(tracer, "c")
    span.record_exception(ValueError("bad input"))
    span.set_status(Status(StatusCode.ERROR, "ValueError"))
    span.end(end_time=T0 + 5_000_000)

    rows = span_to_rows(span)

    assert rows is not None
    assert (rows.call["status"], rows.call["error_type"], rows.call["error_message"]) == (
        "failed",
        "ValueError",
        "bad input",
    )


def test_call_never_dispatched_lasts_from_its_enqueue(tracer: Tracer) -> None:
    span = start_call(tracer, "c")
    finish(span, at_ms=40, status="cancelled")

    rows = span_to_rows(span)

    assert rows is not None
    assert rows.call["started_at"] is None
    assert rows.call["wait_ms"] is None
    assert rows.call["duration_ms"] == 40
    assert [event["kind"] for event in rows.events] == ["queued", "cancelled"]


def test_retry_count_counts_retry_events_without_resend_count(tracer: Tracer) -> None:
    span = start_call(tracer, "c")
    for attempt in (1, 2, 3):
        span.add_event("llm_otel.retry", retry_attributes(attempt), timestamp=T0 + attempt * 1_000_000)
    span.end(end_time=T0 + 10_000_000)

    rows = span_to_rows(span)

    assert rows is not None
    assert rows.call["retry_count"] == 3
    assert [json.loads(event["data"])["error"] for event in rows.events if event["kind"] == "retry"] == [
        "APIConnectionError"
    ] * 3


def test_json_written_with_escaped_characters_is_kept_with_the_characters(tracer: Tracer) -> None:
    """Search reads the bodies' JSON text, so "\\u5317\\u4eac" is stored as 北京 (same JSON value)."""
    messages = [{"role": "user", "parts": [{"type": "text", "content": "in 北京?"}]}]
    span = start_call(tracer, "c", **{"gen_ai.input.messages": json.dumps(messages)})  # ensure_ascii
    finish(span, at_ms=5)

    rows = span_to_rows(span)

    assert rows is not None
    assert "北京" in rows.body["input_messages"]
    assert json.loads(rows.body["input_messages"]) == messages


def test_previews_are_flat_and_short(tracer: Tracer) -> None:
    long_text = "word " * 100
    span = start_call(
        tracer,
        "c",
        **{
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": long_text}]}]
            )
        },
    )
    tool_calls = [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "1", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"type": "tool_call", "id": "2", "name": "get_time", "arguments": {}},
            ],
            "finish_reason": "tool_calls",
        }
    ]
    finish(span, at_ms=5, **{"gen_ai.output.messages": json.dumps(tool_calls)})

    rows = span_to_rows(span)

    assert rows is not None
    assert len(rows.call["prompt_preview"]) == PREVIEW_CHARS
    assert rows.call["prompt_preview"].endswith(" word…")
    assert rows.call["response_preview"] == "get_weather(), get_time()"
    assert preview(" \n\t ") is None
    assert preview(" " * 5000 + "late text") == "late text"


def test_a_preview_is_the_whole_text_flattened_then_cut(tracer: Tracer) -> None:
    """Whatever the text's length and whitespace, the preview is the whole text with its runs of
    whitespace made one space, cut to PREVIEW_CHARS with an ellipsis (however much is read of it)."""
    rng = random.Random(3)
    pieces = ["a", "word", "长句子没有空格" * 5, " ", "  ", "\n\t", " " * 300, "x" * 260]
    texts = ["", "x" * PREVIEW_CHARS, "x" * (PREVIEW_CHARS + 1), "y " * 124 + "z" * 10, "y " * 99 + "ab"]
    texts += ["".join(rng.choices(pieces, k=rng.randint(1, 60))) for _ in range(300)]
    for text in texts:
        flat = " ".join(text.split())
        expected = (flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…") or None
        assert preview(text) == expected, text


def test_a_span_without_call_id_is_not_a_call(tracer: Tracer) -> None:
    span = tracer.start_span("GET /")
    span.end()

    assert span_to_rows(span) is None
    assert span_to_task_row(span) is None
    batch = RowBatch()
    batch.add(EndedSpan(span))
    assert not batch


def test_live_notices_make_the_same_rows_and_events_as_the_ended_span(tracer: Tracer) -> None:
    span = start_call(tracer, "c")
    queued = queued_rows(span, dict(span.attributes or {}))
    dispatched = call_update("dispatched", "c", T0, T0 + 250_000_000, dispatch_attributes(0.25))
    retried = call_update("retry", "c", T0, T0 + 300_000_000, retry_attributes(1, status_code=429))
    token = call_update("first_token", "c", T0, T0 + 900_000_000, first_token_attributes(0.65))
    ended = span_to_rows(full_call(tracer, "c"))

    assert queued is not None and ended is not None
    assert queued.call["status"] == "queued"
    assert queued.call["ended_at"] is None
    assert queued.body["input_messages"] == ended.body["input_messages"]
    assert queued.body["output_messages"] is None
    live_events = [*queued.events, dispatched.event, retried.event, token.event]
    assert live_events == ended.events[:-1]
    assert dispatched.row == {
        "call_id": "c",
        "enqueued_at": T0_MS,
        "updated_at": T0_MS + 250,
        "started_at": T0_MS + 250,
        "wait_ms": 250,
    }
    assert retried.row["attempt"] == 1
    assert token.row["first_token_ms"] == 650
    with pytest.raises(ValueError, match="unknown live notice"):
        call_update("succeeded", "c", T0, T0, {})


def test_an_end_mapped_after_its_queued_row_reuses_its_prompt_only_when_the_prompt_is_the_same(
    tracer: Tracer,
) -> None:
    """The batches of one writer share the prompt previews of queued calls: a call's end maps to
    the rows it maps to alone, and an end whose input differs from its queued row's gets its own."""
    prompts: dict = {}
    same, other = start_call(tracer, "same"), start_call(tracer, "other")
    queued = RowBatch(prompts=prompts)
    queued.add(QueuedCall("same", same, dict(same.attributes or {})))
    changed = [{"role": "user", "parts": [{"type": "text", "content": "Another question"}]}]
    queued.add(
        QueuedCall("other", other, {**(other.attributes or {}), "gen_ai.input.messages": json.dumps(changed)})
    )
    assert set(prompts) == {"same", "other"}
    finish(same, at_ms=900)
    finish(other, at_ms=900)

    ended = RowBatch(prompts=prompts)
    ended.add(EndedSpan(same, "same"))
    ended.add(EndedSpan(other, "other"))

    assert [rows.call for rows in ended.finals] == [span_to_rows(same).call, span_to_rows(other).call]
    assert ended.finals[1].call["prompt_preview"] == "And tomorrow, in 北京?"
    assert queued.queued[1].call["prompt_preview"] == "Another question"
    assert not prompts  # each end took its call's entry


def test_task_rows_at_start_and_end(tracer: Tracer) -> None:
    span = task_span(tracer, "t1", at_ms=0, customer="acme", size=3)

    started = task_start_row(span, dict(span.attributes or {}))
    span.end(end_time=T0 + 2_500_000_000)
    ended = span_to_task_row(span)

    assert started == {
        "task_id": "t1",
        "name": "nightly-digest",
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "status": "running",
        "started_at": T0_MS,
        "ended_at": None,
        "duration_ms": None,
        "attributes": '{"customer":"acme","size":3}',
        "process": None,
    }
    assert ended == started | {"status": "succeeded", "ended_at": T0_MS + 2500, "duration_ms": 2500}
    batch = RowBatch()
    batch.add(EndedSpan(span, process="host-b:7"))
    assert batch.task_ends == [ended | {"process": "host-b:7"}]


def test_a_task_span_with_an_error_status_failed(tracer: Tracer) -> None:
    span = task_span(tracer, "t2")
    span.set_status(Status(StatusCode.ERROR, "boom"))
    span.end(end_time=T0 + 1_000_000)

    row = span_to_task_row(span)

    assert row is not None and row["status"] == "failed"
