"""The tokens of the short-query index: each CJK character of a call's text and each adjacent
pair, and one token for each other character (not a space) that the text holds.

Usage::

    short_tokens("退款了吗", "好的 OK")    # -> "退 款 了 吗 退款 款了 了吗 好 的 好的 x4f x4b" (any order)
    is_cjk_query("退款")                   # -> True: one token of ``llm_calls_cjk`` (exporter.migrations)
    is_char_query("é")                     # -> True: the tokens of its cases, ``char_query("é")``
    char_query("é")                        # -> '"xc9" OR "xe9"' (É, é): an FTS5 query
    register(connection)                   # the SQL functions on a sqlite3 connection

Chinese words are mostly two characters, too short for the trigram index. A query of one or two
CJK characters is one token of ``llm_calls_cjk``: the calls holding that character, or those two
characters side by side, exactly, with no text to check. CJK here is Han (the unified ideographs,
their extensions and compatibility forms), kana and Hangul syllables; every other character ends a
run, so a pair is indexed only when both of its characters are CJK and adjacent in the text.

A query of one other character (``y``, ``é``, ``?``, ``Ж``) is found there too (since migration
16): each distinct character of a call's text that is neither CJK nor a space (``str.isspace``: a
``q`` is stripped) is one token, ``x`` and its code point in lowercase hexadecimal (``y`` ->
``x79``), as it is, not folded. The query is the OR of the tokens of the character's cases (the
character, its lowercase and its uppercase, each when it is one character): the calls whose text
holds the character in a case LIKE or GLOB compares, exactly what the scan of each call's text
found before (folding ASCII letters in the index would make ``ı``, ``ſ`` and the Kelvin sign, whose
cases hold ``I``, ``S`` or ``k`` but not the other case of it, match more than that).

The tokens are written space-separated for FTS5's ``ascii`` tokenizer, which keeps every non-ASCII
character in its token: each gram is one token, unchanged; a character's token is ASCII letters
and digits, never a CJK gram. The functions are registered by ``exporter.open_database`` on every
connection it opens; the store's schema never calls them (no trigger, no view), so a connection
without them (the sqlite3 CLI) reads and writes the store alike.

The table is contentless: removing a call's tokens computes them again from its body and tells
FTS5 to delete those. So what ``short_tokens`` returns for a text must never change once released;
a different tokenization is a new migration that empties the table (``'delete-all'``) and fills it
again, as migration 16 did: ``cjk_grams`` is the tokenization of migration 7 (CJK grams alone),
which that migration still fills the table with before 16 fills it anew.
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
"""The SQL name of ``cjk_grams`` (two arguments): migration 7's tokens."""
TOKENS_FUNCTION = "llm_otel_short_tokens"
"""The SQL name of ``short_tokens`` (two arguments): the index's tokens since migration 16."""

MAX_QUERY_CHARS = 2

_ASCII = bytes(range(128))
_ASCII_TOKENS = tuple((chr(code), f"x{code:x}") for code in range(128) if not chr(code).isspace())
_BYTE_TOKENS = tuple((ord(char), token) for char, token in _ASCII_TOKENS)
_ASCII_TOKEN = dict(_ASCII_TOKENS)


def cjk_grams(*texts: str | None) -> str:
    """The distinct CJK characters and adjacent CJK pairs of ``texts``, space-separated."""
    grams: set[str] = set()
    for text in texts:
        if text and not text.isascii():
            grams |= _grams(_cjk_runs(text))
    return " ".join(grams)


def short_tokens(prompt: str | None, response: str | None) -> str:
    """The tokens of a call's ``prompt`` and ``response``, space-separated: ``cjk_grams`` of them
    and ``char_token`` of each distinct character that is neither CJK nor a space."""
    text = f"{prompt}\n{response}" if prompt and response else prompt or response or ""
    if text.isascii():
        return " ".join(_char_tokens(text, set()))
    runs = _cjk_runs(text)  # a newline ends a run, as the two texts apart would
    return " ".join(_char_tokens(text, set("".join(runs))) + list(_grams(runs)))


