"""The tokens of the short-query index: each CJK character of a call's text and each adjacent pair.

Usage::

    cjk_grams("退款了吗", "好的 OK")      # -> "退 款 了 吗 退款 款了 了吗 好 的 好的" (distinct, any order)
    is_cjk_query("退款")                   # -> True: served by ``llm_calls_cjk`` (exporter.migrations)
    register(connection)                   # the SQL function ``llm_otel_cjk_grams`` on a sqlite3 connection

Chinese words are mostly two characters, too short for the trigram index. A query of one or two
CJK characters is one token of ``llm_calls_cjk``: the calls holding that character, or those two
characters side by side, exactly, with no text to check. CJK here is Han (the unified ideographs,
their extensions and compatibility forms), kana and Hangul syllables; every other character ends a
run, so a pair is indexed only when both of its characters are CJK and adjacent in the text.

The tokens are written space-separated for FTS5's ``ascii`` tokenizer, which keeps every non-ASCII
character in its token: each gram is one token, unchanged. The function is registered by
``exporter.open_database`` on every connection it opens; the store's schema never calls it (no
trigger, no view), so a connection without it (the sqlite3 CLI) reads and writes the store alike.

The table is contentless: removing a call's tokens computes them again from its body and tells
FTS5 to delete those. So what ``cjk_grams`` returns for a text must never change once released;
a different tokenization is a new migration that empties the table (``'delete-all'``) and fills it
again.
"""

from __future__ import annotations

import re
import sqlite3

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
"""Kana, CJK extension A, the unified ideographs, Hangul syllables, compatibility ideographs, and
the ideographs of planes 2 and 3."""
_RUN = re.compile(f"[{_CJK}]+")
_NOT_CJK = re.compile(f"[^{_CJK}]+")

SQL_FUNCTION = "llm_otel_cjk_grams"
"""The SQL name of ``cjk_grams`` (two arguments)."""

MAX_QUERY_CHARS = 2


def cjk_grams(*texts: str | None) -> str:
    """The distinct CJK characters and adjacent CJK pairs of ``texts``, space-separated."""
    grams: set[str] = set()
    for text in texts:
        if not text or text.isascii():
            continue
        # The runs are what lies between the runs of other characters: splitting on those is
        # twice as fast as finding the runs (most of a call's text is not CJK).
        runs = set(_NOT_CJK.split(text))
        runs.discard("")
        grams.update("".join(runs))
        for run in runs:
            if len(run) <= 2:  # a pair is its own run (a single character is in already)
                grams.add(run)
            else:
                grams.update(map(str.__add__, run, run[1:]))
    return " ".join(grams)


def is_cjk_query(q: str) -> bool:
    """Whether ``q`` is one or two CJK characters: one token of ``cjk_grams``."""
    return 0 < len(q) <= MAX_QUERY_CHARS and _RUN.fullmatch(q) is not None


def register(connection: sqlite3.Connection) -> None:
    """Make ``llm_otel_cjk_grams(prompt, response)`` callable on ``connection``, unless it is.

    Defining a function again would make SQLite prepare every cached statement of the connection
    anew, hence the look first."""
    if connection.execute(_REGISTERED, (SQL_FUNCTION,)).fetchone() is None:
        connection.create_function(SQL_FUNCTION, 2, cjk_grams, deterministic=True)


_REGISTERED = "SELECT 1 FROM pragma_function_list WHERE name = ?"
