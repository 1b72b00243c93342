"""What a search term matches, kept between list queries (SQLite), so that a term found in many
calls is counted and paged without checking each of them against its text again.

Usage (``exporter.queries`` does this inside the reader's snapshot)::

    term = Term("the question", sql, params)   # sql: the rowids matching, ... rowid > ? AND rowid <= ?
    matches = current(database, term)          # None: the store has no search state (migration 10)
    rowid in matches; matches.count; matches.rowids (sorted, when few); matches.added_since(version)
    state(database)                            # (store id, search generation): exporter.kept_summaries' key

Why: the trigram index keeps no positions (``detail=none``, ``exporter.migrations``), so each call
it finds for a ``q`` of more than 3 characters is checked against its body's text: a term found in
half of 1M calls costs ~0.5 s of checks for its exact total, and every page sorted slowest first
would check them again. Kept here, per store and term: a bitmap of the rowids that matched among
the calls up to a rowid (``upto``). The next query of the term looks only at what came since: the
calls with a higher rowid, and the calls that were not indexed when last looked at (``pending``:
those in flight, and those ended that a writer has not indexed yet, ``llm_calls_unindexed``), and
takes out the calls deleted since (retention, ``prune``: logged in ``llm_calls_search_deleted``
while terms are kept, migration 14). Everything
else it knows is still true as long as the store's search generation (``llm_calls_search_state``,
migration 10) has not moved: triggers on ``llm_calls`` advance it when a row that was ended or
indexed changes (a span written twice, an end arriving after the call was closed as lost), and on
a delete when nothing is kept or the log is full; then the term is looked up whole again. So the
answer is always exact; only the first query of a term, or the first after a changed call, pays
for the whole check (``bench/bench_list_1m.py`` reports it as "cold").

Kept in the store too (``llm_calls_search_kept``, migration 11; ``save``, which ``list_calls``
calls after its snapshot): a process that holds nothing for a term reads what another process (or
itself before a restart) found, and brings it up to date, instead of looking the term up whole.
Measured before choosing (``docs/performance.md``): a whole lookup of a term in half of 1M calls is
~0.3 s of reading the candidates' bodies and ~0.15 s of passing their 500,000 rowids to Python, so
no cheaper check makes a first query fast; reading a kept row takes ~1 ms.

Limits: changes made to the full-text tables without touching ``llm_calls`` (a hand-run
``'rebuild'``) are not seen until the generation moves; the cache lives in the reading process
(``MAX_TERMS`` terms, about ``max rowid / 8`` bytes each) and in the store (``MAX_SAVED`` rows).
"""

from __future__ import annotations

import itertools
import json
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import peewee

from exporter._connection import saved_apart
from exporter.migrations import (
    DELETED_TABLE,
    DELETES_LOGGED_UP_TO,
    FTS_TABLE,
    KEPT_TABLE,
    SEARCH_STATE_TABLE,
    UNINDEXED_TABLE,
)

MAX_TERMS = 16
"""Terms kept per process (least recently used dropped)."""
KEEP_ROWIDS_UP_TO = 50_000
"""A term matching at most this many calls also keeps their sorted rowids (a page may read them all)."""
_ADDITIONS_KEPT = 20_000
"""Rowids added since an earlier version that ``added_since`` can still list."""
_CLUSTER_GAP = 5_000
"""Rowids further apart than this are looked up by separate rowid ranges of the index."""
_LIVE_SCAN_FROM = 20_000
"""Past this many new rowids, the calls in flight are read from the status index, not the table."""
SAVE_AFTER = 10_000
"""Matches are written to the store (``save``) when looked up whole, and again once they reach this
many rowids past what it keeps."""
MAX_SAVED = 64
"""Terms the store keeps (those kept up to the highest rowids)."""
BLOCK_BITS = 12
"""A count of the matches with other filters is kept per block of ``1 << BLOCK_BITS`` rowids, so that
deleted matches cost a count of their blocks again, not of every match (``kept_count``)."""
SAVE_WAIT_MS = 20
"""How long ``save`` waits for the store's write lock before leaving it to a later query."""
TRIM_STEP = 50_000
"""The most entries of the deletes log one ``save`` removes (a range of its primary key: a few ms)."""


@dataclass(frozen=True)
class Term:
    """A search term and the SQL of the rowids of the calls it matches, in ascending order: its
    last two parameters, after ``params``, are ``lo < rowid <= hi``; or ``find``, called with the
    database, ``lo`` and ``hi``, which returns those rowids."""

    key: str
    sql: str = ""
    params: tuple[object, ...] = ()
    find: Callable[[peewee.Database, int, int], Sequence[int]] | None = None


