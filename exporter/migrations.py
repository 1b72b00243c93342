"""Forward-only schema migrations of the span store.

Usage::

    version = migrate(open_database(url))   # at start, in every process; returns the schema version

``MIGRATIONS`` is a numbered list of functions (number = position + 1). ``migrate`` applies the ones
not yet recorded in ``llm_otel_schema``, each in its own transaction together with its version row.
Several processes may start at once: each migration takes the write lock first (``BEGIN
IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL), re-reads the version
inside the transaction and skips what another process already did; the DDL uses ``IF NOT EXISTS``.
Migrations are never edited once released: a schema change is a new function appended to the list
(one exception: 8, whose objects 9 drops, does nothing now rather than fill tables 9 would drop).
Each migration is written out as the DDL it runs (migration 1 was built from the models until
migration 3 changed them, and is frozen as the DDL it produced); ``exporter.models`` declares the
schema they make together, which ``tests/exporter/test_migrations.py`` checks.

Migration 1 creates every table of ``models.ALL_MODELS`` with its first indexes and, on SQLite, the
full-text table ``llm_calls_fts`` (FTS5, trigram tokenizer: substring search in any language,
including Chinese, for queries of 3 characters or more). Other databases get no FTS table; the
queries then fall back to ``LIKE`` over ``llm_call_bodies``.

Migration 2 (SQLite only) rebuilds ``llm_call_events`` with ``AUTOINCREMENT``, keeping its rows
and ids, so that an event id is never given out twice (see ``_monotonic_event_ids``).

Migration 4 (SQLite only) rebuilds ``llm_calls_fts`` so that it keeps no copy of the text and no
token positions, and ``llm_call_bodies`` so that a body's rowid is its call's (see the FTS contract
below): less than half the size on disk. It copies the bodies and indexes the ended calls again:
on a store of 1M calls with 3 KB of text each that takes minutes, during which writers wait for
the lock and retry.

Migration 5 (SQLite only) sets the full-text table's ``crisismerge`` to ``FTS_CRISIS_MERGE``, so
that retention's deletes no longer set off merges that hold the write lock for most of a second.

Migration 6 creates ``llm_store_losses``: one row per loss a writer saw (records it had to drop, a
store file replaced under it), kept for the retention window so that the admin shows a loss after
the process that saw it has exited.

Migration 7 (SQLite only) adds ``llm_calls_cjk``, the index of queries of 1-2 CJK characters
(``exporter.cjk_grams``): contentless, one row per indexed call holding CJK text, each of its CJK
characters and adjacent CJK pairs one token. It computes the tokens of every call
``llm_calls_fts`` holds: 70 s on the 1M-call store of ``bench/bench_list_1m.py`` (~300 characters
of text a call, a fifth of it Chinese; 2 busy cores), during which writers wait for the lock and
retry.

Migration 8 added rollups of the ended calls; migration 9 replaces them (and does their work: 8
does nothing now) with rollups of every call (``exporter.rollups``): per-hour and per-day counts,
token sums and latency histograms, by label, kept by triggers on ``llm_calls`` (so every writer
keeps them, in the transaction that writes the rows; on SQLite through a log folded every 1,000
entries), filled from the rows already stored. On a store of 1M calls that takes 1–4 minutes
(measured in docs/performance.md).

Migration 10 (SQLite only) adds ``llm_calls_search_state``: one row naming the store (a random id)
and a generation that two triggers on ``llm_calls`` advance whenever a call that may be searched
changes or goes (an update of an ended or full-text-indexed row; any delete), so that a reader
may keep what a search term matched between queries (``exporter.search_matches``) and know when it
must look again. Nothing is backfilled.

Migration 11 (SQLite only) adds ``llm_calls_search_kept``: what search terms matched, written by
the readers (``exporter.search_matches.save``) so that a term looked up in one process serves every
other one, and a restarted one, under the same generation. Empty at first.

Migration 14 (SQLite only) adds ``llm_calls_search_deleted``: while the store keeps search terms
(``llm_calls_search_kept`` not empty), the delete trigger logs each deleted call's rowid there
instead of advancing the generation, so that retention and ``prune`` leave the kept terms true: a
reader takes the deleted calls out of them (``exporter.search_matches``). The readers trim the log
once every kept row has read it; past ``DELETES_LOGGED_UP_TO`` entries a delete advances the
generation again.

Migration 15 (SQLite only) adds ``llm_calls_summary_kept``: what a filter's summary counted, written
by the readers (``exporter.kept_summaries.save``) so that another process, or a restarted one,
brings it up to date instead of counting the summary whole. Empty at first.

Migration 16 (SQLite only) empties ``llm_calls_cjk`` (``'delete-all'``) and fills it again with the
tokens of ``exporter.cjk_grams.short_tokens``: the CJK grams as before, and one token for each
distinct character of a call's text that is neither CJK nor a space, so that a query of one such
character is a lookup of the tokens of its cases instead of a scan of every body. It computes the
tokens of every call ``llm_calls_fts`` holds: 8.4 s on the 100k-call store of
``bench/bench_list_1m.py`` (~85 s at 1M), during which writers wait for the lock and retry.

Migration 18 (SQLite only) adds ``llm_calls_unindexed``: the rowids of the calls a store's writer
has ended but not indexed yet (``exporter.writer``: it indexes ended calls in batches, a segment a
transaction costing FTS5 ~30 µs plus ~0.4 µs a distinct trigram). A search takes them for calls in
flight (``exporter.search_matches``) until a writer indexes them and empties the table. Empty at first.

Migration 3 adds the indexes of the admin API's sorts and filters (``_list_indexes``): the four
label indexes are rebuilt with the three timings, ``error_type`` gets one like them, each timing
one ``(status, <timing>, enqueued_at)``, and ``llm_tasks`` two for its list. On a store of 1M calls
it took 11 s here (each index is built by reading the table), during which writers wait for the
lock and retry.

The FTS contract (for the writers)
----------------------------------
Since migration 4 the full-text table keeps neither a copy of the text nor token positions:
``llm_calls_fts`` is an FTS5 table with ``detail=none`` whose content is the view ``llm_calls_text``
(``id``; ``prompt`` = the text parts of the system instructions and the input messages,
``response`` = the text parts of the output messages, each joined by newlines), computed from
``llm_call_bodies``: the text is stored once, in the bodies.

One ``rowid`` names a call in all three: a body's ``rowid`` is its call's ``llm_calls`` ``rowid``
(the writers insert it so: ``(SELECT rowid FROM llm_calls WHERE call_id = ...)``, after the call's
row), and so is its FTS row's. Searching then goes from an FTS row to the call and to the body
text that checks it by integer key, one lookup each.

FTS5 does not know which rows of such a table are indexed, and removing a row reads its text back
through the view to find its entries. So a writer:

- indexes a call once it has ended, with ``FTS_INDEX_SQL`` (one parameter: a JSON list of call
  ids), after its ``llm_calls`` and ``llm_call_bodies`` rows are written; calls already indexed are
  skipped (a row of ``llm_calls_fts_docsize`` marks an indexed call). Or, in the same transaction
  as the end, lists the call in ``UNINDEXED_TABLE`` and indexes it in a later one (since migration
  18), emptying the table in the transaction that indexes what it lists;
- before it changes or deletes the body of a call that may be indexed, finds whether it is
  (``FTS_INDEXED_SQL``, same parameter) and removes its entries with ``FTS_UNINDEX_SQL``, while the
  body still holds the text that was indexed;
- does the same for the short-query index ``llm_calls_cjk`` (migrations 7 and 16): ``CJK_INDEX_SQL``
  right after ``FTS_INDEX_SQL``; ``CJK_INDEXED_SQL`` and ``CJK_UNINDEX_SQL``, which computes the
  tokens to remove again from the body (a contentless table is told what it indexed), so the body
  must still hold the indexed text. ``exporter._sql.index`` and ``unindex`` do both. The tokens come
  from the SQL function ``llm_otel_short_tokens`` (``llm_otel_cjk_grams`` before migration 16),
  registered by ``exporter.open_database``; nothing in the schema calls it, so a connection without
  it (the sqlite3 CLI) can read and write the store;
- updates ``llm_calls`` and ``llm_call_bodies`` in place (``UPDATE`` or ``INSERT ... ON CONFLICT
  DO UPDATE``; never ``INSERT OR REPLACE``, which gives the row a new ``rowid``). ``VACUUM`` may
  renumber rowids: the store frees space with ``incremental_vacuum``, which does not.

Within one transaction FTS5 keeps what is indexed in memory until a statement opens a savepoint
(an ``INSERT ... SELECT``, an upsert): one ``FTS_INDEX_SQL`` for a whole batch, last in its
transaction, makes one index segment per transaction instead of one per call.

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

import logging
import time
from collections.abc import Callable

import peewee

from exporter import cjk_grams, rollups
from exporter._exceptions import converted_errors
from exporter.cjk_grams import SQL_FUNCTION as CJK_SQL_FUNCTION
from exporter.cjk_grams import TOKENS_FUNCTION as SHORT_TOKENS_FUNCTION
from exporter.database import immediate, is_sqlite
from exporter.models import SchemaVersion

FTS_TABLE = "llm_calls_fts"

TEXT_VIEW = "llm_calls_text"

_ENDED = "('succeeded', 'failed', 'cancelled')"


def _text_parts(column: str, shape: str, depth: str) -> str:
    """The ``content`` of the text parts of a JSON column whose parts sit at paths like ``shape``
    (``depth``: a GLOB matching deeper paths, left out), in document order; malformed JSON or a
    JSON value that is not a list holds none."""
    value = f"b.{column}"
    is_list = f"CASE WHEN json_type({value}) = 'array' THEN {value} END"
    checked = f"CASE WHEN json_valid({value}) THEN {is_list} END"
    return (
        f"SELECT t.atom AS text FROM json_tree({checked}) AS t "
        f"WHERE t.key = 'content' AND t.type = 'text' AND t.atom != '' AND t.path GLOB '{shape}' "
        f"AND t.path NOT GLOB '{depth}' AND json_extract({value}, t.path || '.type') = 'text'"
    )


TEXT_VIEW_DDL = (
    f'CREATE VIEW IF NOT EXISTS "{TEXT_VIEW}" (id, prompt, response) AS SELECT b.rowid, '
    "(SELECT group_concat(text, char(10)) FROM ("
    + _text_parts("system_instructions", "$[[]*]", "*.*")
    + " UNION ALL "
    + _text_parts("input_messages", "$[[]*].parts[[]*]", "*.*.*")
    + ")), (SELECT group_concat(text, char(10)) FROM ("
    + _text_parts("output_messages", "$[[]*].parts[[]*]", "*.*.*")
    + ")) FROM llm_call_bodies AS b"
)
"""The full-text table's content: each call's prompt and response text, read from its body."""

FTS_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(prompt, response, "
    f"content='{TEXT_VIEW}', content_rowid='id', tokenize='trigram', detail='none')"
)

_BODIES_OF = "json_each(?) AS j JOIN llm_call_bodies AS b ON b.call_id = j.value"

FTS_INDEX_SQL = (
    f"INSERT INTO {FTS_TABLE} (rowid, prompt, response) SELECT t.id, t.prompt, t.response "
    f"FROM {_BODIES_OF} JOIN {TEXT_VIEW} AS t ON t.id = b.rowid "
    f"WHERE NOT EXISTS (SELECT 1 FROM {FTS_TABLE}_docsize AS d WHERE d.id = b.rowid)"
)
"""Parameter: a JSON list of distinct call ids. Indexes those not indexed yet (needs their rows)."""

FTS_INDEXED_SQL = (
    f"SELECT b.rowid FROM {_BODIES_OF} JOIN {FTS_TABLE}_docsize AS d ON d.id = b.rowid ORDER BY b.rowid"
)
"""Parameter: a JSON list of call ids. The rowids of those that are indexed, ascending (FTS5 keeps a
transaction's entries in memory only while their rowids ascend: one rowid below the last one
written makes it write what it holds as a segment of its own)."""

FTS_UNINDEX_SQL = f"DELETE FROM {FTS_TABLE} WHERE rowid = ?"
"""Parameter: an indexed rowid (``FTS_INDEXED_SQL``). Removes its entries. Found first, then
removed: a statement that touches the FTS table makes every later statement of the transaction
that opens a savepoint call into FTS5 too."""

CJK_TABLE = "llm_calls_cjk"

CJK_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {CJK_TABLE} USING fts5(grams, content='', tokenize='ascii', "
    "detail='none')"
)
"""The short-query index: contentless (it keeps only the tokens' rowid lists), one row per indexed
call holding text other than spaces (before migration 16: CJK text), its tokens those of
``exporter.cjk_grams.short_tokens`` (before 16: ``cjk_grams``)."""


def _may_hold_cjk(body: str) -> str:
    """SQL true when a body's JSON may hold CJK text: a character outside ASCII (its UTF-8 is longer
    than its length in characters) or a ``\\u`` escape (which the text parts decode). Two loops in C
    over the JSON, before any text is extracted (a ``GLOB`` of the CJK ranges costs ~50 ns a
    character: 0.17 ms a call of 3 KB)."""
    columns = ("input_messages", "output_messages", "system_instructions")
    return (
        "("
        + " OR ".join(
            f"length(CAST({body}{c} AS BLOB)) > length({body}{c}) OR instr({body}{c}, '\\u')" for c in columns
        )
        + ")"
    )


def _cjk_rows(calls: str, condition: str) -> str:
    """The statement adding the CJK tokens (migration 7's, ``cjk_grams.cjk_grams``) of the bodies
    ``b`` of ``calls`` (SQL after FROM) that pass ``condition``, where they have some: the function
    runs once a call (materialized)."""
    return (
        f"WITH grams (id, grams) AS MATERIALIZED (SELECT t.id, {CJK_SQL_FUNCTION}(t.prompt, t.response) "
        f"FROM {calls} JOIN {TEXT_VIEW} AS t ON t.id = b.rowid WHERE {_may_hold_cjk('b.')} AND {condition}) "
        f"INSERT INTO {CJK_TABLE} (rowid, grams) SELECT id, grams FROM grams WHERE grams != ''"
    )


def _short_rows(calls: str, condition: str) -> str:
    """The statement adding the short-query tokens (since migration 16: ``cjk_grams.short_tokens``)
    of the bodies ``b`` of ``calls`` (SQL after FROM) that pass ``condition``, where they have
    some: the function runs once a call (materialized)."""
    return (
        f"WITH grams (id, grams) AS MATERIALIZED (SELECT t.id, {SHORT_TOKENS_FUNCTION}(t.prompt, t.response) "
        f"FROM {calls} JOIN {TEXT_VIEW} AS t ON t.id = b.rowid WHERE {condition}) "
        f"INSERT INTO {CJK_TABLE} (rowid, grams) SELECT id, grams FROM grams WHERE grams != ''"
    )


CJK_INDEX_SQL = _short_rows(
    _BODIES_OF, f"NOT EXISTS (SELECT 1 FROM {CJK_TABLE}_docsize AS d WHERE d.id = b.rowid)"
)
"""Parameter: a JSON list of distinct call ids. Adds the short-query tokens of those not indexed
yet that have text other than spaces (needs their rows and ``exporter.cjk_grams.register`` on the
connection)."""

CJK_INDEXED_SQL = (
    f"SELECT b.rowid FROM {_BODIES_OF} JOIN {CJK_TABLE}_docsize AS d ON d.id = b.rowid ORDER BY b.rowid"
)
"""Parameter: a JSON list of call ids. The rowids of those that have short-query tokens, ascending."""

CJK_UNINDEX_SQL = (
    f"WITH grams (id, grams) AS MATERIALIZED (SELECT t.id, {SHORT_TOKENS_FUNCTION}(t.prompt, t.response) "
    f"FROM json_each(?) AS j JOIN {TEXT_VIEW} AS t ON t.id = j.value) "
    f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}, rowid, grams) SELECT 'delete', id, grams FROM grams ORDER BY id"
)
"""Parameter: a JSON list of the rowids of ``CJK_INDEXED_SQL``. Removes their tokens, computed again
from the bodies' text (a contentless table is told what it indexed): the bodies must not have
changed since. One statement for all: each ``INSERT ... SELECT`` opens a savepoint, at which FTS5
writes what it holds as a segment (one statement a call made one segment a call, and as many
merges: issue 10)."""

_EVENT_ORDER_LOCK_KEY = 5497854205308589139  # b"LLMEVNTS"
EVENT_ORDER_LOCK_SQL = f"SELECT pg_advisory_xact_lock({_EVENT_ORDER_LOCK_KEY})"
"""PostgreSQL: the writers' lock of the event ids (see "The event feed contract" above)."""
EVENT_ORDER_SHARED_LOCK_SQL = f"SELECT pg_advisory_xact_lock_shared({_EVENT_ORDER_LOCK_KEY})"
"""PostgreSQL: the same lock, shared: once a reader holds it no writer is between taking event ids
and committing them, so every id the sequence gave out is committed or rolled back
(``exporter.queries.latest_event_id``)."""

# An arbitrary constant naming the migration lock among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x4C4C4D4F54454C


_SQLITE_TYPES = {"int": "INTEGER", "bool": "INTEGER", "serial": "INTEGER", "float": "REAL"}
_POSTGRESQL_TYPES = {"int": "BIGINT", "bool": "BOOLEAN", "serial": "BIGSERIAL", "float": "DOUBLE PRECISION"}
_INITIAL_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "llm_calls" ("call_id" TEXT NOT NULL PRIMARY KEY, "trace_id" TEXT, '
    '"span_id" TEXT, "parent_span_id" TEXT, "parent_task_id" TEXT, "parent_task_name" TEXT, '
    '"status" TEXT NOT NULL, "operation" TEXT, "provider" TEXT, "api_type" TEXT, "model" TEXT, '
    '"response_model" TEXT, "response_id" TEXT, "source" TEXT, "requested_by" TEXT, '
    '"stream" {bool} NOT NULL, "enqueued_at" {int} NOT NULL, "started_at" {int}, "first_token_at" {int}, '
    '"ended_at" {int}, "wait_ms" {int}, "first_token_ms" {int}, "duration_ms" {int}, '
    '"retry_count" {int} NOT NULL, "input_tokens" {int}, "output_tokens" {int}, "cached_tokens" {int}, '
    '"reasoning_tokens" {int}, "finish_reasons" TEXT, "error_type" TEXT, "error_message" TEXT, '
    '"prompt_preview" TEXT, "response_preview" TEXT, "server_address" TEXT, "process" TEXT, '
    '"updated_at" {int} NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "llm_calls_status_enqueued_at" ON "llm_calls" ("status", "enqueued_at")',
    'CREATE INDEX IF NOT EXISTS "llm_calls_source_status_enqueued_at" '
    'ON "llm_calls" ("source", "status", "enqueued_at")',
    'CREATE INDEX IF NOT EXISTS "llm_calls_requested_by_status_enqueued_at" '
    'ON "llm_calls" ("requested_by", "status", "enqueued_at")',
    'CREATE INDEX IF NOT EXISTS "llm_calls_model_status_enqueued_at" '
    'ON "llm_calls" ("model", "status", "enqueued_at")',
    'CREATE INDEX IF NOT EXISTS "llm_calls_parent_task_id_status_enqueued_at" '
    'ON "llm_calls" ("parent_task_id", "status", "enqueued_at")',
    'CREATE INDEX IF NOT EXISTS "llm_calls_window" ON "llm_calls" ("enqueued_at", "status", "wait_ms", '
    '"first_token_ms", "duration_ms", "retry_count", "input_tokens", "output_tokens", "cached_tokens", '
    '"reasoning_tokens")',
    'CREATE TABLE IF NOT EXISTS "llm_call_bodies" ("call_id" TEXT NOT NULL PRIMARY KEY, '
    '"request_params" TEXT, "system_instructions" TEXT, "input_messages" TEXT, "output_messages" TEXT, '
    '"attributes" TEXT)',
    'CREATE TABLE IF NOT EXISTS "llm_call_events" ("id" {serial} NOT NULL PRIMARY KEY, '
    '"call_id" TEXT NOT NULL, "kind" TEXT NOT NULL, "at" {int} NOT NULL, "data" TEXT)',
    'CREATE INDEX IF NOT EXISTS "llm_call_events_call_id_id" ON "llm_call_events" ("call_id", "id")',
    'CREATE INDEX IF NOT EXISTS "llm_call_events_at" ON "llm_call_events" ("at")',
    'CREATE TABLE IF NOT EXISTS "llm_tasks" ("task_id" TEXT NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, '
    '"trace_id" TEXT, "span_id" TEXT, "status" TEXT NOT NULL, "started_at" {int} NOT NULL, '
    '"ended_at" {int}, "duration_ms" {int}, "attributes" TEXT, "process" TEXT)',
    'CREATE INDEX IF NOT EXISTS "llm_tasks_started_at" ON "llm_tasks" ("started_at")',
    'CREATE TABLE IF NOT EXISTS "llm_scheduler_snapshots" ("process" TEXT NOT NULL, '
    '"scheduler" TEXT NOT NULL, "queue_depth" {int} NOT NULL, "in_flight" {int} NOT NULL, '
    '"max_concurrency" {int}, "min_interval" {float} NOT NULL, "max_queue" {int}, '
    '"dispatched_total" {int} NOT NULL, "last_dispatch_at" {int}, "oldest_wait_ms" {int}, '
    '"waiting" TEXT, "store_dropped" {int} NOT NULL, "store_last_error" TEXT, '
    '"heartbeat_at" {int} NOT NULL, PRIMARY KEY ("process", "scheduler"))',
    'CREATE TABLE IF NOT EXISTS "llm_otel_schema" ("version" {int} NOT NULL PRIMARY KEY, '
    '"applied_at" {int} NOT NULL DEFAULT 0)',
)
"""Migration 1's statements, ``{int}`` / ``{bool}`` / ``{serial}`` / ``{float}`` standing for the
engine's types (the models' DDL as peewee wrote it when migration 1 was released)."""


def _types(database: peewee.Database) -> dict[str, str]:
    return _SQLITE_TYPES if is_sqlite(database) else _POSTGRESQL_TYPES


def _initial_schema(database: peewee.Database) -> None:
    for statement in _INITIAL_SCHEMA:
        database.execute_sql(statement.format(**_types(database)))
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


_LABELS = ("source", "requested_by", "model", "parent_task_id")
_TIMINGS = ("wait_ms", "first_token_ms", "duration_ms")


def _list_indexes(database: peewee.Database) -> None:
    """The indexes of the admin API's sorts and filters (docs/contracts/db.md says why each exists).

    The label indexes ``(label, status, enqueued_at)`` become ``(label, status, enqueued_at, wait_ms,
    first_token_ms, duration_ms)`` (same names), so a label with a timing minimum is counted in the
    index alone; ``error_type`` gets the same. ``(status, <timing>, enqueued_at)`` serves the
    slowest-first sorts (one ordered walk per status, merged) and the timing minimums; on PostgreSQL
    it is declared ``<timing> DESC NULLS LAST, enqueued_at DESC``, the order of the list (PostgreSQL
    reads an index backwards with NULLs first). SQLite then refreshes its planner statistics.
    """
    sqlite = is_sqlite(database)
    statements = [f'DROP INDEX IF EXISTS "llm_calls_{label}_status_enqueued_at"' for label in _LABELS]
    listed = ", ".join(f'"{column}"' for column in ("status", "enqueued_at", *_TIMINGS))
    statements += [
        f'CREATE INDEX IF NOT EXISTS "llm_calls_{label}_status_enqueued_at" '
        f'ON "llm_calls" ("{label}", {listed})'
        for label in (*_LABELS, "error_type")
    ]
    order = "" if sqlite else " DESC NULLS LAST"
    newest = "" if sqlite else " DESC"
    statements += [
        f'CREATE INDEX IF NOT EXISTS "llm_calls_status_{timing}" '
        f'ON "llm_calls" ("status", "{timing}"{order}, "enqueued_at"{newest})'
        for timing in _TIMINGS
    ]
    statements += [
        'CREATE INDEX IF NOT EXISTS "llm_tasks_status_started_at" ON "llm_tasks" ("status", "started_at")',
        'CREATE INDEX IF NOT EXISTS "llm_tasks_name_started_at" ON "llm_tasks" ("name", "started_at")',
    ]
    if sqlite:
        statements += ["PRAGMA analysis_limit = 1000", "ANALYZE llm_calls", "ANALYZE llm_tasks"]
    for statement in statements:
        database.execute_sql(statement)


def _text_once(database: peewee.Database) -> None:
    """SQLite: ``llm_call_bodies`` rebuilt with each body's rowid its call's (bodies without a call
    left out), and ``llm_calls_fts`` over their text (the view ``llm_calls_text``) without token
    positions, the ended calls indexed again. PostgreSQL has no full-text table."""
    if not is_sqlite(database):
        return
    columns = "call_id, request_params, system_instructions, input_messages, output_messages, attributes"
    for statement in (
        f"DROP TABLE IF EXISTS {FTS_TABLE}",
        'CREATE TABLE "llm_call_bodies_new" ("call_id" TEXT NOT NULL PRIMARY KEY, "request_params" TEXT, '
        '"system_instructions" TEXT, "input_messages" TEXT, "output_messages" TEXT, "attributes" TEXT)',
        f'INSERT INTO "llm_call_bodies_new" (rowid, {columns}) SELECT c.rowid, '
        + ", ".join(f"b.{column}" for column in columns.split(", "))
        + " FROM llm_call_bodies AS b JOIN llm_calls AS c ON c.call_id = b.call_id",
        'DROP TABLE "llm_call_bodies"',
        'ALTER TABLE "llm_call_bodies_new" RENAME TO "llm_call_bodies"',
        TEXT_VIEW_DDL,
        FTS_DDL,
        f"INSERT INTO {FTS_TABLE} (rowid, prompt, response) SELECT t.id, t.prompt, t.response "
        f"FROM llm_calls AS c JOIN {TEXT_VIEW} AS t ON t.id = c.rowid WHERE c.status IN {_ENDED}",
    ):
        database.execute_sql(statement)


FTS_CRISIS_MERGE = 64
"""Segments of one level of the full-text index that force a merge of them all at once (FTS5's
default is 16). Removing a call writes delete markers that cancel its entries only as segments
merge up to the old, large ones; at 16 such forced merges took 0.2-0.75 s inside a commit of
retention at 1M calls, the write lock held. FTS5's incremental merges (``automerge``) keep the
levels short meanwhile."""


def _bounded_fts_merges(database: peewee.Database) -> None:
    """SQLite: ``llm_calls_fts`` merges a level of segments at once only past ``FTS_CRISIS_MERGE``."""
    if is_sqlite(database):
        database.execute_sql(
            f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rank) VALUES ('crisismerge', {FTS_CRISIS_MERGE})"
        )


