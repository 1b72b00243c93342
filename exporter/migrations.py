"""Forward-only schema migrations of the span store.

Usage::

    version = migrate(open_database(url))   # at start, in every process; returns the schema version

``MIGRATIONS`` is a numbered list of functions (number = position + 1). ``migrate`` applies the ones
not yet recorded in ``llm_otel_schema``, each in its own transaction together with its version row.
Several processes may start at once: each migration takes the write lock first (``BEGIN
IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL), re-reads the version
inside the transaction and skips what another process already did; the DDL uses ``IF NOT EXISTS``.
Migrations are never edited once released: a schema change is a new function appended to the list.
Migration 1 is built from the models as they stand; the first schema change after a release must
therefore also freeze migration 1 into the DDL it produced.

Migration 1 creates every table of ``models.ALL_MODELS`` with its indexes and, on SQLite, the
full-text table ``llm_calls_fts`` (FTS5, trigram tokenizer: substring search in any language,
including Chinese, for queries of 3 characters or more). Other databases get no FTS table; the
queries then fall back to ``LIKE`` over ``llm_call_bodies``.

Migration 2 (SQLite only) rebuilds ``llm_call_events`` with ``AUTOINCREMENT``, keeping its rows
and ids, so that an event id is never given out twice (see ``_monotonic_event_ids``).

The FTS contract (for the writer)
---------------------------------
One row per call: ``call_id``, ``prompt`` (plain text of the system instructions and the text parts
of the input messages, joined by newlines) and ``response`` (the text parts of the output messages).
Its ``rowid`` is the ``rowid`` of the call's ``llm_calls`` row, because ``call_id`` is UNINDEXED in
FTS5: deleting ``WHERE call_id = ?`` would read the whole table (the search in ``exporter.queries``
joins on the rowid too, reading matches from the FTS index alone). So the writer replaces a call's row
with ``FTS_DELETE_SQL`` then ``FTS_INSERT_SQL`` (qmark parameters, ``executemany``-friendly), after
the ``llm_calls`` row exists, and updates ``llm_calls`` in place (``UPDATE`` or ``INSERT ... ON
CONFLICT DO UPDATE``; never ``INSERT OR REPLACE``, which gives the row a new ``rowid``).

The event feed contract (for the writers)
-----------------------------------------
A feed reader pages by ``id > last id seen`` (``exporter.queries.call_events_after``), so an event
must never become visible after one with a larger id. On SQLite the write lock (``BEGIN
IMMEDIATE``) already makes every writer take its ids and commit one after the other. On PostgreSQL
a ``BIGSERIAL`` id is taken at insert time while commits happen in any order: with two writers, the
event taking id 11 could commit after the one taking id 12 was read, and be skipped. So a
PostgreSQL transaction that inserts into ``llm_call_events`` runs ``EVENT_ORDER_LOCK_SQL`` (a
transaction-scoped advisory lock) right before its first event insert: ids are then taken and
committed by one writer at a time, in order. The lock is held from that insert to the commit only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import peewee

from exporter._exceptions import converted_errors
from exporter.database import immediate, is_sqlite
from exporter.models import ALL_MODELS, SchemaVersion

FTS_TABLE = "llm_calls_fts"

FTS_DELETE_SQL = (
    "DELETE FROM llm_calls_fts WHERE rowid = (SELECT rowid FROM llm_calls WHERE call_id = ?) AND call_id = ?"
)
"""Parameters ``(call_id, call_id)``: removes the call's FTS row, if any."""

FTS_INSERT_SQL = (
    "INSERT INTO llm_calls_fts (rowid, call_id, prompt, response) "
    "SELECT rowid, call_id, ?, ? FROM llm_calls WHERE call_id = ?"
)
"""Parameters ``(prompt, response, call_id)``: adds the call's FTS row (needs its llm_calls row)."""

EVENT_ORDER_LOCK_SQL = "SELECT pg_advisory_xact_lock(5497854205308589139)"  # b"LLMEVNTS"
"""PostgreSQL: the writers' lock of the event ids (see "The event feed contract" above)."""

# An arbitrary constant naming the migration lock among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x4C4C4D4F54454C


def _initial_schema(database: peewee.Database) -> None:
    for model in ALL_MODELS:
        peewee.SchemaManager(model, database).create_all(safe=True)
    if is_sqlite(database):
        database.execute_sql(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} "
            "USING fts5(call_id UNINDEXED, prompt, response, tokenize='trigram')"
        )


def _monotonic_event_ids(database: peewee.Database) -> None:
    """SQLite: rebuild ``llm_call_events`` with ``AUTOINCREMENT``, so that an id is never given out
    twice. Without it a new row takes ``max(id) + 1``, which goes back once retention deletes the
    newest events, and a feed client resuming after the last id it saw would miss new ones.
    PostgreSQL's ``BIGSERIAL`` never reuses a value: nothing to do there."""
    if not is_sqlite(database):
        return
    for statement in (
        'CREATE TABLE "llm_call_events_new" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, '
        '"call_id" TEXT NOT NULL, "kind" TEXT NOT NULL, "at" INTEGER NOT NULL, "data" TEXT)',
        'INSERT INTO "llm_call_events_new" (id, call_id, kind, at, data) '
        'SELECT id, call_id, kind, at, data FROM "llm_call_events"',
        'DROP TABLE "llm_call_events"',
        'ALTER TABLE "llm_call_events_new" RENAME TO "llm_call_events"',
        'CREATE INDEX "llm_call_events_call_id_id" ON "llm_call_events" ("call_id", "id")',
        'CREATE INDEX "llm_call_events_at" ON "llm_call_events" ("at")',
    ):
        database.execute_sql(statement)


MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (_initial_schema, _monotonic_event_ids)
"""Migration N is ``MIGRATIONS[N - 1]``; append only."""

LATEST_VERSION = len(MIGRATIONS)


def migrate(database: peewee.Database) -> int:
    """Apply the pending migrations to ``database`` and return its schema version.

    Safe to call from several processes at once and idempotent. Raises ``StoreDatabaseError`` when
    the database fails (e.g. the file is read-only), with the driver error as ``__cause__``.
    """
    with converted_errors("migrating the store"):
        current = schema_version(database)
        if current >= LATEST_VERSION:
            return current
        for number, step in enumerate(MIGRATIONS, start=1):
            with immediate(database):
                if isinstance(database, peewee.PostgresqlDatabase):
                    database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
                peewee.SchemaManager(SchemaVersion, database).create_table(safe=True)
                if schema_version(database) >= number:
                    continue
                step(database)
                database.execute(SchemaVersion.insert(version=number, applied_at=int(time.time() * 1000)))
        return schema_version(database)


def schema_version(database: peewee.Database) -> int:
    """The highest migration recorded in ``database`` (0 for a new database)."""
    with converted_errors("reading the schema version"):
        if not database.table_exists(SchemaVersion._meta.table_name):
            return 0
        row = database.execute(SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version))).fetchone()
        return row[0] or 0