_Additions = tuple[tuple[int, array, frozenset[int]], ...]


@dataclass(frozen=True)
class Matches:
    """The calls a term matches among those with ``rowid <= upto`` (not ``pending``)."""

    path: str
    store: str
    generation: int
    upto: int
    pending: frozenset[int]
    """Rowids up to ``upto`` of calls not indexed when last looked at (``_pending``): no match yet."""
    bits: bytes
    count: int
    rowids: array | None
    """The matching rowids, sorted, when there are at most ``KEEP_ROWIDS_UP_TO``."""
    version: int
    """How many times these matches were brought up to date since the term was looked up whole."""
    additions: _Additions = ()
    """(version, rowids that version added, count blocks where it took out deleted matches), the
    most recent versions, for ``added_since``."""
    lookup: int = 0
    """Which lookup (whole, or read from the store) of this process these matches come from."""
    saved_upto: int = -1
    """The ``upto`` of the matches the store keeps for the term (-1: none known)."""
    deleted: int = 0
    """The last entry of the deletes log (``llm_calls_search_deleted``) taken out of these matches."""
    saved_deleted: int = -1
    """The ``deleted`` of the matches the store keeps for the term (-1: none known)."""

    def __contains__(self, rowid: int) -> bool:
        byte = rowid >> 3
        return byte < len(self.bits) and (self.bits[byte] >> (rowid & 7)) & 1 == 1

    def added_since(self, version: int) -> tuple[list[int], set[int]] | None:
        """(the rowids added after ``version``, the count blocks where matches were deleted since),
        as of this version; None when no longer known."""
        if version == self.version:
            return [], set()
        if not self.additions or self.additions[0][0] > version + 1:
            return None
        steps = [(rowids, blocks) for step, rowids, blocks in self.additions if step > version]
        return [rowid for rowids, _ in steps for rowid in rowids], {
            block for _, blocks in steps for block in blocks
        }

    def in_blocks(self, blocks: Iterable[int]) -> list[int]:
        """The matching rowids of the count blocks ``blocks`` (``BLOCK_BITS``), sorted."""
        found = []
        size = 1 << (BLOCK_BITS - 3)
        for block in sorted(blocks):
            start = block * size
            for offset, byte in enumerate(self.bits[start : start + size]):
                if byte:
                    base = (start + offset) << 3
                    found.extend(base + bit for bit in range(8) if byte >> bit & 1)
        return found


_cache: OrderedDict[tuple[str, str, str], Matches] = OrderedDict()
_counts: OrderedDict[tuple[object, ...], tuple[int, dict[int, int]]] = OrderedDict()
"""(path, lookup, term, filters) → (version of the matches, how many pass the filters in each count
block: ``rowid >> BLOCK_BITS`` → count, blocks of none left out)."""
_MAX_COUNTS = 64
_unsaved: dict[tuple[str, str, str], Matches] = {}
"""Matches to write to the store's ``llm_calls_search_kept`` (``save``), by cache key."""
_saved: dict[tuple[str, str, str], tuple[int, int]] = {}
"""Cache key → (lookup, version) of the matches the store keeps, as this process wrote or read them:
a count of those matches is written beside them (``keep_count``)."""
_lookups = itertools.count(1)
_lock = threading.Lock()


def forget(database: peewee.Database | None = None) -> None:
    """Drop every term kept in this process, and given ``database``, those its store keeps (the next
    query of each is then looked up whole: a "cold" query)."""
    with _lock:
        _cache.clear()
        _counts.clear()
        _unsaved.clear()
        _saved.clear()
    if database is not None and _state(database) is not None:
        with database.atomic():
            database.execute_sql(f'DELETE FROM "{KEPT_TABLE}"')


