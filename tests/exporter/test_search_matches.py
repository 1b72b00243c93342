"""What a search term matched, kept between list queries (``exporter.search_matches``, SQLite): the
same pages and exact totals as the term looked up whole by the plain query (the reference here),
whichever way a page is read, while calls are added, end, change and are deleted."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest

from exporter import prune, queries, search_matches
from exporter._sql import index, unindex
from exporter.models import LLMCall, db
from tests.exporter.conftest import NOW_MS, Rows, list_pages

PROMPTS = (
    "the weather report for Rome",
    "WEATHER now, please",
    "wea ther her: the trigrams of weather apart",  # a candidate of the index, not a match
    "something else entirely",
    "weatherproof boots",
)
FILTERS: list[dict[str, Any]] = [
    {},
    {"status": ["failed"]},
    {"status": ["failed", "succeeded"]},
    {"source": "billing"},
    {"source": "billing", "status": ["succeeded"]},
    {"min_duration_ms": 1000},
    {"since_ms": NOW_MS - 50 * 60_000},
    {"sort": "duration"},
    {"sort": "wait", "source": "search"},
    {"sort": "first_token", "status": ["failed", "succeeded"], "min_duration_ms": 1000},
]


def _calls(rows: Rows, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    calls = []
    for _ in range(count):
        status = rng.choice(["succeeded", "succeeded", "failed", "cancelled", "running"])
        ended = status != "running"
        calls.append(
            {
                "status": status,
                "prompt": rng.choice(PROMPTS),
                "source": rng.choice(["app", "billing", "search"]),
                "enqueued_at": NOW_MS - rng.randrange(0, 100) * 60_000,
                "wait_ms": rng.choice([0, 50, 1500]),
                "first_token_ms": rng.choice([None, 120, 900]) if ended else None,
                "duration_ms": rng.choice([400, 1000, 8000]) if ended else None,
            }
        )
    return rows.each(calls)


def _pages(q: str = "weather", page_size: int = 7, **filters: Any) -> tuple[list[str], set[int]]:
    return list_pages(q, page_size, **filters)


def _reference(monkeypatch: pytest.MonkeyPatch, **filters: Any) -> tuple[list[str], set[int]]:
    """The same pages from the plain query, which checks every candidate each time."""
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "current", lambda database, term: None)
        return _pages(**filters)


@pytest.mark.parametrize("mode", ["as chosen", "walk", "read"])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda filters: ",".join(filters) or "none")
def test_pages_and_totals_are_those_of_the_plain_query(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, filters: dict[str, Any], mode: str
) -> None:
    _calls(rows, 120, seed=1)
    expected = _reference(monkeypatch, **filters)
    if mode == "walk":  # no rowids kept: every page walks an index, every total tests the filters' calls
        monkeypatch.setattr(search_matches, "KEEP_ROWIDS_UP_TO", 0)
    if mode == "read":  # reading the matches by rowid is always the cheaper
        monkeypatch.setattr(queries, "_MATCH_READ_COST", 0)

    cold = _pages(**filters)
    warm = _pages(**filters)

    assert cold == warm == expected
    assert len(expected[1]) == 1 and expected[1] == {len(expected[0])}
    assert 0 < len(expected[0]) < 120


@pytest.mark.parametrize("filters", FILTERS, ids=lambda filters: ",".join(filters) or "none")
def test_a_walk_reads_its_index_alone(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, filters: dict[str, Any]
) -> None:
    """A page that walks an index in the list's order, testing each entry against the matches, sorts
    nothing, and reads the index alone where it holds the filters: no row looked up for each entry
    walked for the ``call_id`` that breaks ties of the sort keys (~7 µs an entry at 1M calls); the
    ties are ordered after. (A timing's index lacks the labels and the other timings: a sort with
    one of those tests it in the row.)"""
    _calls(rows, 120, seed=4)
    monkeypatch.setattr(search_matches, "KEEP_ROWIDS_UP_TO", 0)  # no rowids kept: every page walks
    queries.list_calls(q="weather", **filters)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        assert queries.list_calls(q="weather", page=2, page_size=5, **filters)["items"]
    statements = [record.msg for record in caplog.records if isinstance(record.msg, tuple)]
    walks = [(sql, params) for sql, params in statements if "call_rowid" in sql]
    assert len(walks) == 1, statements
    plan = [row[3] for row in db.obj.execute_sql("EXPLAIN QUERY PLAN " + walks[0][0], walks[0][1])]
    reads = [line for line in plan if line.startswith(("SEARCH", "SCAN"))]
    assert reads and all("INDEX" in line for line in reads), plan
    if "sort" not in filters or set(filters) <= {"sort", "status"}:  # the index holds the filters
        assert all("COVERING INDEX" in line for line in reads), plan
    assert not [line for line in plan if "TEMP B-TREE" in line], plan


def test_a_term_of_exactly_one_trigram_and_a_case_variant(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    _calls(rows, 60, seed=2)
    for q in ("wea", "WeAtHeR", "her:"):
        expected = _reference(monkeypatch, q=q)
        assert _pages(q=q) == _pages(q=q) == expected
        assert expected[0]


@pytest.mark.parametrize("new_calls", ["few", "many"])
def test_the_kept_matches_stay_exact_as_the_store_changes(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, new_calls: str
) -> None:
    if new_calls == "many":  # the calls in flight among them are then found through an index
        monkeypatch.setattr(search_matches, "_LIVE_SCAN_FROM", 0)
    _calls(rows, 80, seed=3)
    watched = [
        {},
        {"status": ["failed"]},
        {"source": "billing"},
        {"sort": "duration", "min_duration_ms": 1000},
    ]

    def same_as_reference() -> list[int]:
        totals = []
        for filters in watched:
            expected = _reference(monkeypatch, **filters)
            assert _pages(**filters) == expected, filters
            totals.append(len(expected[0]))
        return totals

    first = same_as_reference()

    # New calls (higher rowids): a match, a call that is not one.
    rows.each([{"prompt": "weather again", "status": "failed", "source": "billing"}, {"prompt": "nothing"}])
    assert same_as_reference()[:3] == [first[0] + 1, first[1] + 1, first[2] + 1]

    # A call in flight, not indexed yet (the writer indexes a call when it ends), then its end.
    live = rows.call(prompt="weather in flight", status="running", source="billing", duration_ms=None)
    unindex(db.obj.cursor(), json.dumps([live]))
    assert same_as_reference()[0] == first[0] + 1
    LLMCall.update(status="failed", duration_ms=5000, ended_at=NOW_MS).where(
        LLMCall.call_id == live
    ).execute()
    index(db.obj.cursor(), json.dumps([live]))
    assert same_as_reference()[:3] == [first[0] + 2, first[1] + 2, first[2] + 2]

    # An ended call that changes (a span written twice, a late end): its status no longer failed.
    LLMCall.update(status="succeeded").where(LLMCall.call_id == live).execute()
    assert same_as_reference()[:2] == [first[0] + 2, first[1] + 1]

    # Calls deleted (retention, prune): the ended ones (those in flight stay).
    assert prune(db.obj, older_than=0.0) > 0
    assert 0 < same_as_reference()[0] < first[0]


def test_the_store_s_search_generation_moves_only_for_searched_calls(rows: Rows) -> None:
    def generation() -> int:
        return db.obj.execute_sql("SELECT generation FROM llm_calls_search_state").fetchone()[0]

    live = rows.call(prompt="weather", status="running")
    unindex(db.obj.cursor(), json.dumps([live]))
    ended = rows.call(prompt="weather", status="succeeded")
    before = generation()

    LLMCall.update(wait_ms=10).where(LLMCall.call_id == live).execute()  # a live notice
    assert generation() == before
    LLMCall.update(error_message="x").where(LLMCall.call_id == ended).execute()
    assert generation() == before + 1
    LLMCall.delete().where(LLMCall.call_id == live).execute()
    assert generation() == before + 2


def test_a_term_s_matches_outlive_the_process_that_found_them(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept in the store (``llm_calls_search_kept``, migration 11): a process that never looked the
    term up reads them, brings them up to date, and looks the term up whole once they are stale."""
    _calls(rows, 80, seed=4)
    expected = _reference(monkeypatch)
    failed = _reference(monkeypatch, status=["failed"])
    assert _pages() == expected  # looked up whole, then saved to the store
    assert _pages(status=["failed"]) == failed  # its count with a filter, saved beside them

    search_matches.forget()  # a new process: nothing kept in memory
    counted = []
    kept_count = search_matches.kept_count
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "_looked_up", lambda *args: pytest.fail("looked up whole again"))
        patched.setattr(
            search_matches, "kept_count", lambda *args: counted.append(kept_count(*args)) or counted[-1]
        )
        assert _pages(status=["failed"]) == failed
    blocks, added, touched = counted[0]  # the count read from the store, not counted again
    assert (sum(blocks.values()), added, touched) == (len(failed[0]), [], set())
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "_looked_up", lambda *args: pytest.fail("looked up whole again"))
        assert _pages() == expected
        rows.each([{"prompt": "weather again", "status": "failed"}])  # a new call: brought up to date
        search_matches.forget()
        after = _reference(monkeypatch)
        assert _pages() == after and len(after[0]) == len(expected[0]) + 1

    looked_up = []
    original = search_matches._looked_up
    monkeypatch.setattr(search_matches, "_looked_up", lambda *args: looked_up.append(1) or original(*args))
    LLMCall.update(status="succeeded").where(LLMCall.status == "failed").execute()  # the generation moves
    search_matches.forget()
    assert _pages() == _reference(monkeypatch) and looked_up == [1]
    search_matches.forget(db.obj)  # and the store's too
    assert db.obj.execute_sql("SELECT COUNT(*) FROM llm_calls_search_kept").fetchone()[0] == 0


def test_a_store_that_cannot_be_written_still_answers(rows: Rows, monkeypatch: pytest.MonkeyPatch) -> None:
    _calls(rows, 40, seed=5)
    expected = _reference(monkeypatch)
    db.obj.execute_sql("BEGIN IMMEDIATE")  # another writer holds the lock (this connection, here)
    other = type(db.obj)(db.obj.database)
    db.initialize(other)
    try:
        assert _pages() == expected  # the save waited SAVE_WAIT_MS and gave up
        assert other.execute_sql("SELECT COUNT(*) FROM llm_calls_search_kept").fetchone()[0] == 0
    finally:
        other.close()
        db.initialize(rows.database)
        rows.database.execute_sql("ROLLBACK")
    assert _pages() == expected  # saved by a later query
    assert db.obj.execute_sql("SELECT COUNT(*) FROM llm_calls_search_kept").fetchone()[0] == 1
