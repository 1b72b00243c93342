"""Queries of 1-2 CJK characters, served by the short-query index ``llm_calls_cjk`` (SQLite; one
other character: test_search_chars).

Every result is compared with a brute-force substring search of the same calls' text (the view
``llm_calls_text``, the text the full-text indexes read), after writes, retention and a migration.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
from typing import Any

import peewee
import pytest

from exporter import migrate, migrations, open_database, prune, queries
from exporter._sql import index, unindex
from exporter.cjk_grams import cjk_grams, is_cjk_query, short_tokens
from exporter.migrations import CJK_TABLE, LATEST_VERSION, MIGRATIONS, schema_version
from exporter.models import db
from tests.exporter.conftest import NOW_MS, Rows
from tests.exporter.indexed_texts import indexed_texts, write_texts

OLD = NOW_MS - 30 * 86_400_000
_SET_INPUT = "UPDATE llm_call_bodies SET input_messages = ? WHERE call_id = ?"

TEXTS = [  # (prompt, response): Simplified, Traditional, kana, Hangul, mixed with ASCII, run edges
    ("申请退款", "好的，退款已处理。"),
    ("申請退款", "退款申請已受理"),  # Traditional
    ("退", "款"),  # one character each: the pair is not in either text
    ("abc退款def", "Refund OK"),  # a run between ASCII letters
    ("天气123预报", "明天天气晴"),  # digits end a run: 气1 is no pair
    ("今日は天気がいい", "そうですね"),  # kana and kanji
    ("오늘 날씨", "맑음"),  # Hangul
    ("The weather in 北京 is nice", "北京天气"),
    ('他说"退款"了', "quote\\n退\n款"),  # JSON-escaped: quotes, a backslash, a newline between two
    ("𠀀𠀁 rare", "ext B"),  # outside the BMP
    ("No Chinese here at all", "None either"),
    ("Crème brûlée — “quoted”", "ça va, 、。"),  # not ASCII, no CJK character
]


def _brute_force(database: peewee.Database, q: str, statuses: tuple[str, ...] = ()) -> set[str]:
    return {
        call_id
        for call_id, (status, prompt, response) in indexed_texts(database).items()
        if (q in prompt or q in response) and (not statuses or status in statuses)
    }


def _indexed(database: peewee.Database, q: str) -> set[str]:
    """The calls the short-query index alone finds for ``q``."""
    sql = (
        f"SELECT c.call_id FROM {CJK_TABLE} AS f JOIN llm_calls AS c ON c.rowid = f.rowid "
        f"WHERE {CJK_TABLE} MATCH ?"
    )
    return {row[0] for row in database.execute_sql(sql, (f'"{q}"',))}


def _found(**filters: Any) -> set[str]:
    result = queries.list_calls(page_size=200, **filters)
    assert result["total"] == len(result["items"])
    return {item["call_id"] for item in result["items"]}


def _queries(database: peewee.Database) -> list[str]:
    """Every CJK character and CJK pair of the calls' text, and a few found nowhere."""
    found = {gram for _, p, r in indexed_texts(database).values() for gram in cjk_grams(p, r).split()}
    return sorted(found | {"龘", "退雨", "款申", "天预"})


def _assert_exact(database: peewee.Database) -> None:
    for q in _queries(database):
        expected = _brute_force(database, q)
        assert _indexed(database, q) == expected, q
        assert _found(q=q) == expected, q
        assert _found(q=q, status=["failed"]) == _brute_force(database, q, ("failed",)), q
        assert queries.list_calls(q=q, source="billing")["total"] == len(
            {call_id for call_id in expected if call_id in _billing(database)}
        ), q


def _billing(database: peewee.Database) -> set[str]:
    return {row[0] for row in database.execute_sql("SELECT call_id FROM llm_calls WHERE source = 'billing'")}