def current(database: peewee.Database, term: Term) -> Matches | None:
    """The calls ``term`` matches in the snapshot of the transaction ``database`` is in (exact).

    None when the store has no search state (PostgreSQL, or a store older than migration 10)."""
    state = _state(database)
    if state is None:
        return None
    store, generation, deleted_before = state
    top = database.execute_sql("SELECT MAX(rowid) FROM llm_calls").fetchone()[0] or 0
    deleted = _last_deleted(database) if deleted_before is not None else 0
    key = (str(database.database), store, term.key)
    with _lock:
        kept = _cache.get(key)
    if (
        kept is None
        or kept.generation != generation
        or kept.upto > top
        or kept.deleted > deleted  # a later snapshot's: calls it took out may be here still
        or (deleted_before is not None and kept.deleted < deleted_before)  # the log trimmed since
    ):
        # Nothing kept here that this snapshot can use: what another process found, kept in the
        # store, or the term looked up whole.
        kept = _read(database, key, generation, top, deleted_before or 0, deleted)
    if kept is not None:
        kept = _without_deleted(database, kept, deleted)
    if kept is not None:
        matches = _brought_up_to_date(database, term, kept, top)
    else:
        matches = _looked_up(database, term, key, store, generation, top, deleted)
    if (
        matches.saved_upto < 0
        or matches.upto - matches.saved_upto >= SAVE_AFTER
        or matches.deleted - matches.saved_deleted >= SAVE_AFTER
    ):
        with _lock:
            _unsaved.pop(key, None)
            _unsaved[key] = matches
            while len(_unsaved) > MAX_TERMS:  # a store that cannot be written (read-only) keeps none
                del _unsaved[next(iter(_unsaved))]
    with _lock:
        stored = _cache.get(key)
        if stored is None or (stored.generation, stored.deleted, stored.upto, stored.version) <= (
            matches.generation,
            matches.deleted,
            matches.upto,
            matches.version,
        ):
            _cache[key] = matches
            _cache.move_to_end(key)
            while len(_cache) > MAX_TERMS:
                _cache.popitem(last=False)
    return matches


def save(database: peewee.Database) -> None:
    """Write to the store the matches of ``database``'s file found since the last save (after the
    reader's snapshot: a transaction of its own, waiting at most ``SAVE_WAIT_MS`` for the lock).

    So that another process, or this one after a restart, reads them instead of looking the term up
    whole again. Skipped, to be tried after the next query, when the store is busy or read-only."""
    path = str(database.database)
    with _lock:
        pending = [(key, matches) for key, matches in _unsaved.items() if key[0] == path]
        if not pending:
            return
        rows = [
            (
                key[2],
                matches.generation,
                matches.upto,
                json.dumps(sorted(matches.pending)),
                matches.count,
                matches.bits,
                matches.rowids.tobytes() if matches.rowids is not None else None,
                _counts_of(matches, key[2]),
                matches.deleted,
            )
            for key, matches in pending
        ]
    sql = (
        f'INSERT INTO "{KEPT_TABLE}" (term, generation, upto, pending, count, bits, rowids, counts, deleted) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (term) DO UPDATE SET "
        "generation = excluded.generation, upto = excluded.upto, pending = excluded.pending, "
        "count = excluded.count, bits = excluded.bits, "
        "rowids = excluded.rowids, counts = excluded.counts, deleted = excluded.deleted "
        "WHERE (excluded.generation, excluded.deleted, excluded.upto) >= (generation, deleted, upto)"
    )

    def write() -> None:
        sql_state = f'SELECT generation, deleted_before FROM "{SEARCH_STATE_TABLE}" WHERE id = 1'
        generation, deleted_before = database.execute_sql(sql_state).fetchone()
        database.execute_sql(f'DELETE FROM "{KEPT_TABLE}" WHERE generation != ?', (generation,))
        kept = [row for row in rows if row[1] == generation and row[-1] >= deleted_before]
        database.cursor().executemany(sql, kept)
        database.execute_sql(
            f'DELETE FROM "{KEPT_TABLE}" WHERE term NOT IN '
            f'(SELECT term FROM "{KEPT_TABLE}" ORDER BY upto DESC LIMIT {MAX_SAVED})'
        )
        _trim_deletes_log(database, deleted_before)

    if not saved_apart(database, write, SAVE_WAIT_MS / 1000, "search matches"):  # no table: before 11
        return
    with _lock:
        for key, matches in pending:
            if _unsaved.get(key) is matches:
                del _unsaved[key]
            _saved[key] = (matches.lookup, matches.version)
            kept = _cache.get(key)
            if kept is not None and kept.lookup == matches.lookup:
                saved_upto = max(kept.saved_upto, matches.upto)
                _cache[key] = replace(
                    kept, saved_upto=saved_upto, saved_deleted=max(kept.saved_deleted, matches.deleted)
                )


