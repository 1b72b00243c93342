"""The fake OpenAI server, driven by the real openai client (sync and async) over real HTTP."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

import llm_otel.testing
from llm_otel.testing import Behavior, FakeOpenAI
from tests.polling import until

USER = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello world"}]
# 3 per message + words: (3 + 3) + (3 + 3); the reply "Echo: Say hello world" is 4 words.
USER_PROMPT_TOKENS = 12
ECHO = "Echo: Say hello world"


@pytest.fixture(scope="module")
def shared_server():
    """One server for the module (a fresh one per test costs more than the test itself)."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_openai(shared_server: FakeOpenAI):
    shared_server.reset()
    return shared_server


@pytest.fixture(scope="module")
def shared_client(shared_server: FakeOpenAI):
    with openai.OpenAI(base_url=shared_server.base_url, api_key="test-key", max_retries=2) as client:
        yield client


@pytest.fixture
def client(fake_openai: FakeOpenAI, shared_client: openai.OpenAI):
    return shared_client


@pytest.fixture
async def async_client(fake_openai: FakeOpenAI):
    async with openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="test-key", max_retries=2) as client:
        yield client


def _http(server: FakeOpenAI, method: str, path: str, body: Any = None) -> tuple[int, str]:
    """A plain HTTP request (no SDK): status and body text."""
    root = server.base_url.removesuffix("/v1")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(root + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _sse_data(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def test_exports_are_sorted_and_public():
    assert llm_otel.testing.__all__ == sorted(llm_otel.testing.__all__)
    assert {name for name in dir(llm_otel.testing) if name[0].isupper()} == set(llm_otel.testing.__all__)


# --- Chat Completions ---------------------------------------------------------------------------


def test_chat_json(fake_openai: FakeOpenAI, client: openai.OpenAI):
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.content == ECHO
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (USER_PROMPT_TOKENS, 4)
    call = fake_openai.calls[-1]
    assert (call.path, call.method, call.status, call.retry_count) == ("/v1/chat/completions", "POST", 200, 0)
    assert call.body["messages"] == USER
    assert call.headers["authorization"] == "Bearer test-key"
    assert call.response_id == completion.id
    assert call.usage == completion.usage.to_dict()


def test_chat_json_counts_cached_and_reasoning_tokens(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(content="fine thanks", cached_tokens=20, reasoning_tokens=5))

    usage = client.chat.completions.create(model="gpt-5.1-2025-11-13", messages=USER).usage

    assert usage.prompt_tokens == 20  # cached tokens are part of the prompt
    assert usage.prompt_tokens_details.cached_tokens == 20
    assert usage.completion_tokens == 2 + 5
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert usage.total_tokens == 27
    assert fake_openai.calls[-1].body["model"] == "gpt-5.1-2025-11-13"


def test_chat_stream_with_usage(fake_openai: FakeOpenAI, client: openai.OpenAI):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == ECHO
    assert len(chunks) == 1 + 4 + 1 + 1  # role, a chunk per word, finish, usage
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.to_dict() == fake_openai.calls[-1].usage
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert len({chunk.id for chunk in chunks}) == 1


def test_chat_stream_wire_shape(fake_openai: FakeOpenAI):
    body = {"model": "gpt-4o-mini", "messages": USER, "stream": True}
    status, text = _http(
        fake_openai, "POST", "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    with_usage = _sse_data(text)
    status_plain, plain = _http(fake_openai, "POST", "/v1/chat/completions", body)

    assert status == status_plain == 200
    assert with_usage[-1] == "[DONE]" and _sse_data(plain)[-1] == "[DONE]"
    chunks = [json.loads(data) for data in with_usage[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])  # present, null, like the real API
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == fake_openai.calls[0].usage
    assert all("usage" not in json.loads(data) for data in _sse_data(plain)[:-1])
    assert fake_openai.calls[1].usage is None  # no usage sent without include_usage


def test_chat_tool_call_stream_reassembles(fake_openai: FakeOpenAI, client: openai.OpenAI):
    tools = [
        {"name": "get_weather", "arguments": {"city": "Paris, France"}},
        {"name": "now", "arguments": "{}"},
    ]
    fake_openai.set_default(Behavior(tool_calls=tools))

    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assembled: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or ():
            call = assembled.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function and delta.function.name) or ""
            call["arguments"] += (delta.function and delta.function.arguments) or ""
    message = client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0]

    assert chunks[0].choices[0].delta.content is None  # a tool-call-only reply has no text
    assert [(call["name"], json.loads(call["arguments"])) for call in assembled.values()] == [
        ("get_weather", {"city": "Paris, France"}),
        ("now", {}),
    ]
    assert all(call["id"].startswith("call_") for call in assembled.values())
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert message.finish_reason == "tool_calls" and message.message.content is None
    assert [call.function.name for call in message.message.tool_calls] == ["get_weather", "now"]


def test_chat_n_choices(client: openai.OpenAI):
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=USER, n=2)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, n=2, stream=True))

    assert [choice.index for choice in completion.choices] == [0, 1]
    assert completion.usage.completion_tokens == 2 * 4
    for index in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == index)
        assert text == ECHO