def _store_losses(database: peewee.Database) -> None:
    """``llm_store_losses``: what each writer lost and why (``exporter.writer``, db.md)."""
    types = _types(database)
    for statement in (
        'CREATE TABLE IF NOT EXISTS "llm_store_losses" ("id" {serial} NOT NULL PRIMARY KEY, '
        '"process" TEXT NOT NULL, "kind" TEXT NOT NULL, "started_at" {int} NOT NULL, '
        '"ended_at" {int} NOT NULL, "records" {int} NOT NULL, "calls" {int} NOT NULL, "reason" TEXT)',
        'CREATE UNIQUE INDEX IF NOT EXISTS "llm_store_losses_process_kind_started_at" '
        'ON "llm_store_losses" ("process", "kind", "started_at")',
        'CREATE INDEX IF NOT EXISTS "llm_store_losses_ended_at" ON "llm_store_losses" ("ended_at")',
    ):
        database.execute_sql(statement.format(**types))


def _cjk_index(database: peewee.Database) -> None:
    """SQLite: the short-query index ``llm_calls_cjk``, holding the CJK tokens of every call the
    full-text index holds (those that have CJK text)."""
    if not is_sqlite(database):
        return
    cjk_grams.register(database.connection())  # the backfill computes the tokens
    for statement in (
        CJK_DDL,
        f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}, rank) VALUES ('crisismerge', {FTS_CRISIS_MERGE})",
        _cjk_rows(f"{FTS_TABLE}_docsize AS d JOIN llm_call_bodies AS b ON b.rowid = d.id", "1"),
    ):
        database.execute_sql(statement)


