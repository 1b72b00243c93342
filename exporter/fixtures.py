"""Mock states of the span store: named, realistic data sets for tests, screenshots and the demo.

Usage::

    from exporter.fixtures import FIXTURES, load_fixture

    FIXTURES                                           # name -> what the data set shows
    written = load_fixture("normal-day", "sqlite:///demo.db")          # calls written
    load_fixture("100k", url, now_ms=1_767_225_600_000)                # times end at now_ms

``llm-otel demo --fixture NAME`` and the admin page's browser tests load them. Each fixture is
deterministic (a generator seeded by its name; only the times move with ``now_ms``, default the
clock), and loading it twice with the same ``now_ms`` changes nothing: the rows are written by the
writer's own statements (``exporter._sql.write_batch``: idempotent merges, the full-text rows,
events, tasks and scheduler snapshots) after ``exporter.migrate``, in one transaction per
``BATCH_CALLS`` calls, so the 100,000-call set is written in about 20 s. Works on SQLite and
PostgreSQL URLs alike.

The sets (``FIXTURES`` holds their one-line descriptions):

- ``empty``: a migrated store without a call (the page's "no calls yet" state);
- ``normal-day``: a day of a small app: several sources and users, tasks with several calls,
  multi-turn chats, streams, tool calls, 429 retries, a few failures and timeouts, slow first
  tokens, and calls still queued and running behind a serial, throttled scheduler;
- ``errors``: a bad hour: rate limits with retries, timeouts, server errors, context-length and
  connection errors, and the calls of a process that died (``process_lost``);
- ``huge-prompts``: long documents in the prompt, up to one of more than 1 MB, and long answers;
- ``cjk``: Chinese, Japanese and Korean prompts, answers, labels and task names;
- ``agent-tools``: agent runs: multi-turn conversations with many tool calls and tool results,
  nested JSON arguments and parallel tool calls;
- ``100k``: 100,000 calls over seven days (short texts), for paging, totals and facets at scale.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from exporter._connection import transaction
from exporter._sql import statements_for, write_batch
from exporter.database import is_sqlite, open_database
from exporter.mapping import CallRows, RowBatch, message_text, preview, to_json
from exporter.migrations import migrate

BATCH_CALLS = 5000
"""Calls written per transaction."""

FIXTURES: dict[str, str] = {
    "empty": "a migrated store without a single call",
    "normal-day": "a day of a small app: sources, users, tasks, chats, streams, tools, retries, failures",
    "errors": "a bad hour: rate limits and retries, timeouts, server and context errors, a lost process",
    "huge-prompts": "long documents in the prompt, up to one of more than 1 MB, and long answers",
    "cjk": "Chinese, Japanese and Korean prompts, answers, labels and task names",
    "agent-tools": "agent runs: multi-turn conversations with many tool calls, results and nested arguments",
    "100k": "100,000 calls over seven days, for paging, totals and facets at scale",
}

_SECOND = 1000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_ENDED = ("succeeded", "failed", "cancelled")


def load_fixture(name: str, database_url: str, *, now_ms: int | None = None) -> int:
    """Write the fixture ``name`` into the store at ``database_url`` (migrated first); returns the
    number of calls written. Unknown names raise ``ValueError`` listing the known ones."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown fixture {name!r}; the fixtures are: {', '.join(FIXTURES)}")
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    fixture = _Fixture(random.Random(name), now_ms)
    _BUILDERS[name](fixture)
    database = open_database(database_url)
    try:
        migrate(database)
        return _write(database, fixture)
    finally:
        database.close()


# -- the data sets ---------------------------------------------------------------------------------