def test_one_or_two_cjk_characters_find_exactly_the_calls_holding_them(
    store: peewee.Database, rows: Rows
) -> None:
    write_texts(rows, TEXTS)

    _assert_exact(store)
    holding = sum(1 for p, r in TEXTS if short_tokens(p, r))  # every call with text
    assert store.execute_sql(f"SELECT COUNT(*) FROM {CJK_TABLE}_docsize").fetchone()[0] == holding
    assert _found(q="退款") == _brute_force(store, "退款") != set()
    assert len(_brute_force(store, "退")) > len(_brute_force(store, "退款"))
    for mixed in ("气1", "3预", "c退", "京 "):  # not all CJK: through the trigram index (test_search_pairs)
        assert _found(q=mixed) == _brute_force(store, mixed.strip()) != set(), mixed


def test_the_index_holds_cjk_characters_and_pairs_side_by_side() -> None:
    grams = cjk_grams("abc退款def", "天气123预报").split()
    assert sorted(grams) == sorted(["退", "款", "退款", "天", "气", "天气", "预", "报", "预报"])  # distinct
    assert cjk_grams("退\n款", None) in ("退 款", "款 退")  # a newline ends a run
    assert cjk_grams("No CJK", "") == ""
    tokens = short_tokens("abc退款def", "天气123预报").split()  # and a token per other character
    assert sorted(tokens) == sorted([*grams, *(f"x{ord(char):x}" for char in "abcdef123")])
    assert set(short_tokens("No CJK", "").split()) == set(short_tokens("CJK No", None).split())
    assert [is_cjk_query(q) for q in ("退", "退款", "退款了", "a退", "𠀀", "", "é")] == [
        True,
        True,
        False,
        False,
        True,
        False,
        False,
    ]


def test_a_body_spelled_with_json_escapes_is_indexed_by_its_text(store: peewee.Database, rows: Rows) -> None:
    """A recorder's ``\\uXXXX`` escapes: the index reads the decoded text, not the JSON spelling."""
    call_id = rows.call(prompt="普通", response="ok")
    ids = json.dumps([call_id])
    escaped = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "要求退款"}]}])
    assert "\\u" in escaped
    with store.atomic():
        unindex(store.cursor(), ids)  # before the body changes (the FTS contract)
        store.execute_sql(_SET_INPUT, (escaped, call_id))
        index(store.cursor(), ids)

    assert _found(q="退款") == {call_id}
    assert _found(q="普通") == set()
    store.execute_sql(f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}) VALUES ('integrity-check')")


def test_retention_removes_the_tokens_of_the_calls_it_deletes(store: peewee.Database, rows: Rows) -> None:
    old = write_texts(rows, TEXTS, enqueued_at=OLD)
    recent = write_texts(rows, TEXTS)
    with_cjk = store.execute_sql(f"SELECT COUNT(*) FROM {CJK_TABLE}_docsize").fetchone()[0]

    assert prune(store, older_than=datetime.timedelta(days=7), now_ms=NOW_MS) == len(old)

    assert set(indexed_texts(store)) == set(recent)
    _assert_exact(store)
    assert store.execute_sql(f"SELECT COUNT(*) FROM {CJK_TABLE}_docsize").fetchone()[0] == with_cjk // 2
    store.execute_sql(f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}) VALUES ('integrity-check')")


def test_retention_with_a_database_opened_without_the_function(tmp_path, rows: Rows) -> None:
    """``prune`` given a peewee database that ``open_database`` did not make still removes tokens."""
    write_texts(rows, TEXTS, enqueued_at=OLD)
    recent = write_texts(rows, TEXTS)
    plain = peewee.SqliteDatabase(str(tmp_path / "store.db"))

    assert prune(plain, older_than=7, now_ms=NOW_MS) == len(TEXTS)

    plain.close()
    assert set(indexed_texts(db.obj)) == set(recent)
    _assert_exact(db.obj)


def _store_before_the_short_query_index(path: str) -> peewee.Database:
    """A store as the migrations before the short-query index's left it."""
    database = open_database(path)
    for number, step in enumerate(MIGRATIONS[: MIGRATIONS.index(migrations._cjk_index)], start=1):
        with database.atomic():
            step(database)
            database.execute_sql(f"INSERT INTO llm_otel_schema (version, applied_at) VALUES ({number}, 0)")
    return database