def test_chat_rejects_stream_options_without_stream(fake_openai: FakeOpenAI, client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream_options={"include_usage": True}
        )

    assert raised.value.body["param"] == "stream_options"
    assert fake_openai.calls[-1].status == 400 and fake_openai.calls[-1].behavior is None


# --- Responses API ------------------------------------------------------------------------------


def test_responses_json(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(cached_tokens=2, reasoning_tokens=3))

    response = client.responses.create(model="gpt-4o-mini", input="Say hello world", instructions="Be terse.")

    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.output_text == ECHO
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.instructions == "Be terse."
    assert response.usage.input_tokens == (3 + 2) + (3 + 3)
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.usage.output_tokens == 4 + 3
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    assert fake_openai.calls[-1].usage == response.usage.to_dict()
    assert fake_openai.calls[-1].response_id == response.id


def test_responses_list_input_and_tool_calls(client: openai.OpenAI, fake_openai: FakeOpenAI):
    fake_openai.script(Behavior(tool_calls=[{"name": "lookup", "arguments": '{"q": "x"}'}]))
    items = [{"role": "user", "content": [{"type": "input_text", "text": "Find x please"}]}]

    response = client.responses.create(model="gpt-4o-mini", input=items)

    (call,) = response.output
    assert (call.type, call.name, call.arguments) == ("function_call", "lookup", '{"q": "x"}')
    assert call.call_id.startswith("call_")
    assert response.usage.input_tokens == 3 + 3
    assert client.responses.create(model="gpt-4o-mini", input=items).output_text == "Echo: Find x please"


def test_responses_stream(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(content="Hi there", cached_tokens=4, reasoning_tokens=2))

    events = list(client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True))

    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # the reasoning item
        "response.output_item.done",
        "response.output_item.added",  # the message
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert (
        "".join(event.delta for event in events if event.type == "response.output_text.delta") == "Hi there"
    )
    assert events[0].response.status == "in_progress" and events[0].response.usage is None
    final = events[-1].response
    assert final.output_text == "Hi there"
    assert final.usage.input_tokens_details.cached_tokens == 4
    assert final.usage.output_tokens_details.reasoning_tokens == 2
    assert final.usage.to_dict() == fake_openai.calls[-1].usage


def test_responses_stream_tool_call(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(tool_calls=[{"name": "lookup", "arguments": '{"query": "weather"}'}]))

    events = list(client.responses.create(model="gpt-4o-mini", input="Find it", stream=True))

    deltas = [event.delta for event in events if event.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 1 and "".join(deltas) == '{"query": "weather"}'
    assert events[-1].type == "response.completed"
    assert events[-1].response.output[0].name == "lookup"


def test_finish_reason_length(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.set_default(Behavior(finish_reason="length"))

    choice = client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0]
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    response = client.responses.create(model="gpt-4o-mini", input="hi")

    assert choice.finish_reason == "length"
    assert events[-1].type == "response.incomplete"
    assert (response.status, response.incomplete_details.reason) == ("incomplete", "max_output_tokens")


# --- Embeddings and models ----------------------------------------------------------------------


def test_embeddings_float_and_base64(fake_openai: FakeOpenAI, client: openai.OpenAI):
    decoded = client.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["one two", "three"], encoding_format="float"
    )
    short = client.embeddings.create(model="text-embedding-3-small", input="one", dimensions=4)

    assert fake_openai.calls[0].body["encoding_format"] == "base64"  # the SDK's default, decoded by it
    assert [item.embedding for item in decoded.data] == [item.embedding for item in floats.data]
    assert [len(item.embedding) for item in floats.data] == [8, 8]
    assert math.isclose(sum(value * value for value in floats.data[0].embedding), 1.0, rel_tol=1e-5)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert len(short.data[0].embedding) == 4
    assert floats.model == "text-embedding-3-small"
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 3
    assert fake_openai.calls[1].usage == floats.usage.to_dict()


