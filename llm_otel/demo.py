"""The demo workload: a small app making real OpenAI SDK calls against the built-in fake server.

It shows what llm-otel records: tasks and labels, a serial scheduler with a throttle, streaming
and non-streaming chat, the Responses API, embeddings, tool calls, cached and reasoning tokens,
retried 429s, a call that fails, a stream closed early, and non-English text. ``run_demo`` does
the calls; ``run_demo_and_report`` (``llm-otel demo``, ``make demo``) sets llm-otel up, runs them
and prints what the store recorded, read back from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

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


def run_demo_and_report(
    db_url: str, *, retention_days: float | None = None, echo: Callable[[str], Any] = print
) -> None:
    """Set llm-otel up on ``db_url``, run the demo against a fake server, print what was recorded."""
    before = _calls_in(db_url)
    started_ms = time.time_ns() // 1_000_000
    scheduler = llm_otel.Scheduler(max_concurrency=2, min_interval=0.05, name="demo")
    handle = llm_otel.setup(db=db_url, scheduler=scheduler, retention_days=retention_days)
    where = handle.store.path or db_url
    with FakeOpenAI() as server:
        echo(f"Fake OpenAI server on {server.base_url} (no OpenAI key needed).")
        if before is None:
            echo(f"Recording into {where} (a new store).")
        else:
            echo(
                f"Adding to {where}, which holds {before} calls already (--db another file to start afresh)."
            )
        run_demo(server)
    llm_otel.shutdown()
    echo(report(db_url, since_ms=started_ms))


def _calls_in(db_url: str) -> int | None:
    """How many calls the store at ``db_url`` holds; None when there is no store there yet."""
    from exporter import StoreConfigurationError, open_database

    try:
        database = open_database(db_url, create=False)
    except StoreConfigurationError:
        return None
    try:
        if not database.table_exists("llm_calls"):
            return None
        return database.execute_sql("SELECT count(*) FROM llm_calls").fetchone()[0]
    finally:
        database.close()


def report(db_url: str, *, since_ms: int) -> str:
    """The calls enqueued since ``since_ms`` as text, read back from the store (not from memory)."""
    from exporter import open_database, queries
    from exporter.models import db

    db.initialize(open_database(db_url))
    page = queries.list_calls(since_ms=since_ms, page_size=50)
    in_store = queries.list_calls(page_size=1)["total"]
    lines = [f"\n{page['total']} calls recorded by this run ({in_store} in the store):\n"]
    for call in reversed(page["items"]):
        lines += [
            f"  {call['status']:<9} {call['operation']:<10} {call['model']:<22} "
            f"source={call.get('source') or '-':<14} task={call.get('parent_task_name') or '-'}",
            f"            wait {_ms(call['wait_ms'])}, first token {_first_token(call)}, "
            f"duration {_ms(call['duration_ms'])}, retries {call['retry_count']}, {_tokens(call)}",
            f"            prompt: {_line(call.get('prompt_preview'))}",
        ]
        if call.get("error_type"):
            lines.append(f"            error:  {call['error_type']}: {_line(call.get('error_message'))}")
    stats = queries.status_aggregates(window_ms=max(1, time.time_ns() // 1_000_000 - since_ms + 1))
    counts = ", ".join(f"{count} {status}" for status, count in stats["counts"].items() if count)
    rate = stats["error_rate"]
    lines.append(
        f"\nThis run: {counts or 'no calls'}"
        + (
            ""
            if rate is None
            else f"; error rate {rate:.1%} ({stats['counts']['failed']} failed of {stats['ended']} ended)"
        )
    )
    return "\n".join(lines)


def _ms(value: int | None) -> str:
    return "n/a" if value is None else f"{value} ms"


def _first_token(call: dict[str, Any]) -> str:
    if not call["stream"]:
        return "n/a (not streamed)"
    return _ms(call["first_token_ms"]) if call["first_token_ms"] is not None else "none (ended before it)"


def _tokens(call: dict[str, Any]) -> str:
    if call.get("input_tokens") is None:
        return "no token usage reported"
    text = f"tokens in {call['input_tokens']}"
    if call.get("cached_tokens"):
        text += f" (cached {call['cached_tokens']})"
    if call.get("output_tokens") is not None:
        text += f", out {call['output_tokens']}"
    if call.get("reasoning_tokens"):
        text += f" (reasoning {call['reasoning_tokens']})"
    return text


def _line(text: str | None, width: int = 90) -> str:
    return (text or "").replace("\n", " ")[:width]
