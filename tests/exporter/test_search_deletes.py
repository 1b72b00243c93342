"""Kept search matches through deletes (``exporter.search_matches``, migration 14, SQLite): retention
and ``prune`` log the calls they delete (``llm_calls_search_deleted``) instead of making every kept
term stale, and the next query takes them out of what it kept, without looking the term up whole.
The pages and exact totals stay those of the plain query (the reference here)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from exporter import prune, queries, search_matches
from exporter._sql import unindex
from exporter.models import LLMCall, LLMCallBody, LLMCallEvent, db
from tests.exporter.conftest import NOW_MS, Rows, list_pages

PROMPTS = ("the weather report", "WEATHER now", "wea ther her", "nothing to see", "weatherproof boots")
WATCHED: list[dict[str, Any]] = [
    {},
    {"status": ["failed"]},
    {"source": "billing"},
    {"sort": "duration", "min_duration_ms": 1000},
]


def _calls(rows: Rows, count: int, seed: int, *, days_ago: int = 0) -> list[str]:
    rng = random.Random(seed)
    return rows.each(
        [
            {
                "status": rng.choice(["succeeded", "succeeded", "failed", "running"]),
                "prompt": rng.choice(PROMPTS),
                "source": rng.choice(["app", "billing"]),
                "enqueued_at": NOW_MS - days_ago * 86_400_000 - rng.randrange(0, 100) * 60_000,
                "duration_ms": rng.choice([400, 1000, 8000]),
            }
            for _ in range(count)
        ]
    )


def _reference(
    monkeypatch: pytest.MonkeyPatch, q: str = "weather", **filters: Any
) -> tuple[list[str], set[int]]:
    """The pages from the plain query, which checks every candidate each time."""
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "current", lambda database, term: None)
        return list_pages(q, 7, **filters)


def _same_as_reference(monkeypatch: pytest.MonkeyPatch, q: str = "weather") -> list[int]:
    totals = []
    for filters in WATCHED:
        expected = _reference(monkeypatch, q, **filters)
        assert list_pages(q, 7, **filters) == expected, filters
        totals.append(len(expected[0]))
    return totals


@contextmanager
def _never_looked_up_whole(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "_looked_up", lambda *args: pytest.fail("looked up whole again"))
        yield


def _generation() -> int:
    return db.obj.execute_sql("SELECT generation FROM llm_calls_search_state").fetchone()[0]


def _logged() -> list[int]:
    return [row[0] for row in db.obj.execute_sql("SELECT call_rowid FROM llm_calls_search_deleted")]


def _delete(call_ids: list[str]) -> None:
    """Delete calls as retention does: index entries, events, body, then the row."""
    with db.obj.atomic():
        unindex(db.obj.cursor(), json.dumps(call_ids))
        LLMCallEvent.delete().where(LLMCallEvent.call_id.in_(call_ids)).execute()
        LLMCallBody.delete().where(LLMCallBody.call_id.in_(call_ids)).execute()
        LLMCall.delete().where(LLMCall.call_id.in_(call_ids)).execute()


@pytest.mark.parametrize("mode", ["rowids kept", "walk"])
@pytest.mark.parametrize("process", ["the same process", "a new process"])
def test_retention_between_queries_keeps_the_term_exact_without_a_whole_lookup(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, process: str, mode: str
) -> None:
    if mode == "walk":  # no rowids kept: pages walk an index, totals test the filters' calls
        monkeypatch.setattr(search_matches, "KEEP_ROWIDS_UP_TO", 0)
    monkeypatch.setattr(search_matches, "BLOCK_BITS", 4)  # several blocks of rowids
    _calls(rows, 60, seed=1, days_ago=3)  # old: what retention deletes
    _calls(rows, 60, seed=2)
    before = _same_as_reference(monkeypatch)  # looked up whole, saved to the store, counts kept
    generation = _generation()

    assert prune(db.obj, older_than=1.0, now_ms=NOW_MS) > 0
    assert _generation() == generation  # the kept terms stay true: the deletes are logged instead
    assert len(_logged()) > 0
    if process == "a new process":
        search_matches.forget()  # nothing in memory: the store's row is read and the deletes taken out
    with _never_looked_up_whole(monkeypatch):
        after = _same_as_reference(monkeypatch)
    assert all(0 < total_after < total for total_after, total in zip(after, before, strict=True))


def test_a_deleted_match_with_a_filter_is_counted_again_and_a_deleted_non_match_is_not(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    _calls(rows, 40, seed=3)
    match = rows.call(prompt="weather to delete", status="failed", source="billing", duration_ms=400)
    other = rows.call(prompt="nothing here", status="failed", source="billing")
    rows.call(prompt="the newest weather")  # so the deleted calls are not the highest rowids
    first = _same_as_reference(monkeypatch)

    _delete([other])
    with _never_looked_up_whole(monkeypatch):
        assert _same_as_reference(monkeypatch) == first
    _delete([match])
    with _never_looked_up_whole(monkeypatch):
        assert _same_as_reference(monkeypatch) == [first[0] - 1, first[1] - 1, first[2] - 1, first[3]]


def test_a_rowid_given_again_after_the_newest_call_went_is_looked_at(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite gives a new row the highest rowid plus one: once the newest call is deleted, a new
    call may get its rowid, which the kept matches had looked at already."""
    _calls(rows, 30, seed=4)
    newest = rows.call(prompt="nothing to see")
    rowid_of = db.obj.execute_sql("SELECT rowid FROM llm_calls WHERE call_id = ?", (newest,)).fetchone()[0]
    first = _same_as_reference(monkeypatch)

    _delete([newest])
    again = rows.call(prompt="weather, new", status="failed", source="billing", duration_ms=5000)
    assert (
        db.obj.execute_sql("SELECT rowid FROM llm_calls WHERE call_id = ?", (again,)).fetchone()[0]
        == rowid_of
    )
    assert _same_as_reference(monkeypatch) == [total + 1 for total in first]


