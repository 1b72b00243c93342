"""Queries of one character that is not CJK (``y``, ``É``, ``?``, ``Ж``), served by the short-query
index ``llm_calls_cjk`` since migration 16: a token per distinct character of a call's text (SQLite).

Every result is compared with a brute-force search of the same calls' text (the view
``llm_calls_text``, what the full-text indexes read), the character matching in any of its cases
as LIKE and GLOB compare them, and with the scan of each call's text that served these queries
before; after writes, retention and the migration of a store written before it.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from typing import Any

import peewee
import pytest

from exporter import migrate, migrations, open_database, prune, queries, search_matches
from exporter._sql import index, unindex
from exporter.cjk_grams import char_cases, cjk_grams, is_char_query
from exporter.migrations import CJK_TABLE, LATEST_VERSION, MIGRATIONS, schema_version
from exporter.models import db
from tests.exporter.conftest import NOW_MS, Rows, list_pages
from tests.exporter.indexed_texts import indexed_texts, write_texts

OLD = NOW_MS - 30 * 86_400_000
_SET_INPUT = "UPDATE llm_call_bodies SET input_messages = ? WHERE call_id = ?"

TEXTS = [  # (prompt, response)
    ("Why? Because.", "yes"),
    ("WHY NOT", "ok"),
    ("version 4.2", "answer: 42%"),
    ("Crème brûlée", "ÇA VA"),
    ("CRÈME", "ça"),
    ("Привет, мир", "ЖУК"),
    ("жук", "Ωμέγα and ω"),
    ("ΣΟΦΙΑ", "σοφία, ς"),
    ("ıI dotless", "\u017fS long s"),  # ı and ſ: their cases hold I and S, not i and s
    ("\u212a sign", "none"),  # the Kelvin sign: its cases are itself and k, not K
    ("İstanbul", "i"),
    ("a_b [x]*", 'say "hi" \\ok'),
    ("tab\there", "line\u2028sep\u00a0nbsp\u3000ideo"),  # spaces are no tokens (a q is stripped)
    ("退款 申请", "好的。、"),  # CJK punctuation is not CJK here: a character of its own
    ("emoji 🙂 and 𝔸", "—“”…"),
    ("no match", ""),
    ("", "z"),
]
ABSENT = ("Q", "€", "Ж", "ф", "ϴ", "\U0001f600", "#")


def _brute_force(database: peewee.Database, q: str, statuses: tuple[str, ...] = ()) -> set[str]:
    cases = char_cases(q)
    return {
        call_id
        for call_id, (status, prompt, response) in indexed_texts(database).items()
        if any(case in prompt or case in response for case in cases) and (not statuses or status in statuses)
    }


def _scanned(database: peewee.Database, q: str) -> set[str]:
    """What the scan of each indexed call's text found for ``q`` before migration 16."""
    sql, params = queries._checked_calls(q)
    rowids = [row[0] for row in database.execute_sql(sql, (*params, 0, 2**62))]
    found = database.execute_sql(
        "SELECT call_id FROM llm_calls WHERE rowid IN (SELECT value FROM json_each(?))", (json.dumps(rowids),)
    )
    return {row[0] for row in found}


def _queries(database: peewee.Database) -> list[str]:
    """Every character of the calls' text that is a one-character query, its cases, and some absent."""
    chars = {char for _, p, r in indexed_texts(database).values() for char in p + r}
    chars |= {case for char in chars for case in char_cases(char)}
    return sorted({char for char in chars | set(ABSENT) if is_char_query(char)})


def _found(**filters: Any) -> set[str]:
    result = queries.list_calls(page_size=200, **filters)
    assert result["total"] == len(result["items"])
    return {item["call_id"] for item in result["items"]}


def _assert_exact(database: peewee.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    for q in _queries(database):
        expected = _brute_force(database, q)
        assert _scanned(database, q) == expected, q
        assert _found(q=q) == expected, q
        assert _found(q=q, status=["failed"]) == _brute_force(database, q, ("failed",)), q
        with monkeypatch.context() as patched:  # the plain query, nothing kept
            patched.setattr(search_matches, "current", lambda database, term: None)
            assert _found(q=q) == expected, q
            assert set(list_pages(q, 3)[0]) == expected, q


def _assert_tokens_exact(database: peewee.Database) -> None:
    """The index holds each token for exactly the calls holding it (no stale row, nor a token of an
    earlier tokenization): a character's for the calls holding it, a CJK gram's likewise."""
    database.execute_sql(f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}) VALUES ('integrity-check')")
    database.execute_sql(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.cjk_rows USING fts5vocab(main, '{CJK_TABLE}', 'row')"
    )
    counted = dict(database.execute_sql("SELECT term, doc FROM temp.cjk_rows").fetchall())
    expected: Counter[str] = Counter()
    for _, prompt, response in indexed_texts(database).values():
        chars = {f"x{ord(char):x}" for char in prompt + response if is_char_query(char)}
        expected.update(chars | set(cjk_grams(prompt, response).split()))
    assert {term: doc for term, doc in counted.items() if doc} == expected