def _trim_deletes_log(database: peewee.Database, deleted_before: int) -> None:
    """Inside ``save``'s transaction: drop the kept rows that lag far behind the deletes log (they
    are looked up whole when next queried), then the log's entries every kept row has taken out
    (at most ``TRIM_STEP``; the last entry stays, so that the next one's ``seq`` is higher)."""
    last = _last_deleted(database)
    if last <= deleted_before:
        return
    database.execute_sql(f'DELETE FROM "{KEPT_TABLE}" WHERE deleted < ?', (last - DELETES_LOGGED_UP_TO // 2,))
    oldest = database.execute_sql(f'SELECT MIN(deleted) FROM "{KEPT_TABLE}"').fetchone()[0]
    trimmed = min(last if oldest is None else oldest, deleted_before + TRIM_STEP)
    if trimmed <= deleted_before:
        return
    database.execute_sql(f'DELETE FROM "{DELETED_TABLE}" WHERE seq < ?', (trimmed,))
    sql = f'UPDATE "{SEARCH_STATE_TABLE}" SET deleted_before = ? WHERE id = 1'
    database.execute_sql(sql, (trimmed,))


def _last_deleted(database: peewee.Database) -> int:
    """The ``seq`` of the deletes log's last entry (0 when empty)."""
    return database.execute_sql(f'SELECT IFNULL(MAX(seq), 0) FROM "{DELETED_TABLE}"').fetchone()[0]


def _counts_of(matches: Matches, term: str) -> str:
    """The kept counts of ``matches`` (as they are: their version), JSON (``keep_count``'s keys)."""
    counts = [
        [filters, sorted(blocks.items())]
        for (path, lookup, key, filters), (version, blocks) in _counts.items()
        if (path, lookup, key, version) == (matches.path, matches.lookup, term, matches.version)
    ]
    return json.dumps(counts)


def _tuples(value: object) -> object:
    """A JSON-decoded ``filters`` key as ``_matched_total`` made it (lists back to tuples)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _read(
    database: peewee.Database,
    key: tuple[str, str, str],
    generation: int,
    top: int,
    deleted_before: int,
    deleted: int,
) -> Matches | None:
    """The matches of the term the store keeps for ``generation`` (up to ``top``, the deletes log
    read from ``deleted_before`` up to ``deleted`` at most), or None; their counts kept again as
    this process's."""
    sql = (
        f'SELECT upto, pending, count, bits, rowids, counts, deleted FROM "{KEPT_TABLE}" '
        "WHERE term = ? AND generation = ? AND upto <= ? AND deleted >= ? AND deleted <= ?"
    )
    try:
        row = database.execute_sql(sql, (key[2], generation, top, deleted_before, deleted)).fetchone()
    except peewee.OperationalError:  # no such table or column: a store before migration 11 or 14
        return None
    if row is None:
        return None
    upto, pending, count, bits, rowids, counts, kept_deleted = row
    matches = Matches(
        path=key[0],
        store=key[1],
        generation=generation,
        upto=upto,
        pending=frozenset(json.loads(pending)),
        bits=bytes(bits),
        count=count,
        rowids=array("q", bytes(rowids)) if rowids is not None else None,
        version=0,
        lookup=next(_lookups),
        saved_upto=upto,
        deleted=kept_deleted,
        saved_deleted=kept_deleted,
    )
    with _lock:
        _saved[key] = (matches.lookup, 0)
        for filters, blocks in json.loads(counts):
            if isinstance(blocks, list):  # not a count of one number (a row written before 14)
                _counts[(key[0], matches.lookup, key[2], _tuples(filters))] = (0, dict(blocks))
        while len(_counts) > _MAX_COUNTS:
            _counts.popitem(last=False)
    return matches


def state(database: peewee.Database) -> tuple[str, int, int] | None:
    """(the store's id, its search generation, the deletes log's last entry) in ``database``'s
    snapshot; None when the store has no search state (PostgreSQL, or a store older than migration
    10). ``exporter.kept_summaries`` keeps a summary's counts under the last two: every change
    that can make a kept count wrong moves one of them (a delete is logged, or moves the generation
    when not logged)."""
    found = _state(database)
    if found is None:
        return None
    store, generation, deleted_before = found
    return store, generation, _last_deleted(database) if deleted_before is not None else 0


def _state(database: peewee.Database) -> tuple[str, int, int | None] | None:
    """(store, generation, deleted_before: None for a store without the deletes log, before
    migration 14, whose deletes advance the generation)."""
    if not isinstance(database, peewee.SqliteDatabase):
        return None
    try:
        sql = f'SELECT store, generation, deleted_before FROM "{SEARCH_STATE_TABLE}" WHERE id = 1'
        row = database.execute_sql(sql).fetchone()
    except peewee.OperationalError:  # no such table or column: a store older than migration 10 or 14
        try:
            sql = f'SELECT store, generation, NULL FROM "{SEARCH_STATE_TABLE}" WHERE id = 1'
            row = database.execute_sql(sql).fetchone()
        except peewee.OperationalError:
            return None
    return (row[0], row[1], row[2]) if row else None


def _looked_up(
    database: peewee.Database,
    term: Term,
    key: tuple[str, str, str],
    store: str,
    generation: int,
    top: int,
    deleted: int,
) -> Matches:
    """The term looked up whole: every indexed call up to ``top`` checked."""
    found = _found(database, term, 0, top)
    bits = bytearray(top // 8 + 1)
    _set(bits, found)
    return Matches(
        path=key[0],
        store=store,
        generation=generation,
        upto=top,
        pending=frozenset(_pending(database, 0, top)),
        bits=bytes(bits),
        count=len(found),
        rowids=found if len(found) <= KEEP_ROWIDS_UP_TO else None,
        version=0,
        lookup=next(_lookups),
        deleted=deleted,
    )


def _without_deleted(database: peewee.Database, kept: Matches, deleted: int) -> Matches | None:
    """``kept`` without the calls deleted since (the deletes log after ``kept.deleted``, up to
    ``deleted``); None when the call of ``kept.upto`` went: SQLite may then give its rowid, or a
    lower one, to a new call, which ``kept`` would take for one it has looked at.

    A count of the matches with other filters is counted again in the blocks where one of them
    went (``kept_count``): a deleted call's columns cannot be read to know whether the filters
    kept it."""
    if deleted <= kept.deleted:
        return kept
    sql = f'SELECT call_rowid FROM "{DELETED_TABLE}" WHERE seq > ? AND seq <= ?'
    gone = array("q", [row[0] for row in database.execute_sql(sql, (kept.deleted, deleted))])
    if kept.upto in gone:
        return None
    bits = kept.bits
    matched = array("q", [rowid for rowid in gone if rowid in kept])
    pending = kept.pending.difference(gone) if kept.pending else kept.pending
    if not matched:
        return replace(kept, pending=pending, deleted=deleted)
    cleared = bytearray(bits)
    for rowid in matched:
        cleared[rowid >> 3] &= ~(1 << (rowid & 7)) & 0xFF
    rowids = kept.rowids
    if rowids is not None:
        went = set(matched)
        rowids = array("q", [rowid for rowid in rowids if rowid not in went])
    version = kept.version + 1
    blocks = frozenset(rowid >> BLOCK_BITS for rowid in matched)  # their counts with filters: again
    return replace(
        kept,
        pending=pending,
        bits=bytes(cleared),
        count=kept.count - len(matched),
        rowids=rowids,
        version=version,
        additions=_trimmed((*kept.additions, (version, array("q"), blocks))),
        deleted=deleted,
    )


def _trimmed(additions: _Additions) -> _Additions:
    """``additions`` without its oldest versions past ``_ADDITIONS_KEPT`` rowids."""
    while sum(len(rowids) for _, rowids, _ in additions) > _ADDITIONS_KEPT:
        additions = additions[1:]
    return additions


def _brought_up_to_date(database: peewee.Database, term: Term, kept: Matches, top: int) -> Matches:
    """``kept`` with the calls that came since: new rowids, and pending calls indexed since."""
    added = array("q")
    ended: set[int] = set()
    if kept.pending:
        ids = json.dumps(sorted(kept.pending))
        sql = f"SELECT id FROM {FTS_TABLE}_docsize WHERE id IN (SELECT value FROM json_each(?))"
        ended = {row[0] for row in database.execute_sql(sql, (ids,)).fetchall()}
        for lo, hi in _clusters(sorted(ended)):
            added.extend(rowid for rowid in _found(database, term, lo - 1, hi) if rowid in ended)
    pending = kept.pending - ended
    if top > kept.upto:
        added.extend(_found(database, term, kept.upto, top))
        pending |= set(_pending(database, kept.upto, top))
    if not added and pending == kept.pending and top == kept.upto:
        return kept
    bits = bytearray(kept.bits)
    if top // 8 + 1 > len(bits):
        bits.extend(bytes(top // 8 + 1 - len(bits)))
    added = array("q", sorted(added))
    _set(bits, added)
    count = kept.count + len(added)
    rowids = None
    if kept.rowids is not None and count <= KEEP_ROWIDS_UP_TO:
        rowids = array("q", sorted((*kept.rowids, *added))) if added else kept.rowids
    version = kept.version + 1
    additions = _trimmed((*kept.additions, (version, added, frozenset()))) if added else kept.additions
    return Matches(
        path=kept.path,
        store=kept.store,
        generation=kept.generation,
        upto=top,
        pending=frozenset(pending),
        bits=bytes(bits),
        count=count,
        rowids=rowids,
        version=version,
        additions=additions,
        lookup=kept.lookup,
        saved_upto=kept.saved_upto,
    )


def _found(database: peewee.Database, term: Term, lo: int, hi: int) -> array:
    """The sorted rowids ``lo < rowid <= hi`` that ``term`` matches."""
    if term.find is not None:
        return array("q", term.find(database, lo, hi))
    return rowids_of(database, term.sql, (*term.params, lo, hi))


def rowids_of(database: peewee.Database, sql: str, params: Sequence[object]) -> array:
    """The rowids ``sql`` selects (one column named ``rowid``, in order), passed to Python as one
    JSON array built by SQLite rather than row by row (a third faster for 500,000 rowids)."""
    row = database.execute_sql(f"SELECT json_group_array(rowid) FROM ({sql})", params).fetchone()
    return array("q", json.loads(row[0]))


def _pending(database: peewee.Database, lo: int, hi: int) -> list[int]:
    """Rowids ``lo < rowid <= hi`` of calls that the full-text index does not hold yet: those in
    flight, and those ended that a writer listed to index later (``UNINDEXED_TABLE``)."""
    table = (
        "llm_calls AS c INDEXED BY llm_calls_status_enqueued_at"
        if hi - lo > _LIVE_SCAN_FROM
        else "llm_calls AS c"
    )
    sql = (
        f"SELECT c.rowid FROM {table} WHERE c.status IN ('queued', 'running') "
        "AND c.rowid > ? AND c.rowid <= ? "
        f"AND NOT EXISTS (SELECT 1 FROM {FTS_TABLE}_docsize AS d WHERE d.id = c.rowid) "
        f'UNION SELECT u.call_rowid FROM "{UNINDEXED_TABLE}" AS u '
        "WHERE u.call_rowid > ? AND u.call_rowid <= ? "
        f"AND NOT EXISTS (SELECT 1 FROM {FTS_TABLE}_docsize AS d WHERE d.id = u.call_rowid)"
    )
    return [row[0] for row in database.execute_sql(sql, (lo, hi, lo, hi)).fetchall()]


def _set(bits: bytearray, rowids: Iterable[int]) -> None:
    for rowid in rowids:
        bits[rowid >> 3] |= 1 << (rowid & 7)


def _clusters(rowids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted ``rowids`` as (first, last) ranges, split where two are over ``_CLUSTER_GAP`` apart."""
    ranges: list[tuple[int, int]] = []
    for rowid in rowids:
        if ranges and rowid - ranges[-1][1] <= _CLUSTER_GAP:
            ranges[-1] = (ranges[-1][0], rowid)
        else:
            ranges.append((rowid, rowid))
    return ranges


def kept_count(
    matches: Matches, term: Term, filters: object
) -> tuple[dict[int, int], list[int], set[int]] | None:
    """(count per block, rowids added since it was counted, blocks where matches were deleted
    since: to count again) of the matches that pass ``filters`` (a hashable key), as kept by
    ``keep_count``; None when not kept or no longer known."""
    with _lock:
        kept = _counts.get((matches.path, matches.lookup, term.key, filters))
    if kept is None or kept[0] > matches.version:
        return None
    since = matches.added_since(kept[0])
    return None if since is None else (kept[1], *since)


def keep_count(matches: Matches, term: Term, filters: object, blocks: dict[int, int]) -> None:
    """Remember that ``blocks`` (block → count, ``BLOCK_BITS``) of ``matches`` pass ``filters`` (a key
    of tuples, strings, numbers and None), and write it to the store beside the matches if they are
    the ones it keeps (``save``)."""
    key = (matches.path, matches.lookup, term.key, filters)
    with _lock:
        _counts[key] = (matches.version, blocks)
        _counts.move_to_end(key)
        while len(_counts) > _MAX_COUNTS:
            _counts.popitem(last=False)
        cache_key = (matches.path, matches.store, term.key)
        if _saved.get(cache_key) == (matches.lookup, matches.version) and cache_key not in _unsaved:
            _unsaved[cache_key] = matches  # written again, with this count
