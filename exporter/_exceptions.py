"""The exceptions of the span store.

One root, misuse apart from runtime failures::

    StoreError                      the root: ``except exporter.StoreError`` catches them all
    ├── StoreConfigurationError     misuse: a bad database URL or setting (also a ValueError)
    ├── QueryError                  misuse: a bad read argument, e.g. page_size 0 (also a ValueError)
    └── StoreDatabaseError          runtime: the database failed (locked, read-only, disk full, ...)

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


@contextmanager
def converted_errors(action: str) -> Iterator[None]:
    """Re-raise driver errors inside the block as ``StoreDatabaseError("<action> failed: ...")``."""
    try:
        yield
    except (peewee.PeeweeException, sqlite3.Error) as exc:
        raise StoreDatabaseError(f"{action} failed: {exc}") from exc
