"""Reading a SQLite store file the way a user would, apart from the code under test."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any


def rows(path: Path | str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``query`` (``?`` placeholders) on a connection of its own, closed after."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(query, args).fetchall()
