"""The OpenAI instrumentation over real HTTP: one span per call with the contract's attributes."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from llm_otel import attributes as attr
from llm_otel.instrumentation import OpenAIInstrumentor
from llm_otel.scheduler import Scheduler
from llm_otel.testing import Behavior
from tests.llm_otel.spans import API_KEY, call_spans, events_named, only_call_span

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is OpenTelemetry?"},
]
USAGE_BEHAVIOR = Behavior(cached_tokens=3, reasoning_tokens=2)


def _chat(client: Any, stream: bool) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=stream, temperature=0.5
    )


def _responses(client: Any, stream: bool) -> Any:
    return client.responses.create(
        model="gpt-4o-mini", input="What is OpenTelemetry?", instructions="You are terse.", stream=stream
    )


def _consume(result: Any) -> list[Any]:
    return list(result) if hasattr(result, "__next__") else [result]


async def _aconsume(result: Any) -> list[Any]:
    if hasattr(result, "__anext__"):
        return [chunk async for chunk in result]
    return [result]


def _server_usage(fake_openai: Any) -> dict[str, int]:
    usage = fake_openai.calls[-1].usage
    if "prompt_tokens" in usage:  # chat completions / embeddings
        return {
            "input": usage["prompt_tokens"],
            "output": usage.get("completion_tokens"),
            "cached": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
            "reasoning": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
        }
    return {
        "input": usage["input_tokens"],
        "output": usage["output_tokens"],
        "cached": usage["input_tokens_details"]["cached_tokens"],
        "reasoning": usage["output_tokens_details"]["reasoning_tokens"],
    }


def _assert_chat_span(span: Any, fake_openai: Any, stream: bool, api_type: str) -> None:
    attributes = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind is SpanKind.CLIENT
    assert attributes[attr.OPERATION_NAME] == "chat"
    assert attributes[attr.PROVIDER_NAME] == "openai"
    assert attributes[attr.OPENAI_API_TYPE] == api_type
    assert attributes[attr.REQUEST_MODEL] == "gpt-4o-mini"
    assert attributes[attr.REQUEST_STREAM] is stream
    assert attributes[attr.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[attr.SERVER_PORT] == fake_openai.port
    assert attributes[attr.STATUS] == attr.SUCCEEDED
    assert attributes[attr.HTTP_RESEND_COUNT] == 0
    assert attributes[attr.RESPONSE_ID] == fake_openai.calls[-1].response_id
    assert attributes[attr.RESPONSE_MODEL].startswith("gpt-4o-mini")
    assert attributes[attr.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attributes[attr.QUEUE_WAIT] >= 0
    usage = _server_usage(fake_openai)
    assert attributes[attr.USAGE_INPUT_TOKENS] == usage["input"]
    assert attributes[attr.USAGE_OUTPUT_TOKENS] == usage["output"]
    assert attributes[attr.USAGE_CACHE_READ_INPUT_TOKENS] == usage["cached"] == 3
    assert attributes[attr.USAGE_REASONING_OUTPUT_TOKENS] == usage["reasoning"] == 2
    outputs = json.loads(attributes[attr.OUTPUT_MESSAGES])
    assert outputs[0]["role"] == "assistant"
    assert outputs[0]["finish_reason"] == "stop"
    assert outputs[0]["parts"] == [{"type": "text", "content": "Echo: What is OpenTelemetry?"}]
    assert [event.name for event in span.events][:1] == [attr.EVENT_DISPATCHED]
    if stream:
        assert attributes[attr.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
        assert len(events_named(span, attr.EVENT_FIRST_TOKEN)) == 1
    else:
        assert attr.RESPONSE_TIME_TO_FIRST_CHUNK not in attributes


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("endpoint", ["chat_completions", "responses"])
def test_sync_chat_span_carries_the_contract(
    instrumented, client, fake_openai, span_exporter, stream: bool, endpoint: str
) -> None:
    fake_openai.set_default(USAGE_BEHAVIOR)
    request = _chat if endpoint == "chat_completions" else _responses
    _consume(request(client, stream))
    span = only_call_span(span_exporter)
    _assert_chat_span(span, fake_openai, stream, endpoint)
    if endpoint == "chat_completions":
        assert span.attributes[attr.REQUEST_TEMPERATURE] == 0.5
        inputs = json.loads(span.attributes[attr.INPUT_MESSAGES])
        assert inputs[0] == {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]}
    else:
        assert json.loads(span.attributes[attr.SYSTEM_INSTRUCTIONS]) == [
            {"type": "text", "content": "You are terse."}
        ]
        inputs = json.loads(span.attributes[attr.INPUT_MESSAGES])
    assert inputs[-1] == {"role": "user", "parts": [{"type": "text", "content": "What is OpenTelemetry?"}]}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("endpoint", ["chat_completions", "responses"])
async def test_async_chat_span_carries_the_contract(
    instrumented, async_client, fake_openai, span_exporter, stream: bool, endpoint: str
) -> None:
    fake_openai.set_default(USAGE_BEHAVIOR)
    request = _chat if endpoint == "chat_completions" else _responses
    await _aconsume(await request(async_client, stream))
    _assert_chat_span(only_call_span(span_exporter), fake_openai, stream, endpoint)


def test_call_ids_are_unique_and_sort_by_creation_time(instrumented, client, span_exporter) -> None:
    """Each call's id is 32 hex characters led by its creation time in milliseconds (the store's
    b-trees keyed by it then take each new call at their end); ids made in one millisecond differ."""
    made_between = []  # the wall clock in ms before and after each call
    for _ in range(3):
        before = time.time_ns() // 1_000_000
        _chat(client, stream=False)
        made_between.append((before, time.time_ns() // 1_000_000))
        time.sleep(0.002)
    spans = sorted(call_spans(span_exporter), key=lambda span: span.start_time)
    ids = [span.attributes[attr.CALL_ID] for span in spans]
    assert all(len(call_id) == 32 and int(call_id, 16) >= 0 and call_id == call_id.lower() for call_id in ids)
    assert ids == sorted(ids) and len(set(ids)) == 3
    for (before, after), call_id in zip(made_between, ids, strict=True):
        assert before <= int(call_id[:12], 16) <= after
    from llm_otel.instrumentation.call import new_call_id

    assert len({new_call_id() for _ in range(20_000)}) == 20_000


def _assert_embeddings_span(span: Any, fake_openai: Any) -> None:
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes[attr.OPERATION_NAME] == "embeddings"
    assert span.attributes[attr.STATUS] == attr.SUCCEEDED
    assert span.attributes[attr.USAGE_INPUT_TOKENS] == fake_openai.calls[-1].usage["prompt_tokens"]
    assert span.attributes[attr.EMBEDDINGS_DIMENSION_COUNT] == 4


def test_sync_embeddings_span(instrumented, client, fake_openai, span_exporter) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"], dimensions=4)
    assert len(result.data) == 2
    _assert_embeddings_span(only_call_span(span_exporter), fake_openai)


async def test_async_embeddings_span(instrumented, async_client, fake_openai, span_exporter) -> None:
    await async_client.embeddings.create(model="text-embedding-3-small", input="a b c", dimensions=4)
    _assert_embeddings_span(only_call_span(span_exporter), fake_openai)


def test_tool_call_stream_records_the_tool_call(instrumented, client, fake_openai, span_exporter) -> None:
    fake_openai.script(Behavior(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    _consume(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    span = only_call_span(span_exporter)
    assert span.attributes[attr.RESPONSE_FINISH_REASONS] == ("tool_calls",)
    [message] = json.loads(span.attributes[attr.OUTPUT_MESSAGES])
    [part] = message["parts"]
    assert part["type"] == "tool_call"
    assert part["name"] == "get_weather"
    assert part["arguments"] == {"city": "Paris"}
    assert len(events_named(span, attr.EVENT_FIRST_TOKEN)) == 1


def test_multi_turn_tool_conversation_is_recorded(instrumented, client, span_exporter) -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
        {"role": "user", "content": "Thanks"},
    ]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    inputs = json.loads(only_call_span(span_exporter).attributes[attr.INPUT_MESSAGES])
    assert [message["role"] for message in inputs] == ["user", "assistant", "tool", "user"]
    assert inputs[1]["parts"] == [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {}}
    ]
    assert inputs[2]["parts"] == [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}]


def test_with_raw_response(instrumented, client, fake_openai, span_exporter) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "Echo: What is OpenTelemetry?"
    span = only_call_span(span_exporter)
    assert span.attributes[attr.RESPONSE_ID] == fake_openai.calls[-1].response_id
    assert span.attributes[attr.USAGE_INPUT_TOKENS] == fake_openai.calls[-1].usage["prompt_tokens"]


def test_with_raw_response_streaming(instrumented, client, fake_openai, span_exporter) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    assert call_spans(span_exporter) == []  # still streaming
    text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
    assert text == "Echo: What is OpenTelemetry?"
    span = only_call_span(span_exporter)
    assert span.attributes[attr.STATUS] == attr.SUCCEEDED
    assert span.attributes[attr.USAGE_OUTPUT_TOKENS] == fake_openai.calls[-1].usage["completion_tokens"]


def test_hidden_usage_leaves_the_callers_stream_unchanged(
    instrument, client, fake_openai, span_exporter
) -> None:
    plain = [chunk.model_dump() for chunk in _chat(client, stream=True)]  # not instrumented yet
    instrument()
    seen = [chunk.model_dump() for chunk in _chat(client, stream=True)]
    assert fake_openai.calls[-1].body["stream_options"] == {"include_usage": True}
    assert "stream_options" not in fake_openai.calls[0].body
    assert len(seen) == len(plain)
    assert all(chunk["choices"] for chunk in seen)
    assert [c["choices"][0]["delta"] for c in seen] == [c["choices"][0]["delta"] for c in plain]
    span = only_call_span(span_exporter)
    assert span.attributes[attr.USAGE_OUTPUT_TOKENS] == fake_openai.calls[-1].usage["completion_tokens"]


def test_stream_usage_request_can_be_turned_off(instrument, client, fake_openai, span_exporter) -> None:
    instrument(stream_usage=False)
    _consume(_chat(client, stream=True))
    assert "stream_options" not in fake_openai.calls[-1].body
    span = only_call_span(span_exporter)
    assert attr.USAGE_INPUT_TOKENS not in span.attributes
    assert span.attributes[attr.STATUS] == attr.SUCCEEDED


def test_callers_own_usage_request_is_passed_through(
    instrumented, client, fake_openai, span_exporter
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # the caller asked: it gets it
    assert only_call_span(span_exporter).attributes[attr.USAGE_INPUT_TOKENS] == chunks[-1].usage.prompt_tokens


# -- retries and errors -------------------------------------------------------------------------


def test_retries_are_counted_with_their_cause(instrumented, client, fake_openai, span_exporter) -> None:
    fake_openai.script(Behavior(status=429, retry_after_ms=20), Behavior(status=429, retry_after_ms=20))
    result = _chat(client, stream=False)
    assert result.choices[0].message.content
    assert [call.retry_count for call in fake_openai.calls] == [0, 1, 2]
    span = only_call_span(span_exporter)
    assert span.attributes[attr.HTTP_RESEND_COUNT] == 2
    assert span.attributes[attr.STATUS] == attr.SUCCEEDED
    retries = events_named(span, attr.EVENT_RETRY)
    assert [event.attributes[attr.RETRY_ATTEMPT] for event in retries] == [1, 2]
    assert [event.attributes[attr.RETRY_STATUS_CODE] for event in retries] == [429, 429]
    assert all(event.attributes[attr.RETRY_BACKOFF] == pytest.approx(0.02) for event in retries)


async def test_async_retries_are_counted(instrumented, async_client, fake_openai, span_exporter) -> None:
    fake_openai.script(Behavior(status=500, retry_after_ms=10))
    await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = only_call_span(span_exporter)
    assert span.attributes[attr.HTTP_RESEND_COUNT] == 1
    assert events_named(span, attr.EVENT_RETRY)[0].attributes[attr.RETRY_STATUS_CODE] == 500


def test_server_error_past_max_retries_fails_the_span(
    instrumented, client, fake_openai, span_exporter
) -> None:
    fake_openai.script(*[Behavior(status=500, retry_after_ms=10)] * 3)
    with pytest.raises(openai.InternalServerError):
        _chat(client, stream=False)
    span = only_call_span(span_exporter)
    assert span.attributes[attr.STATUS] == attr.FAILED
    assert span.attributes[attr.ERROR_TYPE] == "InternalServerError"
    assert span.attributes[attr.HTTP_RESEND_COUNT] == 2
    assert span.status.status_code is StatusCode.ERROR
    assert events_named(span, "exception")


def test_timeout_retries_name_the_error(instrumented, fake_openai, span_exporter) -> None:
    fake_openai.script(Behavior(hang=2.0))
    with openai.OpenAI(base_url=fake_openai.base_url, api_key=API_KEY, max_retries=1, timeout=0.2) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = only_call_span(span_exporter)
    [retry] = events_named(span, attr.EVENT_RETRY)
    assert "Timeout" in retry.attributes[attr.RETRY_ERROR]
    assert span.attributes[attr.STATUS] == attr.SUCCEEDED


# -- time to first token and the ways a stream ends ---------------------------------------------


def test_time_to_first_token_is_measured(instrumented, client, fake_openai, span_exporter) -> None:
    fake_openai.script(Behavior(first_chunk_delay=0.3))
    dispatched = time.perf_counter()
    stream = _chat(client, stream=True)
    first_content_at = None
    for chunk in stream:
        if first_content_at is None and chunk.choices and chunk.choices[0].delta.content:
            first_content_at = time.perf_counter() - dispatched
    span = only_call_span(span_exporter)
    ttft = span.attributes[attr.RESPONSE_TIME_TO_FIRST_CHUNK]
    # Ordering, not wall-clock tolerances (the suite runs on loaded machines): the server holds the
    # first content chunk 0.3 s after the request was dispatched, and the app sees the chunk only
    # after the instrumentation has timed it, having started its own clock before the call.
    assert 0.3 <= ttft <= first_content_at
    [event] = events_named(span, attr.EVENT_FIRST_TOKEN)
    [dispatch] = events_named(span, attr.EVENT_DISPATCHED)
    assert event.timestamp > dispatch.timestamp


def test_stream_closed_early_is_cancelled_with_partial_output(
    instrumented, client, fake_openai, span_exporter
) -> None:
    fake_openai.script(Behavior(content="one two three four five"))
    stream = _chat(client, stream=True)
    next(stream)  # role chunk
    next(stream)  # "one"
    stream.close()
    span = only_call_span(span_exporter)
    assert span.attributes[attr.STATUS] == attr.CANCELLED
    assert json.loads(span.attributes[attr.OUTPUT_MESSAGES])[0]["parts"][0]["content"].startswith("one")


def test_stream_left_by_with_is_cancelled(instrumented, client, span_exporter) -> None:
    with _chat(client, stream=True) as stream:
        next(stream)
    assert only_call_span(span_exporter).attributes[attr.STATUS] == attr.CANCELLED


def test_stream_exhausted_inside_with_succeeds(instrumented, client, span_exporter) -> None:
    with _chat(client, stream=True) as stream:
        chunks = list(stream)
    assert chunks
    assert only_call_span(span_exporter).attributes[attr.STATUS] == attr.SUCCEEDED


def test_stream_dropped_mid_way_fails_with_partial_output(
    instrumented, client, fake_openai, span_exporter
) -> None:
    fake_openai.script(Behavior(content="alpha beta gamma delta", drop_after_chunks=2))
    received = []
    with pytest.raises(openai.APIError):
        for chunk in _chat(client, stream=True):
            received.append(chunk)
    span = only_call_span(span_exporter)
    assert span.attributes[attr.STATUS] == attr.FAILED
    assert span.attributes[attr.ERROR_TYPE]
    [message] = json.loads(span.attributes[attr.OUTPUT_MESSAGES])
    assert message["parts"][0]["content"].startswith("alpha")


def test_stream_garbage_collected_unconsumed_is_cancelled(instrumented, client, span_exporter) -> None:
    stream = _chat(client, stream=True)
    assert call_spans(span_exporter) == []
    del stream
    assert only_call_span(span_exporter).attributes[attr.STATUS] == attr.CANCELLED


async def test_async_stream_ends(instrumented, async_client, fake_openai, span_exporter) -> None:
    stream = await _chat(async_client, stream=True)
    async with stream:
        await stream.__anext__()
    fake_openai.script(Behavior(content="a b c d", drop_after_chunks=1))
    with pytest.raises(openai.APIError):
        async for _chunk in await _chat(async_client, stream=True):
            pass
    stream = await _chat(async_client, stream=True)
    await stream.close()
    statuses = [span.attributes[attr.STATUS] for span in call_spans(span_exporter)]
    assert statuses == [attr.CANCELLED, attr.FAILED, attr.CANCELLED]


def test_abandoned_streams_leave_no_span_open(instrument, tracer_provider, fake_openai) -> None:
    """500 here, through a pool of 20 connections (so each connection is handed back and reused 25
    times: an abandoned stream that kept its connection would hang the 21st call); ``make soak``
    runs 10,000 of every kind (abandoned, closed early, cut), sync and async, through the store
    (tests/soak)."""
    open_spans = set()

    class OpenSpanCounter(SpanProcessor):
        def on_start(self, span, parent_context=None):
            open_spans.add(span.context.span_id)

        def on_end(self, span):
            open_spans.discard(span.context.span_id)

    tracer_provider.add_span_processor(OpenSpanCounter())
    instrument()
    pool = openai.DefaultHttpxClient(limits=httpx2.Limits(max_connections=20), timeout=30)
    with openai.OpenAI(base_url=fake_openai.base_url, api_key=API_KEY, http_client=pool) as client:
        for _ in range(500):
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES[1:], stream=True)
            next(stream)
        del stream
    assert len(fake_openai.calls) == 500
    assert open_spans == set()


# -- the instrumentation never changes the app's results ----------------------------------------


def test_uninstrument_restores_the_sdk_exactly(tracer_provider) -> None:
    from openai._base_client import BaseClient
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import Embeddings
    from openai.resources.responses import Responses

    originals = [
        Completions.create,
        Completions.parse,
        AsyncCompletions.create,
        Responses.create,
        Embeddings.create,
        BaseClient._calculate_retry_timeout,
    ]
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    assert Completions.create is not originals[0]
    instrumentor.uninstrument()
    now = [
        Completions.create,
        Completions.parse,
        AsyncCompletions.create,
        Responses.create,
        Embeddings.create,
        BaseClient._calculate_retry_timeout,
    ]
    assert all(a is b for a, b in zip(now, originals, strict=True))


def test_a_failing_instrumentation_never_reaches_the_app(
    instrumented, client, span_exporter, monkeypatch, caplog
) -> None:
    from llm_otel.instrumentation.chat import ChatCompletionsAPI

    def broken(self, result):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(ChatCompletionsAPI, "response_attributes", broken)
    result = _chat(client, stream=False)
    assert result.choices[0].message.content == "Echo: What is OpenTelemetry?"
    assert only_call_span(span_exporter).attributes[attr.STATUS] == attr.SUCCEEDED
    assert "instrumentation bug" in caplog.text


def test_errors_are_raised_unchanged(instrumented, client, fake_openai) -> None:
    fake_openai.script(Behavior(status=400, error_message="bad request body"))
    with pytest.raises(openai.BadRequestError, match="bad request body") as caught:
        _chat(client, stream=False)
    assert caught.value.status_code == 400


# -- content capture ----------------------------------------------------------------------------


def test_redact_sees_and_changes_every_message(instrument, client, span_exporter) -> None:
    seen = []

    def redact(message):
        seen.append(message["role"])
        return {**message, "parts": [{"type": "text", "content": "[redacted]"}]}

    instrument(redact=redact)
    _chat(client, stream=False)
    span = only_call_span(span_exporter)
    assert seen == ["system", "user", "assistant"]
    for key in (attr.INPUT_MESSAGES, attr.OUTPUT_MESSAGES):
        assert "OpenTelemetry" not in span.attributes[key]
        assert "[redacted]" in span.attributes[key]


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_capture_off_records_no_content(instrument, client, span_exporter, monkeypatch, how: str) -> None:
    if how == "argument":
        instrument(capture_content=False)
    else:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "no_content")
        instrument()
    _consume(_responses(client, stream=True))
    span = only_call_span(span_exporter)
    for key in (attr.INPUT_MESSAGES, attr.OUTPUT_MESSAGES, attr.SYSTEM_INSTRUCTIONS):
        assert key not in span.attributes
    assert not any("OpenTelemetry" in str(value) for value in span.attributes.values())
    assert span.attributes[attr.USAGE_INPUT_TOKENS] > 0


def test_capture_off_records_no_content_passed_as_parameters(instrument, client, span_exporter) -> None:
    """A predicted output and prompt template variables are content, not parameters."""
    instrument(capture_content=False)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, prediction={"type": "content", "content": "PREDICTED TEXT"}
    )
    client.responses.create(
        model="gpt-4o-mini", input="hi", prompt={"id": "pmpt_1", "variables": {"city": "SECRET CITY"}}
    )
    chat, responses = call_spans(span_exporter)
    assert "PREDICTED TEXT" not in chat.attributes[attr.REQUEST_PARAMS]
    assert "SECRET CITY" not in responses.attributes[attr.REQUEST_PARAMS]
    assert json.loads(responses.attributes[attr.REQUEST_PARAMS])["prompt"] == {"id": "pmpt_1"}


def test_no_api_key_is_ever_recorded(instrumented, client, fake_openai, span_exporter) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"Authorization": f"Bearer {API_KEY}"}
    )
    fake_openai.script(Behavior(status=401, error_message="Incorrect API key provided: sk-test-s***"))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert fake_openai.calls[0].headers["authorization"] == f"Bearer {API_KEY}"  # it was sent
    for span in call_spans(span_exporter):
        recorded = [*map(str, span.attributes.values())]
        recorded += [str(value) for event in span.events for value in event.attributes.values()]
        assert not any(API_KEY in value for value in recorded)
        assert not any("authorization" in key.lower() for key in span.attributes)


def test_calls_on_several_event_loops_each_get_a_span(instrumented, fake_openai, span_exporter) -> None:
    async def one_call() -> None:
        client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=API_KEY)
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await client.close()

    import threading

    threads = [threading.Thread(target=lambda: asyncio.run(one_call())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(call_spans(span_exporter)) == 3


def test_with_streaming_response_ends_at_the_headers(instrumented, client, span_exporter, caplog) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ) as raw:
        assert raw.parse().choices[0].message.content == "Echo: What is OpenTelemetry?"
    assert only_call_span(span_exporter).attributes[attr.STATUS] == attr.SUCCEEDED
    assert "llm_otel" not in caplog.text


def test_structured_output_parse_and_stream_helpers_are_recorded(instrumented, client, span_exporter) -> None:
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)
    assert parsed.choices[0].message.content == "Echo: What is OpenTelemetry?"
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        for _event in stream:
            pass
        assert stream.get_final_completion().choices[0].message.content == "Echo: What is OpenTelemetry?"
    with client.responses.stream(model="gpt-4o-mini", input="hello") as stream:
        for _event in stream:
            pass
    client.responses.parse(model="gpt-4o-mini", input="hello")
    spans = call_spans(span_exporter)
    assert [span.attributes[attr.OPENAI_API_TYPE] for span in spans] == [
        "chat_completions",
        "chat_completions",
        "responses",
        "responses",
    ]
    assert all(span.attributes[attr.STATUS] == attr.SUCCEEDED for span in spans)
    assert all(span.attributes[attr.USAGE_OUTPUT_TOKENS] > 0 for span in spans)


def test_stream_helpers_left_early_end_the_call_at_once(instrument, client, span_exporter) -> None:
    """``chat.completions.stream()`` / ``responses.stream()`` close the HTTP response, not our proxy:
    the span must still end (cancelled) and the permit come back at once, not at the next GC."""
    scheduler = Scheduler(max_concurrency=1)
    instrument(scheduler=scheduler)
    gc.disable()
    try:
        with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            next(iter(stream))
        assert scheduler.status()["in_flight"] == 0
        with client.responses.stream(model="gpt-4o-mini", input="hello") as stream:
            next(iter(stream))
        assert scheduler.status()["in_flight"] == 0
    finally:
        gc.enable()
    assert [span.attributes[attr.STATUS] for span in call_spans(span_exporter)] == [attr.CANCELLED] * 2


async def test_async_stream_helpers_left_early_end_the_call_at_once(
    instrument, async_client, span_exporter
) -> None:
    scheduler = Scheduler(max_concurrency=1)
    instrument(scheduler=scheduler)
    gc.disable()
    try:
        async with async_client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            await stream.__aiter__().__anext__()
        assert scheduler.status()["in_flight"] == 0
        async with async_client.responses.stream(model="gpt-4o-mini", input="hello") as stream:
            await stream.__aiter__().__anext__()
        assert scheduler.status()["in_flight"] == 0
    finally:
        gc.enable()
    assert [span.attributes[attr.STATUS] for span in call_spans(span_exporter)] == [attr.CANCELLED] * 2


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_response_that_reports_failure_fails_the_call(
    instrumented, client, fake_openai, span_exporter, stream: bool
) -> None:
    fake_openai.script(Behavior(finish_reason="error"))
    result = _responses(client, stream)
    if stream:
        assert [event.type for event in result][-1] == "response.failed"
    else:
        assert result.status == "failed"  # returned, not raised: the SDK's behaviour is kept
    span = only_call_span(span_exporter)
    assert span.attributes[attr.STATUS] == attr.FAILED
    assert span.attributes[attr.ERROR_TYPE] == "server_error"
    assert span.attributes[attr.RESPONSE_FINISH_REASONS] == ("error",)
    assert span.status.status_code is StatusCode.ERROR


def test_a_span_still_ends_when_recording_its_end_fails(instrument, client, span_exporter, caplog) -> None:
    def unserialisable_output(message):
        return {("not", "json"): message} if message["role"] == "assistant" else message

    instrument(redact=unserialisable_output)
    assert _chat(client, stream=False).choices
    assert only_call_span(span_exporter).end_time is not None
    assert "failed to record the end of a call" in caplog.text


def test_a_raw_response_wrapper_cached_while_instrumented_stops_recording_after_uninstrument(
    instrument, client, span_exporter
) -> None:
    instrumentor = instrument()
    raw_create = client.chat.completions.with_raw_response.create  # the SDK caches this object
    raw_create(model="gpt-4o-mini", messages=MESSAGES)
    instrumentor.uninstrument()
    assert raw_create(model="gpt-4o-mini", messages=MESSAGES).parse().choices
    assert len(call_spans(span_exporter)) == 1
