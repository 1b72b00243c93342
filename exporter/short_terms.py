"""Two-character queries that are not all CJK (``ab``, ``é1``, ``a退``), found through the trigram
index's vocabulary (SQLite) instead of a scan of every call's text.

Usage (``exporter.queries`` does this inside the reader's snapshot)::

    trigrams = trigrams_holding(database, {"ab"})   # every indexed trigram holding "ab": "abi", "kab", ...
    match = any_of(trigrams)                        # an FTS5 query of the calls holding one of them

Why: FTS5's trigram tokenizer makes no token of a query shorter than three characters, so such a
``q`` was a substring scan of every body (7 s at 1M calls). A column of text holding ``ab`` at least
three characters long holds a trigram that contains it: ``ab`` and the character after it, or the
character before it and ``ab`` (at the column's end). The index's vocabulary is sorted, so the first
kind is one range of terms, and the second one term per distinct first character of the vocabulary:
both are found by seeking an ``fts5vocab`` table (``instance``: a seek reads no term's whole list of
rowids), about 1-2 seeks per distinct first character (~0.1 ms each at 1M calls). The index holds
the folded text (its trigram tokenizer's Unicode case folding), so the trigrams are looked up in the
folded spellings of the pair. A column shorter than three characters has no trigram: those calls are
listed from the index's ``_docsize`` rows (a column of no token) and checked against their text.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee

from exporter.migrations import FTS_TABLE

VOCABULARY = f"{FTS_TABLE}_terms"
"""The ``fts5vocab`` table (``instance``) over the trigram index, in each connection's ``temp``."""

_SEEK = f"SELECT term FROM temp.{VOCABULARY} WHERE term >= ? LIMIT 1"
_AFTER = f"SELECT term FROM temp.{VOCABULARY} WHERE term > ? LIMIT 1"
_CREATE = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{VOCABULARY} USING fts5vocab(main, '{FTS_TABLE}', 'instance')"
)
_EXISTS = f"SELECT 1 FROM temp.sqlite_master WHERE name = '{VOCABULARY}'"

SHORT_PROMPT = "d.sz < X'01'"
"""SQL true when the ``_docsize`` row ``d`` of a call counts no trigram in its prompt (its first
varint is 0): a prompt shorter than three characters, which no trigram of the index finds."""
SHORT_RESPONSE = "(substr(d.sz, -1) = X'00' AND substr(d.sz, -2, 1) < X'80')"
"""The same of its response: its last varint is one byte 0 (the byte before ends the first one)."""
SHORT_COLUMN = f"({SHORT_PROMPT} OR {SHORT_RESPONSE})"


def folded_pairs(q: str) -> set[str]:
    """The spellings under which the index may hold the two characters of ``q`` in any case: an
    ASCII character lowercased (as the index folds it); another one, each of its cases as it is and
    lowercased (the first character of a longer lowercase: the index folds ``İ`` to ``i``)."""
    variants = []
    for char in q:
        if char.isascii():
            variants.append({char.lower()})
            continue
        cases = {case for case in (char, char.lower(), char.upper()) if len(case) == 1}
        variants.append({folded for case in cases for folded in (case, case.lower()[0])})
    first, second = variants
    return {a + b for a in first for b in second}


def trigrams_holding(database: peewee.Database, pairs: Iterable[str]) -> list[str]:
    """The terms of the trigram index that hold one of ``pairs`` (two characters each), sorted."""
    if database.execute_sql(_EXISTS).fetchone() is None:
        database.execute_sql(_CREATE)
    cursor = database.cursor()

    def seek(sql: str, term: str) -> str | None:
        row = cursor.execute(sql, (term,)).fetchone()
        return row[0] if row else None

    found: set[str] = set()
    for pair in sorted(set(pairs)):
        term = seek(_SEEK, pair)  # the pair and the character after it: one range of the sorted terms
        while term is not None and term.startswith(pair):
            found.add(term)
            term = seek(_AFTER, term)
        term = seek(_SEEK, "")  # a character and the pair: one term per first character
        while term is not None:
            first = term[0]
            wanted = first + pair
            if term < wanted:
                term = seek(_SEEK, wanted)
                if term is None:
                    break
            if term == wanted:
                found.add(term)
            if term[0] == first:
                following = _next_char(first)
                term = seek(_SEEK, following + pair) if following else None
    return sorted(found)


def any_of(trigrams: Iterable[str]) -> str:
    """The FTS5 query of the calls holding any of ``trigrams`` (each an FTS5 string, never syntax)."""
    return " OR ".join('"' + trigram.replace('"', '""') + '"' for trigram in trigrams)


def _next_char(char: str) -> str | None:
    code = ord(char) + 1
    if 0xD800 <= code < 0xE000:  # surrogates are no characters of UTF-8 text
        code = 0xE000
    return chr(code) if code <= 0x10FFFF else None