def test_calls_in_flight_that_go_leave_the_kept_matches(rows: Rows, monkeypatch: pytest.MonkeyPatch) -> None:
    _calls(rows, 30, seed=5)
    live = rows.call(prompt="weather in flight", status="running", duration_ms=None)
    unindex(db.obj.cursor(), json.dumps([live]))  # the writer indexes a call when it ends
    rows.call(prompt="the newest weather")
    first = _same_as_reference(monkeypatch)
    key = next(key for key in search_matches._cache if key[0] == db.obj.database and key[2] == "weather")
    live_rowid = db.obj.execute_sql("SELECT rowid FROM llm_calls WHERE call_id = ?", (live,)).fetchone()[0]
    assert live_rowid in search_matches._cache[key].pending

    _delete([live])
    with _never_looked_up_whole(monkeypatch):
        assert _same_as_reference(monkeypatch) == first
    assert live_rowid not in search_matches._cache[key].pending


def test_the_log_is_written_only_while_terms_are_kept_and_trimmed_once_they_read_it(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _calls(rows, 30, seed=6)
    generation = _generation()
    _delete(calls[:2])  # no term kept anywhere: nothing to log, the generation moves as before
    assert _logged() == [] and _generation() == generation + 2  # one step a call

    _same_as_reference(monkeypatch)  # the term kept in the store
    _delete(calls[2:5])
    assert len(_logged()) == 3 and _generation() == generation + 2
    monkeypatch.setattr(search_matches, "SAVE_AFTER", 1)  # saved again once it took out a delete
    _same_as_reference(monkeypatch)
    assert len(_logged()) == 1  # trimmed: every kept row took them out (the last entry stays)
    state = "SELECT deleted_before FROM llm_calls_search_state"
    assert db.obj.execute_sql(state).fetchone()[0] == max(
        row[0] for row in db.obj.execute_sql("SELECT seq FROM llm_calls_search_deleted")
    )

    # A process that kept the term from before the trim reads the store's row instead.
    stale = {key: kept for key, kept in search_matches._cache.items() if key[0] == db.obj.database}
    _delete(calls[5:7])
    _same_as_reference(monkeypatch)  # takes them out, saves, trims
    search_matches._cache.update(stale)
    read = []
    original = search_matches._read
    monkeypatch.setattr(search_matches, "_read", lambda *args: read.append(1) or original(*args))
    with _never_looked_up_whole(monkeypatch):
        _same_as_reference(monkeypatch)
    assert read  # the stale matches were not used


def test_past_the_log_s_limit_a_delete_moves_the_generation(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _calls(rows, 30, seed=7)
    first = _same_as_reference(monkeypatch)
    generation = _generation()
    # As if DELETES_LOGGED_UP_TO entries were logged since the last trim.
    db.obj.execute_sql("UPDATE llm_calls_search_state SET deleted_before = -1000000000")
    _delete(calls[:3])
    assert _logged() == [] and _generation() == generation + 3
    db.obj.execute_sql("UPDATE llm_calls_search_state SET deleted_before = 0")
    assert sum(_same_as_reference(monkeypatch)) <= sum(first)  # looked up whole, exact


def test_deleted_matches_cost_a_count_of_their_blocks_only(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count with other filters is kept per block of rowids: a delete counts its blocks again."""
    monkeypatch.setattr(search_matches, "BLOCK_BITS", 3)  # blocks of 8 rowids
    calls = _calls(rows, 80, seed=8)
    rows.call(prompt="the newest weather")
    first = _same_as_reference(monkeypatch)
    gone = calls[20:23]
    marks = ",".join("?" * len(gone))
    rowids = [
        row[0] for row in db.obj.execute_sql(f"SELECT rowid FROM llm_calls WHERE call_id IN ({marks})", gone)
    ]
    counted: list[list[int]] = []
    original = queries._counted_among
    monkeypatch.setattr(
        queries,
        "_counted_among",
        lambda others, among: counted.append(list(among)) or original(others, among),
    )

    _delete(gone)
    with _never_looked_up_whole(monkeypatch):
        after = _same_as_reference(monkeypatch)

    assert sum(after) < sum(first)
    blocks = {rowid >> 3 for rowid in rowids}
    assert counted and all(rowid >> 3 in blocks for among in counted for rowid in among)