def test_embeddings_explicit_base64_is_left_encoded(client: openai.OpenAI):
    result = client.embeddings.create(model="text-embedding-3-small", input="one", encoding_format="base64")

    assert isinstance(result.data[0].embedding, str)


def test_models_list(client: openai.OpenAI):
    assert "gpt-4o-mini" in [model.id for model in client.models.list()]


# --- Errors and retries -------------------------------------------------------------------------


def test_429_then_success_is_retried(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(status=429, retry_after_ms=10), Behavior(status=429, retry_after_ms=10))

    completion = client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert completion.choices[0].message.content == ECHO
    assert [(call.status, call.retry_count) for call in fake_openai.calls] == [(429, 0), (429, 1), (200, 2)]
    assert fake_openai.calls[0].usage is None


def test_500_past_max_retries_raises(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.set_default(Behavior(status=500, retry_after_ms=1))

    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert len(fake_openai.calls) == 3
    assert raised.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_error_body_and_headers(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(status=429, retry_after_ms=1500, error_message="Slow down."))

    with pytest.raises(openai.RateLimitError) as raised:
        client.with_options(max_retries=0).embeddings.create(model="text-embedding-3-small", input="x")

    assert raised.value.response.headers["retry-after-ms"] == "1500"
    assert raised.value.body == {
        "message": "Slow down.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


def test_dropped_stream_raises_mid_iteration(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(drop_after_chunks=2))
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
        ):
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "Echo:", " Say"]
    assert fake_openai.calls[-1].usage is None


def _serving_threads() -> set[threading.Thread]:
    """The threads of ``ThreadingHTTPServer`` that serve a connection each."""
    return {thread for thread in threading.enumerate() if "process_request_thread" in thread.name}


def test_hang_times_out_blocks_no_one_and_stop_ends_the_hanging_requests():
    before = _serving_threads()
    server = FakeOpenAI().start()
    server.script(Behavior(hang=3600), Behavior(hang=3600))
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=0.2)
    serving: set[threading.Thread] = set()
    try:
        for _ in range(2):  # two requests left hanging in the server for an hour
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert (
            client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0].message.content
            == ECHO
        )
        serving = _serving_threads() - before
        assert len(serving) >= 2  # the hanging ones (and the keep-alive connection of the third call)
    finally:
        server.stop()
        client.close()

    until(
        lambda: not any(thread.is_alive() for thread in serving), "stop() left the hanging requests hanging"
    )
    with pytest.raises(OSError), socket.create_connection((server.host, server.port), timeout=1):
        pass


def test_first_chunk_delay(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.set_default(Behavior(first_chunk_delay=0.3, chunk_delay=0.02), model="slow-model")
    arrivals = []

    started = time.monotonic()
    for chunk in client.chat.completions.create(model="slow-model", messages=USER, stream=True):
        arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))
    client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert arrivals[0][1] == ""  # the role chunk comes first
    first_content = next(at for at, content in arrivals if content)
    assert first_content >= 0.3
    assert arrivals[-2][0] >= 0.3 + 3 * 0.02  # three more words, each after chunk_delay
    slow, other = (call.behavior for call in fake_openai.calls[-2:])
    assert (slow.first_chunk_delay, other.first_chunk_delay) == (0.3, 0.0)  # the default: slow-model only


# --- Behaviour selection and control endpoints --------------------------------------------------


def test_scripts_by_model_and_defaults(fake_openai: FakeOpenAI, client: openai.OpenAI):
    fake_openai.script(Behavior(content="for a"), model="model-a")
    fake_openai.script(Behavior(content="for any"))
    fake_openai.set_default(Behavior(content="default b"), model="model-b")
    fake_openai.set_default(Behavior(content="default"))

    def ask(model: str) -> str:
        return client.chat.completions.create(model=model, messages=USER).choices[0].message.content

    answers = [ask("model-b"), ask("model-a"), ask("model-a"), ask("model-b"), ask("model-c")]
    fake_openai.reset()
    after_reset = ask("model-b")

    assert answers == ["for any", "for a", "default", "default b", "default"]
    assert after_reset == ECHO
    assert len(fake_openai.calls) == 1


