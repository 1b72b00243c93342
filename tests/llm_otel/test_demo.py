"""The demo workload: each scenario, run once through llm-otel against the fake server, records
what the demo promises (read back from a real SQLite store)."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider

import llm_otel
from llm_otel.demo import FLAKY_MODEL, REASONING_MODEL, SLOW_MODEL, Target, Workload
from llm_otel.testing import Behavior, FakeOpenAI
from tests.polling import until


@pytest.fixture
def run_scenario(
    tmp_path: Path, tracer_provider: TracerProvider, fake_openai: FakeOpenAI
) -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """``run_scenario(name)`` runs one scenario of the workload; returns the calls it recorded."""
    db = tmp_path / "demo.db"
    handle = llm_otel.setup(
        db=f"sqlite:///{db}", tracer_provider=tracer_provider, scheduler=llm_otel.Scheduler(max_concurrency=1)
    )
    workload = Workload(Target.fake_server(fake_openai))
    client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-demo", max_retries=2)

    def run(name: str) -> list[dict[str, Any]]:
        with contextlib.suppress(openai.OpenAIError):  # the failures are the point of some scenarios
            getattr(workload, name)(client, random.Random(3))
        assert handle.flush(10)
        with sqlite3.connect(db) as connection:
            connection.row_factory = sqlite3.Row
            rows = connection.execute(
                "SELECT * FROM llm_calls JOIN llm_call_bodies USING (call_id) ORDER BY enqueued_at"
            ).fetchall()
        return [dict(row) for row in rows]

    yield run
    client.close()
    llm_otel.shutdown()


def _messages(call: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(call["input_messages"])


def test_a_support_conversation_is_multi_turn_inside_one_task(run_scenario) -> None:
    calls = run_scenario("_support_conversation")
    assert len(calls) >= 2
    assert {(c["status"], c["source"], c["parent_task_name"]) for c in calls} == {
        ("succeeded", "support-bot", "support-ticket")
    }
    assert len({c["parent_task_id"] for c in calls}) == 1
    roles = [message["role"] for message in _messages(calls[-1])]
    assert roles[:2] == ["system", "user"] and roles.count("assistant") == len(calls) - 1


def test_the_news_digest_streams_a_slow_first_token_and_calls_the_responses_api(run_scenario) -> None:
    chat, stream, responses = run_scenario("_news_digest")
    assert stream["stream"] == 1 and stream["model"] == "gpt-4o" and stream["first_token_ms"] >= 1000
    assert "请用中文总结今天的新闻" in stream["prompt_preview"]
    assert chat["stream"] == 0 and chat["first_token_ms"] is None
    assert responses["api_type"] == "responses"
    assert {c["parent_task_name"] for c in (chat, stream, responses)} == {"daily-digest"}


def test_the_trip_agent_calls_a_tool_and_answers_with_its_result(run_scenario) -> None:
    ask, answer = run_scenario("_trip_agent")
    assert json.loads(ask["finish_reasons"]) == ["tool_calls"]
    assert "get_weather" in ask["output_messages"]
    assert [m["role"] for m in _messages(answer)] == ["user", "assistant", "tool"]
    assert ask["parent_task_id"] == answer["parent_task_id"] is not None


def test_indexing_embeds_documents_concurrently_then_streams_a_summary(run_scenario) -> None:
    calls = run_scenario("_index_documents")
    operations = [c["operation"] for c in calls]
    assert operations.count("embeddings") >= 3 and operations[-1] == "chat"
    assert calls[-1]["stream"] == 1 and calls[-1]["api_type"] == "responses"
    assert {c["parent_task_name"] for c in calls} == {"index-documents"}
    assert {c["status"] for c in calls} == {"succeeded"}


def test_the_quarterly_report_uses_reasoning_tokens(run_scenario) -> None:
    [call] = run_scenario("_quarterly_report")
    assert call["model"] == "o4-mini" and call["reasoning_tokens"] == 48
    assert "请分析本季度销售数据" in call["prompt_preview"]


@pytest.mark.parametrize(
    ("scenario", "status", "error_type", "retries"),
    [
        ("_rate_limited", "succeeded", None, {1, 2}),
        ("_server_error", "failed", "InternalServerError", {2}),
        ("_timeout", "failed", "APITimeoutError", {0}),
        ("_cut_stream", "failed", "APIConnectionError", {0}),
        ("_reader_leaves_early", "cancelled", None, {0}),
    ],
)
def test_trouble_is_recorded_as_it_happened(
    run_scenario, scenario: str, status: str, error_type: str | None, retries: set[int]
) -> None:
    [call] = run_scenario(scenario)
    assert (call["status"], call["error_type"]) == (status, error_type)
    assert call["retry_count"] in retries


def test_stop_says_when_calls_are_still_in_flight_and_they_end_once_the_server_stops(
    tmp_path: Path, tracer_provider: TracerProvider
) -> None:
    """What ``llm-otel demo`` does on Ctrl-C when a call outlasts the wait: it stops the fake server,
    whose hanging answers then end, so that every call is recorded as ended before the store shuts."""
    db = tmp_path / "demo.db"
    with FakeOpenAI() as server:
        target = Target.fake_server(server)
        for model in (None, SLOW_MODEL, REASONING_MODEL):  # every answer held...
            server.set_default(Behavior(hang=600), model=model)
        server.set_default(Behavior(), model=FLAKY_MODEL)  # ...but the scripted trouble's, which ends soon
        handle = llm_otel.setup(db=f"sqlite:///{db}", tracer_provider=tracer_provider)
        try:
            workload = Workload(target).start(workers=1)
            until(lambda: _held(db), "a call held by the server (its client waits 30 s, then retries)")
            assert workload.stop(timeout=0.5) is False  # still in flight
            server.stop()
            assert workload.stop(timeout=60)
            assert handle.flush(10)
        finally:
            llm_otel.shutdown()
    with sqlite3.connect(db) as connection:
        statuses = dict(connection.execute("SELECT status, count(*) FROM llm_calls GROUP BY status"))
    # The held call failed when the server stopped; none is left running.
    assert statuses.get("failed") and not statuses.keys() & {"queued", "running"}, statuses


def _held(db: Path) -> bool:
    """A call is running that no scripted trouble ends soon (those go to ``FLAKY_MODEL``)."""
    if not db.exists():
        return False
    with sqlite3.connect(db) as connection:
        sql = "SELECT 1 FROM llm_calls WHERE status = 'running' AND model != ?"
        try:
            return connection.execute(sql, (FLAKY_MODEL,)).fetchone() is not None
        except sqlite3.OperationalError:  # the store is being created
            return False
