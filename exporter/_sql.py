"""The SQL that writes mapped rows (``exporter.mapping.RowBatch``) to a SQLite store.

Both writers use it: the store's background thread (``exporter.writer``) and the standalone
``SQLiteSpanExporter``. A ``RowBatch`` is written by ``write_batch`` with one
``executemany`` per statement on the DB-API cursor (peewee's ``insert_many`` builds the SQL per row
and is ~25x slower), inside one ``BEGIN IMMEDIATE`` transaction (``transaction``).

Every statement is an idempotent merge, so a notice written twice, or a span exported by two
writers, changes nothing the second time:

- a final row (span ended) overwrites the call's row and body and replaces its full-text row (a
  call gets its full-text row when it ends: trigram indexing is the most expensive part of a write,
  and indexing the prompt twice per call would cost ~40% of the ingest rate);
- a live row (queued, dispatched, first token, retry) only fills empty columns and advances
  ``status`` / ``retry_count``, and only while the stored status is ``queued`` or ``running``: a
  notice that arrives after the end never regresses a finished call;
- an event is inserted unless the call already has one of that kind (retries: of that kind at
  that millisecond), which makes live events and the span's own events the same rows; a live
  event is not inserted once the call has ended.

``StoreFile`` holds one writer's connection: it opens (and migrates) the file on first use,
notices when the file was deleted or replaced under it (SQLite would go on writing to the unlinked
inode), and after any database error closes the connection so that the next write reopens it.

Within a batch the statements run in this order: queued calls, live updates, final calls, bodies,
full-text rows, events (in arrival order), closings of calls whose end was dropped, tasks, scheduler
snapshots (which replace all of the process's snapshot rows). Because each merge is monotonic, the
order of rows for one call inside a batch does not change the result.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import peewee
from playhouse import db_url

from exporter import _names as n
from exporter._exceptions import StoreConfigurationError, StoreDatabaseError, StoreError
from exporter.database import is_sqlite, open_database
from exporter.mapping import LIVE_STATUSES, RowBatch, to_json
from exporter.migrations import FTS_DELETE_SQL, FTS_INSERT_SQL
from exporter.models import LLMCall, LLMCallBody, LLMTask, SchedulerSnapshot

logger = logging.getLogger(__name__)

_LIVE = "(" + ", ".join(f"'{status}'" for status in LIVE_STATUSES) + ")"


def _columns(model: type[peewee.Model]) -> list[str]:
    return [f.column_name for f in model._meta.sorted_fields]


def _insert(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    values = ", ".join(f":{column}" for column in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"


def _overwrite(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    sets = ", ".join(f"{column} = excluded.{column}" for column in columns if column not in key)
    return f"{_insert(table, columns)} ON CONFLICT({', '.join(key)}) DO UPDATE SET {sets}"


CALL_COLUMNS = _columns(LLMCall)
BODY_COLUMNS = _columns(LLMCallBody)
TASK_COLUMNS = _columns(LLMTask)
SNAPSHOT_COLUMNS = _columns(SchedulerSnapshot)

FINAL_CALL_SQL = _overwrite("llm_calls", CALL_COLUMNS, ["call_id"])
FINAL_BODY_SQL = _overwrite("llm_call_bodies", BODY_COLUMNS, ["call_id"])

_ADVANCING = {
    "stream": "MAX(llm_calls.stream, excluded.stream)",
    "retry_count": "MAX(llm_calls.retry_count, excluded.retry_count)",
    "updated_at": "MAX(llm_calls.updated_at, excluded.updated_at)",
}
QUEUED_CALL_SQL = (
    f"{_insert('llm_calls', CALL_COLUMNS)} ON CONFLICT(call_id) DO UPDATE SET "
    + ", ".join(
        f"{column} = {_ADVANCING.get(column, f'COALESCE(llm_calls.{column}, excluded.{column})')}"
        for column in CALL_COLUMNS
        if column not in ("call_id", "status")
    )
    + f" WHERE llm_calls.status IN {_LIVE}"
)
QUEUED_BODY_SQL = f"{_insert('llm_call_bodies', BODY_COLUMNS)} ON CONFLICT(call_id) DO NOTHING"


def _live_update(columns: Sequence[str], sets: Sequence[str], retry_count: str = "0") -> str:
    """A live notice's upsert: creates a ``running`` row if the call has none yet."""
    names = ", ".join(columns)
    values = ", ".join(f":{column}" for column in columns)
    return (
        f"INSERT INTO llm_calls (call_id, status, stream, retry_count, enqueued_at, updated_at, {names}) "
        f"VALUES (:call_id, 'running', 0, {retry_count}, :enqueued_at, :updated_at, {values}) "
        "ON CONFLICT(call_id) DO UPDATE SET status = 'running', "
        "updated_at = MAX(llm_calls.updated_at, excluded.updated_at), "
        + ", ".join(sets)
        + f" WHERE llm_calls.status IN {_LIVE}"
    )


