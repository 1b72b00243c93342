"""Facets, the status series and the store summary, on SQLite and PostgreSQL (``any_rows``)."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from exporter import QueryError, kept_summaries, open_database, prune, queries, search_matches
from exporter._sql import SQLITE, index
from exporter.database import is_sqlite
from exporter.migrations import KEPT_TABLE, SUMMARY_KEPT_TABLE
from exporter.models import LLMCall, db
from tests.exporter.conftest import NOW_MS, Rows, _body
from tests.exporter.test_queries import FILTERS, _expected

HOUR = 3_600_000


@pytest.fixture
def known(any_rows: Rows) -> Rows:
    """20 calls whose facets are worked out by hand in the tests below."""
    any_rows.each(
        [
            {
                "status": "succeeded",
                "source": "app",
                "model": "gpt-4o",
                "requested_by": "alice",
                "wait_ms": value,
                "first_token_ms": value * 10,
                "duration_ms": value * 100,
            }
            for value in range(1, 11)
        ]
        + [
            {
                "status": "failed",
                "source": "billing",
                "model": "gpt-4o-mini",
                "requested_by": "bob",
                "error_type": error_type,
                "wait_ms": 20,
                "first_token_ms": None,
                "duration_ms": 5000,
                "prompt": "季度销售报告 for the board",
            }
            for error_type in ("RateLimitError", "RateLimitError", "RateLimitError", "APITimeoutError")
        ]
        + [
            {"status": "cancelled", "source": None, "model": "gpt-4o", "wait_ms": 0, "duration_ms": 50}
            | {"first_token_ms": None}
        ]
        * 2
        + [{"status": "running", "source": "app", "model": "gpt-4o-mini", "wait_ms": 500}] * 3
        + [{"status": "queued", "source": "app", "model": "gpt-4o-mini", "requested_by": None}]
    )
    return any_rows


def test_facets_of_every_call(known: Rows) -> None:
    facets = queries.call_facets()

    assert facets["total"] == 20
    assert facets["statuses"] == {"queued": 1, "running": 3, "succeeded": 10, "failed": 4, "cancelled": 2}
    assert facets["sources"] == [
        {"value": "app", "count": 14},
        {"value": "billing", "count": 4},
        {"value": None, "count": 2},
    ]
    # the cancelled and running calls are alice's (the row factory's default)
    assert facets["requested_by"] == [
        {"value": "alice", "count": 15},
        {"value": "bob", "count": 4},
        {"value": None, "count": 1},
    ]
    assert facets["models"] == [{"value": "gpt-4o", "count": 12}, {"value": "gpt-4o-mini", "count": 8}]
    assert facets["error_types"] == [
        {"value": None, "count": 16},
        {"value": "RateLimitError", "count": 3},
        {"value": "APITimeoutError", "count": 1},
    ]
    assert facets["failures_by_model"] == [{"value": "gpt-4o-mini", "count": 4}]
    # waits 0,0,1..10,20,20,20,20,500,500,500 (19 values; the queued call has none): ranks 10 and 19
    assert facets["wait_ms"] == {"p50": 8, "p95": 500}
    assert facets["first_token_ms"] == {"p50": 50, "p95": 100}  # 10..100, the succeeded calls only
    # durations 50,50,100..1000,5000 x4 (16 values): ranks 8 and 16
    assert facets["duration_ms"] == {"p50": 600, "p95": 5000}
    assert facets["error_rate"] == pytest.approx(4 / 16)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            {"source": "app"},
            {
                "total": 14,
                "statuses": {"queued": 1, "running": 3, "succeeded": 10, "failed": 0, "cancelled": 0},
                "sources": [{"value": "app", "count": 14}],
                "failures_by_model": [],
                "duration_ms": {"p50": 500, "p95": 1000},
                "error_rate": 0.0,
            },
        ),
        (
            {"min_duration_ms": 1000},
            {
                "total": 5,
                "statuses": {"queued": 0, "running": 0, "succeeded": 1, "failed": 4, "cancelled": 0},
                "models": [{"value": "gpt-4o-mini", "count": 4}, {"value": "gpt-4o", "count": 1}],
                "duration_ms": {"p50": 5000, "p95": 5000},
                "first_token_ms": {"p50": 100, "p95": 100},
                "error_rate": 0.8,
            },
        ),
        (
            {"status": ["failed", "cancelled"], "error_type": "RateLimitError"},
            {
                "total": 3,
                "error_types": [{"value": "RateLimitError", "count": 3}],
                "failures_by_model": [{"value": "gpt-4o-mini", "count": 3}],
                "wait_ms": {"p50": 20, "p95": 20},
                "first_token_ms": {"p50": None, "p95": None},
                "error_rate": 1.0,
            },
        ),
        (
            {"q": "季度销售报告", "requested_by": "bob"},
            {"total": 4, "sources": [{"value": "billing", "count": 4}], "error_rate": 1.0},
        ),
        (
            {"model": "nowhere"},
            {
                "total": 0,
                "sources": [],
                "wait_ms": {"p50": None, "p95": None},
                "error_rate": None,
            },
        ),
    ],
    ids=["source", "min_duration", "status+error_type", "q+requested_by", "none"],
)
def test_facets_of_the_calls_the_filters_select(
    known: Rows, filters: dict[str, Any], expected: dict[str, Any]
) -> None:
    facets = queries.call_facets(**filters)

    assert {key: facets[key] for key in expected} == expected
    assert facets["total"] == queries.list_calls(**filters)["total"]


def test_facet_values_are_capped_at_50_most_frequent_first(any_rows: Rows) -> None:
    any_rows.each([{"requested_by": f"user-{number:02d}"} for number in range(60)])
    any_rows.calls(3, requested_by="zed")
    any_rows.calls(2, requested_by=None)

    values = queries.call_facets()["requested_by"]

    assert len(values) == queries.MAX_FACET_VALUES == 50
    assert values[:2] == [{"value": "zed", "count": 3}, {"value": None, "count": 2}]
    assert values[2:] == [{"value": f"user-{number:02d}", "count": 1} for number in range(48)]


def test_facets_reject_bad_filters(any_rows: Rows) -> None:
    with pytest.raises(QueryError, match="unknown status lost"):
        queries.call_facets(status=["lost"])
    with pytest.raises(QueryError, match="min_wait_ms must be >= 0"):
        queries.call_facets(min_wait_ms=-5)
    with pytest.raises(QueryError, match="at most 500 characters"):
        queries.call_facets(q="季" * 501)


# The status series


def test_status_series_counts_calls_failures_and_p95_per_bucket(any_rows: Rows) -> None:
    since = NOW_MS - 4 * HOUR
    any_rows.each(
        [
            {"enqueued_at": since, "duration_ms": 100},  # the first instant of the window
            {"enqueued_at": since + 10, "status": "failed", "duration_ms": 300},
            {"enqueued_at": since + HOUR - 1, "duration_ms": 200},
            {"enqueued_at": since + 2 * HOUR, "status": "running"},  # no duration yet
            {"enqueued_at": NOW_MS, "status": "failed", "duration_ms": 7000},  # the last instant
            {"enqueued_at": since - 1, "status": "failed"},  # before the window
        ]
    )

    series = queries.status_series(4 * HOUR, buckets=4, now_ms=NOW_MS)

    assert series == [
        {"start_ms": since, "calls": 3, "failed": 1, "p95_duration_ms": 300},
        {"start_ms": since + HOUR, "calls": 0, "failed": 0, "p95_duration_ms": None},
        {"start_ms": since + 2 * HOUR, "calls": 1, "failed": 0, "p95_duration_ms": None},
        {"start_ms": since + 3 * HOUR, "calls": 1, "failed": 1, "p95_duration_ms": 7000},
    ]


def test_status_series_buckets_of_an_uneven_window(any_rows: Rows) -> None:
    series = queries.status_series(10, buckets=3, now_ms=1000)

    assert [bucket["start_ms"] for bucket in series] == [990, 993, 996]
    assert (
        queries.status_series(3_600_000, now_ms=NOW_MS)[-1]["start_ms"] == NOW_MS - 150_000
    )  # 24 of 2.5 min


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"window_ms": 0}, "window_ms must be >= 1"),
        ({"window_ms": 3_600_000, "buckets": 0}, "buckets must be >= 1"),
        ({"window_ms": 3_600_000, "buckets": 1001}, "buckets must be <= 1000"),
        ({"window_ms": 5, "buckets": 6}, "buckets must be <= 5"),
        ({"window_ms": "1h"}, "window_ms must be an integer"),
    ],
)
def test_status_series_rejects_bad_arguments(any_rows: Rows, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        queries.status_series(**arguments)


# The store summary


def test_store_summary(any_rows: Rows) -> None:
    engine = "sqlite" if is_sqlite(any_rows.database) else "postgresql"
    assert queries.store_summary() == {"engine": engine, "calls": 0, "oldest_call_ms": None}

    any_rows.each([{"enqueued_at": NOW_MS - 5000}, {"enqueued_at": NOW_MS - 9000}, {"enqueued_at": NOW_MS}])

    assert queries.store_summary() == {"engine": engine, "calls": 3, "oldest_call_ms": NOW_MS - 9000}


def _computed(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The facets of ``calls``, computed here."""

    def top(values: list[Any]) -> list[dict[str, Any]]:
        counts = Counter(values)
        ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0] is None, pair[0] or ""))
        return [{"value": value, "count": count} for value, count in ranked[:50]]

    def ranks(name: str) -> dict[str, int | None]:
        known = sorted(call[name] for call in calls if call[name] is not None)
        if not known:
            return {"p50": None, "p95": None}
        return {"p50": known[math.ceil(0.5 * len(known)) - 1], "p95": known[math.ceil(0.95 * len(known)) - 1]}

    statuses = Counter(call["status"] for call in calls)
    ended = sum(statuses[name] for name in ("succeeded", "failed", "cancelled"))
    return {
        "total": len(calls),
        "statuses": {
            name: statuses[name] for name in ("queued", "running", "succeeded", "failed", "cancelled")
        },
        "sources": top([call["source"] for call in calls]),
        "requested_by": top([call["requested_by"] for call in calls]),
        "models": top([call["model"] for call in calls]),
        "error_types": top([call["error_type"] for call in calls]),
        "failures_by_model": top([call["model"] for call in calls if call["status"] == "failed"]),
        "wait_ms": ranks("wait_ms"),
        "first_token_ms": ranks("first_token_ms"),
        "duration_ms": ranks("duration_ms"),
        "error_rate": statuses["failed"] / ended if ended else None,
    }