def _ended_rollups(database: peewee.Database) -> None:
    """Migration 8 made rollups of the ended calls; migration 9 drops what it made and rolls up
    every call instead, so that a store migrated from before 8 fills them once: nothing here."""


def _rollups(database: peewee.Database) -> None:
    """The rollups of every call (``exporter.rollups``): migration 8's dropped, the tables, the
    histogram bins, the log, what the rows already stored add up to, and the triggers keeping them."""
    sqlite = is_sqlite(database)
    for statement in rollups.OLD_OBJECTS["sqlite" if sqlite else "postgresql"] + rollups.OLD_OBJECTS["both"]:
        database.execute_sql(statement)
    integer = _types(database)["int"]
    for statement in (*rollups.table_ddl(integer, sqlite=sqlite), *rollups.log_ddl(integer)):
        database.execute_sql(statement)
    marker = "?" if sqlite else "%s"
    database.execute_sql(f"DELETE FROM {rollups.BINS_TABLE}")
    database.cursor().executemany(
        f"INSERT INTO {rollups.BINS_TABLE} (lower) VALUES ({marker})",
        [(lower,) for lower in rollups.BIN_LOWERS],
    )
    triggers = rollups.sqlite_trigger_ddl() if sqlite else rollups.postgresql_trigger_ddl()
    for statement in (*rollups.backfill_sql(), *triggers):
        # psycopg2 reads a % (SQL's modulo here) as a parameter unless doubled.
        database.execute_sql(statement if sqlite else statement.replace("%", "%%"))


