"""A writer's connection to the store: opened on first use, reopened after a fault.

Both writers use it: the store's background thread (``exporter.writer``) and the standalone
``SQLiteSpanExporter``. The statements they send are ``exporter._sql``'s; this module only opens,
checks and closes connections, and runs transactions on them.

Usage::

    path = store_path(url)                      # checks the URL without touching the disk
    store = StoreFile(lambda: ready_database(url))
    store.write(batch)                          # one transaction; a fault closes the connection
    store.close()

``StoreFile`` notices when a SQLite file was deleted, moved away or replaced under it (SQLite
would go on writing to the unlinked inode), before and after each transaction: a batch committed
into a file that left its path meanwhile is reported as failed, so the writer writes it again into
the file now there (every statement is an idempotent merge). It also notices a store emptied or
overwritten in place: each store records when it was created (migration 1's ``applied_at``), and a
reopened store born at another moment is another store. Either way ``on_replaced(reason)`` is
called once, after the new store is open, so that the writer can record what went with the old
one. After any database error the connection is closed, so that the next write reopens it (on
PostgreSQL that also recovers a connection the server dropped).

On SQLite the connection's page cache is dropped (``PRAGMA shrink_memory``) before a transaction
at most every ``REREAD_S``: SQLite trusts its cache while no other connection writes, so a writer
alone on a file whose pages were overwritten or cut off (a disk fault, a careless ``dd``, a
truncation) would go on committing on top of the damage without ever reading it. Reading the pages
again turns the damage into ``database disk image is malformed`` within a second: a fault, retried,
the records held and then counted as dropped, and no longer written into a damaged file.

Waiting for the lock. On SQLite the writer's connection has no busy handler (``busy_timeout`` 0):
``transaction`` tries ``BEGIN IMMEDIATE`` again every ``LOCK_POLL_S`` while another process holds
the write lock, for as long as the connection's ``busy_timeout`` was (``when_unlocked``), then
raises ``database is locked`` (a fault: the writer keeps the records and retries). SQLite's own busy
handler sleeps in steps growing to 100 ms (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100), so a wait
that outlasts one short transaction of another process was rounded up to 33 or 53 ms; polling takes
the lock within about ``LOCK_POLL_S`` of its release (issue 10). Retention polls the same way.

``is_fault`` tells a database that is unavailable (retry later) from rows it refuses (drop them).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any, TypeVar

import peewee

from exporter._exceptions import StoreConfigurationError, StoreDatabaseError, StoreError
from exporter._sql import SQLITE, DBAPICursor, Statements, statements_for, write_batch
from exporter.database import check_url, is_sqlite
from exporter.mapping import RowBatch

try:  # the PostgreSQL driver is optional (``pip install 'llm-otel[postgres]'``)
    import psycopg2
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg2 = None

REREAD_S = 1.0
"""Seconds between two drops of a SQLite connection's page cache (see the module docstring)."""

DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,) + ((psycopg2.Error,) if psycopg2 else ())
"""The base errors of the DB-API drivers in use, raised by raw cursors (peewee does not wrap them)."""

LOCK_POLL_S = 0.001
"""Seconds between two tries of a SQLite write that found the database locked (``when_unlocked``)."""
LOCK_POLL_SLOW_S = 0.002
"""The same once a write has waited ``LOCK_POLL_SLOWER_AFTER_S``: a long wait costs fewer tries."""
LOCK_POLL_SLOWER_AFTER_S = 0.05

_T = TypeVar("_T")
logger = logging.getLogger(__name__)