_SOURCES = ("billing", "support-bot", "search", "reports", "onboarding")
_USERS = ("alice@example.com", "bob", "cron", "dana.k", None)
_MODELS = ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "o3-mini")
_SYSTEMS = (
    "You are a concise assistant for an accounting team. Answer in at most three sentences.",
    "You triage customer support tickets. Reply with a category and a one-line summary.",
    "You write SQL for a PostgreSQL 16 warehouse. Only answer with the query.",
    "You summarise documents for busy executives.",
)
_QUESTIONS = (
    "Summarise the attached invoice dispute from ACME GmbH and suggest the next step.",
    "Why did the nightly revenue report show a 12% drop on Tuesday?",
    "Write a query that lists customers whose subscription renews next week.",
    "Classify this ticket: 'I was charged twice for my March plan and the refund never arrived.'",
    "Translate the onboarding email into plain English for a new customer.",
    "Draft a polite reminder for invoice INV-2026-0412, 30 days overdue.",
    "Which of these three vendor contracts has the shortest notice period?",
    "Explain the difference between the gross and net retention figures in Q3.",
    "Extract the due date, the amount and the IBAN from this invoice text.",
    "Give me five search keywords for 'waterproof hiking boots for wide feet'.",
    "Rewrite this error message so a non-technical user understands what to do.",
    "Is this expense claim within policy? Hotel 240 EUR per night in Munich, 3 nights.",
)
_ANSWERS = (
    "The dispute concerns a duplicated line item (2 x 1,200 EUR). Ask ACME for the delivery note "
    "and issue a credit note for one of the two lines.",
    "Tuesday's drop comes from a late payment batch: 214 card payments settled on Wednesday, so "
    "revenue moved one day. Nothing was lost.",
    "SELECT c.id, c.email, s.renews_at FROM customers c JOIN subscriptions s ON s.customer_id = c.id "
    "WHERE s.renews_at >= now() + interval '7 days' AND s.renews_at < now() + interval '14 days';",
    "Category: billing / double charge. Summary: customer charged twice for March, refund pending.",
    "Welcome aboard! Your account is ready; sign in with the link below to set your password.",
    "Hello, a friendly reminder that invoice INV-2026-0412 is now 30 days overdue.",
    "The Northwind contract: 30 days' notice, against 60 and 90 days for the other two.",
    "Gross retention ignores expansion revenue; net retention includes it, which is why it is above 100%.",
    "Due date: 2026-04-30; amount: 1,842.50 EUR; IBAN: DE89 3704 0044 0532 0130 00.",
    "waterproof hiking boots wide fit, wide toe box hiking boots, gore-tex wide boots, ...",
    "We could not save your changes because the connection dropped. Please try again in a minute.",
    "Within policy: the Munich limit is 250 EUR per night.",
)
_TASKS = ("nightly-digest", "ticket-triage", "invoice-extraction", "index-documents", "weekly-report")
_ERRORS: dict[str, tuple[str, ...]] = {
    "RateLimitError": (
        "Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4o in organization "
        "org-demo on tokens per min (TPM): Limit 30000, Used 29812, Requested 1200. Please try again "
        "in 2.4s.', 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}",
    ),
    "APITimeoutError": ("Request timed out.",),
    "InternalServerError": (
        "Error code: 500 - {'error': {'message': 'The server had an error while processing your "
        "request. Sorry about that!', 'type': 'server_error', 'param': None, 'code': None}}",
        "Error code: 503 - {'error': {'message': 'The engine is currently overloaded, please try "
        "again later', 'type': 'server_error', 'param': None, 'code': None}}",
    ),
    "BadRequestError": (
        "Error code: 400 - {'error': {'message': \"This model's maximum context length is 128000 "
        "tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the "
        "messages.\", 'type': 'invalid_request_error', 'param': 'messages', 'code': "
        "'context_length_exceeded'}}",
    ),
    "APIConnectionError": ("Connection error.",),
}


