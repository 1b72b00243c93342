"""The read side (exporter.queries) over a real SQLite file: filters, totals, order, plans, FTS."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import peewee
import pytest

from exporter import QueryError, migrate, open_database, queries, search_matches
from exporter.database import is_sqlite
from exporter.models import db
from tests.exporter.conftest import NOW_MS, Rows


def _all_pages(page_size: int = 7, **filters: Any) -> tuple[list[str], list[int]]:
    """Every call id over all pages, and the total each page reported."""
    ids: list[str] = []
    totals: list[int] = []
    page = 1
    while True:
        result = queries.list_calls(**filters, page=page, page_size=page_size)
        totals.append(result["total"])
        if not result["items"]:
            return ids, totals
        ids += [item["call_id"] for item in result["items"]]
        page += 1


def test_pages_of_120_calls_have_exact_totals_newest_first(rows: Rows) -> None:
    created = rows.calls(120)
    pages = [queries.list_calls(page=page, page_size=50) for page in (1, 2, 3, 4)]

    assert [len(page["items"]) for page in pages] == [50, 50, 20, 0]
    assert [page["total"] for page in pages] == [120] * 4
    assert [page["page"] for page in pages] == [1, 2, 3, 4]
    listed = [item["call_id"] for page in pages for item in page["items"]]
    assert listed == created[::-1]


def test_same_enqueued_at_is_ordered_by_call_id_descending(rows: Rows) -> None:
    ids = rows.calls(5, enqueued_at=NOW_MS)
    older = rows.call(enqueued_at=NOW_MS - 1)

    listed, _ = _all_pages(page_size=2)

    assert listed == [*sorted(ids, reverse=True), older]


def test_items_are_summaries_without_bodies(rows: Rows) -> None:
    rows.call(prompt="hello there", response="general kenobi")

    item = queries.list_calls()["items"][0]

    assert item["prompt_preview"] == "hello there"
    assert item["response_preview"] == "general kenobi"
    assert item["stream"] is False
    assert item["finish_reasons"] == ["stop"]
    assert "input_messages" not in item
    assert "events" not in item


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[peewee.Database, list[dict]]]:
    """One store for the module: 150 calls with random statuses, labels, models, tasks and times."""
    database = open_database(str(tmp_path_factory.mktemp("mixed") / "store.db"))
    migrate(database)
    db.initialize(database)
    written = Rows(database).mixed()
    yield database, written
    database.close()


@pytest.fixture
def mixed(mixed_store: tuple[peewee.Database, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The calls of ``mixed_store`` (bound to ``exporter.models.db`` for this test)."""
    database, written = mixed_store
    db.initialize(database)
    return written


FILTERS: list[dict[str, Any]] = [
    {},
    {"status": ["failed"]},
    {"status": ["failed", "cancelled"]},
    {"status": ["succeeded"]},
    {"status": ["succeeded", "failed", "running"]},
    {"status": ["queued", "running", "succeeded", "failed", "cancelled"]},
    {"source": "billing"},
    {"requested_by": "alice"},
    {"model": "gpt-4o"},
    {"parent_task_id": "task-1"},
    {"error_type": "RateLimitError"},
    {"since_ms": NOW_MS - 30 * 60_000},
    {"until_ms": NOW_MS - 30 * 60_000},
    {"since_ms": NOW_MS - 60 * 60_000, "until_ms": NOW_MS - 30 * 60_000},
    {"min_duration_ms": 2500},
    {"min_wait_ms": 200},
    {"min_first_token_ms": 300},
    {"min_duration_ms": 0},
    {"status": ["failed", "succeeded"], "source": "app"},
    {"status": ["running"], "model": "gpt-4o-mini", "requested_by": "bob"},
    {"source": "search", "since_ms": NOW_MS - 50 * 60_000},
    {"status": ["succeeded", "queued"], "parent_task_id": "task-2", "until_ms": NOW_MS - 10 * 60_000},
    {"source": "app", "requested_by": "alice", "model": "gpt-4o", "parent_task_id": "task-1"},
    {"error_type": "APITimeoutError", "model": "gpt-4o"},
    {"min_duration_ms": 1000, "status": ["failed"]},
    {"min_duration_ms": 1000, "source": "billing"},
    {"min_wait_ms": 50, "min_first_token_ms": 120, "requested_by": "bob", "since_ms": NOW_MS - 70 * 60_000},
    {"min_duration_ms": 8000, "error_type": "RateLimitError", "status": ["failed", "succeeded"]},
    {"source": "nowhere"},
]

