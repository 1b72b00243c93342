"""Opening the span store's database from a URL.

Usage::

    from exporter import migrate, open_database
    from exporter.models import db

    database = open_database("sqlite:///llm_calls.db")
    migrate(database)          # forward-only migrations, safe from several processes at once
    db.initialize(database)    # the models (and exporter.queries) now use it

Accepted URLs:

- ``sqlite:///relative/path.db`` (three slashes: relative to the working directory),
- ``sqlite:////abs/path.db`` (four slashes: absolute),
- a plain filesystem path (``llm_calls.db``, ``/var/lib/app/llm.db``, ``~/llm.db``),
- ``postgresql://user:pass@host:5432/dbname`` (an existing database; needs psycopg2,
  ``pip install 'llm-otel[postgres]'``).

Other databases (MySQL, ...) are refused: the store's SQL is written for SQLite and PostgreSQL.

SQLite connections are opened with ``busy_timeout`` (``busy_timeout_ms``, default 5000),
``journal_mode=WAL``, ``synchronous=NORMAL`` and ``foreign_keys=OFF``. ``open_database`` creates the
parent directory when missing, gives a new file ``auto_vacuum=INCREMENTAL`` (it only takes effect
before the first table, so an existing file keeps its mode and keeps working) and switches the file
to WAL once, retrying while other processes open the same new file. peewee keeps one connection
per thread (``thread_safe=True``); each connection knows the SQL functions
``llm_otel_short_tokens`` and ``llm_otel_cjk_grams`` (``exporter.cjk_grams``: the short-query
index's tokens since migration 16, and migration 7's), with which they are computed again to
remove them. A file that is not an SQLite database raises ``StoreDamagedError`` (a ``StoreDatabaseError``).

PostgreSQL databases get 64-bit integer columns (``BIGINT``, ``BIGSERIAL``: epoch milliseconds
do not fit PostgreSQL's 32-bit ``INTEGER``) and ``DOUBLE PRECISION`` floats, like SQLite's; their
connections are opened lazily by peewee, in autocommit mode, one per thread.

``check_url(url)`` checks a URL as ``open_database`` does, without touching the disk, and returns
the database class it names and, for SQLite, the file's absolute path.

``immediate(database)`` opens a write transaction that takes SQLite's write lock at ``BEGIN``
(``BEGIN IMMEDIATE``), so a reader never has to upgrade to a writer mid-transaction; elsewhere a
plain transaction. ``read_snapshot(database)`` opens a transaction whose statements all see the
same data (SQLite's read transactions always do; PostgreSQL needs ``REPEATABLE READ``).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlparse

import peewee
from playhouse import db_url

from exporter import cjk_grams
from exporter._exceptions import StoreConfigurationError, database_error

DEFAULT_BUSY_TIMEOUT_MS = 5000
POSTGRESQL_FIELD_TYPES = {"INT": "BIGINT", "AUTO": "BIGSERIAL", "FLOAT": "DOUBLE PRECISION"}
"""peewee field types on PostgreSQL: integers and floats as wide as SQLite's."""

_ACCEPTED = (
    "accepted forms: 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', "
    "a plain file path such as 'llm_calls.db', or 'postgresql://user:password@host:5432/dbname'"
)


def open_database(
    url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, create: bool = True
) -> peewee.Database:
    """Return an unconnected peewee database for ``url`` (it connects on first use, per thread).

    Raises ``StoreConfigurationError`` for a URL it cannot use, with the accepted forms in the message,
    and with ``create=False`` (tools that read or prune a store) for a SQLite file that does not
    exist, creating nothing.
    """
    database_class, path, params = _parse(url)
    if path is None:
        return _connect(url.strip(), database_class)
    return _sqlite(path, busy_timeout_ms, params, database_class, create=create)


def check_url(url: str) -> tuple[type[peewee.Database], str | None]:
    """The database class ``url`` names and, for SQLite, the file's absolute path.

    Checks ``url`` exactly as ``open_database`` does, without touching the disk (no directory is
    made, no file opened), and raises the same ``StoreConfigurationError``.
    """
    database_class, path, _ = _parse(url)
    if path is None:
        return type(_connect(url.strip(), database_class)), None
    return database_class, os.path.abspath(path)


def _parse(url: str) -> tuple[type[peewee.Database], str | None, dict[str, object]]:
    """(database class, SQLite path or None, SQLite URL parameters); raises for a URL it cannot use."""
    if not isinstance(url, str):
        raise StoreConfigurationError(
            f"a database URL must be a string, not {type(url).__name__} {url!r}; {_ACCEPTED}"
        )
    if not url.strip():
        raise StoreConfigurationError(f"the database URL is empty; {_ACCEPTED}")
    url = url.strip()
    if "://" not in url:
        return peewee.SqliteDatabase, _checked_path(os.path.expanduser(url)), {}
    parsed = urlparse(url)
    database_class = db_url.schemes.get(parsed.scheme)
    if database_class is None:
        raise StoreConfigurationError(f"unknown database scheme {parsed.scheme!r} in {url!r}; {_ACCEPTED}")
    if not issubclass(database_class, (peewee.SqliteDatabase, peewee.PostgresqlDatabase)):
        raise StoreConfigurationError(
            f"{url!r} names a {parsed.scheme} database: the span store writes SQLite or PostgreSQL only; "
            f"{_ACCEPTED}"
        )
    if not issubclass(database_class, peewee.SqliteDatabase):
        return database_class, None, {}
    if parsed.netloc:
        raise StoreConfigurationError(
            f"{url!r} names a host ({parsed.netloc!r}); a SQLite file takes three slashes "
            f"('sqlite:///{parsed.netloc}{parsed.path}'); {_ACCEPTED}"
        )
    params = db_url.parse(url)
    return database_class, _checked_path(params.pop("database")), params


