"""The mock states (``exporter.fixtures``): each loads into a real store and reads back as promised.

The 100,000-call set is loaded by the browser tests (paging at scale), not here.
"""

from __future__ import annotations

import json

import pytest

from exporter import open_database, queries
from exporter.fixtures import FIXTURES, load_fixture
from exporter.models import db

NOW_MS = 1_767_225_600_000
SMALL = [name for name in FIXTURES if name != "100k"]


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'fixture.db'}"


def _bind(url: str):
    database = open_database(url)
    db.initialize(database)
    return database


def test_unknown_name_lists_the_fixtures(url):
    with pytest.raises(ValueError, match="unknown fixture 'nope'") as info:
        load_fixture("nope", url)
    for name in FIXTURES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", SMALL)
def test_each_fixture_writes_what_it_returns_and_twice_changes_nothing(name, url):
    written = load_fixture(name, url, now_ms=NOW_MS)
    database = _bind(url)
    try:
        first = queries.list_calls(page_size=200)
        assert first["total"] == written
        events = database.execute_sql("SELECT COUNT(*) FROM llm_call_events").fetchone()[0]
        assert load_fixture(name, url, now_ms=NOW_MS) == written
        assert queries.list_calls(page_size=200) == first
        assert database.execute_sql("SELECT COUNT(*) FROM llm_call_events").fetchone()[0] == events
        for item in first["items"][:20]:  # every call reads back whole, with its timeline
            call = queries.get_call(item["call_id"])
            kinds = [event["kind"] for event in call["events"]]
            assert kinds[0] == "queued"
            if call["status"] in ("succeeded", "failed", "cancelled"):
                assert kinds[-1] == call["status"]
                assert call["ended_at"] >= call["enqueued_at"]
            assert kinds.count("retry") == call["retry_count"]
            assert call["input_messages"]
    finally:
        database.close()


def test_empty_has_no_call(url):
    assert load_fixture("empty", url) == 0
    database = _bind(url)
    assert queries.list_calls()["total"] == 0
    assert queries.scheduler_snapshots(include_stale=True) == []
    database.close()


def test_normal_day_has_labels_tasks_retries_failures_and_a_live_queue(url):
    load_fixture("normal-day", url, now_ms=NOW_MS)
    database = _bind(url)
    stats = queries.status_aggregates(window_ms=86_400_000, now_ms=NOW_MS)
    assert stats["total"] > 300
    assert stats["counts"]["failed"] > 0 and stats["counts"]["queued"] == 2
    assert stats["counts"]["running"] == 1 and stats["retries"] > 0
    items = queries.list_calls(page_size=200)["items"]
    assert len({item["source"] for item in items}) >= 4
    assert any(item["parent_task_id"] for item in items) and any(item["stream"] for item in items)
    (live,) = [row for row in queries.scheduler_snapshots(now_ms=NOW_MS) if row["scheduler"] == "default"]
    assert live["queue_depth"] == 2 and live["in_flight"] == 1 and len(live["waiting"]) == 2
    task = queries.get_task(next(item["parent_task_id"] for item in items if item["parent_task_id"]))
    assert task["status"] in ("succeeded", "failed") and task["duration_ms"] > 0
    database.close()


def test_errors_is_mostly_failures_with_a_lost_process_and_dropped_records(url):
    load_fixture("errors", url, now_ms=NOW_MS)
    database = _bind(url)
    stats = queries.status_aggregates(window_ms=3_600_000 * 2, now_ms=NOW_MS)
    assert stats["error_rate"] > 0.5
    failed = queries.list_calls(status=["failed"], page_size=200)["items"]
    assert {"RateLimitError", "APITimeoutError", "process_lost"} <= {item["error_type"] for item in failed}
    snapshots = queries.scheduler_snapshots(now_ms=NOW_MS, include_stale=True)
    assert any(row["store_dropped"] for row in snapshots) and any(not row["live"] for row in snapshots)
    database.close()


def test_huge_prompts_holds_a_prompt_over_one_megabyte(url):
    load_fixture("huge-prompts", url, now_ms=NOW_MS)
    database = _bind(url)
    sizes = [
        len(json.dumps(queries.get_call(item["call_id"])["input_messages"]))
        for item in queries.list_calls(page_size=200)["items"]
    ]
    assert max(sizes) > 1_000_000
    database.close()


def test_cjk_text_is_searchable(url):
    load_fixture("cjk", url, now_ms=NOW_MS)
    database = _bind(url)
    found = queries.list_calls(q="天气预报")
    assert found["total"] > 0 and "天气预报" in found["items"][0]["prompt_preview"]
    assert queries.list_calls(source="客服机器人")["total"] > 0
    database.close()


def test_agent_tools_records_tool_calls_and_results(url):
    load_fixture("agent-tools", url, now_ms=NOW_MS)
    database = _bind(url)
    parts = [
        part["type"]
        for item in queries.list_calls(page_size=200)["items"]
        for message in queries.get_call(item["call_id"])["input_messages"]
        for part in message["parts"]
    ]
    assert parts.count("tool_call") > 20 and parts.count("tool_call_response") > 20
    database.close()


def test_a_fixture_loads_into_postgresql_too(postgres_url):
    written = load_fixture("agent-tools", postgres_url, now_ms=NOW_MS)
    database = _bind(postgres_url)
    try:
        assert queries.list_calls()["total"] == written > 0
        assert load_fixture("agent-tools", postgres_url, now_ms=NOW_MS) == written
        assert queries.list_calls()["total"] == written
        assert queries.list_calls(q="A-10442")["total"] > 0
    finally:
        database.close()
