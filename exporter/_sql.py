"""The SQL that writes mapped rows (``exporter.mapping.RowBatch``) to a SQLite or PostgreSQL store.

Both writers use it: the store's background thread (``exporter.writer``) and the standalone
``SQLiteSpanExporter``. A ``RowBatch`` is written by ``write_batch`` with one
``executemany`` per statement on the DB-API cursor (peewee's ``insert_many`` builds the SQL per row
and is ~25x slower), inside one transaction (``transaction``: ``BEGIN IMMEDIATE`` on SQLite).

The statements are built once per dialect at import (``_statements``): ``SQLITE`` (``:name``
parameters, byte for byte the statements the benchmarks measured) and ``POSTGRESQL`` (psycopg2's
``%(name)s``, ``GREATEST`` for SQLite's two-argument ``MAX``, ``false`` for the BOOLEAN ``stream``,
``json_array_elements_text`` for ``json_each``, no full-text rows); ``statements_for(database)``
picks one. ``store_path`` checks a writer's URL: SQLite and PostgreSQL are accepted, any other
database is refused.

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

``StoreFile`` holds one writer's connection: it opens (and migrates) the database on first use,
notices when a SQLite file was deleted or replaced under it (SQLite would go on writing to the
unlinked inode), and after any database error closes the connection so that the next write reopens
it (on PostgreSQL that also recovers a connection the server dropped).

Within a batch the statements run in this order: queued calls, live updates, final calls, bodies,
full-text rows, events (in arrival order; on PostgreSQL after taking the event-order lock, see the
feed contract in ``exporter.migrations``), closings of calls whose end was dropped, tasks, scheduler
snapshots (which replace all of the process's snapshot rows). Because each merge is monotonic, the
order of rows for one call inside a batch does not change the result.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import peewee
from playhouse import db_url

from exporter import _names as n
from exporter._exceptions import StoreConfigurationError, StoreDatabaseError, StoreError
from exporter.database import is_sqlite, open_database
from exporter.mapping import LIVE_STATUSES, RowBatch, to_json
from exporter.migrations import EVENT_ORDER_LOCK_SQL, FTS_DELETE_SQL, FTS_INSERT_SQL
from exporter.models import LLMCall, LLMCallBody, LLMTask, SchedulerSnapshot

try:  # the PostgreSQL driver is optional (``pip install 'llm-otel[postgres]'``)
    import psycopg2
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg2 = None

logger = logging.getLogger(__name__)

DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,) + ((psycopg2.Error,) if psycopg2 else ())
"""The base errors of the DB-API drivers in use, raised by raw cursors (peewee does not wrap them)."""


class DBAPICursor(Protocol):
    """The part of a DB-API cursor the writers use (sqlite3's or psycopg2's)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any: ...
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
    final_body: str
    event: str
    closing: str
    closing_event: str
    task_start: str
    task_end: str
    snapshot: str
    stale_snapshots: str
    forget_process: str
    fts: bool
    """Whether the full-text rows are written (``FTS_DELETE_SQL`` / ``FTS_INSERT_SQL``, SQLite only)."""
    event_lock: str
    """Run before the events are inserted (PostgreSQL: ``EVENT_ORDER_LOCK_SQL``); "" for none."""


def _columns(model: type[peewee.Model]) -> list[str]:
    return [f.column_name for f in model._meta.sorted_fields]


CALL_COLUMNS = _columns(LLMCall)
BODY_COLUMNS = _columns(LLMCallBody)
TASK_COLUMNS = _columns(LLMTask)
SNAPSHOT_COLUMNS = _columns(SchedulerSnapshot)


def _statements(d: Dialect, *, fts: bool, event_lock: str) -> Statements:
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

    advancing = {column: advance(column) for column in ("stream", "retry_count", "updated_at")}
    queued_call = (
        f"{insert('llm_calls', CALL_COLUMNS)} ON CONFLICT(call_id) DO UPDATE SET "
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
        queued_body=f"{insert('llm_call_bodies', BODY_COLUMNS)} ON CONFLICT(call_id) DO NOTHING",
        updates={
            n.DISPATCHED: live_update(["started_at", "wait_ms"]),
            n.FIRST_TOKEN: live_update(["first_token_at", "first_token_ms"]),
            n.RETRY: retry,
        },
        final_call=overwrite("llm_calls", CALL_COLUMNS, ["call_id"]),
        final_body=overwrite("llm_call_bodies", BODY_COLUMNS, ["call_id"]),
        event=event,
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
        fts=fts,
        event_lock=event_lock,
    )


SQLITE = _statements(SQLITE_DIALECT, fts=True, event_lock="")
POSTGRESQL = _statements(POSTGRESQL_DIALECT, fts=False, event_lock=EVENT_ORDER_LOCK_SQL)


def statements_for(database: peewee.Database) -> Statements:
    """The write statements of ``database``: SQLite's, else PostgreSQL's (peewee's other databases
    are refused by ``store_path``)."""
    return SQLITE if is_sqlite(database) else POSTGRESQL


def write_batch(cursor: DBAPICursor, batch: RowBatch, statements: Statements = SQLITE) -> None:
    """Execute every statement of ``batch`` on ``cursor``; the caller owns the transaction."""
    sql = statements
    if batch.queued:
        cursor.executemany(sql.queued_call, [rows.call for rows in batch.queued])
    for kind, rows in batch.updates.items():
        cursor.executemany(sql.updates[kind], rows)
    if batch.finals:
        cursor.executemany(sql.final_call, [rows.call for rows in batch.finals])
    if batch.queued:
        cursor.executemany(sql.queued_body, [rows.body for rows in batch.queued])
    if batch.finals:
        cursor.executemany(sql.final_body, [rows.body for rows in batch.finals])
        if sql.fts:
            call_ids = [rows.call["call_id"] for rows in batch.finals]
            cursor.executemany(FTS_DELETE_SQL, [(call_id, call_id) for call_id in call_ids])
            cursor.executemany(
                FTS_INSERT_SQL,
                [(rows.prompt_text, rows.response_text, rows.call["call_id"]) for rows in batch.finals],
            )
    if sql.event_lock and (batch.events or batch.closings):
        cursor.execute(sql.event_lock)  # ids committed in order (exporter.migrations, the feed contract)
    if batch.events:
        cursor.executemany(sql.event, batch.events)
    if batch.closings:
        cursor.executemany(sql.closing, batch.closings)
        cursor.executemany(sql.closing_event, batch.closings)
    if batch.task_starts:
        cursor.executemany(sql.task_start, batch.task_starts)
    if batch.task_ends:
        cursor.executemany(sql.task_end, batch.task_ends)
    if batch.snapshots:
        cursor.executemany(sql.snapshot, batch.snapshots)
        names = to_json([row["scheduler"] for row in batch.snapshots])
        cursor.execute(sql.stale_snapshots, {"process": batch.snapshots[0]["process"], "names": names})


@contextmanager
def transaction(connection: Any, begin: str = SQLITE.begin) -> Iterator[DBAPICursor]:
    """``begin`` … ``COMMIT`` on a raw DB-API connection; rolls back on any error.

    Unlike ``peewee``'s ``atomic()``, a failed rollback never hides the error that caused it (after
    ``SQLITE_FULL`` or an I/O error SQLite may already have rolled back on its own; a PostgreSQL
    connection may be gone). peewee keeps PostgreSQL connections in autocommit mode, so ``BEGIN``
    and ``COMMIT`` are ours to send there too.
    """
    cursor = connection.cursor()
    cursor.execute(begin)
    try:
        yield cursor
        cursor.execute("COMMIT")
    except BaseException:
        # sqlite3 knows whether a transaction is open; with another driver, try.
        if getattr(connection, "in_transaction", True):
            with suppress(*DRIVER_ERRORS):
                cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.close()