def _connect(url: str, database_class: type[peewee.Database]) -> peewee.Database:
    """A PostgreSQL database (nothing is connected yet)."""
    postgresql = issubclass(database_class, peewee.PostgresqlDatabase)
    try:
        database = db_url.connect(url, **({"field_types": POSTGRESQL_FIELD_TYPES} if postgresql else {}))
    except (ValueError, RuntimeError) as exc:
        raise StoreConfigurationError(
            f"cannot use database URL {url!r}: {str(exc).rstrip('.')}; {_ACCEPTED}"
        ) from exc
    if postgresql and importlib.util.find_spec("psycopg2") is None:  # the store's SQL is written for it
        raise StoreConfigurationError(f"{url!r} needs the psycopg2 driver: pip install 'llm-otel[postgres]'")
    return database


def _checked_path(path: str) -> str:
    if not path or path == ":memory:" or path.startswith("file:"):
        raise StoreConfigurationError(
            f"{path!r} is not a database file (an in-memory database would differ per thread); {_ACCEPTED}"
        )
    return path


def is_sqlite(database: peewee.Database) -> bool:
    """True when ``database`` is SQLite (WAL, FTS5 and ``BEGIN IMMEDIATE`` are available)."""
    return isinstance(database, peewee.SqliteDatabase)


def immediate(database: peewee.Database) -> AbstractContextManager[object]:
    """A transaction context that takes the write lock at its start (``BEGIN IMMEDIATE`` on SQLite)."""
    return database.atomic("IMMEDIATE") if is_sqlite(database) else database.atomic()


def read_snapshot(database: peewee.Database) -> AbstractContextManager[object]:
    """A transaction in which every read sees the same data (``REPEATABLE READ`` on PostgreSQL)."""
    if isinstance(database, peewee.PostgresqlDatabase):
        return database.atomic(isolation_level="REPEATABLE READ")
    return database.atomic()


def sqlite_pragmas(busy_timeout_ms: int) -> list[tuple[str, object]]:
    """The pragmas set on every SQLite connection, in order (the busy timeout first)."""
    return [
        ("busy_timeout", int(busy_timeout_ms)),
        ("journal_mode", "WAL"),
        ("synchronous", "NORMAL"),
        ("foreign_keys", "OFF"),
    ]


def _sqlite(
    path: str,
    busy_timeout_ms: int,
    params: dict[str, object],
    database_class: type[peewee.SqliteDatabase] = peewee.SqliteDatabase,
    *,
    create: bool,
) -> peewee.SqliteDatabase:
    if busy_timeout_ms < 0:
        raise StoreConfigurationError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
    file = Path(path)
    if not create and not file.is_file():
        raise StoreConfigurationError(
            f"there is no store at {path!r} ({'a directory' if file.is_dir() else 'no such file'})"
        )
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreConfigurationError(f"cannot create the directory of the store {path!r}: {exc}") from exc
    _prepare_file(file, busy_timeout_ms)
    database = database_class(
        str(file),
        pragmas=sqlite_pragmas(busy_timeout_ms),
        timeout=busy_timeout_ms / 1000,
        thread_safe=True,
        **params,
    )
    # Removing short-query tokens (CJK_UNINDEX_SQL), migrations 7 and 16 and the writers compute them in SQL.
    database.register_function(cjk_grams.short_tokens, cjk_grams.TOKENS_FUNCTION, 2, deterministic=True)
    database.register_function(cjk_grams.cjk_grams, cjk_grams.SQL_FUNCTION, 2, deterministic=True)
    return database


def _prepare_file(file: Path, busy_timeout_ms: int) -> None:
    """Give a new file ``auto_vacuum=INCREMENTAL`` and switch the file to WAL (both persist), once.

    Switching to WAL takes an exclusive lock, and SQLite refuses it at once, without waiting
    (``database is locked``, to avoid a deadlock), when other processes open the same new file at
    the same moment: the switch is retried until ``busy_timeout_ms`` has passed.

    The file is only ever touched through SQLite: opening and closing it any other way (even to
    read its header) would drop every POSIX lock this process's SQLite connections hold on it, and
    another process could then write over them (lost writes, "disk I/O error", corruption).
    """
    new_file = not file.exists() or file.stat().st_size == 0
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            connection = sqlite3.connect(file, timeout=busy_timeout_ms / 1000, isolation_level=None)
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                    return
                if new_file:  # only takes effect before the first table: an existing file keeps its mode
                    connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
                connection.execute("PRAGMA journal_mode = WAL").fetchall()
            finally:
                connection.close()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise database_error(f"preparing the SQLite file {str(file)!r} failed: {exc}", exc) from exc
            time.sleep(0.005)
        except sqlite3.Error as exc:
            raise database_error(f"preparing the SQLite file {str(file)!r} failed: {exc}", exc) from exc