def store_path(url: str) -> str | None:
    """The absolute path of the SQLite file ``url`` names; None for a PostgreSQL URL.

    Checks ``url`` as ``open_database`` does, without touching the disk, and raises
    ``StoreConfigurationError`` for one that cannot work (a database other than SQLite and
    PostgreSQL included). The file is made, and its faults reported, by the writer that opens it.
    The path is absolute so that a later ``chdir`` of the app cannot move the store.
    """
    database_class, path = check_url(url)
    if issubclass(database_class, peewee.PostgresqlDatabase):
        return None
    if path is None or not issubclass(database_class, peewee.SqliteDatabase):
        raise StoreConfigurationError(
            f"the span store writes SQLite or PostgreSQL, not {url!r}; give it "
            "'sqlite:///path/to/llm_calls.db' or 'postgresql://user:pass@host:5432/dbname'"
        )
    return path


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's ``database is locked`` (another connection holds the lock), raw or peewee's."""
    return isinstance(exc, (sqlite3.OperationalError, peewee.OperationalError)) and "locked" in str(exc)


def when_unlocked(attempt: Callable[[], _T], wait_s: float) -> _T:
    """``attempt()``, tried again every ``LOCK_POLL_S`` while it finds the SQLite database locked,
    for ``wait_s`` at most (then the lock's error propagates). Meant for a connection whose busy
    handler is off (``busy_timeout`` 0, ``no_busy_handler``): see the module docstring."""
    started = time.monotonic()
    while True:
        try:
            return attempt()
        except (sqlite3.OperationalError, peewee.OperationalError) as exc:
            waited = time.monotonic() - started
            if not is_locked(exc) or waited >= wait_s:
                raise
        time.sleep(LOCK_POLL_S if waited < LOCK_POLL_SLOWER_AFTER_S else LOCK_POLL_SLOW_S)


def no_busy_handler(connection: sqlite3.Connection) -> float:
    """Switch ``connection``'s busy handler off; returns its ``busy_timeout`` before, in seconds
    (how long ``when_unlocked`` should wait instead)."""
    (busy_ms,) = connection.execute("PRAGMA busy_timeout").fetchone()
    connection.execute("PRAGMA busy_timeout = 0")
    return busy_ms / 1000


def polled(database: peewee.Database, attempt: Callable[[], _T], wait_s: float | None = None) -> _T:
    """SQLite: ``attempt()`` with the connection's busy handler off, tried again while the database
    is locked (``when_unlocked``) for ``wait_s`` (default: the connection's ``busy_timeout``), the
    busy handler put back after. For a peewee connection that also reads, unlike the writer's."""
    if not is_sqlite(database):
        return attempt()
    connection = database.connection()
    busy_s = no_busy_handler(connection)
    try:
        return when_unlocked(attempt, busy_s if wait_s is None else wait_s)
    finally:
        connection.execute(f"PRAGMA busy_timeout = {round(busy_s * 1000)}")


def saved_apart(database: peewee.Database, write: Callable[[], None], wait_s: float, what: str) -> bool:
    """A reader's write of what it kept for other processes (``exporter.search_matches``,
    ``exporter.kept_summaries``): ``write()`` in an ``IMMEDIATE`` transaction of its own that waits
    at most ``wait_s`` for the lock (``polled``). False, logged at DEBUG, when the store is locked,
    read-only or older than the table: the reader answers all the same and tries again later."""

    def attempt() -> None:
        with database.atomic(lock_type="IMMEDIATE"):
            write()

    try:
        polled(database, attempt, wait_s)
    except peewee.DatabaseError as error:
        logger.debug("%s not saved to %s: %s", what, database.database, error)
        return False
    return True


@contextmanager
def transaction(
    connection: Any, begin: str = SQLITE.begin, *, lock_wait_s: float | None = None
) -> Iterator[DBAPICursor]:
    """``begin`` … ``COMMIT`` on a raw DB-API connection; rolls back on any error.

    Unlike ``peewee``'s ``atomic()``, a failed rollback never hides the error that caused it (after
    ``SQLITE_FULL`` or an I/O error SQLite may already have rolled back on its own; a PostgreSQL
    connection may be gone). peewee keeps PostgreSQL connections in autocommit mode, so ``BEGIN``
    and ``COMMIT`` are ours to send there too. ``lock_wait_s``: ``begin`` is tried again while the
    database is locked, that long at most (``when_unlocked``; a connection with no busy handler).
    """
    cursor = connection.cursor()
    if lock_wait_s is None:
        cursor.execute(begin)
    else:
        when_unlocked(lambda: cursor.execute(begin), lock_wait_s)
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


class StoreFileReplaced(StoreDatabaseError):
    """The SQLite file left its path (deleted, moved away, replaced) while this writer had it open."""


class StoreFile:
    """A writer's database: opened on first use, reopened after a fault or once its file was replaced.

    See the module docstring: on SQLite it notices a file deleted, moved or replaced under it, and
    a store emptied in place, and re-reads its pages every ``REREAD_S``; on PostgreSQL a lost
    connection is a fault like any other.
    """

    def __init__(
        self,
        open_database: Callable[[], peewee.Database],
        write_lock: AbstractContextManager[object] | None = None,
        *,
        on_replaced: Callable[[str], None] | None = None,
    ) -> None:
        """``open_database()`` returns a connected, migrated database (called again to reopen);
        ``write_lock`` is held around each transaction (shared with this process's retention);
        ``on_replaced(reason)`` is called once the store that replaced the one written before is open."""
        self._open = open_database
        self._write_lock = write_lock or nullcontext()
        self._on_replaced = on_replaced
        self._database: peewee.Database | None = None
        self._file_id: tuple[int, int] | None = None
        self._born: int | None = None  # when the store written so far was created (epoch ms)
        self._left: str | None = None  # how the file left its path, until the next store is open
        self._reread_at = 0.0
        self._lock_wait_s: float | None = None  # SQLite: its busy_timeout, waited by polling instead

    def database(self) -> peewee.Database:
        """The open database (opened now if needed), e.g. for retention on the same thread."""
        if self._database is None:
            database = self._open()
            try:
                file_id, born = _file_id(database), _born(database)
            except Exception:
                close_quietly(database)
                raise
            if self._born is not None and born != self._born and self._on_replaced is not None:
                if self._left is None:
                    self._left = (
                        "the store was emptied or overwritten in place"
                        if file_id == self._file_id
                        else "the store file was replaced (or deleted and created again)"
                    )
                self._on_replaced(f"{self._left}: {database.database} is a new store")
            self._database, self._file_id, self._born, self._left = database, file_id, born, None
            self._reread_at = time.monotonic() + REREAD_S
            self._lock_wait_s = no_busy_handler(database.connection()) if is_sqlite(database) else None
        return self._database

    @property
    def statements(self) -> Statements:
        """The write statements of this database (opened now if needed)."""
        return statements_for(self.database())

    @contextmanager
    def transaction(self) -> Iterator[DBAPICursor]:
        """A write transaction on this thread's connection, (re)opened as needed.

        On a fault (``is_fault``) the connection is closed before the error propagates; a file that
        left its path before or during the transaction raises ``StoreFileReplaced`` (its commit, if
        any, went into the file that left).
        """
        try:
            self._check_file()
            database = self.database()
            connection = database.connection()
            if is_sqlite(database) and time.monotonic() >= self._reread_at:
                connection.execute("PRAGMA shrink_memory")  # the next reads come from the file
                self._reread_at = time.monotonic() + REREAD_S
            begin = statements_for(database).begin
            with self._write_lock, transaction(connection, begin, lock_wait_s=self._lock_wait_s) as cursor:
                yield cursor
            self._check_file()
        except Exception as exc:
            if is_fault(exc):
                self.close()
            raise

    def _check_file(self) -> None:
        if self._database is None or not is_sqlite(self._database):
            return
        now = _file_id(self._database)
        if now != self._file_id:
            gone = now is None
            self._left = f"the store file was {'deleted or moved away' if gone else 'replaced by another'}"
            raise StoreFileReplaced(
                f"the database file {self._database.database} was "
                f"{'deleted or moved away' if gone else 'replaced'} while open; "
                "it is opened again (and created anew if missing)"
            )

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


def _born(database: peewee.Database) -> int | None:
    """When the store was created: migration 1's ``applied_at`` (None when it has no schema yet)."""
    cursor = database.execute_sql("SELECT applied_at FROM llm_otel_schema WHERE version = 1")
    row = cursor.fetchone()
    cursor.close()
    return None if row is None else row[0]


def _file_id(database: peewee.Database) -> tuple[int, int] | None:
    """The (device, inode) of a SQLite database file; None when it is gone or not a file."""
    if not is_sqlite(database):
        return None
    try:
        stat = os.stat(database.database)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino
