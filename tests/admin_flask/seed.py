"""The seeded store of the admin tests: real calls through ``llm_otel.setup()``, the real openai
client and the fake OpenAI server, into a real SQLite (or PostgreSQL) store.

``seed(url, server)`` makes ~130 calls of every kind the admin shows (multi-turn chats, tool calls,
streams, a cancelled stream, 429 retries, failures, cached and reasoning tokens, Chinese and English
text, slow first tokens, tasks, labels, the Responses API, embeddings) and returns a ``Manifest``
naming the calls the tests look at. Tests count what they expect with their own SQL, never from
the manifest alone.
"""

from __future__ import annotations

import contextlib
import random
import threading
from dataclasses import dataclass, field

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llm_otel
from llm_otel.testing import Behavior, FakeOpenAI

API_KEY = "sk-admin-tests-0123456789abcdef"
CHINESE_REPORT = "请帮我总结一下第三季度销售报告的要点"
CHINESE_Q = "季度销售报告"
RARE_WORD = "xylophonist"
SHORT_CHINESE_Q = "天气"
SOURCES = ("billing", "search", "reports", None)
USERS = ("alice", "bob", None)
MODELS = ("gpt-4o-mini", "gpt-4o")
BULK_CALLS = 100


@dataclass
class Manifest:
    """Call ids (by role) of the seeded calls the tests look at."""

    calls: dict[str, str] = field(default_factory=dict)
    task_ids: tuple[str, ...] = ()
    total: int = 0


def seed(url: str, server: FakeOpenAI) -> Manifest:
    """Make the calls into the store at ``url``; every span is flushed and the store closed on return."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = llm_otel.setup(
        db=url,
        tracer_provider=provider,
        scheduler=llm_otel.Scheduler(max_concurrency=1, min_interval=0.0, name="seed"),
    )
    server.reset()
    try:
        with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=2) as client:
            named = _named_calls(client, server)
            _bulk_calls(client)
        assert handle.flush(30), "the store did not write every seeded call"
    finally:
        llm_otel.shutdown()
        server.reset()
    spans = [span for span in exporter.get_finished_spans() if "llm_otel.call.id" in (span.attributes or {})]
    by_marker = {}
    for span in spans:
        marker = (span.attributes or {}).get("llm_otel.source")
        by_marker.setdefault(marker, span.attributes["llm_otel.call.id"])
    manifest = Manifest(total=len(spans), task_ids=("job-42", "job-43", "batch-1", "batch-2"))
    manifest.calls = {role: by_marker[source] for role, source in named.items()}
    return manifest


def _named_calls(client: openai.OpenAI, server: FakeOpenAI) -> dict[str, str]:
    """The calls the tests look at one by one; each has its own source so its id can be found."""
    named: dict[str, str] = {}

    def label(role: str) -> llm_otel.labels:
        named[role] = f"seed-{role}"
        return llm_otel.labels(source=f"seed-{role}", requested_by="carol")

    with llm_otel.task("nightly-digest", task_id="job-42"):
        with label("multi_turn"):
            server.script(
                Behavior(content="The third quarter grew 12%.", cached_tokens=8, reasoning_tokens=5)
            )
            client.chat.completions.create(
                model="o3-mini",
                messages=[
                    {"role": "system", "content": "You are a terse analyst."},
                    {"role": "user", "content": CHINESE_REPORT},
                    {"role": "assistant", "content": "好的，请提供报告。"},
                    {"role": "user", "content": "Revenue was 4.2M; summarise in one line."},
                ],
                temperature=0.2,
            )
        with label("tool_call"):
            server.script(Behavior(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
            client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "What is the weather in Paris today?"}],
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                        },
                    }
                ],
            )
        with label("retried"):
            server.script(Behavior(status=429, retry_after_ms=5), Behavior(status=429, retry_after_ms=5))
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Retry me until it works"}]
            )
    with llm_otel.task("weekly-report", task_id="job-43"):
        with label("failed"):
            server.script(*[Behavior(status=500, retry_after_ms=1, error_message="upstream exploded")] * 3)
            with contextlib.suppress(openai.InternalServerError):
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "This one fails for good"}]
                )
        with label("rare_word"):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"Describe a {RARE_WORD} at work in one sentence"}],
            )
    with label("stream"):
        server.script(Behavior(first_chunk_delay=0.2, content="streamed words arrive one by one"))
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream a short answer"}], stream=True
        )
        for _ in stream:
            pass
    with label("cancelled"):
        server.script(Behavior(content="a long answer that nobody reads to the end", chunk_delay=0.01))
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Start then stop"}], stream=True
        )
        chunks = iter(stream)
        next(chunks)
        next(chunks)
        stream.close()
    with label("bad_request"):
        server.script(Behavior(status=400, error_message="Invalid value for 'temperature'"))
        with contextlib.suppress(openai.BadRequestError):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Bad params"}]
            )
    with label("weather_zh"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "明天北京的天气怎么样？"}]
        )
    with label("weather_zh_2"):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "上海今天天气晴朗吗？"}]
        )
    with label("responses"):
        client.responses.create(model="gpt-4o-mini", input="Say hello through the Responses API")
    with label("embeddings"):
        client.embeddings.create(model="text-embedding-3-small", input=["embed this sentence"])
    with label("slow"):
        server.script(Behavior(first_chunk_delay=0.3))
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Take your time"}]
        )
    _queued_calls(client, server)
    return named


def _queued_calls(client: openai.OpenAI, server: FakeOpenAI) -> None:
    """Four calls at once through the serial scheduler: three of them wait in its queue."""
    server.set_default(Behavior(first_chunk_delay=0.06), model="gpt-4o-queued")

    def call(number: int) -> None:
        with llm_otel.labels(source="concurrent", requested_by="dave"):
            client.chat.completions.create(
                model="gpt-4o-queued", messages=[{"role": "user", "content": f"Queued call {number}"}]
            )

    threads = [threading.Thread(target=call, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _bulk_calls(client: openai.OpenAI) -> None:
    """Many ordinary calls with varied labels and models, for filters and paging: the first 30
    inside task ``batch-1``, the next 20 inside ``batch-2``, the rest outside any task."""
    rng = random.Random(6)
    words = ["invoice", "ranking", "summary", "digest", "refund", "catalog", "forecast", "ledger"]

    def calls(numbers: range) -> None:
        for number in numbers:
            prompt = f"Bulk call {number}: write one line about the {rng.choice(words)}"
            with llm_otel.labels(source=rng.choice(SOURCES), requested_by=rng.choice(USERS)):
                client.chat.completions.create(
                    model=rng.choice(MODELS), messages=[{"role": "user", "content": prompt}]
                )

    with llm_otel.task("bulk-batch", task_id="batch-1"):
        calls(range(30))
    with llm_otel.task("bulk-batch", task_id="batch-2"):
        calls(range(30, 50))
    calls(range(50, BULK_CALLS))
