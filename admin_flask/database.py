"""The store the admin reads: opened from its URL, its schema checked, bound to ``exporter.models.db``.

``exporter.queries`` reads through ``exporter.models.db``, a peewee ``DatabaseProxy`` that is one
per process. So **one process serves one store**: every admin app of a process reads the store the
most recent ``init_app`` bound (two apps naming the same URL share it). An app whose store was
replaced by another app's answers 503 saying so, rather than reading the other store.

The admin never writes calls. At start it brings the schema up to date (``exporter.migrate``: a
read when the store is current, as it is once any app has run ``llm_otel.setup()``); when the store
cannot be reached (a PostgreSQL server down, a file it cannot open), the admin starts anyway and
answers 503 until the store is back, checking again at most once a second.

On SQLite each request first looks at the file: none at the path (deleted or moved away while the
admin runs) is a 503 saying so, without creating an empty file there (the apps create the store
again on their next write); another file at the path (a restore, a new store) is checked (and
migrated) again before it is read. A damaged file is a 503 saying so (``errors.unavailable``).

SQLite connections outlive their request: a new connection parses the schema and starts with an
empty page cache (a list page at 1M calls took ~10 ms on a new connection, ~1 ms on a warm one),
and Werkzeug's threaded server runs each request on a new thread, where peewee would open a new
one. So a request ending gives its connection back (``give_back_connection``) and the next request
takes it (``take_connection``), up to ``IDLE_CONNECTIONS`` kept, each closed once unused for
``IDLE_S`` (an open connection, even idle, keeps a tool that wants the file to itself, in
``locking_mode=EXCLUSIVE``, out). A store checked again (another file at the path) closes them: a
connection is only reused while its file is the one checked.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

import peewee

from admin_flask.errors import StoreUnavailable, unavailable
from exporter import StoreError, migrate, open_database
from exporter.database import is_sqlite
from exporter.models import db

logger = logging.getLogger(__name__)

DEFAULT_DB = "sqlite:///llm_calls.db"
_RECHECK_S = 1.0
IDLE_CONNECTIONS = 8
"""SQLite connections kept open between requests (more requests at once close theirs at the end)."""
IDLE_S = 2.0
"""A kept connection unused for this long is closed."""

_bound_lock = threading.Lock()
_bound: AdminStore | None = None


class AdminStore:
    """One store URL, opened once per process, and whether its schema is known to be ready."""

    def __init__(self, url: str, busy_timeout_ms: int) -> None:
        self.url = url
        self.database: peewee.Database = open_database(url, busy_timeout_ms=busy_timeout_ms)
        self.path: str | None = self.database.database if is_sqlite(self.database) else None
        """The SQLite file's path; None on PostgreSQL."""
        self._file_id = _file_id(self.path)
        self._ready = False
        self._checked_at = 0.0
        self._last_error: str | None = None
        self._error: StoreError | None = None
        self._lock = threading.Lock()
        self.released = False
        self._idle: list[tuple[float, sqlite3.Connection]] = []  # (given back at, connection), oldest first
        self._idle_lock = threading.Lock()
        self._closer: threading.Timer | None = None
        self._generation = 0  # bumped by each check: connections of an earlier one are not reused
        self._lent = threading.local()  # the generation this thread's request took its connection at
        if self.path is not None:  # a connection goes from one request's thread to the next one's
            self.database.connect_params["check_same_thread"] = False

    @property
    def engine(self) -> str:
        return "sqlite" if isinstance(self.database, peewee.SqliteDatabase) else "postgresql"

    def check(self) -> bool:
        """Migrate (a read when current); False, logged once per new error, when the store fails."""
        with self._lock:
            self._checked_at = time.monotonic()
            self._file_id = _file_id(self.path)
            self.close_idle()
            try:
                migrate(self.database)
            except StoreError as exc:
                if str(exc) != self._last_error:
                    logger.warning("the LLM admin cannot use the store %s yet: %s", redacted(self.url), exc)
                self._last_error = str(exc)
                self._error = exc
                self._ready = False
            else:
                if self._last_error is not None:
                    logger.warning("the LLM admin can read the store %s again", redacted(self.url))
                self._ready, self._last_error = True, None
            finally:
                close_connection(self.database)
            return self._ready

    def require(self) -> None:
        """Raise ``StoreUnavailable`` unless the store is bound to this process and migrated."""
        if db.obj is not self.database:
            other = _bound.url if _bound is not None else "none"
            raise StoreUnavailable(
                f"this process now serves another store ({redacted(other)}): one process serves one store"
            )
        if self.path is not None:
            file_id = _file_id(self.path)
            if file_id is None:  # checked before any connection opens: SQLite would create the file
                raise StoreUnavailable(
                    f"the span store cannot be read: there is no file at {self.path} (deleted or moved "
                    "away?); the apps create a new store there on their next write, or put the file back",
                    "missing",
                )
            if file_id != self._file_id:  # another file at the path: check it before reading it
                self._ready = False
                self.check()
        if self._ready:
            return
        if time.monotonic() - self._checked_at >= _RECHECK_S:
            self.check()
        if not self._ready:
            raise unavailable(self._error or StoreError(self._last_error), self.path)

    def commit_marker(self) -> tuple[sqlite3.Connection, int] | None:
        """A value that differs once another connection committed: this thread's open connection and
        its ``PRAGMA data_version``. None when no connection is open (opening one could create a
        file where there is none) or it cannot say: the caller then reads, after ``require``."""
        state = self.database._state
        if state.closed:
            return None
        try:
            return state.conn, state.conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None

    def take_connection(self) -> None:
        """At a request's start: this thread reads through an idle connection, when one is left."""
        if self.path is None or not self.database.is_closed():
            return
        with self._idle_lock:
            connection = self._idle.pop()[1] if self._idle else None
            self._lent.generation = self._generation
        if connection is not None:
            self.database._state.set_connection(connection)

    def give_back_connection(self) -> None:
        """At a request's end: keep this thread's connection for the next request, or close it."""
        generation, self._lent.generation = getattr(self._lent, "generation", None), None
        state = self.database._state
        connection = state.conn
        if generation is not None and not state.closed and not connection.in_transaction:
            with self._idle_lock:
                if generation == self._generation and len(self._idle) < IDLE_CONNECTIONS:
                    self._idle.append((time.monotonic(), connection))
                    state.reset()  # this thread forgets it; the next request takes it
                    if self._closer is None:
                        self._close_unused_later(IDLE_S)
                    return
        close_connection(self.database)

    def close_idle(self) -> None:
        """Close the connections kept for later requests; those in use are closed when given back."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for _, connection in idle:
            connection.close()

    def _close_unused_later(self, delay: float) -> None:
        self._closer = threading.Timer(delay, self._close_unused)
        self._closer.daemon = True
        self._closer.start()

    def _close_unused(self) -> None:
        now = time.monotonic()
        with self._idle_lock:
            unused = [connection for at, connection in self._idle if now - at >= IDLE_S]
            self._idle = self._idle[len(unused) :]
            self._closer = None
            if self._idle:
                self._close_unused_later(self._idle[0][0] + IDLE_S - now)
        for connection in unused:
            connection.close()


def bind(url: str, busy_timeout_ms: int) -> AdminStore:
    """The process's store for ``url``: the bound one if it is the same URL, else a new one, bound."""
    global _bound
    with _bound_lock:
        if _bound is not None and _bound.url == url and db.obj is _bound.database:
            return _bound
        store = AdminStore(url, busy_timeout_ms)
        if _bound is not None and db.obj is _bound.database and _bound.url != url and not _bound.released:
            logger.warning(
                "the LLM admin now reads %s instead of %s: one process serves one store, so apps that "
                "read %s answer 503",
                redacted(url),
                redacted(_bound.url),
                redacted(_bound.url),
            )
        db.initialize(store.database)
        if _bound is not None:
            _bound.close_idle()
        _bound = store
    store.check()
    return store


def _file_id(path: str | None) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``; None when there is none (or no path)."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def close_connection(database: peewee.Database) -> None:
    """Close this thread's connection (peewee keeps one per thread), even a broken one."""
    try:
        database.close()
    except Exception:
        database._state.reset()  # forget it: the next query opens a new one


def redacted(url: str) -> str:
    """``url`` with its password hidden, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