_LABEL_FILTERS = ("source", "requested_by", "model", "parent_task_id", "error_type")
_MINIMUMS = {
    "min_duration_ms": "duration_ms",
    "min_wait_ms": "wait_ms",
    "min_first_token_ms": "first_token_ms",
}
_SORT_COLUMN = {"duration": "duration_ms", "first_token": "first_token_ms", "wait": "wait_ms"}


def _expected(written: list[dict[str, Any]], filters: dict[str, Any], sort: str = "newest") -> list[str]:
    """The call ids ``filters`` select from the written calls, in ``sort`` order (computed here)."""

    def keep(call: dict[str, Any]) -> bool:
        if filters.get("status") and call["status"] not in filters["status"]:
            return False
        for name in _LABEL_FILTERS:
            if name in filters and call[name] != filters[name]:
                return False
        for name, column in _MINIMUMS.items():
            if name in filters and (call[column] is None or call[column] < filters[name]):
                return False
        if "since_ms" in filters and call["enqueued_at"] < filters["since_ms"]:
            return False
        return not ("until_ms" in filters and call["enqueued_at"] >= filters["until_ms"])

    def key(call: dict[str, Any]) -> tuple[Any, ...]:
        newest = (call["enqueued_at"], call["call_id"])
        if sort == "newest":
            return newest
        value = call[_SORT_COLUMN[sort]]
        return (value is not None, value or 0, *newest)  # slowest first, without the value last

    matching = [call for call in written if keep(call)]
    matching.sort(key=key, reverse=True)
    return [call["call_id"] for call in matching]


def _sql_count(filters: dict[str, Any]) -> int:
    """The number of calls ``filters`` select, counted by a hand-written SQL statement."""
    where, params = [], []
    if filters.get("status"):
        where.append(f"status IN ({', '.join('?' for _ in filters['status'])})")
        params += filters["status"]
    for name in _LABEL_FILTERS:
        if name in filters:
            where.append(f"{name} = ?")
            params.append(filters[name])
    for name, column in _MINIMUMS.items():
        if name in filters:
            where.append(f"{column} >= ?")
            params.append(filters[name])
    if "since_ms" in filters:
        where.append("enqueued_at >= ?")
        params.append(filters["since_ms"])
    if "until_ms" in filters:
        where.append("enqueued_at < ?")
        params.append(filters["until_ms"])
    sql = "SELECT COUNT(*) FROM llm_calls" + (" WHERE " + " AND ".join(where) if where else "")
    if not is_sqlite(db.obj):
        sql = sql.replace("?", "%s")
    return db.obj.execute_sql(sql, params).fetchone()[0]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda filters: ",".join(filters) or "none")
def test_filters_return_the_right_calls_and_exact_totals(
    mixed: list[dict[str, Any]], filters: dict[str, Any]
) -> None:
    expected = _expected(mixed, filters)

    listed, totals = _all_pages(page_size=7, **filters)

    assert listed == expected
    assert set(totals) == {len(expected)} == {_sql_count(filters)}


@pytest.mark.parametrize("sort", ["newest", "duration", "first_token", "wait"])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda filters: ",".join(filters) or "none")
def test_pages_of_37_hold_every_call_once_in_each_sort(
    mixed: list[dict[str, Any]], filters: dict[str, Any], sort: str
) -> None:
    expected = _expected(mixed, filters, sort)

    listed, totals = _all_pages(page_size=37, sort=sort, **filters)

    assert listed == expected  # the order, and so no call twice and none missing
    assert len(set(listed)) == len(listed)
    assert set(totals) == {len(expected)}