SEARCH_STATE_TABLE = "llm_calls_search_state"

SEARCH_STATE_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{SEARCH_STATE_TABLE}" ("id" INTEGER NOT NULL PRIMARY KEY CHECK ("id" = 1), '
    '"store" TEXT NOT NULL, "generation" INTEGER NOT NULL)',
    f'INSERT OR IGNORE INTO "{SEARCH_STATE_TABLE}" (id, store, generation) '
    "VALUES (1, lower(hex(randomblob(16))), 0)",
    # A searched call changed: an ended row (its text, status or labels), or one the full-text index
    # holds (a store rebuilt with 'rebuild' holds calls in flight too). A live row that is not
    # indexed changes every few seconds and matches no search term yet: it does not count.
    'CREATE TRIGGER IF NOT EXISTS "llm_calls_search_update" AFTER UPDATE ON "llm_calls" '
    f"WHEN OLD.status IN {_ENDED} OR EXISTS (SELECT 1 FROM {FTS_TABLE}_docsize WHERE id = OLD.rowid) "
    f'BEGIN UPDATE "{SEARCH_STATE_TABLE}" SET generation = generation + 1 WHERE id = 1; END',
    'CREATE TRIGGER IF NOT EXISTS "llm_calls_search_delete" AFTER DELETE ON "llm_calls" '
    f'BEGIN UPDATE "{SEARCH_STATE_TABLE}" SET generation = generation + 1 WHERE id = 1; END',
)
"""The search state (migration 10): the store's id and the generation of its searched calls."""


