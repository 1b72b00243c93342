"""Opening a store (exporter.database) and migrating it (exporter.migrations), on real SQLite files."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import threading
from pathlib import Path

import peewee
import pytest

from exporter import StoreConfigurationError, StoreDatabaseError, migrate, open_database
from exporter.database import check_url, immediate
from exporter.migrations import LATEST_VERSION, MIGRATIONS, schema_version
from exporter.models import ALL_MODELS


def _pragma(database: peewee.Database, name: str) -> object:
    return database.execute_sql(f"PRAGMA {name}").fetchone()[0]


def test_sqlite_pragmas_are_set_on_a_new_file(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(database)

    assert _pragma(database, "journal_mode") == "wal"
    assert _pragma(database, "auto_vacuum") == 2  # incremental
    assert _pragma(database, "synchronous") == 1  # normal
    assert _pragma(database, "busy_timeout") == 5000
    assert _pragma(database, "foreign_keys") == 0


def test_busy_timeout_is_configurable(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "store.db"), busy_timeout_ms=1234)

    assert _pragma(database, "busy_timeout") == 1234


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    forms = {
        "sqlite:///relative/dir/a.db": tmp_path / "relative" / "dir" / "a.db",
        f"sqlite:///{tmp_path}/absolute/b.db": tmp_path / "absolute" / "b.db",  # four slashes
        "plain/c.db": tmp_path / "plain" / "c.db",
        str(tmp_path / "plain-absolute" / "d.db"): tmp_path / "plain-absolute" / "d.db",
        "~/e.db": tmp_path / "home" / "e.db",
    }
    for url, path in forms.items():
        database = open_database(url)
        assert isinstance(database, peewee.SqliteDatabase)
        assert path.parent.is_dir()  # parent directories are created
        migrate(database)
        database.close()
        assert path.is_file(), url


def test_check_url_resolves_the_same_forms_without_touching_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    forms = {
        "sqlite:///relative/dir/a.db": tmp_path / "relative" / "dir" / "a.db",
        f"sqlite:///{tmp_path}/absolute/b.db": tmp_path / "absolute" / "b.db",
        "plain/c.db": tmp_path / "plain" / "c.db",
        "~/e.db": tmp_path / "home" / "e.db",
    }

    for url, path in forms.items():
        assert check_url(url) == (peewee.SqliteDatabase, str(path))
    assert check_url("postgresql://user:secret@db.example:5433/llm") == (peewee.PostgresqlDatabase, None)
    assert sorted(tmp_path.iterdir()) == []  # no directory made, no file opened


def test_an_existing_file_without_auto_vacuum_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE something_else (x)")
    connection.close()

    database = open_database(str(path))
    assert migrate(database) == LATEST_VERSION
    assert _pragma(database, "auto_vacuum") == 0  # cannot change after the first table; fine
    assert _pragma(database, "journal_mode") == "wal"
    assert database.table_exists("llm_calls")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "nosuch://host/db",
        "sqlite://relative.db",  # two slashes: "relative.db" would be a host
        "sqlite:///:memory:",
        ":memory:",
        "postgresql://host:5432",  # no database name
    ],
)
def test_bad_urls_raise_a_configuration_error_naming_the_accepted_forms(url: str) -> None:
    with pytest.raises(
        StoreConfigurationError, match=re.escape("accepted forms: 'sqlite:///relative/")
    ) as caught:
        open_database(url)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(StoreConfigurationError, match=re.escape(str(caught.value))):
        check_url(url)


def test_postgresql_urls_go_to_playhouse_db_url() -> None:
    database = open_database("postgresql://user:secret@db.example:5433/llm")

    assert isinstance(database, peewee.PostgresqlDatabase)
    assert database.database == "llm"
    assert database.connect_params["host"] == "db.example"
    assert database.connect_params["port"] == 5433
    # Epoch milliseconds need 64-bit integers, which PostgreSQL's INTEGER is not.
    field_types = database.get_context_options()["field_types"]
    assert (field_types["INT"], field_types["AUTO"], field_types["FLOAT"]) == (
        "BIGINT",
        "BIGSERIAL",
        "DOUBLE PRECISION",
    )


def test_each_thread_has_its_own_connection(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "store.db"))
    connections = []

    def connect() -> None:
        connections.append(database.connection())
        database.close()

    threads = [threading.Thread(target=connect) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert connections[0] is not connections[1]


def test_immediate_takes_the_write_lock_at_begin(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "store.db"))
    statements: list[str] = []
    database.connection().set_trace_callback(statements.append)

    with immediate(database):
        database.execute_sql("SELECT 1")

    assert statements[0] == "BEGIN IMMEDIATE"


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "store.db"))

    assert schema_version(database) == 0
    assert migrate(database) == LATEST_VERSION
    assert migrate(database) == LATEST_VERSION
    versions = database.execute_sql("SELECT version FROM llm_otel_schema ORDER BY version").fetchall()
    assert versions == [(version,) for version in range(1, LATEST_VERSION + 1)]
    for model in ALL_MODELS:
        columns = {column.name for column in database.get_columns(model._meta.table_name)}
        assert columns == {field.column_name for field in model._meta.sorted_fields}
    indexes = {index.name for index in database.get_indexes("llm_calls")}
    assert {
        "llm_calls_window",
        "llm_calls_status_enqueued_at",
        "llm_calls_source_status_enqueued_at",
    } <= indexes
    fts = database.execute_sql("SELECT sql FROM sqlite_master WHERE name = 'llm_calls_fts'").fetchone()[0]
    assert "fts5(prompt, response, content='llm_calls_text', content_rowid='id', " in fts
    assert "tokenize='trigram', detail='none')" in fts


def test_migration_2_keeps_the_events_of_a_version_1_store(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "store.db"))
    with immediate(database):
        MIGRATIONS[0](database)
        database.execute_sql("INSERT INTO llm_otel_schema VALUES (1, 0)")
    for event_id in (3, 7):
        database.execute_sql(
            "INSERT INTO llm_call_events (id, call_id, kind, at, data) VALUES (?, 'c', 'queued', 1, '{}')",
            (event_id,),
        )

    assert migrate(database) == LATEST_VERSION

    rows = database.execute_sql("SELECT id, call_id, kind, at, data FROM llm_call_events ORDER BY id")
    assert rows.fetchall() == [(3, "c", "queued", 1, "{}"), (7, "c", "queued", 1, "{}")]
    database.execute_sql("DELETE FROM llm_call_events WHERE id = 7")
    database.execute_sql("INSERT INTO llm_call_events (call_id, kind, at) VALUES ('d', 'queued', 2)")
    assert database.execute_sql("SELECT max(id) FROM llm_call_events").fetchone()[0] == 8
    indexes = {index.name for index in database.get_indexes("llm_call_events")}
    assert {"llm_call_events_call_id_id", "llm_call_events_at"} <= indexes


def _migrate_together(path: str, barrier: threading.Barrier) -> int:
    barrier.wait(timeout=30)  # all four processes start migrating at the same moment
    return migrate(open_database(path))


def test_four_processes_migrating_one_new_file_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared" / "store.db")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barrier = manager.Barrier(4)
        pending = [pool.apply_async(_migrate_together, (path, barrier)) for _ in range(4)]
        versions = [result.get(timeout=60) for result in pending]

    assert versions == [LATEST_VERSION] * 4
    database = open_database(path)
    assert database.execute_sql("SELECT COUNT(*) FROM llm_otel_schema").fetchone()[0] == LATEST_VERSION
    assert _pragma(database, "auto_vacuum") == 2
    assert database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_file_that_is_not_a_database_is_a_store_database_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not an SQLite file at all" * 100)

    with pytest.raises(StoreDatabaseError, match=r"preparing the SQLite file .* failed") as caught:
        open_database(str(path))
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_database_failures_while_migrating_become_store_database_errors(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    database = open_database(str(path), busy_timeout_ms=0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(
            StoreDatabaseError, match="migrating the store failed: database is locked"
        ) as caught:
            migrate(database)
    finally:
        other.rollback()
        other.close()
    assert isinstance(caught.value.__cause__, peewee.OperationalError)
    assert migrate(database) == LATEST_VERSION  # and it works once the lock is gone