def test_control_endpoints(fake_openai: FakeOpenAI, client: openai.OpenAI):
    script = {
        "model": "gpt-4o-mini",
        "behaviors": [{"status": 503, "retry_after_ms": 1}, {"content": "scripted"}],
    }
    assert _http(fake_openai, "POST", "/_fake/script", script) == (200, json.dumps({"queued": 2}))
    assert _http(fake_openai, "POST", "/_fake/default", {"behavior": {"content": "by default"}})[0] == 200

    first = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    status, text = _http(fake_openai, "GET", "/_fake/calls")
    calls = json.loads(text)["calls"]
    assert (first.choices[0].message.content, second.choices[0].message.content) == ("scripted", "by default")
    assert status == 200
    assert [(call["status"], call["retry_count"]) for call in calls] == [(503, 0), (200, 1), (200, 0)]
    assert calls[0]["behavior"]["retry_after_ms"] == 1
    assert calls[1]["usage"] == fake_openai.calls[1].usage

    assert _http(fake_openai, "POST", "/_fake/reset") == (200, json.dumps({"ok": True}))
    assert fake_openai.calls == []


def test_control_endpoints_refuse_bad_input(fake_openai: FakeOpenAI):
    status, text = _http(fake_openai, "POST", "/_fake/script", {"behaviors": [{"stauts": 500}]})
    assert status == 400
    assert "stauts" in json.loads(text)["error"]["message"]
    assert _http(fake_openai, "POST", "/_fake/default", {"behavior": {"status": 302}})[0] == 400
    assert _http(fake_openai, "POST", "/_fake/script", {"behaviors": "nope"})[0] == 400
    assert fake_openai.calls == []


def test_unknown_path_is_404_with_error_body(fake_openai: FakeOpenAI):
    status, text = _http(fake_openai, "POST", "/v1/completions-typo", {"model": "x"})

    assert status == 404
    assert json.loads(text) == {
        "error": {
            "message": "Invalid URL (POST /v1/completions-typo)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert fake_openai.calls[-1].status == 404


def test_behavior_validation():
    with pytest.raises(ValueError, match="status"):
        Behavior(status=302)
    with pytest.raises(ValueError, match="first_chunk_delay"):
        Behavior(first_chunk_delay=-1)
    with pytest.raises(ValueError, match="tool call"):
        Behavior(tool_calls=[{"arguments": "{}"}])
    assert Behavior.from_dict(Behavior(tool_calls=[{"name": "f", "arguments": {}}]).to_dict()).tool_calls == (
        {"name": "f", "arguments": "{}"},
    )


# --- Async client -------------------------------------------------------------------------------


async def test_async_chat_stream_and_retry(fake_openai: FakeOpenAI, async_client: openai.AsyncOpenAI):
    fake_openai.script(Behavior(status=429, retry_after_ms=5))

    stream = await async_client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == ECHO
    assert chunks[-1].usage.to_dict() == fake_openai.calls[-1].usage
    assert [(call.status, call.retry_count) for call in fake_openai.calls] == [(429, 0), (200, 1)]
    assert fake_openai.calls[-1].headers["x-stainless-async"].startswith("async")


async def test_async_responses_and_embeddings(fake_openai: FakeOpenAI, async_client: openai.AsyncOpenAI):
    response = await async_client.responses.create(model="gpt-4o-mini", input="Say hello world")
    events = [
        event
        async for event in await async_client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    ]
    embeddings = await async_client.embeddings.create(model="text-embedding-3-small", input="one two")

    assert response.output_text == ECHO
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.to_dict() == fake_openai.calls[1].usage
    assert len(embeddings.data[0].embedding) == 8


async def test_async_dropped_stream_raises(fake_openai: FakeOpenAI, async_client: openai.AsyncOpenAI):
    fake_openai.script(Behavior(drop_after_chunks=1))

    with pytest.raises(openai.APIConnectionError):
        async for _ in await async_client.responses.create(model="gpt-4o-mini", input="a b c", stream=True):
            pass


def test_max_calls_keeps_only_the_latest_recorded_calls() -> None:
    with FakeOpenAI(max_calls=2) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-x")
        for text in ("one", "two", "three"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
        client.close()
        kept = [call.body["messages"][0]["content"] for call in server.calls]
    assert kept == ["two", "three"]