def _search_state(database: peewee.Database) -> None:
    """SQLite: ``llm_calls_search_state`` and the triggers that advance its generation."""
    if not is_sqlite(database):
        return
    for statement in SEARCH_STATE_DDL:
        database.execute_sql(statement)


KEPT_TABLE = "llm_calls_search_kept"

KEPT_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{KEPT_TABLE}" ("term" TEXT NOT NULL PRIMARY KEY, '
    '"generation" INTEGER NOT NULL, "upto" INTEGER NOT NULL, "pending" TEXT NOT NULL, '
    '"count" INTEGER NOT NULL, "bits" BLOB NOT NULL, "rowids" BLOB, "counts" TEXT NOT NULL)'
)
"""What search terms matched (migration 11), as ``exporter.search_matches`` keeps it: for the
store's search generation, the calls up to ``upto`` (a bitmap of rowids; the rowids themselves,
8 bytes each in the machine's byte order, when few), but the ``pending`` ones (a JSON list), and
how many of them some list filters keep (``counts``: JSON, ``[[filters, count], ...]``)."""


def _kept_matches(database: peewee.Database) -> None:
    """SQLite: ``llm_calls_search_kept``, so that a term's matches outlive the process that found them."""
    if is_sqlite(database):
        database.execute_sql(KEPT_DDL)


DELETED_TABLE = "llm_calls_search_deleted"

DELETES_LOGGED_UP_TO = 1_000_000
"""The most deletes ``llm_calls_search_deleted`` holds past ``deleted_before`` (migration 14);
beyond, a delete advances the search generation instead, as before migration 14."""

_LOGGING_DELETES = (
    f'EXISTS (SELECT 1 FROM "{KEPT_TABLE}") AND (SELECT IFNULL(MAX(seq), 0) FROM "{DELETED_TABLE}") < '
    f'(SELECT deleted_before FROM "{SEARCH_STATE_TABLE}" WHERE id = 1) + {DELETES_LOGGED_UP_TO}'
)

DELETED_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{DELETED_TABLE}" ("seq" INTEGER NOT NULL PRIMARY KEY, '
    '"call_rowid" INTEGER NOT NULL)',
    'DROP TRIGGER IF EXISTS "llm_calls_search_delete"',
    # The generation first: it is no part of the condition, so exactly one of the two happens.
    'CREATE TRIGGER "llm_calls_search_delete" AFTER DELETE ON "llm_calls" BEGIN '
    f'UPDATE "{SEARCH_STATE_TABLE}" SET generation = generation + 1 '
    f"WHERE id = 1 AND NOT ({_LOGGING_DELETES}); "
    f'INSERT INTO "{DELETED_TABLE}" (call_rowid) SELECT OLD.rowid WHERE {_LOGGING_DELETES}; END',
)
"""The deletes log (migration 14): the rowid of each call deleted while search terms are kept."""

_DELETED_COLUMNS = ((SEARCH_STATE_TABLE, "deleted_before"), (KEPT_TABLE, "deleted"))
"""The columns migration 14 adds, each ``INTEGER NOT NULL DEFAULT 0``: the log's entries before
``deleted_before`` are trimmed; a kept row took out those up to ``deleted``."""


def _logged_deletes(database: peewee.Database) -> None:
    """SQLite: a delete no longer makes every kept search term stale: it is logged
    (``llm_calls_search_deleted``) while the store keeps terms, and a reader takes the deleted
    calls out of what it kept (``exporter.search_matches``); the kept rows are true as of the
    log's start (``deleted`` 0), which is empty."""
    if not is_sqlite(database):
        return
    for table, column in _DELETED_COLUMNS:
        present = database.execute_sql(
            f"SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?", (column,)
        )
        if present.fetchone() is None:
            database.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" INTEGER NOT NULL DEFAULT 0')
    for statement in DELETED_DDL:
        database.execute_sql(statement)


FACET_LABELS = ("model", "source", "error_type", "requested_by")
"""The labels a filter summary counts (``exporter.queries.call_facets``)."""


SUMMARY_KEPT_TABLE = "llm_calls_summary_kept"

SUMMARY_KEPT_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{SUMMARY_KEPT_TABLE}" ("filters" TEXT NOT NULL PRIMARY KEY, '
    '"generation" INTEGER NOT NULL, "deleted" INTEGER NOT NULL, "upto" INTEGER NOT NULL, '
    '"pending" BLOB NOT NULL, "since_ms" INTEGER, "counts" TEXT NOT NULL, "used_at" INTEGER NOT NULL)'
)
"""What filters' summaries counted (migration 15), as ``exporter.kept_summaries`` keeps it: for the
store's search generation and the deletes log's last entry (``deleted``), the counts (JSON) of the
calls the filters (a canonical JSON form) select up to ``upto``, but the ``pending`` ones (rowids,
8 bytes each in the machine's byte order), from ``since_ms``; ``used_at``: when last written (ms)."""


def _kept_summaries(database: peewee.Database) -> None:
    """SQLite: ``llm_calls_summary_kept``, so that a filter's summary outlives the process that counted it."""
    if is_sqlite(database):
        database.execute_sql(SUMMARY_KEPT_DDL)


