"""Short queries kept between list queries like longer terms (``exporter.search_matches``, SQLite):
1-2 CJK characters (found in the short-query index) and one other character (each call's text
checked, once). Pages and exact totals are those of the plain query and of a brute-force search of
the indexed text, as calls come, end and go."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from exporter import prune, search_matches
from exporter._sql import index, unindex
from exporter.models import LLMCall, db
from tests.exporter.conftest import NOW_MS, Rows, list_pages

PROMPTS = (
    "今天的天气预报",
    "天气不错",
    "别的事情",
    "Crème brûlée, 100%",
    "x_y plain ascii",
    "CRÈME again",
    "无关的话",
)
QUERIES = ("天气", "的", "天", "e", "%", "_", "è", "x")
FILTERS: list[dict[str, Any]] = [
    {},
    {"status": ["failed"]},
    {"source": "billing", "status": ["succeeded", "failed"]},
    {"min_duration_ms": 1000},
    {"sort": "duration"},
]


def _calls(rows: Rows, count: int, seed: int, *, days_ago: int = 0) -> list[str]:
    rng = random.Random(seed)
    return rows.each(
        [
            {
                "status": rng.choice(["succeeded", "succeeded", "failed", "running"]),
                "prompt": rng.choice(PROMPTS),
                "response": rng.choice(["好的", "OK", "çà"]),
                "source": rng.choice(["app", "billing"]),
                "enqueued_at": NOW_MS - days_ago * 86_400_000 - rng.randrange(0, 100) * 60_000,
                "duration_ms": rng.choice([400, 1000, 8000]),
            }
            for _ in range(count)
        ]
    )


def _brute_force(q: str) -> set[str]:
    """The calls whose indexed text (``llm_calls_text``) holds ``q``, in any case."""
    sql = (
        "SELECT c.call_id, coalesce(t.prompt, ''), coalesce(t.response, '') FROM llm_calls AS c "
        "JOIN llm_calls_text AS t ON t.id = c.rowid JOIN llm_calls_fts_docsize AS d ON d.id = c.rowid"
    )
    folded = q.casefold()
    return {
        call_id
        for call_id, prompt, response in db.obj.execute_sql(sql)
        if folded in prompt.casefold() or folded in response.casefold()
    }


def _reference(monkeypatch: pytest.MonkeyPatch, q: str, **filters: Any) -> tuple[list[str], set[int]]:
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "current", lambda database, term: None)
        return list_pages(q, 7, **filters)


def _same_as_reference(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    totals = {}
    for q in QUERIES:
        for filters in FILTERS:
            expected = _reference(monkeypatch, q, **filters)
            assert list_pages(q, 7, **filters) == expected, (q, filters)
        assert set(expected[0]) == _brute_force(q), q
        totals[q] = len(expected[0])
    return totals


def test_short_queries_are_kept_and_stay_exact_as_calls_come_end_and_go(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    _calls(rows, 40, seed=1, days_ago=3)
    _calls(rows, 60, seed=2)
    first = _same_as_reference(monkeypatch)
    assert all(first[q] > 0 for q in QUERIES if q != "_")

    looked_up = []
    original = search_matches._looked_up
    monkeypatch.setattr(search_matches, "_looked_up", lambda *args: looked_up.append(1) or original(*args))
    rows.each([{"prompt": "天气 e x", "status": "failed", "source": "billing", "duration_ms": 5000}])
    live = rows.call(prompt="天气 in flight", status="running", duration_ms=None)
    unindex(db.obj.cursor(), json.dumps([live]))  # the writer indexes a call when it ends
    assert _same_as_reference(monkeypatch)["天气"] == first["天气"] + 1  # not the call in flight yet
    LLMCall.update(status="failed", duration_ms=5000, ended_at=NOW_MS).where(
        LLMCall.call_id == live
    ).execute()
    index(db.obj.cursor(), json.dumps([live]))
    assert _same_as_reference(monkeypatch)["天气"] == first["天气"] + 2
    assert prune(db.obj, older_than=1.0, now_ms=NOW_MS) > 0  # retention: the deletes are taken out
    after = _same_as_reference(monkeypatch)
    assert after["的"] < first["的"]
    assert looked_up == []  # each term brought up to date, never looked up whole again


def test_one_character_is_found_in_the_indexed_text_only(rows: Rows, monkeypatch: pytest.MonkeyPatch) -> None:
    """As every other ``q``: a call in flight, not indexed yet, is not found by its preview."""
    live = rows.call(prompt="q in flight", status="running", duration_ms=None)
    unindex(db.obj.cursor(), json.dumps([live]))
    ended = rows.call(prompt="q ended")
    assert list_pages("q", 7)[0] == [ended] == _reference(monkeypatch, "q")[0]