def store_path(url: str) -> str | None:
    """The absolute path of the SQLite file ``url`` names; None for a PostgreSQL URL.

    Checks ``url`` as ``open_database`` does and raises ``StoreConfigurationError`` for one that
    cannot work (a database other than SQLite and PostgreSQL included). A SQLite file that cannot be
    prepared right now (locked, read-only directory, ...) is only logged: the writer opens it again
    until it works. The path is absolute so that a later ``chdir`` of the app cannot move the store.
    """
    try:
        database = open_database(url)
    except StoreDatabaseError as exc:
        path = os.path.expanduser(url) if "://" not in url else db_url.parse(url)["database"]
        logger.warning("llm-otel store: %s; writing will start once it can be opened", exc)
        return os.path.abspath(path)
    if isinstance(database, peewee.PostgresqlDatabase):
        return None
    if not is_sqlite(database):
        raise StoreConfigurationError(
            f"the span store writes SQLite or PostgreSQL, not {url!r}; give it "
            "'sqlite:///path/to/llm_calls.db' or 'postgresql://user:pass@host:5432/dbname'"
        )
    return os.path.abspath(database.database)


class StoreFile:
    """A writer's database: opened on first use, reopened after a fault or once its file was deleted.

    On SQLite it also notices a file deleted or replaced under it (SQLite would go on writing to the
    unlinked inode); on PostgreSQL a lost connection is a fault like any other.
    """

    def __init__(self, open_database: Callable[[], peewee.Database]) -> None:
        """``open_database()`` returns a connected, migrated database (called again to reopen)."""
        self._open = open_database
        self._database: peewee.Database | None = None
        self._file_id: tuple[int, int] | None = None

    def database(self) -> peewee.Database:
        """The open database (opened now if needed), e.g. for retention on the same thread."""
        if self._database is None:
            self._database = self._open()
            self._file_id = _file_id(self._database)
        return self._database

    @property
    def statements(self) -> Statements:
        """The write statements of this database (opened now if needed)."""
        return statements_for(self.database())

    @contextmanager
    def transaction(self) -> Iterator[DBAPICursor]:
        """A write transaction on this thread's connection, (re)opened as needed.

        On a fault (``is_fault``) the connection is closed before the error propagates.
        """
        try:
            if self._database is not None and _file_id(self._database) != self._file_id:
                raise StoreDatabaseError(
                    f"the database file {self._database.database} was deleted or replaced while open; "
                    "it is opened again (and created anew if missing)"
                )
            database = self.database()
            with transaction(database.connection(), statements_for(database).begin) as cursor:
                yield cursor
        except Exception as exc:
            if is_fault(exc):
                self.close()
            raise

    def write(self, batch: RowBatch) -> None:
        """Write ``batch`` in one transaction."""
        with self.transaction() as cursor:
            write_batch(cursor, batch, self.statements)

    def close(self) -> None:
        """Close this thread's connection; the next transaction reopens the database."""
        database, self._database = self._database, None
        close_quietly(database)


def is_fault(exc: BaseException) -> bool:
    """True when the database is unavailable (retry later), False when it refuses the rows.

    Constraint, data and binding (or syntax) errors, and errors that are not the database's, belong
    to the rows: retrying them would fail the same way. A PostgreSQL ``InterfaceError`` is a closed
    connection, hence a fault; sqlite3's is a binding error.
    """
    refused: tuple[type[BaseException], ...] = (
        sqlite3.IntegrityError,
        sqlite3.DataError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
        peewee.IntegrityError,
        peewee.DataError,
        peewee.InterfaceError,
        peewee.ProgrammingError,
    )
    if psycopg2 is not None:
        refused += (psycopg2.IntegrityError, psycopg2.DataError, psycopg2.ProgrammingError)
    if isinstance(exc, refused):
        return False
    return isinstance(exc, (*DRIVER_ERRORS, peewee.PeeweeException, StoreError, OSError))


def close_quietly(database: peewee.Database | None) -> None:
    """Close this thread's connection to ``database``, forgetting one that is already broken."""
    if database is not None:
        try:
            database.close()
        except Exception:
            database.dispose()


def _file_id(database: peewee.Database) -> tuple[int, int] | None:
    """The (device, inode) of a SQLite database file; None when it is gone or not a file."""
    if not is_sqlite(database):
        return None
    try:
        stat = os.stat(database.database)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino
