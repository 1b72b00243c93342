"""What a filter's summary counted, kept between summaries (SQLite), so that a summary of many calls
is counted once and then brought up to date by the calls written since, exactly.

Usage (``exporter.queries.call_facets`` does this inside the reader's snapshot)::

    key = (path, store, filters, lookup)        # filters: canonical JSON; lookup: 0 without a q
    kept = get(key) or read(database, key, (generation, deleted))   # None, or what put()/save() kept
    put(key, Kept((generation, deleted), upto, pending, counts, version, since_ms), whole=True)
    save(database)                              # after the snapshot: what was put, for other processes
    counts + more; counts - less; counts.percentiles(more)    # Counts of two sets of calls
    forget(database)                            # the next summary of every filter counts whole again

Why: SQLite has no hash aggregate, so a summary of a filter that selects many calls and that the
rollups do not hold (a timing minimum, a ``q``, two labels) reads an index whole for each facet or
every selected call (0.5–3 s at 1M calls, ``docs/performance.md``). What it counted stays true as
long as the store's search generation (``llm_calls_search_state``, migration 10) has not moved and
no call was deleted: triggers advance the generation when an ended row changes, and log a delete
(migration 14; or advance the generation when nothing is logged): the counts of a deleted call
cannot be taken out (its row is gone), so either makes the next summary count whole. So the counts
of the calls that had ended, up to the highest rowid then (``upto``), are kept; the next summary of
the same filter adds the calls with a higher rowid and those that were in flight then (``pending``)
and have ended since, and counts the calls still in flight afresh (their rows change without moving
the generation). A ``q``'s matches are indexed calls only (their changes move the generation too):
its counts are brought up to date by the matches added since (``Matches.added_since``). A later
``since_ms`` of the same filters (a window up to now, as the admin page asks) takes the calls
enqueued before it out of the kept counts.

Kept in the store too (``llm_calls_summary_kept``, migration 15; ``save``, which ``call_facets``
calls after its snapshot): a process that holds nothing for a filter reads what another process
(or itself before a restart) counted, under the same generation and deletes log, and brings it up
to date instead of counting whole (a ``q``'s: the matches added since, found in the term's bitmap).

Limits: ``MAX_KEPT`` filters per process and ``MAX_SAVED`` in the store (least recently used
dropped); a retention run or a changed ended call still makes the next summary count whole.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate

import peewee

from exporter import search_matches
from exporter._connection import saved_apart
from exporter.migrations import SUMMARY_KEPT_TABLE

MAX_KEPT = 16
"""Filters whose counts a process keeps."""
MAX_SAVED = 32
"""Filters whose counts the store keeps (``llm_calls_summary_kept``; those written last)."""
SAVE_EVERY_MS = 60_000
"""A kept summary brought up to date is written to the store again once its copy there is this old."""
SAVE_WAIT_MS = 20
"""How long ``save`` waits for the store's write lock before leaving it to a later summary."""

LABEL_FACETS = ("sources", "requested_by", "error_types")
"""The facets counted by value alone (models are counted with the status)."""
METRICS = ("wait_ms", "first_token_ms", "duration_ms")


def _counters(names: tuple[str, ...]) -> dict[str, Counter]:
    return {name: Counter() for name in names}


@dataclass(frozen=True)
class Counts:
    """What a summary counts over some calls; two sets of calls apart add up (and take away)."""

    by_model_status: Counter = field(default_factory=Counter)
    """(model, status) → calls."""
    values: Mapping[str, Counter] = field(default_factory=lambda: _counters(LABEL_FACETS))
    """Facet (``LABEL_FACETS``) → value → calls."""
    histograms: Mapping[str, Counter] = field(default_factory=lambda: _counters(METRICS))
    """Timing (``METRICS``) → value → calls that have it."""

    @cached_property
    def _ladders(self) -> dict[str, tuple[list[int], list[int]]]:
        """Timing → its values in order and how many calls have each value or a lower one."""
        ladders = {}
        for name in METRICS:
            pairs = sorted(self.histograms[name].items())
            ladders[name] = ([value for value, _ in pairs], list(accumulate(count for _, count in pairs)))
        return ladders

    def percentiles(self, other: Counts | None = None) -> dict[str, dict[str, int | None]]:
        """Nearest-rank p50 and p95 of each timing over these calls and ``other``'s (a few: each
        rank is found by bisection in these counts' values, sorted once and kept with them)."""
        extra = other._ladders if other else {}
        found: dict[str, dict[str, int | None]] = {}
        for name in METRICS:
            values, below = self._ladders[name]
            more, more_below = extra.get(name, ([], []))

            def at_most(
                value: int,
                values: list[int] = values,
                below: list[int] = below,
                more: list[int] = more,
                more_below: list[int] = more_below,
            ) -> int:
                """How many calls of both have ``value`` or a lower one."""
                mine = bisect.bisect_right(values, value)
                theirs = bisect.bisect_right(more, value)
                return (below[mine - 1] if mine else 0) + (more_below[theirs - 1] if theirs else 0)

            total = (below[-1] if below else 0) + (more_below[-1] if more_below else 0)
            found[name] = {}
            for rank_name, share in (("p50", 0.50), ("p95", 0.95)):
                if not total:
                    found[name][rank_name] = None
                    continue
                rank = math.ceil(share * total)
                first = bisect.bisect_left(range(len(values)), True, key=lambda i: at_most(values[i]) >= rank)
                candidates = [values[first]] if first < len(values) else []
                candidates += [value for value in more if at_most(value) >= rank][:1]
                found[name][rank_name] = min(candidates)
        return found

    @property
    def total(self) -> int:
        return sum(self.by_model_status.values())

    def __bool__(self) -> bool:
        return bool(self.by_model_status)

    def __add__(self, other: Counts) -> Counts:
        """These counts and ``other``'s (copied, then ``other``'s added: fast when it is small)."""
        if not other:
            return self
        if not self:
            return other
        return Counts(
            _plus(self.by_model_status, other.by_model_status),
            {name: _plus(self.values[name], other.values[name]) for name in LABEL_FACETS},
            {name: _plus(self.histograms[name], other.histograms[name]) for name in METRICS},
        )

    def __sub__(self, other: Counts) -> Counts:
        """These counts less ``other``'s, a part of the same calls."""
        if not other:
            return self
        return Counts(
            _minus(self.by_model_status, other.by_model_status),
            {name: _minus(self.values[name], other.values[name]) for name in LABEL_FACETS},
            {name: _minus(self.histograms[name], other.histograms[name]) for name in METRICS},
        )


def _plus(counter: Counter, more: Counter) -> Counter:
    total = Counter(counter)
    total.update(more)
    return total


def _minus(counter: Counter, less: Counter) -> Counter:
    """``counter`` less ``less`` (a part of what it counts), values counted 0 times dropped."""
    total = Counter(counter)
    for value, count in less.items():
        left = total[value] - count
        if left > 0:
            total[value] = left
        else:
            del total[value]
    return total


@dataclass(frozen=True)
class Kept:
    """The counts of a filter's calls among those with ``rowid <= upto``, ended then, under the
    store's search ``generation`` (with the deletes log's last entry: ``search_matches.state``);
    ``pending``: the rowids up to ``upto`` in flight then (not counted). With a ``q``: the counts
    of its matches at the matches' ``version``."""

    generation: tuple[int, int]
    upto: int
    pending: frozenset[int]
    counts: Counts
    version: int = 0
    since_ms: int | None = None
    """The filters' ``since_ms`` when counted: a later one takes the calls before it out."""
    lookup: int | None = 0
    """With a ``q``: which lookup of its matches ``version`` counts from (``Matches.lookup``); None
    when read from the store, whose ``pending`` then holds the rowids the matches had not indexed."""


Key = tuple[str, str, str, int]
"""(store path, store id, the filters in a canonical form (a JSON text), the matches' lookup: 0
without a ``q``): a kept summary's key; the store keeps it under the filters."""

_kept: OrderedDict[Key, Kept] = OrderedDict()
_unsaved: dict[Key, Kept] = {}
"""Kept summaries to write to the store (``save``)."""
_saved_at: dict[tuple[str, str], int] = {}
"""(path, filters) → when the store's copy was written (ms), as this process wrote or read it."""
_lock = threading.Lock()


def get(key: Key) -> Kept | None:
    with _lock:
        kept = _kept.get(key)
        if kept is not None:
            _kept.move_to_end(key)
        return kept


def put(key: Key, kept: Kept, *, whole: bool = False) -> None:
    """Keep ``kept`` for ``key``, unless what is kept is newer (another thread's later snapshot);
    to be written to the store when counted ``whole`` or its copy there is old (``SAVE_EVERY_MS``)."""
    with _lock:
        written = _saved_at.get((key[0], key[2]))
        if whole or written is None or _now_ms() - written >= SAVE_EVERY_MS:
            _unsaved.pop(key, None)
            _unsaved[key] = kept
            while len(_unsaved) > MAX_KEPT:  # a store that cannot be written (read-only) keeps none
                del _unsaved[next(iter(_unsaved))]
        stored = _kept.get(key)
        if stored is not None and (stored.generation, stored.upto, stored.version) > (
            kept.generation,
            kept.upto,
            kept.version,
        ):
            return
        _keep(key, kept)


def _keep(key: Key, kept: Kept) -> None:
    """Under ``_lock``: ``kept`` kept for ``key``, the least recently used dropped past ``MAX_KEPT``
    (with when its store row was written: a summary kept again is written again)."""
    _kept[key] = kept
    _kept.move_to_end(key)
    while len(_kept) > MAX_KEPT:
        dropped, _ = _kept.popitem(last=False)
        _saved_at.pop((dropped[0], dropped[2]), None)


def count() -> int:
    """How many filters' counts this process keeps."""
    with _lock:
        return len(_kept)


def forget(database: peewee.Database | None = None) -> None:
    """Drop every count kept in this process, and given ``database``, those its store keeps (the
    next summary of each filter is then counted whole: a "cold" one)."""
    with _lock:
        _kept.clear()
        _unsaved.clear()
        _saved_at.clear()
    if database is not None and search_matches.state(database) is not None:
        with database.atomic():
            database.execute_sql(f'DELETE FROM "{SUMMARY_KEPT_TABLE}"')


def read(database: peewee.Database, key: Key, version: tuple[int, int]) -> Kept | None:
    """The summary the store keeps for ``key``'s filters under ``version`` (the search generation,
    the deletes log's last entry), or None; in the reader's snapshot. Kept in the process too."""
    sql = (
        f'SELECT upto, pending, since_ms, counts, used_at FROM "{SUMMARY_KEPT_TABLE}" '
        "WHERE filters = ? AND generation = ? AND deleted = ?"
    )
    try:
        row = database.execute_sql(sql, (key[2], *version)).fetchone()
    except peewee.OperationalError:  # no such table: a store before migration 15
        return None
    if row is None:
        return None
    upto, pending, since_ms, counts, used_at = row
    kept = Kept(version, upto, frozenset(array("q", bytes(pending))), _decoded(counts), 0, since_ms, None)
    with _lock:  # kept in the process too, as read: the next summary need not read it again
        _saved_at[(key[0], key[2])] = used_at
        _keep(key, kept)
    return kept


def save(database: peewee.Database) -> None:
    """Write to the store the summaries of ``database``'s file kept since the last save (after the
    reader's snapshot: a transaction of its own, waiting at most ``SAVE_WAIT_MS`` for the lock).

    Those counted under an older generation or deletes log than the store's now are left out (they
    no longer hold). Skipped, to be tried after a later summary, when the store is busy or
    read-only."""
    path = str(database.database)
    with _lock:
        pending = [(key, kept) for key, kept in _unsaved.items() if key[0] == path]
    if not pending:
        return
    now = _now_ms()
    rows = [
        (
            key[2],
            *kept.generation,
            kept.upto,
            _packed(kept.pending),
            kept.since_ms,
            _encoded(kept.counts),
            now,
        )
        for key, kept in pending
    ]
    sql = (
        f'INSERT INTO "{SUMMARY_KEPT_TABLE}" (filters, generation, deleted, upto, pending, since_ms, counts, '
        "used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (filters) DO UPDATE SET "
        "generation = excluded.generation, deleted = excluded.deleted, upto = excluded.upto, "
        "pending = excluded.pending, since_ms = excluded.since_ms, counts = excluded.counts, "
        "used_at = excluded.used_at WHERE (excluded.generation, excluded.deleted, excluded.upto) >= "
        "(generation, deleted, upto)"
    )

    def write() -> None:
        state = search_matches.state(database)
        if state is None:
            return
        version = state[1:]
        stale = f'DELETE FROM "{SUMMARY_KEPT_TABLE}" WHERE generation != ? OR deleted != ?'
        database.execute_sql(stale, version)
        database.cursor().executemany(sql, [row for row in rows if row[1:3] == version])
        database.execute_sql(
            f'DELETE FROM "{SUMMARY_KEPT_TABLE}" WHERE filters NOT IN (SELECT filters FROM '
            f'"{SUMMARY_KEPT_TABLE}" ORDER BY used_at DESC LIMIT {MAX_SAVED})'
        )

    if not saved_apart(database, write, SAVE_WAIT_MS / 1000, "filter summaries"):  # no table: before 15
        return
    with _lock:
        for key, kept in pending:
            if _unsaved.get(key) is kept:
                del _unsaved[key]
            _saved_at[(key[0], key[2])] = now


def _now_ms() -> int:
    return int(time.time() * 1000)


def _packed(rowids: frozenset[int]) -> bytes:
    return array("q", sorted(rowids)).tobytes()


def _encoded(counts: Counts) -> str:
    """``counts`` as JSON: each timing's values, in order, and their counts as two lists (fast to
    read back, and to sort again for the percentiles: ``Counts._ladders``)."""
    histograms = {}
    for name, counter in counts.histograms.items():
        pairs = sorted(counter.items())
        histograms[name] = [[value for value, _ in pairs], [count for _, count in pairs]]
    return json.dumps(
        {
            "by_model_status": [[model, status, n] for (model, status), n in counts.by_model_status.items()],
            "values": {name: list(counter.items()) for name, counter in counts.values.items()},
            "histograms": histograms,
        },
        separators=(",", ":"),
    )


def _decoded(text: str) -> Counts:
    found = json.loads(text)
    return Counts(
        Counter({(model, status): n for model, status, n in found["by_model_status"]}),
        {name: Counter(dict(found["values"][name])) for name in LABEL_FACETS},
        {name: Counter(dict(zip(*found["histograms"][name], strict=True))) for name in METRICS},
    )
