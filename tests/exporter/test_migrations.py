"""The schema the migrations make, on SQLite and PostgreSQL: what ``exporter.models`` declares, and
migration 3 (the admin API's indexes) over a store written by migrations 1 and 2."""

from __future__ import annotations

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
