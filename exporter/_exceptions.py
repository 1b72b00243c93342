"""The exceptions of the span store.

One root, misuse apart from runtime failures::

    StoreError                      the root: ``except exporter.StoreError`` catches them all
    ├── StoreConfigurationError     misuse: a bad database URL or setting (also a ValueError)
    ├── QueryError                  misuse: a bad read argument, e.g. page_size 0 (also a ValueError)
    └── StoreDatabaseError          runtime: the database failed (locked, read-only, disk full, ...)
        └── StoreDamagedError       the SQLite file is not a sound database (damaged, truncated,
                                    or another kind of file): retrying will not help

Driver errors (``sqlite3``, ``peewee``) are converted at the package boundary by
``converted_errors()``; the original exception stays available as ``__cause__``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import peewee


class StoreError(Exception):
    """Root of every error the span store raises."""


class StoreConfigurationError(StoreError, ValueError):
    """The store was configured wrongly (bad URL, bad setting); the message says how to fix it."""


class QueryError(StoreError, ValueError):
    """A read function got a bad argument (the admin API answers it with HTTP 400)."""


class StoreDatabaseError(StoreError):
    """The database failed while the store used it; ``__cause__`` holds the driver's error."""


class StoreDamagedError(StoreDatabaseError):
    """The SQLite file is not a sound database (``database disk image is malformed``, ``file is not
    a database``): it stays so until it is repaired or replaced (docs/operations.md, "Faults")."""


DAMAGED_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
"""SQLite's result codes for a file whose content is not a sound database."""


def is_damaged(exc: BaseException) -> bool:
    """True when ``exc``, or an error it was raised from, says the SQLite file is not a sound database."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, StoreDamagedError) or getattr(error, "sqlite_errorname", None) in DAMAGED_CODES:
            return True
        pending += [error.__cause__, error.__context__, getattr(error, "orig", None)]
    return False


def database_error(message: str, cause: BaseException) -> StoreDatabaseError:
    """``StoreDamagedError(message)`` when ``cause`` says the file is damaged, else ``StoreDatabaseError``."""
    return (StoreDamagedError if is_damaged(cause) else StoreDatabaseError)(message)


@contextmanager
def converted_errors(action: str) -> Iterator[None]:
    """Re-raise driver errors inside the block as ``StoreDatabaseError("<action> failed: ...")``."""
    try:
        yield
    except (peewee.PeeweeException, sqlite3.Error) as exc:
        raise database_error(f"{action} failed: {exc}", exc) from exc
