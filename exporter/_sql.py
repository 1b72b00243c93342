"""The SQL that writes mapped rows (``exporter.mapping.RowBatch``) to a SQLite or PostgreSQL store.

Both writers use it: the store's background thread (``exporter.writer``) and the standalone
``SQLiteSpanExporter``, through ``exporter._connection.StoreFile``, which owns the connection and
the transaction (``BEGIN IMMEDIATE`` on SQLite). A ``RowBatch`` is written by ``write_batch`` with
one ``executemany`` per statement on the DB-API cursor (peewee's ``insert_many`` builds the SQL per
row and is ~25x slower); on PostgreSQL psycopg2's ``execute_batch`` instead, since its
``executemany`` is a round trip per row.

The statements are built once per dialect at import (``_statements``): ``SQLITE`` (``:name``
parameters) and ``POSTGRESQL`` (psycopg2's ``%(name)s``, ``GREATEST`` for SQLite's two-argument
``MAX``, ``false`` for the BOOLEAN ``stream``, ``json_array_elements_text`` for ``json_each``, no
full-text rows); ``statements_for(database)`` picks one.

Every statement is an idempotent merge, so a notice written twice, or a span exported by two
writers, changes nothing the second time:

- a final row (span ended) overwrites the call's row and body and (re)indexes the call for
  full-text search (a call is indexed when it ends: trigram indexing is the most expensive part of
  a write, and indexing the prompt twice per call would cost ~40% of the ingest rate). On SQLite
  a call whose stored row already holds the final row's ``START_COLUMNS`` (queued in an earlier
  batch, as every call longer than the writer's linger is) gets only its ``END_COLUMNS`` set
  (``final_end``, ``ended_apart``: one read a batch decides): the same row, triggers and index
  entries as the overwrite, without the upsert's insert;
- a live row (queued, dispatched, first token, retry) only fills empty columns and advances
  ``status`` / ``retry_count``, and only while the stored status is ``queued`` or ``running``: a
  notice that arrives after the end never regresses a finished call;
- an event is inserted unless the call already has one of that kind (retries: of that kind at
  that millisecond), which makes live events and the span's own events the same rows; a live
  event is not inserted once the call has ended. On SQLite those checks are made once per batch
  (``events_to_insert``: one read of the batch's calls and their events, ~1 us a call, where two
  lookups in each event's insert cost ~6 us an event), and the events kept are plain inserts.

Within a batch the statements run in this order: the removal of the index entries of ended calls
indexed before (rare: a span written twice), queued calls (a call's dispatch in the same batch
merged into its queued row, ``RowBatch``), live updates, final calls, bodies,
events (in arrival order; on PostgreSQL after taking the event-order lock, see the feed contract in
``exporter.migrations``), closings of calls whose end was dropped, tasks, scheduler snapshots
(which replace all of the process's snapshot rows), the writer's losses, and last the full-text
indexing of the ended calls, their text read once (``index``; the FTS contract in ``exporter.migrations``).
Because each merge is monotonic, the order of rows for one call inside a batch does not change the result.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import peewee

from exporter import _names as n
from exporter import cjk_grams
from exporter.database import is_sqlite
from exporter.mapping import LIVE_STATUSES, RowBatch, to_json
from exporter.migrations import (
    CJK_INDEXED_SQL,
    CJK_TABLE,
    CJK_UNINDEX_SQL,
    EVENT_ORDER_LOCK_SQL,
    FTS_INDEXED_SQL,
    FTS_TABLE,
    FTS_UNINDEX_SQL,
    TEXT_VIEW,
    UNINDEXED_TABLE,
)
from exporter.models import LLMCall, LLMCallBody, LLMTask, SchedulerSnapshot


class DBAPICursor(Protocol):
    """The part of a DB-API cursor the writers use (sqlite3's or psycopg2's)."""

    connection: Any

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...
    def close(self) -> Any: ...


_LIVE = "(" + ", ".join(f"'{status}'" for status in LIVE_STATUSES) + ")"


@dataclass(frozen=True)
class Dialect:
    """What differs between the databases in the write statements."""

    named: str
    """A named parameter, ``{}`` standing for its name."""
    positional: str
    """A positional parameter."""
    greatest: str
    """The function returning the largest of its arguments."""
    false: str
    """The literal written into ``stream`` (BOOLEAN on PostgreSQL, an integer on SQLite)."""
    json_list: str
    """A subquery of the text values of a JSON list, ``{}`` standing for the list parameter."""
    begin: str
    """The statement that opens a write transaction."""


SQLITE_DIALECT = Dialect(
    named=":{}",
    positional="?",
    greatest="MAX",
    false="0",
    json_list="(SELECT value FROM json_each({}))",
    begin="BEGIN IMMEDIATE",
)
POSTGRESQL_DIALECT = Dialect(
    named="%({})s",
    positional="%s",
    greatest="GREATEST",
    false="false",
    json_list="(SELECT json_array_elements_text(CAST({} AS json)))",
    begin="BEGIN",
)


@dataclass(frozen=True)
class Statements:
    """Every write statement in one dialect; ``write_batch`` runs them."""

    begin: str
    queued_call: str
    queued_body: str
    updates: Mapping[str, str]
    """By live notice kind (dispatched, first_token, retry)."""
    final_call: str
    """Writes a call's final row whole (an upsert: every column overwritten)."""
    final_end: str
    """SQLite: sets only ``END_COLUMNS`` of a stored row that already holds the final row's
    ``START_COLUMNS`` (``ended_apart`` finds them), which is what ``final_call`` would make of it
    without its insert; "" where ``final_call`` writes every final row (PostgreSQL: the transactions
    of several writers may overlap, so a row read before the update may have changed)."""
    stored_starts: str
    """SQLite: reads ``START_COLUMNS`` of the stored rows of a JSON list of call ids (``ended_apart``)."""
    final_body: str
    event: str
    """Inserts one event. With ``event_state`` it is a plain insert of the events
    ``events_to_insert`` keeps; without (PostgreSQL), it checks for a duplicate itself."""
    event_state: str
    """SQLite: reads, for a JSON list of call ids, each call's status and its events' kinds and
    times (``events_to_insert``); "" where ``event`` checks each event itself (PostgreSQL: the
    transactions of several writers may overlap, so only a check inside each insert is exact)."""
    closing: str
    closing_event: str
    task_start: str
    task_end: str
    snapshot: str
    stale_snapshots: str
    forget_process: str
    loss: str
    fts: bool
    """Whether calls are indexed for full-text search (``FTS_INDEX_SQL`` / ``FTS_UNINDEX_SQL``, SQLite
    only)."""
    event_lock: str
    """Run before the events are inserted (PostgreSQL: ``EVENT_ORDER_LOCK_SQL``); "" for none."""