def test_one_character_finds_exactly_the_calls_whose_text_holds_it_in_any_case(
    store: peewee.Database, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = write_texts(rows, TEXTS)

    _assert_exact(store, monkeypatch)
    _assert_tokens_exact(store)
    assert _found(q="y") == set(ids)  # every call's system instruction: "You are terse."
    assert _found(q="b") == _found(q="B") == {ids[0], ids[3], ids[10], ids[11], ids[12]}
    assert _found(q="é") == _found(q="É") == {ids[3]}  # brûlée (not έ)
    assert _found(q="è") == _found(q="È") == {ids[3], ids[4]}
    assert _found(q="?") == {ids[0]}
    assert _found(q="4") == {ids[2]}
    assert _found(q="ж") == _found(q="Ж") == {ids[5], ids[6]}
    assert _found(q="σ") == _found(q="Σ") == _found(q="ς") == {ids[7]}
    assert _found(q="ı") == _found(q="\u017f") == {ids[8]}  # its I, its S: not every i or s
    assert ids[8] in _found(q="i") and ids[8] not in _found(q="İ") == {ids[10]}
    assert _found(q="K") == _found(q="k") == {ids[1], ids[11]}  # the Kelvin sign is neither
    assert _found(q="\u212a") == {ids[9], ids[1], ids[11]}  # the sign itself, or k
    assert _found(q="。") == {ids[13]}  # not CJK: a token of its own
    assert _found(q="🙂") == _found(q="𝔸") == {ids[14]}
    assert _found(q="z") == {ids[16]}
    assert _found(q=" \u00a0 ") == _found() == set(ids)  # a space is stripped: no q at all


def test_a_body_spelled_with_json_escapes_is_found_by_its_characters(
    store: peewee.Database, rows: Rows
) -> None:
    """A recorder's ``\\uXXXX`` escapes: the index reads the decoded text (the scan looked for the
    character in the JSON first, and missed it)."""
    call_id = rows.call(prompt="plain", response="ok")
    ids = json.dumps([call_id])
    escaped = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Crème ЖУК"}]}])
    assert "\\u" in escaped
    with store.atomic():
        unindex(store.cursor(), ids)  # before the body changes (the FTS contract)
        store.execute_sql(_SET_INPUT, (escaped, call_id))
        index(store.cursor(), ids)

    assert _found(q="è") == _found(q="È") == _found(q="ж") == {call_id}
    assert _found(q="p") == set()  # "plain" is gone; "ok" holds no p
    _assert_tokens_exact(store)


def test_retention_removes_the_tokens_of_the_calls_it_deletes(
    store: peewee.Database, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write_texts(rows, TEXTS, enqueued_at=OLD)
    recent = write_texts(rows, TEXTS)
    _assert_exact(store, monkeypatch)  # kept: retention takes the deleted calls out of them

    assert prune(store, older_than=datetime.timedelta(days=7), now_ms=NOW_MS) == len(old)

    assert set(indexed_texts(store)) == set(recent)
    _assert_exact(store, monkeypatch)
    _assert_tokens_exact(store)
    with_text = sum(1 for p, r in TEXTS if (p + r).strip())
    assert store.execute_sql(f"SELECT COUNT(*) FROM {CJK_TABLE}_docsize").fetchone()[0] == with_text


def _store_at_15(path: str) -> peewee.Database:
    """A store as migrations 1-15 left it, its short-query index as their writers filled it (the
    CJK grams of the calls holding CJK text, migration 7's statement)."""
    database = open_database(path)
    for number, step in enumerate(MIGRATIONS[:15], start=1):
        with database.atomic():
            step(database)
            database.execute_sql(f"INSERT INTO llm_otel_schema (version, applied_at) VALUES ({number}, 0)")
    return database


def _as_written_at_15(database: peewee.Database) -> None:
    database.execute_sql(f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}) VALUES ('delete-all')")
    rows = f"{migrations.FTS_TABLE}_docsize AS d JOIN llm_call_bodies AS b ON b.rowid = d.id"
    database.execute_sql(migrations._cjk_rows(rows, "1"))


def test_a_store_migrated_from_15_answers_as_a_new_one(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = open_database(str(tmp_path / "fresh.db"))
    migrate(fresh)
    db.initialize(fresh)
    fresh_rows = Rows(fresh)
    write_texts(fresh_rows, TEXTS, enqueued_at=OLD)
    write_texts(fresh_rows, TEXTS)
    answers = {q: _found(q=q) for q in _queries(fresh)}
    cjk = {q: _found(q=q) for q in ("退", "退款", "好的")}

    database = _store_at_15(str(tmp_path / "old.db"))
    db.initialize(database)
    old_rows = Rows(database)
    write_texts(old_rows, TEXTS, enqueued_at=OLD)
    write_texts(old_rows, TEXTS)
    _as_written_at_15(database)
    before = database.execute_sql(f"SELECT COUNT(*) FROM {CJK_TABLE}_docsize").fetchone()[0]
    assert before == 2 * sum(1 for p, r in TEXTS if cjk_grams(p, r))  # the calls with CJK text alone

    assert migrate(database) == LATEST_VERSION
    assert schema_version(database) == LATEST_VERSION

    assert {q: _found(q=q) for q in _queries(database)} == answers
    assert {q: _found(q=q) for q in ("退", "退款", "好的")} == cjk
    assert all(answers[q] for q in ("y", "É", "ж", "?"))
    _assert_exact(database, monkeypatch)
    _assert_tokens_exact(database)
    config = f"SELECT v FROM {CJK_TABLE}_config WHERE k = 'crisismerge'"
    assert database.execute_sql(config).fetchone()[0] == migrations.FTS_CRISIS_MERGE  # kept by 'delete-all'
    assert prune(database, older_than=datetime.timedelta(days=7), now_ms=NOW_MS) == len(TEXTS)
    _assert_exact(database, monkeypatch)
    _assert_tokens_exact(database)
    database.close()
    fresh.close()