def test_the_migration_indexes_the_calls_of_an_older_store(tmp_path) -> None:
    database = _store_before_the_short_query_index(str(tmp_path / "old.db"))
    db.initialize(database)
    write_texts(Rows(database), TEXTS)
    assert CJK_TABLE not in database.get_tables()

    assert migrate(database) == LATEST_VERSION
    assert schema_version(database) == LATEST_VERSION

    _assert_exact(database)
    holding = sum(1 for p, r in TEXTS if short_tokens(p, r))  # every call with text
    assert database.execute_sql(f"SELECT COUNT(*) FROM {CJK_TABLE}_docsize").fetchone()[0] == holding
    database.close()


def test_a_connection_without_the_function_reads_inserts_and_deletes_calls(
    tmp_path, store: peewee.Database, rows: Rows
) -> None:
    """The sqlite3 CLI or a plain ``sqlite3.connect``: the schema never calls the function."""
    kept = write_texts(rows, TEXTS)
    path = str(tmp_path / "store.db")
    plain = sqlite3.connect(path)
    try:
        match = f"SELECT count(*) FROM {CJK_TABLE} WHERE {CJK_TABLE} MATCH '\"退款\"'"
        assert plain.execute(match).fetchone()[0] == len(_brute_force(store, "退款"))
        assert plain.execute(f"SELECT * FROM {CJK_TABLE} LIMIT 1").fetchall() == [(None,)]  # contentless
        with plain:
            plain.execute(
                "INSERT INTO llm_calls (call_id, status, stream, enqueued_at, retry_count, updated_at) "
                "VALUES ('from-plain', 'succeeded', 0, 1, 0, 1)"
            )
            plain.execute(
                "INSERT INTO llm_call_bodies (rowid, call_id, input_messages) "
                "SELECT rowid, call_id, '[]' FROM llm_calls WHERE call_id = 'from-plain'"
            )
    finally:
        plain.close()
    script = (
        "INSERT INTO llm_calls (call_id, status, stream, enqueued_at, retry_count, updated_at) "
        "VALUES ('from-cli', 'failed', 0, 2, 0, 2);\n"
        "DELETE FROM llm_call_bodies WHERE call_id IN ('from-plain', 'from-cli');\n"
        "DELETE FROM llm_calls WHERE call_id IN ('from-plain', 'from-cli');\n"
        f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}) VALUES ('integrity-check');\n"
        f"{match.replace('退款', '天气')};\n"
        ".dump\n"
    )
    cli = subprocess.run(["sqlite3", path], input=script, capture_output=True, text=True, check=True)

    assert cli.stderr == ""
    assert cli.stdout.splitlines()[0] == str(len(_brute_force(store, "天气")))
    assert set(indexed_texts(store)) == set(kept)
    _assert_exact(store)


def test_the_writer_indexes_an_ended_call_once_and_again_when_it_is_written_twice(
    store: peewee.Database, rows: Rows
) -> None:
    """An ended span written twice: its old tokens are removed before the body changes."""
    call_id = rows.call(prompt="旧的问题", response="旧的回答")
    ids = json.dumps([call_id])
    new_input = json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "新的问题"}]}], ensure_ascii=False
    )
    with store.atomic():
        unindex(store.cursor(), ids)
        store.execute_sql(_SET_INPUT, (new_input, call_id))
        index(store.cursor(), ids)
        index(store.cursor(), ids)  # already indexed: skipped

    assert _found(q="新的") == {call_id}
    assert _found(q="旧") == {call_id}  # the answer still holds it
    assert _found(q="旧的") == {call_id}
    assert _found(q="问") == {call_id}
    assert _found(q="旧问") == set()
    store.execute_sql(f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}) VALUES ('integrity-check')")


@pytest.mark.parametrize("q", ["退", "退款"])
def test_a_short_cjk_query_with_many_matches_pages_in_list_order(rows: Rows, q: str) -> None:
    ids = rows.calls(2100, prompt="我要退款", response="好")  # past the read-and-sort limit
    rows.calls(30, prompt="nothing", response="here")

    first = queries.list_calls(q=q, page=1, page_size=50)
    second = queries.list_calls(q=q, page=2, page_size=50, status=["succeeded"])

    assert first["total"] == second["total"] == len(ids)
    assert [item["call_id"] for item in first["items"]] == ids[::-1][:50]
    assert [item["call_id"] for item in second["items"]] == ids[::-1][50:100]