def _cjk_runs(text: str) -> set[str]:
    """The distinct runs of CJK characters of ``text``: what lies between the runs of other
    characters (splitting on those is twice as fast as finding the runs: most of a call's text is
    not CJK)."""
    runs = set(_NOT_CJK.split(text))
    runs.discard("")
    return runs


def _grams(runs: set[str]) -> set[str]:
    """Each character of ``runs`` and each adjacent pair in them."""
    grams = set("".join(runs))
    for run in runs:
        if len(run) <= 2:  # a pair is its own run (a single character is in already)
            grams.add(run)
        else:
            grams.update(map(str.__add__, run, run[1:]))
    return grams


def _char_tokens(text: str, cjk: set[str]) -> list[str]:
    """``char_token`` of each distinct character of ``text`` but the spaces and those of ``cjk``
    (every CJK character of ``text``).

    A set of a text's characters costs ~15 ns a character; testing each ASCII character that may
    be there (``in``: a memchr) ~4 us whatever the length: the first for short texts. An ASCII
    byte of UTF-8 is that character, never part of another one: the characters outside ASCII are
    what is left of the UTF-8 once the ASCII bytes are taken out."""
    if len(text) < _SET_UP_TO:
        return [_ASCII_TOKEN.get(char) or char_token(char) for char in set(text) - cjk if not char.isspace()]
    if text.isascii():
        return [token for char, token in _ASCII_TOKENS if char in text]
    encoded = text.encode("utf-8", "surrogatepass")
    tokens = [token for code, token in _BYTE_TOKENS if code in encoded]
    wide = set(encoded.translate(None, _ASCII).decode("utf-8", "surrogatepass"))
    tokens += [char_token(char) for char in wide - cjk if not char.isspace()]
    return tokens


_SET_UP_TO = 160
"""Texts shorter than this many characters are read as a set of characters (``_char_tokens``)."""


def char_token(char: str) -> str:
    """The token of one character that is not CJK: ``x`` and its code point in lowercase hex."""
    return f"x{ord(char):x}"


def is_cjk_query(q: str) -> bool:
    """Whether ``q`` is one or two CJK characters: one token of ``cjk_grams``."""
    return 0 < len(q) <= MAX_QUERY_CHARS and _RUN.fullmatch(q) is not None


def is_char_query(q: str) -> bool:
    """Whether ``q`` is one character that is neither CJK nor a space: ``char_query`` finds it."""
    return len(q) == 1 and not q.isspace() and _RUN.fullmatch(q) is None


def char_cases(char: str) -> set[str]:
    """``char``, its lowercase and its uppercase, each when it is one character: the characters a
    LIKE (ASCII) or a GLOB of its cases (``exporter.queries``) takes for it."""
    return {case for case in (char, char.lower(), char.upper()) if len(case) == 1}


def char_query(q: str) -> str:
    """The FTS5 query of the calls whose text holds the character ``q`` (``is_char_query``) in
    one of its cases: the OR of their tokens."""
    return " OR ".join(f'"{char_token(case)}"' for case in sorted(char_cases(q)))


def register(connection: sqlite3.Connection) -> None:
    """Make ``llm_otel_short_tokens(prompt, response)`` and ``llm_otel_cjk_grams(prompt,
    response)`` callable on ``connection``, unless they are.

    Defining a function again would make SQLite prepare every cached statement of the connection
    anew, hence the look first."""
    registered = {row[0] for row in connection.execute(_REGISTERED, (TOKENS_FUNCTION, SQL_FUNCTION))}
    if TOKENS_FUNCTION not in registered:
        connection.create_function(TOKENS_FUNCTION, 2, short_tokens, deterministic=True)
    if SQL_FUNCTION not in registered:
        connection.create_function(SQL_FUNCTION, 2, cjk_grams, deterministic=True)


_REGISTERED = "SELECT name FROM pragma_function_list WHERE name IN (?, ?)"
