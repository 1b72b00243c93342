"""Queries of two characters that are not all CJK (``ab``, ``é1``, ``a退``), found through the trigram
index's vocabulary (``exporter.short_terms``, SQLite).

Every result is compared with a brute-force search of the same calls' text (the view
``llm_calls_text``, what the full-text indexes read), a character matching in either case; and the
pages read from the kept matches with those of the plain query, as calls are added, end and go.
"""

from __future__ import annotations

import json
from typing import Any

import peewee
import pytest

from exporter import prune, queries, search_matches
from exporter._sql import index, unindex
from exporter.cjk_grams import char_cases
from exporter.models import LLMCall, db
from tests.exporter.conftest import NOW_MS, Rows, list_pages
from tests.exporter.indexed_texts import indexed_texts

TEXTS = [  # (prompt, response)
    ("Tabs or spaces?", "Spaces, at a stretch."),
    ("ab", "AB"),  # whole columns of two characters: no trigram
    ("a", "b"),  # one character each: "ab" is in neither
    ("xa", "by"),  # "ab" across the prompt and the response is no match
    ("申请退款 a退", "é1 and É1, then e1"),
    ("Crème brûlée au CAFÉ", "très bien"),
    ("50% of a_b, [x]*", 'say "hi" \\ok'),
    ("\u212ab Kelvin", "\u017ft long s"),  # fold to "kb", "st" in the index, but are neither
    ("Iz and ız", "İx"),
    ("the quick brown fox", "jumps over the lazy dog"),
    ("No match here", ""),
    ("x", "y"),
]
PAIRS = [
    *(
        "ab",
        "AB",
        "aB",
        "ta",
        "s?",
        "e1",
        "é1",
        "É1",
        "a退",
        "退款",
        "fé",
        "ca",
        "Ca",
        "ée",
        "0%",
        "_b",
        "[x",
    ),
    *("]*", '"h', "\\o", "kb", "st", "Ke", "ız", "Iz", "iz", "İx", "ix", "zz", "s,", "qu", "og"),
]


def _holds(text: str, q: str) -> bool:
    """``q`` in ``text``, each character of ``q`` in any of its cases (as LIKE and GLOB compare)."""
    return any(
        all(text[start + i] in char_cases(char) for i, char in enumerate(q))
        for start in range(len(text) - len(q) + 1)
    )


def _brute_force(database: peewee.Database, q: str, statuses: tuple[str, ...] = ()) -> set[str]:
    q = q.strip()  # as list_calls takes it
    return {
        call_id
        for call_id, (status, prompt, response) in indexed_texts(database).items()
        if (_holds(prompt, q) or _holds(response, q)) and (not statuses or status in statuses)
    }


def _found(**filters: Any) -> set[str]:
    result = queries.list_calls(page_size=200, **filters)
    assert result["total"] == len(result["items"])
    return {item["call_id"] for item in result["items"]}


def _write(rows: Rows, times: int = 1) -> list[str]:
    statuses = ["succeeded", "failed", "cancelled"]
    return rows.each(
        [
            {
                "prompt": p,
                "response": r,
                "status": statuses[(i + n) % 3],
                "source": ["app", "billing"][(i + n) % 2],
            }
            for n in range(times)
            for i, (p, r) in enumerate(TEXTS)
        ]
    )


def _assert_exact(database: peewee.Database) -> None:
    checked_up_to = queries._PAIR_CHECKED_UP_TO
    try:
        # The whole rowid range looked up in the index's vocabulary, then checked call by call.
        for queries._PAIR_CHECKED_UP_TO in (0, 10**9):
            for q in PAIRS:
                expected = _brute_force(database, q)
                search_matches.forget(database)
                assert _found(q=q) == expected, q  # a first query (looked up whole)
                search_matches.forget()
                assert _found(q=q) == expected, q  # a process's first (what the store keeps)
                assert _found(q=q, status=["failed"]) == _brute_force(database, q, ("failed",)), q
                assert queries.call_facets(q=q)["total"] == len(expected), q  # the plain query
                assert {call["call_id"] for call in queries.iter_calls(q=q)} == expected, q
    finally:
        queries._PAIR_CHECKED_UP_TO = checked_up_to


def test_two_characters_find_exactly_the_calls_whose_text_holds_them(
    store: peewee.Database, rows: Rows
) -> None:
    ids = _write(rows)

    _assert_exact(store)
    assert _found(q="ab") == {ids[0], ids[1]}  # "Tabs", the columns of two characters; not "xa" + "by"
    assert _found(q="kb") == set()  # the index folds the Kelvin sign to k
    assert ids[7] not in _found(q="st")  # and the long s to s
    assert _found(q="ızz") == set() and _found(q="ız") == {ids[8]}
    assert _found(q="ta") == _found(q="TA") != set()


def test_the_matches_of_a_pair_stay_exact_as_calls_come_end_and_go(
    store: peewee.Database, rows: Rows
) -> None:
    first = _write(rows, times=3)
    rows.each([{"prompt": "a tab", "status": "running", "duration_ms": None}])  # stays
    _assert_exact(store)

    rows.each([{"prompt": "a new tab", "response": "ok"}, {"prompt": "nothing", "response": "ab"}])
    live = rows.call(prompt="tab in flight", status="running", duration_ms=None)
    unindex(db.obj.cursor(), json.dumps([live]))  # the writer indexes a call when it ends
    _assert_exact(store)
    assert live not in _found(q="ab")

    LLMCall.update(status="succeeded", duration_ms=10, ended_at=NOW_MS).where(
        LLMCall.call_id == live
    ).execute()
    index(db.obj.cursor(), json.dumps([live]))
    _assert_exact(store)
    assert live in _found(q="ab")

    assert prune(store, older_than=0.0) > 0  # retention: the ended calls go, those in flight stay
    _assert_exact(store)
    assert _found(q="ab") == _brute_force(store, "ab") != set() and not set(first) & _found(q="ab")


@pytest.mark.parametrize(
    "filters",
    [{}, {"status": ["failed"]}, {"source": "billing"}, {"sort": "duration"}, {"min_duration_ms": 1}],
    ids=lambda filters: ",".join(filters) or "none",
)
@pytest.mark.parametrize("q", ["ab", "e1", "a退", "ta"])
def test_pages_of_a_pair_are_those_of_the_plain_query(
    rows: Rows, monkeypatch: pytest.MonkeyPatch, q: str, filters: dict[str, Any]
) -> None:
    _write(rows, times=4)
    with monkeypatch.context() as patched:
        patched.setattr(search_matches, "current", lambda database, term: None)
        expected = list_pages(q, 3, **filters)
    # Each range looked up in the vocabulary (the short columns' calls kept by rowid, or not), or
    # checked call by call.
    for checked_up_to, kept_rowids in ((0, 50_000), (0, 0), (10**9, 50_000)):
        monkeypatch.setattr(queries, "_PAIR_CHECKED_UP_TO", checked_up_to)
        monkeypatch.setattr(search_matches, "KEEP_ROWIDS_UP_TO", kept_rowids)
        search_matches.forget()
        assert list_pages(q, 3, **filters) == list_pages(q, 3, **filters) == expected
    assert len(expected[1]) == 1 and expected[1] == {len(expected[0])} and expected[0]