def _fill(column: str) -> str:
    return f"{column} = COALESCE(llm_calls.{column}, excluded.{column})"


UPDATE_SQL = {
    n.DISPATCHED: _live_update(["started_at", "wait_ms"], [_fill("started_at"), _fill("wait_ms")]),
    n.FIRST_TOKEN: _live_update(
        ["first_token_at", "first_token_ms"], [_fill("first_token_at"), _fill("first_token_ms")]
    ),
    # ``attempt`` is the retry's number when the notice has one; otherwise the count goes up by one.
    n.RETRY: (
        "INSERT INTO llm_calls (call_id, status, stream, retry_count, enqueued_at, updated_at) "
        "VALUES (:call_id, 'running', 0, COALESCE(:attempt, 1), :enqueued_at, :updated_at) "
        "ON CONFLICT(call_id) DO UPDATE SET status = 'running', "
        "updated_at = MAX(llm_calls.updated_at, excluded.updated_at), "
        "retry_count = MAX(llm_calls.retry_count, COALESCE(:attempt, llm_calls.retry_count + 1)) "
        f"WHERE llm_calls.status IN {_LIVE}"
    ),
}

# ``live`` is 1 for an event from a live notice: it is not written once the call has ended (the
# ended span carries every event of the call, so nothing is lost).
EVENT_SQL = (
    "INSERT INTO llm_call_events (call_id, kind, at, data) SELECT :call_id, :kind, :at, :data "
    "WHERE NOT EXISTS (SELECT 1 FROM llm_call_events WHERE call_id = :call_id AND kind = :kind "
    f"AND (:kind != '{n.RETRY}' OR at = :at)) "
    "AND (:live = 0 OR NOT EXISTS "
    f"(SELECT 1 FROM llm_calls WHERE call_id = :call_id AND status NOT IN {_LIVE}))"
)

# A call whose ended span was dropped (queue full): end its live row, or write a minimal ended row.
CLOSING_SQL = (
    "INSERT INTO llm_calls (call_id, status, stream, retry_count, enqueued_at, ended_at, duration_ms, "
    "error_type, model, source, requested_by, process, updated_at) "
    "VALUES (:call_id, :status, 0, 0, :enqueued_at, :ended_at, :ended_at - :enqueued_at, :error_type, "
    ":model, :source, :requested_by, :process, :ended_at) "
    "ON CONFLICT(call_id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at, "
    "duration_ms = excluded.ended_at - COALESCE(llm_calls.started_at, llm_calls.enqueued_at), "
    "error_type = COALESCE(llm_calls.error_type, excluded.error_type), "
    "updated_at = MAX(llm_calls.updated_at, excluded.updated_at) "
    f"WHERE llm_calls.status IN {_LIVE}"
)
CLOSING_EVENT_SQL = (
    "INSERT INTO llm_call_events (call_id, kind, at, data) SELECT :call_id, :status, :ended_at, :data "
    "WHERE NOT EXISTS (SELECT 1 FROM llm_call_events WHERE call_id = :call_id AND kind = :status)"
)

TASK_START_SQL = f"{_insert('llm_tasks', TASK_COLUMNS)} ON CONFLICT(task_id) DO NOTHING"
TASK_END_SQL = _overwrite("llm_tasks", TASK_COLUMNS, ["task_id"])
SNAPSHOT_SQL = _overwrite("llm_scheduler_snapshots", SNAPSHOT_COLUMNS, ["process", "scheduler"])
# After the upserts: this process's rows of schedulers it no longer reports (``names``: a JSON list).
STALE_SNAPSHOTS_SQL = (
    "DELETE FROM llm_scheduler_snapshots WHERE process = :process "
    "AND scheduler NOT IN (SELECT value FROM json_each(:names))"
)