def _columns(model: type[peewee.Model]) -> list[str]:
    return [f.column_name for f in model._meta.sorted_fields]


CALL_COLUMNS = _columns(LLMCall)
END_COLUMNS = (
    "status",
    "started_at",
    "first_token_at",
    "ended_at",
    "wait_ms",
    "first_token_ms",
    "duration_ms",
    "retry_count",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "finish_reasons",
    "error_type",
    "error_message",
    "response_model",
    "response_id",
    "response_preview",
    "updated_at",
)
"""The columns of ``llm_calls`` a call's end may change in the row written while it was in flight."""
START_COLUMNS = tuple(column for column in CALL_COLUMNS if column not in END_COLUMNS)
"""The others, ``call_id`` first: what a call's queued row already holds as its final row has it."""
BODY_COLUMNS = _columns(LLMCallBody)
TASK_COLUMNS = _columns(LLMTask)
SNAPSHOT_COLUMNS = _columns(SchedulerSnapshot)
LOSS_COLUMNS = ["process", "kind", "started_at", "ended_at", "records", "calls", "reason"]


def _statements(
    d: Dialect, *, fts: bool, event_lock: str, events_checked: bool, ends_apart: bool
) -> Statements:
    """The write statements in dialect ``d`` (for SQLite, byte for byte the measured ones)."""

    def p(name: str) -> str:
        return d.named.format(name)

    def insert(table: str, columns: Sequence[str]) -> str:
        names = ", ".join(columns)
        values = ", ".join(p(column) for column in columns)
        return f"INSERT INTO {table} ({names}) VALUES ({values})"

    def overwrite(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        sets = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
        return f"{insert(table, columns)} ON CONFLICT({', '.join(key)}) DO UPDATE SET {sets}"

    def advance(column: str) -> str:
        return f"{d.greatest}(llm_calls.{column}, excluded.{column})"

    def fill(column: str) -> str:
        return f"{column} = COALESCE(llm_calls.{column}, excluded.{column})"

    def live_update(columns: Sequence[str]) -> str:
        """A live notice's upsert: creates a ``running`` row if the call has none yet."""
        names = ", ".join(columns)
        values = ", ".join(p(column) for column in columns)
        return (
            f"INSERT INTO llm_calls (call_id, status, stream, retry_count, enqueued_at, updated_at, {names}) "
            f"VALUES ({p('call_id')}, 'running', {d.false}, 0, {p('enqueued_at')}, "
            f"{p('updated_at')}, {values}) "
            "ON CONFLICT(call_id) DO UPDATE SET status = 'running', "
            f"updated_at = {advance('updated_at')}, "
            + ", ".join(fill(column) for column in columns)
            + f" WHERE llm_calls.status IN {_LIVE}"
        )

    body_insert = insert("llm_call_bodies", BODY_COLUMNS)
    if fts:  # a body's rowid is its call's (exporter.migrations, the FTS contract); the call comes first
        names = ", ".join(BODY_COLUMNS)
        values = ", ".join(p(column) for column in BODY_COLUMNS)
        body_insert = (
            f"INSERT INTO llm_call_bodies (rowid, {names}) VALUES "
            f"((SELECT rowid FROM llm_calls WHERE call_id = {p('call_id')}), {values})"
        )
    advancing = {column: advance(column) for column in ("stream", "retry_count", "updated_at")}
    # A queued row that carries its dispatch (``RowBatch``) is ``running``: it advances the status
    # as the dispatch's upsert would; a queued row leaves the status stored.
    queued_call = (
        f"{insert('llm_calls', CALL_COLUMNS)} ON CONFLICT(call_id) DO UPDATE SET "
        "status = CASE WHEN excluded.status = 'running' THEN 'running' ELSE llm_calls.status END, "
        + ", ".join(
            f"{column} = {advancing.get(column, f'COALESCE(llm_calls.{column}, excluded.{column})')}"
            for column in CALL_COLUMNS
            if column not in ("call_id", "status")
        )
        + f" WHERE llm_calls.status IN {_LIVE}"
    )
    # ``attempt`` is the retry's number when the notice has one; otherwise the count goes up by one.
    retry = (
        "INSERT INTO llm_calls (call_id, status, stream, retry_count, enqueued_at, updated_at) "
        f"VALUES ({p('call_id')}, 'running', {d.false}, COALESCE({p('attempt')}, 1), {p('enqueued_at')}, "
        f"{p('updated_at')}) "
        "ON CONFLICT(call_id) DO UPDATE SET status = 'running', "
        f"updated_at = {advance('updated_at')}, "
        f"retry_count = {d.greatest}(llm_calls.retry_count, "
        f"COALESCE({p('attempt')}, llm_calls.retry_count + 1)) "
        f"WHERE llm_calls.status IN {_LIVE}"
    )
    # ``live`` is 1 for an event from a live notice: it is not written once the call has ended (the
    # ended span carries every event of the call, so nothing is lost).
    call_id, kind, at = p("call_id"), p("kind"), p("at")
    event = (
        f"INSERT INTO llm_call_events (call_id, kind, at, data) SELECT {call_id}, {kind}, {at}, {p('data')} "
        f"WHERE NOT EXISTS (SELECT 1 FROM llm_call_events WHERE call_id = {call_id} AND kind = {kind} "
        f"AND ({kind} != '{n.RETRY}' OR at = {at})) "
        f"AND ({p('live')} = 0 OR NOT EXISTS "
        f"(SELECT 1 FROM llm_calls WHERE call_id = {call_id} AND status NOT IN {_LIVE}))"
    )
    if events_checked:  # the checks of ``event`` made once per batch (``events_to_insert``)
        event = f"{insert('llm_call_events', ['call_id', 'kind', 'at', 'data'])}"
    # A call whose ended span was dropped (queue full): end its live row, or write a minimal ended row.
    ended_at, enqueued_at, status = p("ended_at"), p("enqueued_at"), p("status")
    closing = (
        "INSERT INTO llm_calls (call_id, status, stream, retry_count, enqueued_at, ended_at, duration_ms, "
        "error_type, model, source, requested_by, process, updated_at) "
        f"VALUES ({call_id}, {status}, {d.false}, 0, {enqueued_at}, {ended_at}, {ended_at} - {enqueued_at}, "
        f"{p('error_type')}, {p('model')}, {p('source')}, {p('requested_by')}, {p('process')}, {ended_at}) "
        "ON CONFLICT(call_id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at, "
        "duration_ms = excluded.ended_at - COALESCE(llm_calls.started_at, llm_calls.enqueued_at), "
        "error_type = COALESCE(llm_calls.error_type, excluded.error_type), "
        f"updated_at = {advance('updated_at')} "
        f"WHERE llm_calls.status IN {_LIVE}"
    )
    closing_event = (
        f"INSERT INTO llm_call_events (call_id, kind, at, data) SELECT {call_id}, {status}, {ended_at}, "
        f"{p('data')} WHERE NOT EXISTS (SELECT 1 FROM llm_call_events WHERE call_id = {call_id} "
        f"AND kind = {status})"
    )
    return Statements(
        begin=d.begin,
        queued_call=queued_call,
        queued_body=f"{body_insert} ON CONFLICT(call_id) DO NOTHING",
        updates={
            n.DISPATCHED: live_update(["started_at", "wait_ms"]),
            n.FIRST_TOKEN: live_update(["first_token_at", "first_token_ms"]),
            n.RETRY: retry,
        },
        final_call=overwrite("llm_calls", CALL_COLUMNS, ["call_id"]),
        final_end=(
            "UPDATE llm_calls SET "
            + ", ".join(f"{column} = {p(column)}" for column in END_COLUMNS)
            + f" WHERE call_id = {p('call_id')}"
        )
        if ends_apart
        else "",
        stored_starts=STORED_STARTS_SQL if ends_apart else "",
        final_body=f"{body_insert} ON CONFLICT(call_id) DO UPDATE SET "
        + ", ".join(f"{column} = excluded.{column}" for column in BODY_COLUMNS if column != "call_id"),
        event=event,
        event_state=EVENT_STATE_SQL if events_checked else "",
        closing=closing,
        closing_event=closing_event,
        task_start=f"{insert('llm_tasks', TASK_COLUMNS)} ON CONFLICT(task_id) DO NOTHING",
        task_end=overwrite("llm_tasks", TASK_COLUMNS, ["task_id"]),
        snapshot=overwrite("llm_scheduler_snapshots", SNAPSHOT_COLUMNS, ["process", "scheduler"]),
        # After the upserts: this process's rows of schedulers it no longer reports (a JSON list).
        stale_snapshots=(
            f"DELETE FROM llm_scheduler_snapshots WHERE process = {p('process')} "
            f"AND scheduler NOT IN {d.json_list.format(p('names'))}"
        ),
        forget_process=f"DELETE FROM llm_scheduler_snapshots WHERE process = {d.positional}",
        loss=(
            f"{insert('llm_store_losses', LOSS_COLUMNS)} "
            "ON CONFLICT(process, kind, started_at) DO UPDATE SET "
            + ", ".join(
                f"{column} = excluded.{column}" for column in ("ended_at", "records", "calls", "reason")
            )
        ),
        fts=fts,
        event_lock=event_lock,
    )


EVENT_STATE_SQL = (
    "SELECT j.value, c.status, e.kind, e.at FROM json_each(?) AS j "
    "LEFT JOIN llm_calls AS c ON c.call_id = j.value LEFT JOIN llm_call_events AS e ON e.call_id = j.value"
)
"""SQLite, parameter: a JSON list of distinct call ids. Each call's status (NULL: no row) and the
kind and time of each of its events (NULL: none), one row per event."""

STORED_STARTS_SQL = (
    "SELECT "
    + ", ".join(f"c.{column}" for column in START_COLUMNS)
    + " FROM json_each(?) AS j JOIN llm_calls AS c ON c.call_id = j.value"
)
"""SQLite, parameter: a JSON list of call ids. ``START_COLUMNS`` of each of those calls stored."""

SQLITE = _statements(SQLITE_DIALECT, fts=True, event_lock="", events_checked=True, ends_apart=True)
POSTGRESQL = _statements(
    POSTGRESQL_DIALECT, fts=False, event_lock=EVENT_ORDER_LOCK_SQL, events_checked=False, ends_apart=False
)


def statements_for(database: peewee.Database) -> Statements:
    """The write statements of ``database``: SQLite's, else PostgreSQL's (peewee's other databases
    are refused by ``exporter._connection.store_path``)."""
    return SQLITE if is_sqlite(database) else POSTGRESQL


def _executemany(cursor: DBAPICursor, statement: str, rows: Any) -> None:
    cursor.executemany(statement, rows)


def _execute_batch(cursor: DBAPICursor, statement: str, rows: Any) -> None:
    """psycopg2's ``executemany`` makes one round trip per row (a batch of 500 records: ~1,000, the
    event-order lock held through most of them); ``execute_batch`` sends pages of 100 statements."""
    from psycopg2.extras import execute_batch

    execute_batch(cursor, statement, rows, page_size=100)


def write_batch(cursor: DBAPICursor, batch: RowBatch, statements: Statements = SQLITE) -> None:
    """Execute every statement of ``batch`` on ``cursor``; the caller owns the transaction."""
    sql = statements
    many = _execute_batch if sql is POSTGRESQL else _executemany
    ended = to_json(list(dict.fromkeys(rows.call["call_id"] for rows in batch.finals))) if sql.fts else None
    if batch.finals and ended:
        # Before the bodies change: a call indexed before (an ended span written twice) is indexed again.
        unindex(cursor, ended)
    if batch.queued:
        many(cursor, sql.queued_call, [rows.call for rows in batch.queued])
    for kind, rows in batch.updates.items():
        many(cursor, sql.updates[kind], rows)
    if batch.finals:
        finals = [rows.call for rows in batch.finals]
        if sql.final_end:
            ends, finals = ended_apart(cursor, finals, batch.first_written, sql.stored_starts)
            if ends:
                many(cursor, sql.final_end, ends)
        if finals:
            many(cursor, sql.final_call, finals)
    if batch.queued:
        many(cursor, sql.queued_body, [rows.body for rows in batch.queued])
    if batch.finals:
        many(cursor, sql.final_body, [rows.body for rows in batch.finals])
    if sql.event_lock and (batch.events or batch.closings):
        cursor.execute(sql.event_lock)  # ids committed in order (exporter.migrations, the feed contract)
    if batch.events:
        events = events_to_insert(cursor, batch.events, sql.event_state) if sql.event_state else batch.events
        if events:
            many(cursor, sql.event, events)
    if batch.closings:
        many(cursor, sql.closing, batch.closings)
        many(cursor, sql.closing_event, batch.closings)
    if batch.task_starts:
        many(cursor, sql.task_start, batch.task_starts)
    if batch.task_ends:
        many(cursor, sql.task_end, batch.task_ends)
    if batch.snapshots:
        many(cursor, sql.snapshot, batch.snapshots)
        names = to_json([row["scheduler"] for row in batch.snapshots])
        cursor.execute(sql.stale_snapshots, {"process": batch.snapshots[0]["process"], "names": names})
    if batch.losses:
        cursor.executemany(sql.loss, batch.losses)
    if batch.finals and ended:
        if batch.defer_index:
            cursor.execute(DEFER_INDEX_SQL, (ended,))
        else:  # last: the index entries of the whole batch stay in memory until the commit writes them
            index(cursor, ended)
    if batch.index_deferred and sql.fts:
        index_deferred(cursor)


_starts = operator.itemgetter(*START_COLUMNS)


def ended_apart(
    cursor: DBAPICursor,
    finals: Sequence[Mapping[str, Any]],
    first_written: Collection[str],
    stored_starts: str,
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Split the final rows ``finals`` into those whose call's stored row already holds their
    ``START_COLUMNS`` (a call queued in an earlier batch: its end sets ``END_COLUMNS`` alone, which
    leaves the row, its triggers' work and its indexes as the whole upsert would, without the
    upsert's insert) and the others (written whole). One read for the batch; the calls of
    ``first_written`` (queued in this batch: no row stored before) are not looked up."""
    wanted = [call["call_id"] for call in finals if call["call_id"] not in first_written]
    if not wanted:
        return [], list(finals)
    cursor.execute(stored_starts, (to_json(list(dict.fromkeys(wanted))),))
    stored = {row[0]: tuple(row) for row in cursor.fetchall()}
    ends, whole = [], []
    for call in finals:
        held = stored.get(call["call_id"])
        (ends if held is not None and held == _starts(call) else whole).append(call)
    return ends, whole


def _event_key(call_id: str, kind: str, at: int) -> tuple[str, str, int | None]:
    """What makes an event a duplicate: its call and kind (a retry's: and its time)."""
    return (call_id, kind, at if kind == n.RETRY else None)


def events_to_insert(
    cursor: DBAPICursor, events: Sequence[Mapping[str, Any]], event_state: str
) -> list[Mapping[str, Any]]:
    """The rows of ``events`` (in order) that the checking ``event`` statement would insert, one
    after the other, in this transaction (after the batch's call rows are written): those the call
    does not have yet (nor an earlier row of ``events``) and, for a live notice's, whose call has
    not ended. One read for the batch instead of two lookups an event (SQLite: the transaction
    holds the write lock, so what it reads stays true until the commit)."""
    call_ids = to_json(list(dict.fromkeys(event["call_id"] for event in events)))
    cursor.execute(event_state, (call_ids,))
    ended: set[str] = set()
    seen: set[tuple[str, str, int | None]] = set()
    for call_id, status, kind, at in cursor.fetchall():
        if status is not None and status not in LIVE_STATUSES:
            ended.add(call_id)
        if kind is not None:
            seen.add(_event_key(call_id, kind, at))
    kept = []
    for event in events:
        key = _event_key(event["call_id"], event["kind"], event["at"])
        if key in seen or (event["live"] and key[0] in ended):
            continue
        seen.add(key)
        kept.append(event)
    return kept


TEXT_TO_INDEX_SQL = (
    f"SELECT t.id, t.prompt, t.response, "
    f"EXISTS (SELECT 1 FROM {FTS_TABLE}_docsize AS d WHERE d.id = t.id), "
    f"EXISTS (SELECT 1 FROM {CJK_TABLE}_docsize AS d WHERE d.id = t.id) "
    f"FROM json_each(?) AS j JOIN llm_call_bodies AS b ON b.call_id = j.value "
    f"JOIN {TEXT_VIEW} AS t ON t.id = b.rowid"
)
"""Parameter: a JSON list of call ids. Each body's text as the full-text table's content view has
it, and whether the call is in the trigram index and in the short-query index already."""
FTS_ROW_SQL = f"INSERT INTO {FTS_TABLE} (rowid, prompt, response) VALUES (?, ?, ?)"
CJK_ROW_SQL = f"INSERT INTO {CJK_TABLE} (rowid, grams) VALUES (?, ?)"


def index(cursor: DBAPICursor, call_ids: str) -> None:
    """Index the calls of ``call_ids`` (a JSON list, distinct) for full-text search: the trigram
    index and the short-query index (SQLite; the calls' rows written).

    What ``FTS_INDEX_SQL`` and then ``CJK_INDEX_SQL`` (``exporter.migrations``) index, the same
    rows, with the text of the content view read once for both (each of those statements reads
    it again: ~15 us a call of 3 KB) and the short-query tokens made here, not through SQL."""
    cursor.execute(TEXT_TO_INDEX_SQL, (call_ids,))
    texts = cursor.fetchall()
    trigram_rows = [(rowid, prompt, response) for rowid, prompt, response, done, _ in texts if not done]
    cjk_rows = [
        (rowid, grams)
        for rowid, prompt, response, _, done in texts
        if not done and (grams := cjk_grams.short_tokens(prompt, response))
    ]
    if trigram_rows:
        cursor.executemany(FTS_ROW_SQL, trigram_rows)
    if cjk_rows:
        cursor.executemany(CJK_ROW_SQL, cjk_rows)


DEFER_INDEX_SQL = (
    f'INSERT OR IGNORE INTO "{UNINDEXED_TABLE}" (call_rowid) '
    "SELECT c.rowid FROM json_each(?) AS j JOIN llm_calls AS c ON c.call_id = j.value"
)
"""Parameter: a JSON list of call ids, ended in this transaction: listed to be indexed later."""
DEFERRED_CALLS_SQL = (
    f"SELECT json_group_array(c.call_id) FILTER (WHERE c.status NOT IN {_LIVE}) "
    f'FROM "{UNINDEXED_TABLE}" AS u CROSS JOIN llm_calls AS c ON c.rowid = u.call_rowid'
)
"""The ids of the ended calls listed in ``UNINDEXED_TABLE``, as a JSON list (a rowid listed for a
call since deleted, or given again to a call in flight, names none).

Written so that SQLite reads only the listed calls (it runs under the write lock): ``CROSS JOIN``
keeps the list the outer loop (a plain join scanned every call, looking each up in the list), and
the status is checked in ``FILTER``, not ``WHERE``, where the planner, with ``ANALYZE``'s
statistics, built a Bloom filter by scanning every call first (0.27-0.3 s at 1M calls; 20 µs now)."""


def index_deferred(cursor: DBAPICursor) -> None:
    """Index the ended calls ``UNINDEXED_TABLE`` lists, and empty it (SQLite; the caller's
    transaction): one segment of each full-text index for all of them."""
    cursor.execute(DEFERRED_CALLS_SQL)
    call_ids = cursor.fetchone()[0]
    if call_ids != "[]":
        index(cursor, call_ids)
    cursor.execute(f'DELETE FROM "{UNINDEXED_TABLE}"')


def unindex(cursor: DBAPICursor, call_ids: str) -> None:
    """Remove the full-text entries of the calls of ``call_ids`` (a JSON list) that are indexed.

    Every removal is found first: once a statement has touched a full-text table, each later one
    that opens a savepoint calls into FTS5 too."""
    cursor.execute(FTS_INDEXED_SQL, (call_ids,))
    indexed = cursor.fetchall()
    cursor.execute(CJK_INDEXED_SQL, (call_ids,))
    with_cjk = [rowid for (rowid,) in cursor.fetchall()]
    if indexed:
        cursor.executemany(FTS_UNINDEX_SQL, indexed)
    if with_cjk:
        cjk_grams.register(cursor.connection)  # retention may be given a database opened elsewhere
        cursor.execute(CJK_UNINDEX_SQL, (to_json(with_cjk),))
