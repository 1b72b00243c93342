"""The demo workload: a small app making real OpenAI SDK calls against the built-in fake server.

It shows what llm-otel records: tasks and labels, a serial scheduler with a throttle, streaming
and non-streaming chat, the Responses API, embeddings, tool calls, cached and reasoning tokens,
retried 429s, a call that fails, a stream closed early, and non-English text. ``run_demo`` does
the calls; ``llm-otel demo`` (``make demo``) runs it and prints what the store recorded.
"""

from __future__ import annotations

import asyncio
import contextlib

import openai

import llm_otel
from llm_otel.testing import Behavior, FakeOpenAI

CHAT_MODEL = "gpt-4o-mini"
SLOW_MODEL = "gpt-4o-slow"
EMBEDDING_MODEL = "text-embedding-3-small"


def _script_server(server: FakeOpenAI) -> None:
    server.set_default(Behavior(cached_tokens=12, reasoning_tokens=4))
    server.set_default(Behavior(first_chunk_delay=0.3, chunk_delay=0.02, cached_tokens=12), model=SLOW_MODEL)


def _daily_digest(client: openai.OpenAI) -> None:
    with llm_otel.task("daily-digest", task_id="digest-2026-11-28", edition="morning"):
        conversation = [
            {"role": "system", "content": "You summarise news in two sentences."},
            {"role": "user", "content": "Summarise today's OpenTelemetry news."},
        ]
        reply = client.chat.completions.create(model=CHAT_MODEL, messages=conversation)
        conversation += [
            {"role": "assistant", "content": reply.choices[0].message.content},
            {"role": "user", "content": "Now the same in Chinese: 请用中文总结今天的天气预报。"},
        ]
        for _chunk in client.chat.completions.create(model=SLOW_MODEL, messages=conversation, stream=True):
            pass
        client.responses.create(
            model=CHAT_MODEL, instructions="Answer briefly.", input="Which backends accept OTLP traces?"
        )


def _weather_tool_call(client: openai.OpenAI, server: FakeOpenAI) -> None:
    server.script(Behavior(tool_calls=[{"name": "get_weather", "arguments": {"city": "Berlin"}}]))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "What's the weather in Berlin?"}]
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=tools)
    tool_call = reply.choices[0].message.tool_calls[0]
    messages += [
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tool_call.id, "content": "Cloudy, 4 °C"},
    ]
    client.chat.completions.create(model=CHAT_MODEL, messages=messages)


def _troubles(client: openai.OpenAI, server: FakeOpenAI) -> None:
    server.script(Behavior(status=429, retry_after_ms=100), Behavior(status=429, retry_after_ms=100))
    client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Retry me"}])
    server.script(*[Behavior(status=500, retry_after_ms=50)] * 3)
    with contextlib.suppress(openai.InternalServerError):
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Fail me"}])
    stream = client.chat.completions.create(
        model=SLOW_MODEL, messages=[{"role": "user", "content": "A long story, please"}], stream=True
    )
    next(stream)
    stream.close()  # the reader went away: cancelled, partial output kept


async def _index_documents(base_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-demo")
    documents = ["OpenTelemetry traces", "SQLite WAL mode", "天气预报说今天会下雨"]
    async with llm_otel.task("index-documents"):
        await asyncio.gather(
            *(client.embeddings.create(model=EMBEDDING_MODEL, input=doc) for doc in documents)
        )
        stream = await client.responses.create(
            model=CHAT_MODEL, input="Name the indexed topics.", stream=True
        )
        async for _event in stream:
            pass
    await client.close()


def run_demo(server: FakeOpenAI) -> None:
    """Make the demo's calls against ``server``; llm-otel must already be set up."""
    _script_server(server)
    with openai.OpenAI(base_url=server.base_url, api_key="sk-demo", max_retries=2) as client:
        with llm_otel.labels(source="newsroom", requested_by="alice"):
            _daily_digest(client)
        with llm_otel.labels(source="assistant", requested_by="bob"):
            _weather_tool_call(client, server)
            _troubles(client, server)
    with llm_otel.labels(source="search-indexer"):
        asyncio.run(_index_documents(server.base_url))
