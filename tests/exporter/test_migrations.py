"""The schema the migrations make, on SQLite and PostgreSQL: what ``exporter.models`` declares, and
migration 3 (the admin API's indexes) over a store written by migrations 1 and 2."""

from __future__ import annotations

import json

import peewee
import pytest

from exporter import migrate, open_database, queries
from exporter.database import immediate, is_sqlite
from exporter.migrations import LATEST_VERSION, MIGRATIONS, schema_version
from exporter.models import LLMCall, LLMTask, db
from tests.exporter.conftest import Rows


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path) -> peewee.Database:
    """An empty database on each engine, not yet migrated."""
    url = str(tmp_path / "store.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = open_database(url)
    yield database
    database.close()


def _indexes(database: peewee.Database, table: str) -> dict[str, list[str]]:
    """Index name → its columns, primary keys left out."""
    return {
        index.name: index.columns
        for index in database.get_indexes(table)
        if not index.name.startswith("sqlite_autoindex") and not index.name.endswith("_pkey")
    }


def _declared(model: type[peewee.Model]) -> dict[str, list[str]]:
    return {
        index._name: [field.name for field in index._expressions] for index in model._meta.fields_to_index()
    }


def test_the_migrated_schema_has_the_indexes_the_models_declare(new_database: peewee.Database) -> None:
    assert migrate(new_database) == LATEST_VERSION

    for model in (LLMCall, LLMTask):
        assert _indexes(new_database, model._meta.table_name) == _declared(model)
    assert _declared(LLMCall)["llm_calls_error_type_status_enqueued_at"] == [
        "error_type",
        "status",
        "enqueued_at",
        "wait_ms",
        "first_token_ms",
        "duration_ms",
        "model",
        "source",
        "requested_by",
    ]


def test_postgresql_timing_indexes_are_in_the_order_of_the_list(postgres_url: str) -> None:
    database = open_database(postgres_url)
    migrate(database)

    definition = database.execute_sql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'llm_calls_status_duration_ms'"
    ).fetchone()[0]

    assert "(status, duration_ms DESC NULLS LAST, enqueued_at DESC)" in definition
    database.close()


def test_migration_3_keeps_the_rows_of_a_version_2_store(new_database: peewee.Database) -> None:
    for number, step in enumerate(MIGRATIONS[:2], start=1):
        with immediate(new_database):
            step(new_database)
            new_database.execute_sql(
                f"INSERT INTO llm_otel_schema (version, applied_at) VALUES ({number}, 0)"
            )
    db.initialize(new_database)
    rows = Rows(new_database)
    failed = rows.each([{"status": "failed", "source": "billing", "error_type": "APITimeoutError"}])
    rows.calls(3, source="billing", duration_ms=5000)
    rows.task(task_id="t1", status="failed")
    assert schema_version(new_database) == 2

    assert migrate(new_database) == LATEST_VERSION

    assert _indexes(new_database, "llm_calls") == _declared(LLMCall)
    assert queries.list_calls(error_type="APITimeoutError")["items"][0]["call_id"] == failed[0]
    assert queries.list_calls(source="billing", min_duration_ms=2000)["total"] == 3
    assert queries.list_tasks(status=["failed"])["total"] == 1
    if is_sqlite(new_database):  # the planner has statistics for the new indexes
        analyzed = new_database.execute_sql("SELECT idx FROM sqlite_stat1 WHERE tbl = 'llm_calls'").fetchall()
        assert ("llm_calls_error_type_status_enqueued_at",) in analyzed


def test_migration_4_indexes_the_ended_calls_of_a_version_3_store_from_their_bodies(tmp_path) -> None:
    database = open_database(str(tmp_path / "store.db"))
    for number, step in enumerate(MIGRATIONS[:3], start=1):
        with immediate(database):
            step(database)
            database.execute_sql(f"INSERT INTO llm_otel_schema (version, applied_at) VALUES ({number}, 0)")
    db.initialize(database)
    rows = Rows(database)
    ended = rows.call(prompt="季度销售报告 with the quokka", response="A small marsupial.")
    rows.call(prompt="a running quokka", response="", status="running")
    assert schema_version(database) == 3

    assert migrate(database) == LATEST_VERSION

    tables = {name for (name,) in database.execute_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "llm_calls_fts_content" not in tables  # the text lives in the bodies only
    assert database.execute_sql(  # one rowid names a call and its body
        "SELECT count(*) FROM llm_call_bodies AS b JOIN llm_calls AS c ON c.call_id = b.call_id "
        "WHERE b.rowid = c.rowid"
    ).fetchone() == (2,)
    assert [item["call_id"] for item in queries.list_calls(q="quokka")["items"]] == [ended]
    assert queries.list_calls(q="销售报告")["total"] == 1
    database.execute_sql("INSERT INTO llm_calls_fts (llm_calls_fts) VALUES ('integrity-check')")
    database.close()


def test_the_full_text_index_reads_the_text_parts_of_the_bodies(tmp_path) -> None:
    """``llm_calls_text``: prompt = system instructions and input text parts, response = output text
    parts, one part a line, in order; other parts, and JSON that is not a list, hold no text."""
    database = open_database(str(tmp_path / "store.db"))
    migrate(database)
    system = [{"type": "text", "content": "Be brief."}, {"type": "text", "content": ""}]
    inputs = [
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}, {"type": "image", "content": "x"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": {"content": "no"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "response": {"content": "no"}}]},
        {"role": "user", "parts": [{"type": "text", "content": "天气\nnext line"}]},
    ]
    outputs = [{"role": "assistant", "parts": [{"type": "text", "content": "Done."}]}]
    bodies = {
        "full": (json.dumps(system), json.dumps(inputs, ensure_ascii=False), json.dumps(outputs)),
        "odd": ("not json", json.dumps({"parts": [{"type": "text", "content": "no"}]}), None),
    }
    for call_id, (system_json, input_json, output_json) in bodies.items():
        database.execute_sql(
            "INSERT INTO llm_calls (call_id, status, stream, enqueued_at, retry_count, updated_at) "
            "VALUES (?, 'succeeded', 0, 0, 0, 0)",
            (call_id,),
        )
        database.execute_sql(
            "INSERT INTO llm_call_bodies (rowid, call_id, system_instructions, input_messages, "
            "output_messages) VALUES ((SELECT rowid FROM llm_calls WHERE call_id = ?1), ?1, ?2, ?3, ?4)",
            (call_id, system_json, input_json, output_json),
        )

    texts = database.execute_sql(
        "SELECT c.call_id, t.prompt, t.response FROM llm_calls_text AS t "
        "JOIN llm_calls AS c ON c.rowid = t.id ORDER BY c.call_id"  # one rowid names the call in both
    ).fetchall()

    assert texts == [("full", "Be brief.\nHi\n天气\nnext line", "Done."), ("odd", None, None)]
    database.close()


def test_the_full_text_index_merges_a_level_at_once_only_past_64_segments(tmp_path) -> None:
    database = open_database(str(tmp_path / "store.db"))
    migrate(database)

    config = dict(database.execute_sql("SELECT k, v FROM llm_calls_fts_config").fetchall())

    assert config["crisismerge"] == 64
    database.close()
