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
- any other ``playhouse.db_url`` URL, e.g. ``postgresql://user:pass@host:5432/dbname``.

SQLite connections are opened with ``busy_timeout`` (``busy_timeout_ms``, default 5000),
``journal_mode=WAL``, ``synchronous=NORMAL`` and ``foreign_keys=OFF``; a new file also gets
``auto_vacuum=INCREMENTAL`` (it only takes effect before the first table, so an existing file keeps
its mode and keeps working). The parent directory is created when missing. peewee keeps one
connection per thread (``thread_safe=True``).

``immediate(database)`` opens a write transaction that takes SQLite's write lock at ``BEGIN``
(``BEGIN IMMEDIATE``), so a reader never has to upgrade to a writer mid-transaction.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlparse

import peewee
from playhouse import db_url

from exporter._exceptions import StoreConfigurationError

DEFAULT_BUSY_TIMEOUT_MS = 5000

_ACCEPTED = (
    "accepted forms: 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', "
    "a plain file path, or a peewee database URL such as 'postgresql://user:pass@host/dbname'"
)


def open_database(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> peewee.Database:
    """Return an unconnected peewee database for ``url`` (it connects on first use, per thread).

    Raises ``StoreConfigurationError`` for a URL it cannot use, with the accepted forms in the message.
    """
    if not isinstance(url, str) or not url.strip():
        raise StoreConfigurationError(f"empty database URL {url!r}; {_ACCEPTED}")
    url = url.strip()
    if "://" not in url:
        return _sqlite(os.path.expanduser(url), busy_timeout_ms, {})
    parsed = urlparse(url)
    database_class = db_url.schemes.get(parsed.scheme)
    if database_class is None:
        raise StoreConfigurationError(f"unknown database scheme {parsed.scheme!r} in {url!r}; {_ACCEPTED}")
    if issubclass(database_class, peewee.SqliteDatabase):
        if parsed.netloc:
            raise StoreConfigurationError(
                f"{url!r} names a host ({parsed.netloc!r}); a SQLite file takes three slashes "
                f"('sqlite:///{parsed.netloc}{parsed.path}'); {_ACCEPTED}"
            )
        params = db_url.parse(url)
        path = params.pop("database")
        return _sqlite(path, busy_timeout_ms, params, database_class)
    try:
        return db_url.connect(url)
    except (ValueError, RuntimeError) as exc:
        raise StoreConfigurationError(f"cannot use database URL {url!r}: {exc}; {_ACCEPTED}") from exc


def is_sqlite(database: peewee.Database) -> bool:
    """True when ``database`` is SQLite (WAL, FTS5 and ``BEGIN IMMEDIATE`` are available)."""
    return isinstance(database, peewee.SqliteDatabase)


def immediate(database: peewee.Database) -> AbstractContextManager[object]:
    """A transaction context that takes the write lock at its start (``BEGIN IMMEDIATE`` on SQLite)."""
    return database.atomic("IMMEDIATE") if is_sqlite(database) else database.atomic()


def sqlite_pragmas(busy_timeout_ms: int, *, new_file: bool) -> list[tuple[str, object]]:
    """The pragmas set on every SQLite connection, in order (``auto_vacuum`` must precede WAL)."""
    pragmas: list[tuple[str, object]] = [("busy_timeout", int(busy_timeout_ms))]
    if new_file:
        pragmas.append(("auto_vacuum", "INCREMENTAL"))
    pragmas += [("journal_mode", "WAL"), ("synchronous", "NORMAL"), ("foreign_keys", "OFF")]
    return pragmas


def _sqlite(
    path: str,
    busy_timeout_ms: int,
    params: dict[str, object],
    database_class: type[peewee.SqliteDatabase] = peewee.SqliteDatabase,
) -> peewee.SqliteDatabase:
    if not path or path == ":memory:" or path.startswith("file:"):
        raise StoreConfigurationError(
            f"{path!r} is not a database file (an in-memory database would differ per thread); {_ACCEPTED}"
        )
    if busy_timeout_ms < 0:
        raise StoreConfigurationError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreConfigurationError(f"cannot create the directory of the store {path!r}: {exc}") from exc
    new_file = not file.exists() or file.stat().st_size == 0
    return database_class(
        str(file),
        pragmas=sqlite_pragmas(busy_timeout_ms, new_file=new_file),
        timeout=busy_timeout_ms / 1000,
        thread_safe=True,
        **params,
    )
