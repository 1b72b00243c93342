"""The demo workload: a small app making real OpenAI SDK calls, continuously, until it is stopped.

``llm-otel demo`` (``make demo``) runs it against the built-in fake OpenAI server, or against a
real OpenAI-compatible server (``--base-url``), with llm-otel set up on a SQLite store and the
admin page served beside it, so that a new user watches calls arrive live. Usage::

    workload = Workload(Target.fake_server(server))     # or Target.real_server(base_url, api_key, model)
    workload.start(workers=3)                            # threads making calls through llm-otel
    ...
    workload.stop()                                      # after the current calls (False: some still run)
    print(report(db_url, since_ms=started_ms))           # read back from the store

What the workers do, in random order, paced like a small app: support conversations over several
turns (English and Chinese) for several users, a news digest task with a slow streamed answer and a
Responses call, an agent that calls a tool and answers with its result, document indexing with
concurrent async embeddings and a Responses stream, a reasoning model, and trouble: rate limits the
SDK retries, a server error that fails after its retries, a timeout, a stream cut by the server and
a stream the reader closes early. llm-otel must already be set up (its scheduler is what makes
several workers queue). Against the fake server each kind of trouble is scripted on a model of its
own, used by one worker at a time, so that concurrent workers never take each other's behaviours;
against a real server, the trouble is whatever the server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai

import llm_otel
from llm_otel.testing import Behavior, FakeOpenAI

logger = logging.getLogger(__name__)

CHAT_MODEL = "gpt-4o-mini"
SLOW_MODEL = "gpt-4o"
REASONING_MODEL = "o4-mini"
TOOL_MODEL = "gpt-4.1-mini"
FLAKY_MODEL = "gpt-4.1"
EMBEDDING_MODEL = "text-embedding-3-small"

SOURCES_AND_USERS = {
    "support-bot": ["alice", "bob", "王芳", "li.lei", "carol"],
    "newsroom": ["cron", "editor-kim"],
    "trip-planner": ["dave", "张伟"],
    "search-indexer": ["indexer"],
    "reports": ["finance-team", "cron"],
}

_CONVERSATIONS = [
    ["My invoice shows a charge twice.", "It was on the 3rd, order 1042.", "Can you refund one of them?"],
    ["How do I reset my password?", "The reset email never arrives.", "I checked the spam folder too."],
    ["我的订单还没有发货。", "订单号是 88231。", "能帮我查一下物流吗？"],
    ["Can I change my delivery address?", "The new one is 12 Baker Street.", "Thanks, and the date?"],
    ["这个套餐包含哪些功能？", "有没有年付的优惠？"],
]
_DOCUMENTS = [
    "OpenTelemetry traces and spans",
    "SQLite write-ahead logging",
    "天气预报说今天会下雨",
    "Retry budgets for rate-limited APIs",
    "季度销售报告摘要",
    "Streaming responses and time to first token",
]


@dataclass(frozen=True)
class Target:
    """Where the workload's calls go: the fake server (scripted trouble) or a real one."""

    base_url: str
    api_key: str
    chat_model: str = CHAT_MODEL
    fake: FakeOpenAI | None = None

    @classmethod
    def fake_server(cls, server: FakeOpenAI) -> Target:
        """The fake server, with its models' behaviours set: slow streams, reasoning and cached tokens."""
        server.set_default(Behavior(cached_tokens=8))
        server.set_default(
            Behavior(first_chunk_delay=1.2, chunk_delay=0.04, cached_tokens=12), model=SLOW_MODEL
        )
        server.set_default(Behavior(first_chunk_delay=0.4, reasoning_tokens=48), model=REASONING_MODEL)
        return cls(base_url=server.base_url, api_key="sk-demo", fake=server)

    @classmethod
    def real_server(cls, base_url: str, api_key: str, model: str = CHAT_MODEL) -> Target:
        return cls(base_url=base_url, api_key=api_key, chat_model=model)

    def model(self, fake_model: str) -> str:
        """The model to ask: the fake server has each demo model; a real server gets ``chat_model``."""
        return fake_model if self.fake is not None else self.chat_model