def test_facets_of_every_filter_equal_those_computed_from_the_calls(any_rows: Rows) -> None:
    written = {call["call_id"]: call for call in any_rows.mixed()}
    for filters in [
        *FILTERS,
        {"q": "quarterly", "source": "app"},
        {"q": "quarterly", "min_duration_ms": 2500},
    ]:
        without_q = {name: value for name, value in filters.items() if name != "q"}
        selected = [written[call_id] for call_id in _expected(list(written.values()), without_q)]

        assert queries.call_facets(**filters) == _computed(selected), filters


def test_facets_of_a_q_read_the_kept_matches_and_stay_exact_as_the_store_changes(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a ``q`` of the trigram index is summarised from the calls the list keeps for it
    (``exporter.search_matches``), equal to the plain query's summary after every change."""
    rows.each(
        [
            {"prompt": prompt, "status": status, "source": source, "duration_ms": duration}
            for prompt, status, source, duration in [
                ("the weather report", "succeeded", "app", 400),
                ("WEATHER now", "failed", "billing", 9000),
                ("wea ther her apart", "succeeded", "app", 700),  # the trigrams, not the term
                ("weatherproof boots", "cancelled", "search", 50),
                ("something else", "succeeded", "billing", 300),
            ]
        ]
    )
    kept = []
    current = search_matches.current
    monkeypatch.setattr(
        search_matches, "current", lambda database, term: kept.append(term.key) or current(database, term)
    )

    def plain(**filters: Any) -> dict[str, Any]:
        with monkeypatch.context() as patched:
            patched.setattr(search_matches, "current", lambda database, term: None)
            return queries.call_facets(**filters)

    def same_as_plain() -> int:
        for filters in (
            {"q": "weather"},
            {"q": "weather", "status": ["failed"]},
            {"q": "weather", "source": "app"},
        ):
            assert queries.call_facets(**filters) == plain(**filters), filters
        return queries.call_facets(q="weather")["total"]

    assert same_as_plain() == 3
    assert kept and set(kept) == {"weather"}
    rows.each([{"prompt": "weather again", "status": "failed"}, {"prompt": "nothing"}])
    assert same_as_plain() == 4
    LLMCall.update(status="failed", duration_ms=12_000).where(
        LLMCall.prompt_preview == "the weather report"
    ).execute()
    assert same_as_plain() == 4
    assert queries.call_facets(q="weather")["statuses"]["failed"] == 3
    assert prune(db.obj, older_than=0.0) > 0
    assert same_as_plain() == 0


@pytest.mark.parametrize(
    "filters",
    [
        {"model": "gpt-4o", "source": "app"},
        {"requested_by": "alice"},
        {"parent_task_id": "task-1", "status": ["failed", "succeeded"]},
        {"source": "billing", "min_duration_ms": 1000, "since_ms": NOW_MS - 30 * 60_000},
    ],
    ids=["two labels", "requested_by", "parent_task_id", "label & minimum & part of a day"],
)
def test_a_summary_through_a_label_reads_that_label_s_index_alone(
    rows: Rows, filters: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite, migration 12: the label indexes hold every column a summary counts, so a summary the
    rollups do not hold reads index entries, never a row."""
    rows.mixed()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        facets = queries.call_facets(**filters)
    assert facets["total"] == queries.list_calls(**filters)["total"] > 0
    statements = [record.msg for record in caplog.records if isinstance(record.msg, tuple)]
    reads = [(sql, params) for sql, params in statements if '"model"' in sql and sql.startswith("SELECT")]
    assert reads
    for sql, params in reads:
        plan = [row[3] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
        assert any(
            "USING COVERING INDEX llm_calls_" in line and "_status_enqueued_at" in line for line in plan
        ), plan


IN_FLIGHT_COUNTS = {("queued", "running"), ("running",), ("queued",)}
"""The statuses of the selections a kept summary counts afresh: its calls in flight."""


@pytest.mark.parametrize("save_every_ms", [0, 10**9], ids=["saved each time", "saved when counted whole"])
def test_a_kept_summary_stays_exact_as_calls_come_end_change_and_go(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, save_every_ms: int
) -> None:
    """SQLite: a summary is kept (``exporter.kept_summaries``) and the next one of the same filters
    counts only the calls written or ended since, and those in flight: equal, after every change,
    to the summary counted whole. So is one of a process that keeps nothing (another one, or this
    one restarted), which reads what the store keeps (``llm_calls_summary_kept``, written after
    each summary or only when counted whole) and brings it up to date."""
    monkeypatch.setattr(queries, "_KEEP_FROM", 0)  # keep the summaries of this small store
    monkeypatch.setattr(kept_summaries, "SAVE_EVERY_MS", save_every_ms)
    kept_summaries.forget(db.obj)
    rows.mixed(120)
    cases: list[dict[str, Any]] = [
        {"min_duration_ms": 1000},
        {"min_wait_ms": 200},  # calls in flight have a wait: counted afresh each time
        {"model": "gpt-4o", "source": "app"},
        {"status": ["running", "failed"], "min_wait_ms": 50},
        {"status": ["queued"]},
        {"q": "quarterly"},
        {"q": "quarterly", "status": ["failed"], "source": "billing"},
    ]
    counted = _whole_counts_watched(monkeypatch)
    whole = functools.partial(_counted_whole, monkeypatch)

    def same_as_whole() -> None:
        expected = [whole(**filters) for filters in cases]
        for filters, summary in zip(cases, expected, strict=True):
            assert queries.call_facets(**filters) == summary, filters
        _forget_this_process()  # another process: the store's kept summaries brought up to date
        counted.clear()
        for filters, summary in zip(cases, expected, strict=True):
            assert queries.call_facets(**filters) == summary, filters
        assert set(counted) <= IN_FLIGHT_COUNTS, counted

    same_as_whole()
    first = [queries.call_facets(**filters) for filters in cases]
    counted.clear()
    assert [queries.call_facets(**filters) for filters in cases] == first
    # read again: only the calls in flight are counted (the kept counts hold the others)
    assert set(counted) <= IN_FLIGHT_COUNTS, counted

    rows.mixed(40, seed=5)  # new calls, ended and in flight
    same_as_whole()
    # calls in flight as the store's writer leaves them (indexed once ended) start and end: their
    # rows change in place and the search generation stays
    live = [
        rows._call_row("", "", {"status": status, "model": "gpt-4o", "wait_ms": wait})
        for status, wait in [("running", 300)] * 6 + [("queued", None)] * 4
    ]
    LLMCall.insert_many(live).execute()
    same_as_whole()
    generation = search_matches.state(db.obj)
    ids = [row["call_id"] for row in live]
    LLMCall.update(status="failed", error_type="APITimeoutError", first_token_ms=300, duration_ms=9000).where(
        LLMCall.call_id.in_(ids[:4])
    ).execute()
    LLMCall.update(status="running", wait_ms=700).where(LLMCall.call_id.in_(ids[6:8])).execute()
    assert search_matches.state(db.obj) == generation
    counted.clear()
    summaries = [queries.call_facets(**filters) for filters in cases]
    assert set(counted) <= IN_FLIGHT_COUNTS, counted
    assert summaries == [whole(**filters) for filters in cases]
    rows.each([{"status": "queued", "model": "gpt-4o", "source": "app"}, {"duration_ms": 20_000}])
    same_as_whole()
    # calls in flight holding the q's text, left unindexed by the writer (they end and are indexed
    # below: the term's matches gain them without moving the generation)
    searched = [
        rows._call_row("", "", {"status": "running", "source": "billing", "wait_ms": 90}) for _ in range(3)
    ]
    LLMCall.insert_many(searched).execute()
    bodies = [_body(row["call_id"], "quarterly figures", "", "running") for row in searched]
    db.obj.cursor().executemany(SQLITE.final_body, bodies)
    same_as_whole()
    # some ended calls go while a term is kept in the store: the delete is logged (migration 14),
    # the generation stays, and no kept summary counts the calls gone
    store, generation, deleted = search_matches.state(db.obj)
    gone = LLMCall.select(LLMCall.call_id).where(LLMCall.status.in_(["succeeded", "failed"])).limit(15)
    assert LLMCall.delete().where(LLMCall.call_id.in_(gone)).execute() == 15
    assert search_matches.state(db.obj) == (store, generation, deleted + 15)
    same_as_whole()
    # an ended call changes, then calls go: the generation moves and each summary is counted whole
    LLMCall.update(duration_ms=50, source="app").where(LLMCall.status == "succeeded").execute()
    same_as_whole()
    state = search_matches.state(db.obj)
    ids = [row["call_id"] for row in searched]  # counted in flight (pending) by the summaries kept
    LLMCall.update(status="failed", duration_ms=4000).where(LLMCall.call_id.in_(ids)).execute()
    index(db.obj.cursor(), json.dumps(ids))
    assert search_matches.state(db.obj) == state
    same_as_whole()
    assert prune(db.obj, older_than=0.0) > 0
    same_as_whole()
    assert queries.call_facets(min_duration_ms=1000)["total"] == 0


_ANOTHER_PROCESS = """
import json, sys
from exporter import open_database, queries
from exporter.models import db
db.initialize(open_database(sys.argv[1]))
counted = []
whole = queries._counted
queries._counted = lambda selection, **bits: counted.append(selection.statuses) or whole(selection, **bits)
summaries = [queries.call_facets(**filters) for filters in json.loads(sys.argv[2])]
print(json.dumps({"summaries": summaries, "counted": counted}))
"""


def test_another_process_brings_up_to_date_the_summaries_the_store_keeps(
    rows: Rows, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a second process (a second gunicorn worker, the admin restarted) reads what the
    first one counted (``llm_calls_summary_kept``) and adds the calls written since, not counting
    whole: the same summaries as counted whole."""
    monkeypatch.setattr(queries, "_KEEP_FROM", 0)
    kept_summaries.forget(db.obj)
    search_matches.forget(db.obj)
    rows.mixed(120)
    cases: list[dict[str, Any]] = [
        {"min_duration_ms": 1000},
        {"model": "gpt-4o", "source": "app"},
        {"q": "quarterly", "status": ["failed", "running"]},
    ]
    for filters in cases:
        queries.call_facets(**filters)
    rows.mixed(30, seed=9)
    expected = [_counted_whole(monkeypatch, **filters) for filters in cases]

    run = subprocess.run(
        [sys.executable, "-c", _ANOTHER_PROCESS, str(store.database), json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(run.stdout)
    assert found["summaries"] == json.loads(json.dumps(expected))
    assert {tuple(statuses) for statuses in found["counted"]} <= IN_FLIGHT_COUNTS, found["counted"]
    kept = db.obj.execute_sql(f"SELECT COUNT(*) FROM {SUMMARY_KEPT_TABLE}").fetchone()[0]
    assert kept == len(cases)


def test_the_store_keeps_the_summaries_used_last_and_skips_a_locked_store(
    rows: Rows, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: ``llm_calls_summary_kept`` holds at most ``MAX_SAVED`` filters, those written last; a
    summary whose store is locked by a writer answers all the same and writes after a later one."""
    monkeypatch.setattr(queries, "_KEEP_FROM", 0)
    monkeypatch.setattr(kept_summaries, "MAX_SAVED", 2)
    monkeypatch.setattr(kept_summaries, "_now_ms", itertools.count(10**9).__next__)
    kept_summaries.forget(db.obj)
    rows.mixed(60)

    def kept() -> list[str]:
        sql = f"SELECT filters FROM {SUMMARY_KEPT_TABLE} ORDER BY used_at"
        return [json.loads(filters)[4] for (filters,) in db.obj.execute_sql(sql).fetchall()]

    for wait in (50, 200, 1500):
        queries.call_facets(min_wait_ms=wait)
    assert kept() == [[["wait_ms", 200]], [["wait_ms", 1500]]]

    writer = open_database(f"sqlite:///{store.database}")
    writer.execute_sql("BEGIN IMMEDIATE")
    try:
        assert queries.call_facets(min_wait_ms=0) == _counted_whole(monkeypatch, min_wait_ms=0)
    finally:
        writer.execute_sql("ROLLBACK")
        writer.close()
    assert kept() == [[["wait_ms", 200]], [["wait_ms", 1500]]]
    queries.call_facets(min_wait_ms=1500)  # unchanged: not written again; the one left over is
    assert kept() == [[["wait_ms", 1500]], [["wait_ms", 0]]]


@pytest.mark.parametrize("keep_from", [0, 10**9], ids=["kept", "counted whole"])
def test_facets_of_a_q_matching_more_calls_than_kept_as_rowids_read_its_bitmap(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, keep_from: int
) -> None:
    """SQLite: a ``q`` whose matches are kept as a bitmap only (past ``KEEP_ROWIDS_UP_TO``) is
    summarised by testing each index entry against the bitmap: equal to the plain query's."""
    monkeypatch.setattr(search_matches, "KEEP_ROWIDS_UP_TO", 1)
    monkeypatch.setattr(queries, "_KEEP_FROM", keep_from)
    search_matches.forget()
    kept_summaries.forget()
    written = {call["call_id"]: call for call in rows.mixed(120)}
    rows.each([{"prompt": "nothing to see", "status": status} for status in ("succeeded", "failed")] * 5)
    calls = list(written.values())  # every call of mixed() holds the default prompt: "quarterly"
    for filters in [
        {},
        {"status": ["failed", "running"]},
        {"source": "billing"},
        {"model": "gpt-4o", "min_duration_ms": 1000},
        {"min_wait_ms": 200},
        {"since_ms": NOW_MS - 30 * 60_000},
    ]:
        selected = [written[call_id] for call_id in _expected(calls, filters)]
        assert queries.call_facets(q="quarterly", **filters) == _computed(selected), filters
        assert search_matches.current(db.obj, queries._search_term("quarterly")).rowids is None


def test_a_kept_summary_of_a_window_up_to_now_slides_with_it(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the admin asks the summary of the last hours with a ``since_ms`` that moves on with
    the clock: a later one takes the calls before it out of the kept counts, exactly."""
    monkeypatch.setattr(queries, "_KEEP_FROM", 0)
    kept_summaries.forget()
    rows.mixed(150)
    early = NOW_MS - 80 * 60_000  # in the first slide: calls the q does not match, calls in flight
    rows.each([{"prompt": "no match", "enqueued_at": early, "wait_ms": 200, "model": "gpt-4o"}] * 3)
    live = [
        rows._call_row("", "", {"status": "running", "enqueued_at": early, "model": "gpt-4o", "wait_ms": 60})
        for _ in range(3)
    ]
    LLMCall.insert_many(live).execute()  # as the writer leaves them: indexed once ended
    counted = _whole_counts_watched(monkeypatch)
    whole = functools.partial(_counted_whole, monkeypatch)

    cases: list[dict[str, Any]] = [
        {"min_duration_ms": 1000},
        {"model": "gpt-4o", "source": "app", "status": ["succeeded", "running"]},
        {"q": "quarterly", "min_wait_ms": 50},
    ]
    for step, minutes in enumerate((90, 90, 70, 40)):  # the window's start moves on, calls come
        since = NOW_MS - minutes * 60_000
        counted.clear()
        summaries = [queries.call_facets(**filters, since_ms=since) for filters in cases]
        if minutes != 90:  # slid: only the calls in flight counted afresh, none of the others
            assert set(counted) <= {("queued", "running"), ("running",)}, counted
        assert summaries == [whole(**filters, since_ms=since) for filters in cases], minutes
        rows.mixed(10, seed=minutes)
        if step == 1:  # the calls in flight end, inside the window the next summary leaves out
            LLMCall.update(status="succeeded", duration_ms=3000).where(
                LLMCall.call_id.in_([row["call_id"] for row in live])
            ).execute()
    earlier = NOW_MS - 80 * 60_000  # an earlier start: counted whole
    for filters in cases:
        assert queries.call_facets(**filters, since_ms=earlier) == whole(**filters, since_ms=earlier)


def test_a_summary_keeps_what_its_q_matched_in_the_store(rows: Rows) -> None:
    """SQLite: as the list does, a summary writes the matches it looked up to the store (after its
    snapshot), so that the list and every other process read them instead of looking again."""
    search_matches.forget(db.obj)
    rows.each([{"prompt": "the weather report"}, {"prompt": "WEATHER now", "status": "failed"}, {}])

    assert queries.call_facets(q="weather", status=["failed"])["total"] == 1
    kept = db.obj.execute_sql(f"SELECT term, count FROM {KEPT_TABLE}").fetchall()
    assert kept == [("weather", 2)]


def _forget_this_process() -> None:
    """Drop what this process keeps of summaries and search terms, as a new process starts (the
    store keeps its rows)."""
    kept_summaries.forget()
    search_matches.forget()


def _whole_counts_watched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The statuses of each selection counted whole from now on (``queries._counted``), in order."""
    counted: list[tuple[str, ...]] = []
    whole_count = queries._counted
    monkeypatch.setattr(
        queries, "_counted", lambda selection: counted.append(selection.statuses) or whole_count(selection)
    )
    return counted


def _counted_whole(monkeypatch: pytest.MonkeyPatch, **filters: Any) -> dict[str, Any]:
    """``call_facets(**filters)`` with nothing kept read: the summary counted whole."""
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "state", lambda database: None)
        return queries.call_facets(**filters)