def test_slowest_first_lists_calls_without_the_value_last(mixed: list[dict[str, Any]]) -> None:
    items = queries.list_calls(sort="first_token", page_size=200)["items"]
    values = [item["first_token_ms"] for item in items]

    known = [value for value in values if value is not None]
    assert values == known + [None] * (len(values) - len(known))
    assert known == sorted(known, reverse=True)
    assert len(known) < len(values)  # the set has calls without a first token


def test_empty_status_list_means_any_status(mixed: list[dict[str, Any]]) -> None:
    assert queries.list_calls(status=[])["total"] == len(mixed)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"page": 0}, "page must be >= 1"),
        ({"page": "2"}, "page must be an integer"),
        ({"page_size": 0}, "page_size must be >= 1"),
        ({"page_size": 201}, "page_size must be <= 200"),
        ({"page_size": True}, "page_size must be an integer"),
        ({"status": "failed"}, "status must be a list"),
        ({"status": 5}, "status must be a list"),
        ({"status": [3]}, "unknown status 3"),
        ({"status": ["failed", "lost"]}, "unknown status lost"),
        ({"since_ms": 10, "until_ms": 5}, "since_ms (10) is after until_ms (5)"),
        ({"since_ms": "yesterday"}, "since_ms must be an integer"),
        ({"q": 5}, "q must be a string"),
        ({"q": "x" * 501}, "q must be at most 500 characters, got 501"),
        ({"source": 3}, "source must be a string"),
        ({"error_type": ["RateLimitError"]}, "error_type must be a string"),
        ({"min_duration_ms": -1}, "min_duration_ms must be >= 0"),
        ({"min_wait_ms": "5"}, "min_wait_ms must be an integer"),
        ({"min_first_token_ms": 1.5}, "min_first_token_ms must be an integer"),
        ({"sort": "slowest"}, "unknown sort 'slowest'; expected one of newest, duration, first_token, wait"),
        ({"sort": None}, "unknown sort None"),
    ],
)
def test_bad_arguments_raise_query_error(store, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        queries.list_calls(**arguments)
    assert isinstance(caught.value, ValueError)


PLAN_FILTERS: list[dict[str, Any]] = [
    {},
    {"status": ["failed"]},
    {"status": ["failed", "cancelled"]},
    {"source": "billing"},
    {"requested_by": "alice"},
    {"model": "gpt-4o"},
    {"parent_task_id": "task-1"},
    {"since_ms": NOW_MS - 30 * 60_000},
    {"since_ms": NOW_MS - 30 * 60_000, "until_ms": NOW_MS},
    {"status": ["failed"], "source": "billing", "since_ms": NOW_MS - 90 * 60_000},
    {"q": "quarterly"},  # (a query under 3 characters is a substring scan, by design)
]


@pytest.mark.parametrize("filters", PLAN_FILTERS, ids=lambda filters: ",".join(filters) or "none")
def test_list_queries_are_served_by_indexes(
    mixed: list[dict[str, Any]], filters: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        queries.list_calls(**filters, page=1, page_size=2)
    statements = [record.msg for record in caplog.records if isinstance(record.msg, tuple)]
    selects = [(sql, params) for sql, params in statements if sql.startswith("SELECT")]
    assert len(selects) >= 2  # the page's ids and rows, and its total unless the FTS count gives it

    for sql, params in selects:
        plan = [row[3] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
        # peewee names llm_calls "t1": "SCAN t1" alone would read every row of the table
        assert not [line for line in plan if line.startswith("SCAN t1") and "INDEX" not in line], plan
        assert any("INDEX" in line or line.startswith("SEARCH") for line in plan), plan  # (a rowid seek)


def test_several_statuses_are_merged_index_walks_not_a_sort(
    mixed: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        queries.list_calls(status=["failed", "succeeded"], source="app")
    sql, params = next(
        record.msg for record in caplog.records if isinstance(record.msg, tuple) and "UNION" in record.msg[0]
    )
    plan = [row[3] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]

    assert "MERGE (UNION ALL)" in plan
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan


# Full-text search


@pytest.fixture
def texts(rows: Rows) -> dict[str, str]:
    return {
        "weather": rows.call(prompt="What is the weather in Paris?", response="Sunny, 24 degrees."),
        "rain": rows.call(prompt="今天的天气预报说会下雨", response="记得带伞。"),
        "ok": rows.call(prompt="Reply with one word", response="OK"),
        "syntax": rows.call(prompt='Explain NEAR(a b) and "quoted" * OR stars', response="FTS5 syntax."),
        "percent": rows.call(prompt="Growth was 100% this year", response="Great"),
        "other": rows.call(prompt="Translate to French", response="Traduire en français"),
    }


def _found(q: str) -> set[str]:
    result = queries.list_calls(q=q, page_size=200)
    assert result["total"] == len(result["items"])
    return {item["call_id"] for item in result["items"]}


def test_fts_finds_an_english_word_case_insensitively(texts: dict[str, str]) -> None:
    assert _found("weather") == {texts["weather"]}
    assert _found("WEATHER") == {texts["weather"]}
    assert _found("sunny, 24") == {texts["weather"]}  # response text, with punctuation and a space


def test_fts_finds_a_chinese_phrase_inside_a_sentence(texts: dict[str, str]) -> None:
    assert _found("天气预报") == {texts["rain"]}
    assert _found("带伞") == {texts["rain"]}  # two characters: substring match on the response


@pytest.mark.parametrize(("q", "key"), [("下雨", "rain"), ("ok", "ok"), ("OK", "ok")])
def test_short_queries_fall_back_to_substring_match(texts: dict[str, str], q: str, key: str) -> None:
    assert _found(q) == {texts[key]}


@pytest.mark.parametrize(
    "q",
    ['"', '"quoted"', "*", "a*", "* OR stars", "OR", "NEAR(", "NEAR(a b)", "(", ")", "-", "^", "x:y", "'"],
)
def test_fts_syntax_in_the_query_is_plain_text(texts: dict[str, str], q: str) -> None:
    found = _found(q)  # never an FTS5 syntax error

    assert found <= {texts["syntax"], texts["weather"], texts["ok"]}
    if q in ('"quoted"', "NEAR(a b)", "* OR stars", "NEAR("):
        assert found == {texts["syntax"]}


def test_a_frequent_cjk_term_walks_the_index_with_the_same_results(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # 1-2 CJK characters are read from the short-query index (longer terms: test_search_matches.py).
    rows.calls(30, prompt="天气报告")
    rows.calls(10, prompt="别的事情")
    rows.calls(30, prompt="天气又来了", status="failed")
    expected = {
        filters: _all_pages(page_size=7, q="天气", **dict(filters))
        for filters in ((), (("status", ("failed",)),), (("status", ("failed", "succeeded")),))
    }

    monkeypatch.setattr(queries, "_SORT_MATCHES_UP_TO", 0)  # every term counts as frequent
    # The plain query's plan (the matches kept between queries: test_search_short.py).
    monkeypatch.setattr(search_matches, "current", lambda database, term: None)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        walked = {filters: _all_pages(page_size=7, q="天气", **dict(filters)) for filters in expected}

    assert walked == expected
    assert expected[()][1][0] == 60
    page_sql = [
        msg for record in caplog.records if isinstance(msg := record.msg, tuple) and "+rowid" in msg[0]
    ]
    plan = [row[3] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + page_sql[0][0], page_sql[0][1])]
    assert any(line.startswith("SCAN t1 USING INDEX") for line in plan), plan


def test_like_wildcards_in_a_short_query_are_literal(texts: dict[str, str]) -> None:
    assert _found("%") == {texts["percent"]}
    assert _found("_") == set()


def test_text_search_combines_with_other_filters(rows: Rows, texts: dict[str, str]) -> None:
    failed = rows.call(status="failed", prompt="weather in Rome?", source="billing")

    assert _found("weather") == {texts["weather"], failed}
    assert {item["call_id"] for item in queries.list_calls(q="weather", status=["failed"])["items"]} == {
        failed
    }
    assert queries.list_calls(q="weather", source="billing", status=["failed", "succeeded"])["total"] == 1


# One call


def test_get_call_returns_columns_body_events_and_task(rows: Rows) -> None:
    task_id = rows.task(name="digest")
    call_id = rows.call(
        status="failed", prompt="天气?", response="", parent_task_id=task_id, parent_task_name="digest"
    )

    call = queries.get_call(call_id)

    assert call is not None
    assert call["call_id"] == call_id
    assert call["status"] == "failed"
    assert call["error_type"] == "RateLimitError"
    assert call["input_messages"] == [{"role": "user", "parts": [{"type": "text", "content": "天气?"}]}]
    assert call["request_params"] == {"temperature": 0.2}
    assert call["system_instructions"] == [{"type": "text", "content": "You are terse."}]
    assert call["attributes"] == {"server.port": 443}
    assert [event["kind"] for event in call["events"]] == ["queued", "dispatched", "failed"]
    assert call["events"][-1]["data"] == {"error_type": "RateLimitError"}
    assert [event["id"] for event in call["events"]] == sorted(event["id"] for event in call["events"])
    assert call["task"]["task_id"] == task_id
    assert call["task"]["attributes"] == {"team": "data"}


def test_get_call_of_an_unknown_id_is_none(store) -> None:
    assert queries.get_call("nope") is None


def test_get_call_without_body_or_task(rows: Rows) -> None:
    call_id = rows.call(status="queued", events=False)
    db.obj.execute_sql("DELETE FROM llm_call_bodies")

    call = queries.get_call(call_id)

    assert call["input_messages"] is None
    assert call["events"] == []
    assert call["task"] is None


def test_get_task(rows: Rows) -> None:
    task_id = rows.task(name="digest", status="running")

    assert queries.get_task(task_id)["name"] == "digest"
    assert queries.get_task(task_id)["ended_at"] is None
    assert queries.get_task("nope") is None


# Live feed


def test_call_events_after_resumes_after_an_id_with_call_summaries(rows: Rows) -> None:
    first, second = rows.calls(2)
    events = queries.call_events_after(0)

    assert [(event["call_id"], event["kind"]) for event in events] == [
        (first, "queued"),
        (first, "dispatched"),
        (first, "succeeded"),
        (second, "queued"),
        (second, "dispatched"),
        (second, "succeeded"),
    ]
    assert events[0]["call"]["call_id"] == first
    assert events[0]["call"]["status"] == "succeeded"  # the call as it is now

    after = queries.call_events_after(events[2]["id"], limit=2)
    assert [event["id"] for event in after] == [events[3]["id"], events[4]["id"]]
    assert queries.call_events_after(events[-1]["id"]) == []


def test_call_events_after_rejects_bad_limits(store) -> None:
    with pytest.raises(QueryError, match="limit must be >= 1"):
        queries.call_events_after(0, limit=0)
    with pytest.raises(QueryError, match="after_id must be >= 0"):
        queries.call_events_after(-1)


# Aggregates


def test_status_aggregates_on_a_known_set(rows: Rows) -> None:
    hour = 3_600_000
    # wait 1..100 ms, first token 10..1000 ms, duration 100..10000 ms
    rows.each(
        [
            {
                "enqueued_at": NOW_MS - value * 1000,
                "wait_ms": value,
                "first_token_ms": value * 10,
                "duration_ms": value * 100,
                "input_tokens": 2,
                "output_tokens": 3,
                "cached_tokens": 1,
                "reasoning_tokens": 1,
                "retry_count": 1 if value % 10 == 0 else 0,
            }
            for value in range(1, 101)
        ]
    )
    rows.calls(20, status="failed", enqueued_at=NOW_MS - 500, wait_ms=None, duration_ms=None)
    rows.calls(5, status="running", enqueued_at=NOW_MS - 500)
    rows.calls(3, status="queued", enqueued_at=NOW_MS - 500)
    rows.calls(50, status="failed", enqueued_at=NOW_MS - 2 * hour)  # outside the window

    stats = queries.status_aggregates(window_ms=hour, now_ms=NOW_MS)

    assert stats["counts"] == {"queued": 3, "running": 5, "succeeded": 100, "failed": 20, "cancelled": 0}
    assert stats["total"] == 128
    assert stats["ended"] == 120
    assert stats["error_rate"] == pytest.approx(20 / 120)
    assert stats["duration_ms"] == {"p50": 5000, "p95": 9500}  # nearest rank of 100..10000
    waits = [*range(1, 101), *[100] * 5]  # the running calls waited 100 ms
    assert (
        stats["wait_ms"] == {"p50": _rank(waits, 0.50), "p95": _rank(waits, 0.95)} == {"p50": 53, "p95": 100}
    )
    first_tokens = [value * 10 for value in range(1, 101)] + [300] * 20  # failed calls: 300 ms
    assert stats["first_token_ms"] == {"p50": _rank(first_tokens, 0.50), "p95": _rank(first_tokens, 0.95)}
    assert stats["tokens"] == {
        "input": 100 * 2 + 28 * 20,
        "output": 100 * 3 + 20 * 10,
        "cached": 100,
        "reasoning": 100,
    }
    assert stats["retries"] == 10
    assert stats["since_ms"] == NOW_MS - hour
    assert stats["until_ms"] == NOW_MS


def _rank(values: list[int], fraction: float) -> int:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of the values <= it."""
    return sorted(values)[math.ceil(fraction * len(values)) - 1]


def test_status_aggregates_of_an_empty_window(store) -> None:
    stats = queries.status_aggregates(window_ms=60_000, now_ms=NOW_MS)

    assert stats["total"] == 0
    assert stats["error_rate"] is None
    assert stats["wait_ms"] == {"p50": None, "p95": None}
    assert stats["tokens"] == {"input": 0, "output": 0, "cached": 0, "reasoning": 0}


def test_status_aggregates_reads_only_indexes(rows: Rows, caplog: pytest.LogCaptureFixture) -> None:
    rows.calls(10)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        queries.status_aggregates(window_ms=3_600_000, now_ms=NOW_MS)
    statements = [record.msg for record in caplog.records if isinstance(record.msg, tuple)]
    assert any("llm_call_rollups" in sql for sql, _ in statements)  # the whole hours' rollups first
    for sql, params in statements:
        plan = [row[3] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
        read = (
            "llm_call_rollups USING PRIMARY KEY"
            if "llm_call_rollups" in sql
            else "COVERING INDEX llm_calls_window"
        )
        assert any(read in line for line in plan), plan


# Scheduler snapshots


def test_scheduler_snapshots_of_live_processes(rows: Rows) -> None:
    rows.snapshot(process="host-a:1", heartbeat_at=NOW_MS - 1000, waiting='[{"call_id": "c1"}]')
    rows.snapshot(process="host-b:2", heartbeat_at=NOW_MS - 60_000)

    live = queries.scheduler_snapshots(live_within_ms=30_000, now_ms=NOW_MS)
    every = queries.scheduler_snapshots(live_within_ms=30_000, now_ms=NOW_MS, include_stale=True)

    assert [(row["process"], row["live"]) for row in live] == [("host-a:1", True)]
    assert live[0]["waiting"] == [{"call_id": "c1"}]
    assert [(row["process"], row["live"]) for row in every] == [("host-a:1", True), ("host-b:2", False)]
