"""A writer's connection to the store: opened on first use, reopened after a fault.

Both writers use it: the store's background thread (``exporter.writer``) and the standalone
``SQLiteSpanExporter``. The statements they send are ``exporter._sql``'s; this module only opens,
checks and closes connections, and runs transactions on them.

Usage::

    path = store_path(url)                      # checks the URL without touching the disk
    store = StoreFile(lambda: ready_database(url))
    store.write(batch)                          # one transaction; a fault closes the connection
    store.close()

``StoreFile`` notices when a SQLite file was deleted or replaced under it (SQLite would go on
writing to the unlinked inode), and after any database error closes the connection so that the
next write reopens it (on PostgreSQL that also recovers a connection the server dropped).
``is_fault`` tells a database that is unavailable (retry later) from rows it refuses (drop them).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any

import peewee

from exporter._exceptions import StoreConfigurationError, StoreDatabaseError, StoreError
from exporter._sql import SQLITE, DBAPICursor, Statements, statements_for, write_batch
from exporter.database import check_url, is_sqlite
from exporter.mapping import RowBatch

try:  # the PostgreSQL driver is optional (``pip install 'llm-otel[postgres]'``)
    import psycopg2
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg2 = None

DRIVER_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,) + ((psycopg2.Error,) if psycopg2 else ())
"""The base errors of the DB-API drivers in use, raised by raw cursors (peewee does not wrap them)."""


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


class StoreFile:
    """A writer's database: opened on first use, reopened after a fault or once its file was deleted.

    On SQLite it also notices a file deleted or replaced under it (SQLite would go on writing to the
    unlinked inode); on PostgreSQL a lost connection is a fault like any other.
    """

    def __init__(
        self,
        open_database: Callable[[], peewee.Database],
        write_lock: AbstractContextManager[object] | None = None,
    ) -> None:
        """``open_database()`` returns a connected, migrated database (called again to reopen);
        ``write_lock`` is held around each transaction (shared with this process's retention)."""
        self._open = open_database
        self._write_lock = write_lock or nullcontext()
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
            with (
                self._write_lock,
                transaction(database.connection(), statements_for(database).begin) as cursor,
            ):
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