def _short_query_characters(database: peewee.Database) -> None:
    """SQLite: the short-query index holds a token for each character of a call's text that is
    neither CJK nor a space (``cjk_grams.short_tokens``): emptied and filled again with the tokens
    of every call the full-text index holds (a contentless table cannot take tokens added to a row:
    it removes a row's tokens by being told them all)."""
    if not is_sqlite(database):
        return
    cjk_grams.register(database.connection())  # the backfill computes the tokens
    for statement in (
        f"INSERT INTO {CJK_TABLE} ({CJK_TABLE}) VALUES ('delete-all')",
        _short_rows(f"{FTS_TABLE}_docsize AS d JOIN llm_call_bodies AS b ON b.rowid = d.id", "1"),
    ):
        database.execute_sql(statement)


def _rollup_bucket_indexes(database: peewee.Database) -> None:
    """An index of ``(bucket_ms, bucket_start)`` on the requester and timing rollups
    (``rollups.BUCKET_INDEXES``), whose keys put the label's value before ``bucket_start``:
    retention deletes a bucket's rows through it rather than reading every row of the bucket size
    (~11 ms a bucket at 1M calls, and growing with the requesters; ~1 ms through the index)."""
    for statement in rollups.bucket_index_ddl():
        database.execute_sql(statement)


def covering_label_columns(label: str) -> tuple[str, ...]:
    """The columns of the label index of ``label`` since migration 12: ``(label, status,
    enqueued_at, <timings>)`` as before, then the facet labels it does not lead with."""
    return (label, "status", "enqueued_at", *_TIMINGS, *(name for name in FACET_LABELS if name != label))


def _covering_label_indexes(database: peewee.Database) -> None:
    """The label indexes hold every column a filter summary reads (``covering_label_columns``).

    A summary the rollups do not hold (two labels, ``requested_by``, ``parent_task_id``, a label
    over part of a day or with a timing minimum) reads the calls of one label's index: with the
    other labels in it, that is a read of index entries, never of rows (the rows are ~10 times
    larger and spread over the file). The key's first columns are unchanged, so the list reads the
    indexes as before. About 2 s per index on a store of 1M calls, writers waiting for the lock.
    """
    statements = []
    for label in (*_LABELS, "error_type"):
        name = f"llm_calls_{label}_status_enqueued_at"
        listed = ", ".join(f'"{column}"' for column in covering_label_columns(label))
        statements += [
            f'DROP INDEX IF EXISTS "{name}"',
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "llm_calls" ({listed})',
        ]
    if is_sqlite(database):
        statements += ["PRAGMA analysis_limit = 1000", "ANALYZE llm_calls"]
    for statement in statements:
        database.execute_sql(statement)


def _bulk_delete(database: peewee.Database) -> None:
    """SQLite: retention deletes the rollup rows of the days before its cut-off whole and the
    calls of those days without a take-back each (``rollups.BULK_DELETE_TABLE``)."""
    if not is_sqlite(database):
        return
    for statement in rollups.sqlite_bulk_delete_ddl():
        database.execute_sql(statement)


UNINDEXED_TABLE = "llm_calls_unindexed"

UNINDEXED_DDL = f'CREATE TABLE IF NOT EXISTS "{UNINDEXED_TABLE}" ("call_rowid" INTEGER NOT NULL PRIMARY KEY)'


def _unindexed_calls(database: peewee.Database) -> None:
    """SQLite: ``llm_calls_unindexed``, the ended calls whose indexing a writer deferred."""
    if is_sqlite(database):
        database.execute_sql(UNINDEXED_DDL)


MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (
    _initial_schema,
    _monotonic_event_ids,
    _list_indexes,
    _text_once,
    _bounded_fts_merges,
    _store_losses,
    _cjk_index,
    _ended_rollups,
    _rollups,
    _search_state,
    _kept_matches,
    _covering_label_indexes,
    _bulk_delete,
    _logged_deletes,
    _kept_summaries,
    _short_query_characters,
    _rollup_bucket_indexes,
    _unindexed_calls,
)
"""Migration N is ``MIGRATIONS[N - 1]``; append only."""

LATEST_VERSION = len(MIGRATIONS)

logger = logging.getLogger(__name__)


def migrate(database: peewee.Database) -> int:
    """Apply the pending migrations to ``database`` and return its schema version.

    Safe to call from several processes at once and idempotent. Raises ``StoreDatabaseError`` when
    the database fails (e.g. the file is read-only), with the driver error as ``__cause__``.
    """
    with converted_errors("migrating the store"):
        current = schema_version(database)
        if current > LATEST_VERSION:
            _warn_newer_schema(database, current)
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


def _warn_newer_schema(database: peewee.Database, version: int) -> None:
    """A newer llm-otel migrated this store: say so once, since its writes may no longer fit."""
    key = (str(database.database), version)
    if key in _warned_newer:
        return
    _warned_newer.add(key)
    logger.warning(
        "llm-otel store: the schema of %s is version %d, newer than this llm-otel knows (%d): a newer "
        "llm-otel wrote it. Upgrade llm-otel here (pip install -U llm-otel); until then, writes that "
        "no longer fit the schema fail and are counted as dropped.",
        database.database,
        version,
        LATEST_VERSION,
    )


_warned_newer: set[tuple[str, int]] = set()


def schema_version(database: peewee.Database) -> int:
    """The highest migration recorded in ``database`` (0 for a new database)."""
    with converted_errors("reading the schema version"):
        if not database.table_exists(SchemaVersion._meta.table_name):
            return 0
        row = database.execute(SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version))).fetchone()
        return row[0] or 0
