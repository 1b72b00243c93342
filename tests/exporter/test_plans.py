"""The two ways ``list_calls`` reads a sorted page (walk an index in order, or sort what the filters'
index finds) give the same pages, on both engines; on SQLite every statement reads an index."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from exporter import queries
from exporter.models import db
from tests.exporter.conftest import NOW_MS, Rows
from tests.exporter.test_queries import FILTERS, _all_pages, _expected

SORTS = ["newest", "duration", "first_token", "wait"]
TEXT_FILTERS: list[dict[str, Any]] = [
    {"q": "quarterly"},
    {"q": "quarterly", "status": ["failed", "succeeded"]},
    {"q": "quarterly", "source": "billing", "min_wait_ms": 50},
    {"q": "quarterly", "since_ms": NOW_MS - 40 * 60_000, "min_duration_ms": 1000},
]


@pytest.fixture
def mixed(any_rows: Rows) -> list[dict[str, Any]]:
    """The mixed set; every call's prompt holds "quarterly" (the row factory's default prompt)."""
    return any_rows.mixed()


@pytest.mark.parametrize("walks", [True, False], ids=["walk", "sort"])
@pytest.mark.parametrize("sort", SORTS)
def test_both_plans_give_the_same_pages(
    mixed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, sort: str, walks: bool
) -> None:
    monkeypatch.setattr(queries, "_walks", lambda *args, **kwargs: walks)
    for filters in FILTERS:
        listed, totals = _all_pages(page_size=37, sort=sort, **filters)

        assert listed == _expected(mixed, filters, sort), filters
        assert set(totals) == {len(listed)}, filters


@pytest.mark.parametrize("frequent", [True, False], ids=["frequent term", "rare term"])
@pytest.mark.parametrize("sort", SORTS)
def test_a_search_gives_the_same_pages_however_frequent_its_term(
    mixed: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, sort: str, frequent: bool
) -> None:
    monkeypatch.setattr(queries, "_SORT_MATCHES_UP_TO", 0 if frequent else 10_000)
    for filters in TEXT_FILTERS:
        without_q = {name: value for name, value in filters.items() if name != "q"}

        listed, totals = _all_pages(page_size=37, sort=sort, **filters)

        assert listed == _expected(mixed, without_q, sort), filters  # every call matches the term
        assert set(totals) == {len(listed)}, filters


PLAN_CASES: list[dict[str, Any]] = [
    {"sort": "duration"},
    {"sort": "wait", "status": ["failed", "running"]},
    {"sort": "first_token", "source": "billing"},
    {"sort": "duration", "error_type": "RateLimitError"},
    {"sort": "duration", "since_ms": NOW_MS - 30 * 60_000},
    {"min_duration_ms": 2500},
    {"min_wait_ms": 200, "status": ["failed"]},
    {"min_first_token_ms": 300, "requested_by": "alice"},
    {"min_duration_ms": 1000, "error_type": "APITimeoutError", "since_ms": NOW_MS - 60 * 60_000},
    {"sort": "duration", "min_duration_ms": 1000, "model": "gpt-4o"},
]


@pytest.mark.parametrize("walks", [True, False], ids=["walk", "sort"])
@pytest.mark.parametrize("filters", PLAN_CASES, ids=lambda filters: ",".join(f"{k}" for k in filters))
def test_sorted_and_latency_queries_are_served_by_indexes(
    rows: Rows,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    filters: dict[str, Any],
    walks: bool,
) -> None:
    rows.mixed()
    monkeypatch.setattr(queries, "_walks", lambda *args, **kwargs: walks)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        queries.list_calls(**filters, page=2, page_size=3)
    statements = [record.msg for record in caplog.records if isinstance(record.msg, tuple)]
    selects = [(sql, params) for sql, params in statements if sql.startswith("SELECT") and "llm_calls" in sql]
    assert len(selects) >= 3  # the count, the page's ids (two for a sort: its last key first), its rows

    for sql, params in selects:
        plan = [row[3] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()]
        # peewee names llm_calls "t1" (t2... in a UNION): "SCAN t1" alone would read every row
        assert not [line for line in plan if line.startswith("SCAN t") and "INDEX" not in line], plan
        assert any("INDEX" in line or "rowid" in line for line in plan), plan