def _normal_day(f: _Fixture) -> None:
    rng = f.rng
    start = f.now_ms - _DAY
    at = start
    while at < f.now_ms - 10 * _MINUTE:
        # Busier in the (UTC) working day, quiet at night.
        hour = (at // _HOUR) % 24
        at += rng.randrange(30, 90 if 7 <= hour < 19 else 600) * _SECOND
        roll = rng.random()
        if roll < 0.05:
            at = _task_run(f, at, rng.choice(_TASKS))
        elif roll < 0.10:
            f.tool_round(at, source=rng.choice(_SOURCES), requested_by=rng.choice(_USERS))
        else:
            f.chat(at, trouble=0.06)
    _live_tail(f)


def _task_run(f: _Fixture, at: int, name: str) -> int:
    """A task with 3-6 calls in a row behind a serial scheduler; returns when it ended."""
    rng = f.rng
    task = f.task(name, at, source=rng.choice(_SOURCES))
    cursor = at + 40
    for _ in range(rng.randint(3, 6)):
        call_id = f.chat(cursor, task=task, source=task.source, requested_by="cron", trouble=0.1)
        cursor = f.ended_at(call_id) + rng.randint(20, 200)
    return cursor


def _live_tail(f: _Fixture) -> None:
    """The scheduler's present: one stream in flight and two calls waiting behind it."""
    now = f.now_ms
    running = f.chat(now - 4200, source="reports", requested_by="cron", status="running", stream=True)
    waiting = [
        f.chat(now - 2600, source="support-bot", requested_by="bob", status="queued"),
        f.chat(now - 900, source="billing", requested_by="alice@example.com", status="queued"),
    ]
    f.snapshot(
        f"{f.host}:4242",
        queue_depth=2,
        in_flight=1,
        max_concurrency=1,
        min_interval=0.2,
        dispatched_total=len(f.calls) - 2,
        last_dispatch_at=f.row(running)["started_at"],
        waiting=[(call_id, f.row(call_id)["source"], f.row(call_id)["enqueued_at"]) for call_id in waiting],
    )
    f.snapshot(
        f"{f.host}-worker:977", scheduler="batch", max_concurrency=4, min_interval=0.0, heartbeat_age=2000
    )


def _errors(f: _Fixture) -> None:
    rng = f.rng
    start = f.now_ms - _HOUR
    for index in range(240):
        at = start + index * 14 * _SECOND + rng.randrange(0, 5000)
        error_type = rng.choice(list(_ERRORS))
        if rng.random() < 0.3:
            f.chat(at, trouble=0.5)
            continue
        retries = (
            [(429, None, rng.choice((400, 800, 1600)))] * rng.randint(1, 2)
            if error_type == "RateLimitError"
            else []
        )
        if error_type == "InternalServerError":
            retries = [(500, None, 500), (503, None, 1000)]
        if error_type == "APITimeoutError":
            retries = [(None, "APITimeoutError", 800)]
        f.chat(
            at,
            status="failed",
            error=(error_type, rng.choice(_ERRORS[error_type])),
            retries=retries,
            duration_ms=60_000 if error_type == "APITimeoutError" else None,
        )
    lost = f"{f.host}-worker:31337"
    for index in range(6):
        f.chat(
            f.now_ms - 25 * _MINUTE + index * 900,
            status="failed",
            process=lost,
            error=("process_lost", "the process stopped before the call ended"),
            duration_ms=20 * _MINUTE,
        )
    f.snapshot(
        f"{f.host}:4242",
        queue_depth=14,
        in_flight=1,
        max_concurrency=1,
        min_interval=0.5,
        dispatched_total=1830,
        last_dispatch_at=f.now_ms - 9000,
        oldest_wait_ms=48_000,
        store_dropped=312,
        store_last_error="database is locked (SQLITE_BUSY) while writing 128 rows; retrying with backoff",
    )
    f.snapshot(lost, queue_depth=3, in_flight=1, heartbeat_age=26 * _MINUTE)


def _huge_prompts(f: _Fixture) -> None:
    rng = f.rng
    sizes = [1_100_000, 400_000, 200_000, 120_000, 60_000, 30_000, 12_000, 6_000]
    for index, size in enumerate(sizes):
        document = _document(rng, size)
        f.chat(
            f.now_ms - (len(sizes) - index) * 7 * _MINUTE,
            messages=[
                f.system("You summarise documents for busy executives."),
                f.user(f"Summarise this contract in five bullet points.\n\n{document}"),
            ],
            reply=_document(rng, 8000 if index % 2 else 2000),
            model="gpt-4o",
            source="reports",
            requested_by="legal-team",
            duration_ms=8000 + size // 100,
            stream=index % 2 == 0,
        )
    for index in range(12):
        f.chat(f.now_ms - index * 3 * _MINUTE - 30 * _SECOND)


def _cjk(f: _Fixture) -> None:
    rng = f.rng
    chats = (
        ("今天北京的天气预报说会下雨吗？请用一句话回答。", "是的，今天下午北京有小到中雨，出门请带伞。"),
        (
            "请把这段会议纪要总结成三条要点：第一季度收入增长百分之十二，成本下降，明年扩招。",
            "1. 收入增长12%；2. 成本下降；3. 明年扩招。",
        ),
        (
            "帮我写一封催款邮件，发票号 INV-2026-0412，已逾期三十天。",
            "您好，提醒您发票 INV-2026-0412 已逾期 30 天，请尽快安排付款。",
        ),
        ("東京の明日の天気を教えてください。", "明日の東京は晴れのち曇り、最高気温は18度の予報です。"),
        ("この請求書の支払期日はいつですか？", "支払期日は2026年4月30日です。"),
        ("서울 날씨 어때요?", "오늘 서울은 맑고 최고 기온은 21도입니다."),
        ("用户反馈：「页面加载太慢了，经常超时。」请分类。", "类别：性能问题 / 超时。"),
    )
    sources = ("客服机器人", "财务报表", "搜索", "billing")
    users = ("王伟", "李娜", "張偉", "김민수", "alice@example.com")
    for index in range(60):
        question, answer = chats[index % len(chats)]
        task = None
        if index % 15 == 0:
            task = f.task(
                rng.choice(("每日摘要", "工单分拣", "請求書の抽出")), f.now_ms - (60 - index) * 2 * _MINUTE
            )
        f.chat(
            f.now_ms - (60 - index) * 2 * _MINUTE + 200,
            messages=[f.system("你是一个简洁的中文助手。"), f.user(question)],
            reply=answer,
            source=rng.choice(sources),
            requested_by=rng.choice(users),
            task=task,
            stream=index % 3 == 0,
            trouble=0.1,
        )
    f.snapshot(f"{f.host}:4242", max_concurrency=2, min_interval=0.1, dispatched_total=60)


def _agent_tools(f: _Fixture) -> None:
    rng = f.rng
    for run in range(8):
        at = f.now_ms - (8 - run) * 12 * _MINUTE
        task = f.task("support-agent", at, source="support-bot")
        f.agent_run(task, at + 30, turns=rng.randint(3, 6))
    for index in range(10):
        f.tool_round(f.now_ms - index * 40 * _SECOND - 5 * _SECOND, source="search", requested_by="bob")


def _hundred_k(f: _Fixture) -> None:
    rng = f.rng
    count = 100_000
    span = 7 * _DAY
    tasks = [f.task(rng.choice(_TASKS), f.now_ms - span + index * (span // 40)) for index in range(40)]
    for index in range(count):
        at = f.now_ms - span + index * span // count
        task = tasks[index * len(tasks) // count] if index % 50 == 0 else None
        f.chat(at, task=task, trouble=0.04, short=True)


_BUILDERS: dict[str, Callable[[_Fixture], None]] = {
    "empty": lambda f: None,
    "normal-day": _normal_day,
    "errors": _errors,
    "huge-prompts": _huge_prompts,
    "cjk": _cjk,
    "agent-tools": _agent_tools,
    "100k": _hundred_k,
}


def _document(rng: random.Random, size: int) -> str:
    """About ``size`` characters of contract-like prose, in numbered clauses."""
    clauses = []
    length = 0
    number = 1
    while length < size:
        sentence = " ".join(rng.choice(_ANSWERS) for _ in range(3))
        clause = f"§{number}. {sentence}"
        clauses.append(clause)
        length += len(clause) + 2
        number += 1
    return "\n\n".join(clauses)


# -- the builder -----------------------------------------------------------------------------------


@dataclass
class _Task:
    task_id: str
    name: str
    trace_id: str
    span_id: str
    started_at: int
    source: str | None
    process: str
    call_ids: list[str] = field(default_factory=list)


class _Fixture:
    """Collects the rows of one data set: calls (as the writer maps them), tasks, snapshots."""

    host = "app-1"

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        self.rng = rng
        self.now_ms = now_ms
        self.calls: list[CallRows] = []
        self.snapshots: list[dict[str, Any]] = []
        self._tasks: list[_Task] = []
        self._by_id: dict[str, CallRows] = {}

    # messages, in the GenAI semantic-convention shape the instrumentation records
    @staticmethod
    def system(text: str) -> dict[str, Any]:
        return {"role": "system", "parts": [{"type": "text", "content": text}]}

    @staticmethod
    def user(text: str) -> dict[str, Any]:
        return {"role": "user", "parts": [{"type": "text", "content": text}]}

    @staticmethod
    def assistant(text: str | None = None, tool_calls: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        parts = [{"type": "text", "content": text}] if text else []
        return {"role": "assistant", "parts": parts + [{"type": "tool_call", **call} for call in tool_calls]}

    @staticmethod
    def tool_result(call_id: str, response: Any) -> dict[str, Any]:
        return {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": call_id, "response": response}],
        }

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def row(self, call_id: str) -> dict[str, Any]:
        return self._by_id[call_id].call

    def ended_at(self, call_id: str) -> int:
        row = self.row(call_id)
        return row["ended_at"] or row["enqueued_at"]

    def task(self, name: str, started_at: int, *, source: str | None = None) -> _Task:
        task = _Task(
            task_id=f"{name}-{self.hex(8)}",
            name=name,
            trace_id=self.hex(32),
            span_id=self.hex(16),
            started_at=started_at,
            source=source,
            process=f"{self.host}:4242",
        )
        self._tasks.append(task)
        return task

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The ``llm_tasks`` rows: a task ends 30 ms after its last call, failed if one of them did."""
        rows = []
        for task in self._tasks:
            calls = [self.row(call_id) for call_id in task.call_ids]
            live = any(call["status"] not in _ENDED for call in calls)
            ended_at = (
                None
                if live
                else max((self.ended_at(c["call_id"]) for c in calls), default=task.started_at) + 30
            )
            failed = any(call["status"] == "failed" for call in calls)
            rows.append(
                {
                    "task_id": task.task_id,
                    "name": task.name,
                    "trace_id": task.trace_id,
                    "span_id": task.span_id,
                    "status": "running" if live else "failed" if failed else "succeeded",
                    "started_at": task.started_at,
                    "ended_at": ended_at,
                    "duration_ms": None if ended_at is None else ended_at - task.started_at,
                    "attributes": to_json({"source": task.source}) if task.source else None,
                    "process": task.process,
                }
            )
        return rows

    def snapshot(
        self,
        process: str,
        *,
        scheduler: str = "default",
        waiting: Sequence[tuple[str, str | None, int]] = (),
        heartbeat_age: int = 0,
        **columns: Any,
    ) -> None:
        row = {
            "process": process,
            "scheduler": scheduler,
            "queue_depth": len(waiting),
            "in_flight": 0,
            "max_concurrency": 1,
            "min_interval": 0.0,
            "max_queue": 1000,
            "dispatched_total": 0,
            "last_dispatch_at": None,
            "oldest_wait_ms": self.now_ms - waiting[0][2] if waiting else None,
            "waiting": to_json([{"call_id": c, "source": s, "since": since} for c, s, since in waiting]),
            "store_dropped": 0,
            "store_last_error": None,
            "heartbeat_at": self.now_ms - heartbeat_age,
        }
        row.update(columns)
        self.snapshots.append(row)

    def chat(
        self,
        at: int,
        *,
        messages: list[dict[str, Any]] | None = None,
        reply: str | None = None,
        trouble: float = 0.0,
        short: bool = False,
        **spec: Any,
    ) -> str:
        """A chat call at ``at`` with plausible defaults; ``trouble`` is the chance of a retry or failure."""
        rng = self.rng
        if messages is None:
            pick = rng.randrange(len(_QUESTIONS))
            messages = [self.user(_QUESTIONS[pick])]
            if not short:
                messages.insert(0, self.system(rng.choice(_SYSTEMS)))
                if rng.random() < 0.25:  # a follow-up turn
                    messages += [self.assistant(_ANSWERS[pick]), self.user("Make it shorter, please.")]
            reply = reply or _ANSWERS[(pick + (len(messages) > 2)) % len(_ANSWERS)]
        spec.setdefault("source", rng.choice(_SOURCES))
        spec.setdefault("requested_by", rng.choice(_USERS))
        spec.setdefault("model", rng.choice(_MODELS))
        spec.setdefault("stream", rng.random() < 0.35)
        if trouble and "status" not in spec and rng.random() < trouble:
            kind = rng.random()
            if kind < 0.5:
                spec["retries"] = [(429, None, rng.choice((200, 400, 1000)))] * rng.randint(1, 3)
            elif kind < 0.85:
                error_type = rng.choice(list(_ERRORS))
                spec.update(status="failed", error=(error_type, rng.choice(_ERRORS[error_type])))
                if error_type != "BadRequestError":  # the SDK's two retries, then it gives up
                    code = {"RateLimitError": 429, "InternalServerError": 500}.get(error_type)
                    cause = None if code else error_type
                    spec["retries"] = [(code, cause, 500), (code, cause, 1000)]
                if error_type == "APITimeoutError":
                    spec["duration_ms"] = 3 * 60_000
            else:
                spec["status"] = "cancelled"
        return self.call(at, messages=messages, reply=reply or "OK.", **spec)

    def tool_round(self, at: int, **spec: Any) -> str:
        """One question answered with a tool call, then the answer with the tool's result."""
        city = self.rng.choice(("Berlin", "Lisbon", "Osaka", "Toronto"))
        tool_id = f"call_{self.hex(24)}"
        question = [self.user(f"What's the weather in {city} tomorrow? Should I cycle to work?")]
        arguments = {"city": city, "unit": "celsius", "days": 1}
        first = self.call(
            at,
            messages=question,
            output=[
                self.assistant(tool_calls=[{"id": tool_id, "name": "get_weather", "arguments": arguments}])
            ],
            params={"tools": [_tool("get_weather")], "tool_choice": "auto"},
            **spec,
        )
        follow_up = [
            *question,
            self.assistant(tool_calls=[{"id": tool_id, "name": "get_weather", "arguments": arguments}]),
            self.tool_result(tool_id, {"city": city, "forecast": "light rain", "high_c": 11, "wind_kmh": 24}),
        ]
        return self.call(
            self.ended_at(first) + 15,
            messages=follow_up,
            reply=f"Light rain and 11 °C in {city} tomorrow with a strong wind: take the train.",
            params={"tools": [_tool("get_weather")]},
            **spec,
        )

    def agent_run(self, task: _Task, at: int, *, turns: int) -> None:
        """An agent loop: each turn calls tools (sometimes two at once) until it can answer."""
        rng = self.rng
        conversation = [
            self.system("You are a support agent. Use the tools to look up orders before you answer."),
            self.user("My order #A-10442 hasn't arrived and I was charged twice. Can you help?"),
        ]
        tools = [_tool(name) for name in ("lookup_order", "list_payments", "refund_payment", "send_email")]
        steps = [
            [("lookup_order", {"order_id": "A-10442", "include": ["shipments", "items"]})],
            [
                ("list_payments", {"order_id": "A-10442", "filter": {"status": ["captured", "pending"]}}),
                ("lookup_order", {"order_id": "A-10442", "include": ["carrier_events"]}),
            ],
            [("refund_payment", {"payment_id": "pay_77Q2", "amount": {"value": 4990, "currency": "EUR"}})],
            [("send_email", {"to": "customer", "template": "refund_issued", "vars": {"order": "A-10442"}})],
        ]
        results = {
            "lookup_order": {"status": "in_transit", "carrier": "DHL", "eta": "2026-12-03", "items": 2},
            "list_payments": [{"id": "pay_77Q1", "amount": 4990}, {"id": "pay_77Q2", "amount": 4990}],
            "refund_payment": {"refund_id": "re_19F", "status": "succeeded"},
            "send_email": {"queued": True},
        }
        cursor = at
        for turn in range(turns):
            calls = steps[turn % len(steps)]
            tool_calls = [
                {"id": f"call_{self.hex(24)}", "name": name, "arguments": args} for name, args in calls
            ]
            last = turn == turns - 1
            output = (
                [
                    self.assistant(
                        "Your parcel arrives on 3 December, and I refunded the duplicate 49.90 EUR charge."
                    )
                ]
                if last
                else [self.assistant(tool_calls=tool_calls)]
            )
            call_id = self.call(
                cursor,
                messages=list(conversation),
                output=output,
                params={"tools": tools, "parallel_tool_calls": True, "temperature": 0},
                model="gpt-4o",
                source="support-bot",
                requested_by="agent",
                task=task,
                retries=[(429, None, 500)] if rng.random() < 0.15 else [],
            )
            conversation.append(output[0])
            conversation += [self.tool_result(call["id"], results[call["name"]]) for call in tool_calls]
            cursor = self.ended_at(call_id) + rng.randint(40, 400)

    def call(
        self,
        at: int,
        *,
        messages: list[dict[str, Any]],
        reply: str | None = None,
        output: list[dict[str, Any]] | None = None,
        status: str = "succeeded",
        model: str = "gpt-4o-mini",
        source: str | None = None,
        requested_by: str | None = None,
        stream: bool = False,
        task: _Task | None = None,
        retries: Sequence[tuple[int | None, str | None, int]] = (),
        error: tuple[str, str] | None = None,
        duration_ms: int | None = None,
        params: dict[str, Any] | None = None,
        process: str | None = None,
    ) -> str:
        """One call's rows, timed as a serial scheduler would: it waits for the previous call."""
        rng = self.rng
        call_id = self.hex(32)
        process = process or f"{self.host}:4242"
        wait_ms = self._wait(at) if status != "queued" else None
        started = at + wait_ms if wait_ms is not None else None
        ended = status in _ENDED
        if duration_ms is None:
            duration_ms = rng.randint(350, 2500) + sum(backoff + 150 for _, _, backoff in retries)
            if model == "o3-mini":
                duration_ms += rng.randint(2000, 9000)
            if rng.random() < 0.03:  # a slow first token
                duration_ms += rng.randint(5000, 15000)
        first_token_ms = None
        if stream and status != "queued" and (status != "failed" or rng.random() < 0.3):
            first_token_ms = min(duration_ms - 1, round(duration_ms * rng.uniform(0.15, 0.5)))
        if status == "running" and started is not None:
            duration_ms = None
        ended_at = (
            started + duration_ms if ended and started is not None and duration_ms is not None else None
        )
        if output is None and status in ("succeeded", "cancelled"):
            text = reply or "OK."
            output = [self.assistant(text[: len(text) // 3] if status == "cancelled" else text)]
        if output is not None and status == "succeeded":
            for message in output:
                message["finish_reason"] = "tool_calls" if _has_tool_calls(message) else "stop"
        if status != "succeeded" and status != "cancelled":
            output = None
        input_tokens = sum(
            3 + _tokens(message_text(message) or to_json(message["parts"])) for message in messages
        )
        output_tokens = sum(_tokens(message_text(m) or to_json(m["parts"])) for m in output or ()) or None
        reasoning = rng.randint(64, 900) if model == "o3-mini" and output_tokens else 0
        cached = (input_tokens // 128) * 128 if input_tokens > 1024 and rng.random() < 0.6 else 0
        error_type, error_message = error or (None, None)
        request = {"model": model, **({"stream": True} if stream else {}), **(params or {"temperature": 0.2})}
        row = {
            "call_id": call_id,
            "trace_id": task.trace_id if task else self.hex(32),
            "span_id": self.hex(16),
            "parent_span_id": task.span_id if task else None,
            "parent_task_id": task.task_id if task else None,
            "parent_task_name": task.name if task else None,
            "status": status,
            "operation": "chat",
            "provider": "openai",
            "api_type": "chat_completions",
            "model": model,
            "response_model": f"{model}-2024-07-18" if output else None,
            "response_id": f"chatcmpl-{self.hex(24)}" if output else None,
            "source": source,
            "requested_by": requested_by,
            "stream": stream,
            "enqueued_at": at,
            "started_at": started,
            "first_token_at": started + first_token_ms if first_token_ms is not None and started else None,
            "ended_at": ended_at,
            "wait_ms": wait_ms,
            "first_token_ms": first_token_ms,
            "duration_ms": duration_ms if ended else None,
            "retry_count": len(retries),
            "input_tokens": input_tokens if status != "queued" else None,
            "output_tokens": (output_tokens + reasoning) if output_tokens else None,
            "cached_tokens": cached if status != "queued" else None,
            "reasoning_tokens": reasoning if output_tokens else None,
            "finish_reasons": to_json([m["finish_reason"] for m in output])
            if output and status == "succeeded"
            else None,
            "error_type": error_type,
            "error_message": error_message,
            "prompt_preview": preview(_last_user_text(messages)),
            "response_preview": preview(_response_text(output or [])),
            "server_address": "api.openai.com",
            "process": process,
            "updated_at": ended_at or started or at,
        }
        body = {
            "call_id": call_id,
            "request_params": to_json(request),
            "system_instructions": None,
            "input_messages": to_json(messages),
            "output_messages": to_json(output) if output is not None else None,
            "attributes": to_json({"server.port": 443, "openai.response.service_tier": "default"}),
        }
        rows = CallRows(call=row, body=body, events=self._events(row, retries))
        self.calls.append(rows)
        self._by_id[call_id] = rows
        if task is not None:
            task.call_ids.append(call_id)
        return call_id

    def _wait(self, at: int) -> int:
        """Queue wait behind the previous call (a serial scheduler), plus the throttle's 200 ms gap."""
        if not self.calls:
            return self.rng.randint(0, 5)
        previous = self.calls[-1].call
        busy_until = (previous["ended_at"] or previous["started_at"] or previous["enqueued_at"]) + 200
        return max(self.rng.randint(0, 5), busy_until - at) if busy_until - at < 2 * _MINUTE else 0

    @staticmethod
    def _events(
        row: dict[str, Any], retries: Sequence[tuple[int | None, str | None, int]]
    ) -> list[dict[str, Any]]:
        call_id = row["call_id"]

        def event(kind: str, at: int, **data: Any) -> dict[str, Any]:
            kept = {key: value for key, value in data.items() if value is not None}
            return {"call_id": call_id, "kind": kind, "at": at, "data": to_json(kept) if kept else None}

        events = [event("queued", row["enqueued_at"])]
        started = row["started_at"]
        if started is None:
            return events
        events.append(event("dispatched", started, wait_ms=row["wait_ms"]))
        at = started
        for attempt, (status_code, error, backoff) in enumerate(retries, start=1):
            at += 150
            events.append(
                event("retry", at, attempt=attempt, status_code=status_code, error=error, backoff_ms=backoff)
            )
            at += backoff
        if row["first_token_at"] is not None:
            events.append(event("first_token", row["first_token_at"], first_token_ms=row["first_token_ms"]))
        if row["status"] in _ENDED:
            events.append(
                event(
                    row["status"],
                    row["ended_at"],
                    duration_ms=row["duration_ms"],
                    error_type=row["error_type"],
                    error_message=row["error_message"],
                )
            )
        return events


def _tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def _has_tool_calls(message: dict[str, Any]) -> bool:
    return any(part.get("type") == "tool_call" for part in message["parts"])


def _last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user" and (text := message_text(message)):
            return text
    return ""


def _response_text(output: Sequence[dict[str, Any]]) -> str:
    for message in output:
        if text := message_text(message):
            return text
    return ", ".join(
        f"{part['name']}()"
        for message in output
        for part in message["parts"]
        if part.get("type") == "tool_call"
    )


def _tokens(text: str) -> int:
    """A rough token count: about four characters of English, or one CJK character, a token."""
    wide = (len(text.encode()) - len(text)) // 2  # a CJK character is 3 bytes of UTF-8
    return max(1, (len(text) - wide) // 4 + wide)


# -- writing ---------------------------------------------------------------------------------------


def _write(database: peewee.Database, fixture: _Fixture) -> int:
    """Write the fixture's rows with the writer's statements (full-text indexing included),
    ``BATCH_CALLS`` calls a transaction."""
    statements = statements_for(database)
    if is_sqlite(database):  # this connection only: the indexes of 100k calls stay in memory (~25% faster)
        database.execute_sql("PRAGMA cache_size = -262144")
    batches = [RowBatch() for _ in range(max(1, -(-len(fixture.calls) // BATCH_CALLS)))]
    for index, rows in enumerate(fixture.calls):
        batch = batches[index // BATCH_CALLS]
        live = rows.call["status"] not in _ENDED
        (batch.queued if live else batch.finals).append(rows)
        batch.events.extend({**event, "live": int(live)} for event in rows.events)
    batches[-1].task_ends = fixture.tasks
    # One batch per process: a batch's snapshots replace every snapshot row of its process.
    for process in dict.fromkeys(row["process"] for row in fixture.snapshots):
        batches.append(RowBatch(snapshots=[row for row in fixture.snapshots if row["process"] == process]))
    for batch in batches:
        with transaction(database.connection(), statements.begin) as cursor:
            write_batch(cursor, batch, statements)
    return len(fixture.calls)