@dataclass
class Workload:
    """Worker threads running the demo's scenarios until ``stop()``; see the module docstring."""

    target: Target
    seed: int | None = None
    pause: tuple[float, float] = (0.3, 2.0)
    """Seconds a worker waits between two scenarios (uniformly drawn)."""
    scenarios_run: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _exclusive: dict[str, threading.Lock] = field(default_factory=dict)

    def start(self, workers: int = 3) -> Workload:
        for number in range(workers):
            rng = random.Random(None if self.seed is None else self.seed + number)
            thread = threading.Thread(
                target=self._work, args=(rng,), name=f"llm-otel-demo-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the calls in flight; False if some are still in flight after ``timeout`` (the
        fake server ends their waits when it stops)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _work(self, rng: random.Random) -> None:
        scenarios: list[tuple[Callable[[openai.OpenAI, random.Random], None], int]] = [
            (self._support_conversation, 30),
            (self._news_digest, 12),
            (self._trip_agent, 14),
            (self._index_documents, 12),
            (self._quarterly_report, 8),
            (self._reader_leaves_early, 5),
        ]
        if self.target.fake is not None:  # scripted trouble; a real server brings its own
            scenarios += [
                (self._rate_limited, 8),
                (self._server_error, 3),
                (self._timeout, 3),
                (self._cut_stream, 2),
            ]
        functions, weights = zip(*scenarios, strict=True)
        with openai.OpenAI(
            base_url=self.target.base_url, api_key=self.target.api_key, max_retries=2, timeout=30
        ) as client:
            while not self._stop.is_set():
                scenario = rng.choices(functions, weights)[0]
                try:
                    scenario(client, rng)
                except openai.OpenAIError:
                    pass  # recorded as a failed call: the demo shows failures, it does not stop on them
                except Exception:
                    logger.exception("demo scenario %s failed", scenario.__name__)
                with self._lock:
                    self.scenarios_run += 1
                self._stop.wait(rng.uniform(*self.pause))

    # -- the scenarios --------------------------------------------------------------------------

    def _support_conversation(self, client: openai.OpenAI, rng: random.Random) -> None:
        user = rng.choice(SOURCES_AND_USERS["support-bot"])
        turns = rng.choice(_CONVERSATIONS)
        ticket = f"ticket-{rng.randrange(10_000, 99_999)}"
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a helpful support agent. Answer in the user's language."}
        ]
        with (
            llm_otel.task("support-ticket", task_id=ticket),
            llm_otel.labels(source="support-bot", requested_by=user),
        ):
            for text in turns:
                if self._stop.is_set():
                    return
                messages.append({"role": "user", "content": text})
                reply = client.chat.completions.create(model=self.target.model(CHAT_MODEL), messages=messages)
                messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})

    def _news_digest(self, client: openai.OpenAI, rng: random.Random) -> None:
        with (
            llm_otel.task("daily-digest", edition=rng.choice(["morning", "evening"])),
            llm_otel.labels(source="newsroom", requested_by=rng.choice(SOURCES_AND_USERS["newsroom"])),
        ):
            conversation = [
                {"role": "system", "content": "You summarise news in two sentences."},
                {"role": "user", "content": "Summarise today's OpenTelemetry news."},
            ]
            reply = client.chat.completions.create(model=self.target.model(CHAT_MODEL), messages=conversation)
            conversation += [
                {"role": "assistant", "content": reply.choices[0].message.content or ""},
                {"role": "user", "content": "Now the same in Chinese: 请用中文总结今天的新闻。"},
            ]
            stream = client.chat.completions.create(
                model=self.target.model(SLOW_MODEL), messages=conversation, stream=True
            )
            for _chunk in stream:  # a slow first token: the streamed model takes its time
                pass
            client.responses.create(
                model=self.target.model(CHAT_MODEL),
                instructions="Answer briefly.",
                input="Which tracing backends accept OTLP?",
            )

    def _trip_agent(self, client: openai.OpenAI, rng: random.Random) -> None:
        city = rng.choice(["Berlin", "Lisbon", "北京", "Kyoto"])
        tools = [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather forecast of a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                        "required": ["city"],
                    },
                },
            }
        ]
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": f"Should I pack an umbrella for {city}?"}
        ]
        user = rng.choice(SOURCES_AND_USERS["trip-planner"])
        with (
            self._alone(TOOL_MODEL),
            llm_otel.task("plan-trip"),
            llm_otel.labels(source="trip-planner", requested_by=user),
        ):
            if self.target.fake is not None:
                self.target.fake.script(
                    Behavior(tool_calls=[{"name": "get_weather", "arguments": {"city": city, "days": 3}}]),
                    model=TOOL_MODEL,
                )
            model = self.target.model(TOOL_MODEL)
            reply = client.chat.completions.create(model=model, messages=messages, tools=tools)
            message = reply.choices[0].message
            if not message.tool_calls:
                return
            messages.append(message.model_dump(exclude_none=True))
            for tool_call in message.tool_calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": tool_call.id,
                        "content": '{"forecast": "rain", "celsius": 11}',
                    }
                )
            client.chat.completions.create(model=model, messages=messages, tools=tools)

    def _index_documents(self, client: openai.OpenAI, rng: random.Random) -> None:
        documents = rng.sample(_DOCUMENTS, k=rng.randint(3, 5))
        with llm_otel.labels(source="search-indexer", requested_by="indexer"):
            asyncio.run(self._index_async(documents))

    async def _index_async(self, documents: list[str]) -> None:
        async with (
            openai.AsyncOpenAI(
                base_url=self.target.base_url, api_key=self.target.api_key, max_retries=2, timeout=30
            ) as client,
            llm_otel.task("index-documents", documents=len(documents)),
        ):
            await asyncio.gather(
                *(client.embeddings.create(model=EMBEDDING_MODEL, input=doc) for doc in documents)
            )
            stream = await client.responses.create(
                model=self.target.model(CHAT_MODEL), input="Name the indexed topics.", stream=True
            )
            async for _event in stream:
                pass

    def _quarterly_report(self, client: openai.OpenAI, rng: random.Random) -> None:
        with (
            llm_otel.task("quarterly-report", quarter=f"Q{rng.randint(1, 4)}"),
            llm_otel.labels(source="reports", requested_by=rng.choice(SOURCES_AND_USERS["reports"])),
        ):
            client.chat.completions.create(
                model=self.target.model(REASONING_MODEL),
                messages=[{"role": "user", "content": "请分析本季度销售数据的三个主要趋势。"}],
            )

    def _rate_limited(self, client: openai.OpenAI, rng: random.Random) -> None:
        """429s with ``retry-after-ms``, which the SDK retries: one call, its retries on its timeline."""
        with self._flaky(rng) as (fake, prompt):
            fake.script(*[Behavior(status=429, retry_after_ms=400)] * rng.randint(1, 2), model=FLAKY_MODEL)
            client.chat.completions.create(model=FLAKY_MODEL, messages=prompt)

    def _server_error(self, client: openai.OpenAI, rng: random.Random) -> None:
        """A 500 on the first attempt and on both retries: the call fails."""
        with self._flaky(rng) as (fake, prompt):
            fake.script(*[Behavior(status=500, retry_after_ms=100)] * 3, model=FLAKY_MODEL)
            client.chat.completions.create(model=FLAKY_MODEL, messages=prompt)

    def _timeout(self, client: openai.OpenAI, rng: random.Random) -> None:
        """A server that does not answer within the client's 1.5 s timeout."""
        with self._flaky(rng) as (fake, prompt):
            fake.script(Behavior(hang=5.0), model=FLAKY_MODEL)
            client.with_options(timeout=1.5, max_retries=0).chat.completions.create(
                model=FLAKY_MODEL, messages=prompt
            )

    def _cut_stream(self, client: openai.OpenAI, rng: random.Random) -> None:
        """A stream the server cuts after three chunks."""
        with self._flaky(rng) as (fake, prompt):
            fake.script(Behavior(drop_after_chunks=3, chunk_delay=0.05), model=FLAKY_MODEL)
            for _chunk in client.chat.completions.create(model=FLAKY_MODEL, messages=prompt, stream=True):
                pass

    @contextlib.contextmanager
    def _flaky(self, rng: random.Random) -> Iterator[tuple[FakeOpenAI, list[dict[str, str]]]]:
        """The scripted-trouble model of the fake server, one worker at a time, and a ticket to classify."""
        fake = self.target.fake
        if fake is None:
            raise RuntimeError("trouble is scripted on the fake server only")
        user = rng.choice(SOURCES_AND_USERS["support-bot"])
        ticket = rng.choice(["the app crashes at login", "登录后页面一直空白", "I was charged twice"])
        prompt = [{"role": "user", "content": f"Classify this support ticket: {ticket}"}]
        with self._alone(FLAKY_MODEL), llm_otel.labels(source="support-bot", requested_by=user):
            yield fake, prompt

    def _reader_leaves_early(self, client: openai.OpenAI, rng: random.Random) -> None:
        with llm_otel.labels(source="newsroom", requested_by="editor-kim"):
            stream = client.chat.completions.create(
                model=self.target.model(SLOW_MODEL),
                messages=[{"role": "user", "content": "Tell me a long story about observability."}],
                stream=True,
            )
            with contextlib.closing(stream):  # the reader went away: cancelled, partial output kept
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        break

    @contextlib.contextmanager
    def _alone(self, model: str) -> Iterator[None]:
        """One worker at a time on a model whose next answers are scripted."""
        with self._lock:
            lock = self._exclusive.setdefault(model, threading.Lock())
        with lock:
            yield


def report(db_url: str, *, since_ms: int, latest: int = 10) -> str:
    """What the store recorded since ``since_ms``: the latest calls and the run's figures, read back
    from the store (not from memory)."""
    from exporter import open_database, queries
    from exporter.models import db

    db.initialize(open_database(db_url))
    page = queries.list_calls(since_ms=since_ms, page_size=latest)
    in_store = queries.list_calls(page_size=1)["total"]
    shown = "" if page["total"] <= latest else f"; the latest {latest}"
    lines = [f"\n{page['total']} calls recorded by this run ({in_store} in the store){shown}:\n"]
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
    summary = f"\nThis run: {counts or 'no calls'}"
    if stats["error_rate"] is not None:
        failed, ended = stats["counts"]["failed"], stats["ended"]
        summary += f"; error rate {stats['error_rate']:.1%} ({failed} failed of {ended} ended)"
    p95 = stats["duration_ms"]["p95"]
    if p95 is not None:
        summary += f"; p95 duration {p95} ms"
    lines.append(summary)
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