def write_batch(cursor: sqlite3.Cursor, batch: RowBatch) -> None:
    """Execute every statement of ``batch`` on ``cursor``; the caller owns the transaction."""
    if batch.queued:
        cursor.executemany(QUEUED_CALL_SQL, [rows.call for rows in batch.queued])
    for kind, rows in batch.updates.items():
        cursor.executemany(UPDATE_SQL[kind], rows)
    if batch.finals:
        cursor.executemany(FINAL_CALL_SQL, [rows.call for rows in batch.finals])
    if batch.queued:
        cursor.executemany(QUEUED_BODY_SQL, [rows.body for rows in batch.queued])
    if batch.finals:
        cursor.executemany(FINAL_BODY_SQL, [rows.body for rows in batch.finals])
        call_ids = [rows.call["call_id"] for rows in batch.finals]
        cursor.executemany(FTS_DELETE_SQL, [(call_id, call_id) for call_id in call_ids])
        cursor.executemany(
            FTS_INSERT_SQL,
            [(rows.prompt_text, rows.response_text, rows.call["call_id"]) for rows in batch.finals],
        )
    if batch.events:
        cursor.executemany(EVENT_SQL, batch.events)
    if batch.closings:
        cursor.executemany(CLOSING_SQL, batch.closings)
        cursor.executemany(CLOSING_EVENT_SQL, batch.closings)
    if batch.task_starts:
        cursor.executemany(TASK_START_SQL, batch.task_starts)
    if batch.task_ends:
        cursor.executemany(TASK_END_SQL, batch.task_ends)
    if batch.snapshots:
        cursor.executemany(SNAPSHOT_SQL, batch.snapshots)
        names = to_json([row["scheduler"] for row in batch.snapshots])
        cursor.execute(STALE_SNAPSHOTS_SQL, {"process": batch.snapshots[0]["process"], "names": names})


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on a raw connection; rolls back on any error.

    Unlike ``peewee``'s ``atomic()``, a failed rollback never hides the error that caused it (after
    ``SQLITE_FULL`` or an I/O error SQLite may already have rolled back on its own).
    """
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        yield cursor
        cursor.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            with suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.close()


def sqlite_file(url: str, writer: str) -> str:
    """The absolute path of the SQLite file ``url`` names, checked as ``open_database`` checks it.

    Raises ``StoreConfigurationError`` for a URL that cannot work (``writer`` names the caller in the
    message), e.g. another database than SQLite. A file that cannot be prepared right now (locked,
    read-only directory, ...) is only logged: the writer opens it again until it works. The path is
    absolute so that a later ``chdir`` of the app cannot move the store.
    """
    try:
        database = open_database(url)
    except StoreDatabaseError as exc:
        path = os.path.expanduser(url) if "://" not in url else db_url.parse(url)["database"]
        logger.warning("llm-otel store: %s; writing will start once it can be opened", exc)
        return os.path.abspath(path)
    if not is_sqlite(database):
        raise StoreConfigurationError(
            f"{writer} writes SQLite files only, not {url!r}; give it 'sqlite:///path/to/llm_calls.db'"
        )
    return os.path.abspath(database.database)


class StoreFile:
    """A writer's SQLite file: opened on first use, reopened after a fault or once it was deleted."""

    def __init__(self, open_database: Callable[[], peewee.SqliteDatabase]) -> None:
        """``open_database()`` returns a connected, migrated database (called again to reopen)."""
        self._open = open_database
        self._database: peewee.SqliteDatabase | None = None
        self._file_id: tuple[int, int] | None = None

    def database(self) -> peewee.SqliteDatabase:
        """The open database (opened now if needed), e.g. for retention on the same thread."""
        if self._database is None:
            self._database = self._open()
            self._file_id = _file_id(self._database)
        return self._database

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A ``BEGIN IMMEDIATE`` transaction on this thread's connection, (re)opened as needed.

        On a fault (``is_fault``) the connection is closed before the error propagates.
        """
        try:
            if self._database is not None and _file_id(self._database) != self._file_id:
                raise StoreDatabaseError(
                    f"the database file {self._database.database} was deleted or replaced while open; "
                    "it is opened again (and created anew if missing)"
                )
            with transaction(self.database().connection()) as cursor:
                yield cursor
        except Exception as exc:
            if is_fault(exc):
                self.close()
            raise

    def write(self, batch: RowBatch) -> None:
        """Write ``batch`` in one transaction."""
        with self.transaction() as cursor:
            write_batch(cursor, batch)

    def close(self) -> None:
        """Close this thread's connection; the next transaction reopens the file."""
        database, self._database = self._database, None
        close_quietly(database)


def is_fault(exc: BaseException) -> bool:
    """True when the database is unavailable (retry later), False when it refuses the rows.

    Constraint, data and binding errors, and errors that are not the database's, belong to the
    rows: retrying them would fail the same way.
    """
    refused = (
        sqlite3.IntegrityError,
        sqlite3.DataError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
        peewee.IntegrityError,
        peewee.DataError,
        peewee.InterfaceError,
        peewee.ProgrammingError,
    )
    if isinstance(exc, refused):
        return False
    return isinstance(exc, (sqlite3.Error, peewee.PeeweeException, StoreError, OSError))


def close_quietly(database: peewee.Database | None) -> None:
    """Close this thread's connection to ``database``, forgetting one that is already broken."""
    if database is not None:
        try:
            database.close()
        except Exception:
            database.dispose()


def _file_id(database: peewee.SqliteDatabase) -> tuple[int, int] | None:
    """The (device, inode) of the database file; None when it is gone."""
    try:
        stat = os.stat(database.database)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino
