"""What a filter's summary counted, kept between summaries (SQLite), so that a summary of many calls
is counted once and then brought up to date by the calls written since, exactly.

Usage (``exporter.queries.call_facets`` does this inside the reader's snapshot)::

    key = (path, store, filters, lookup)        # lookup: of the search matches, 0 without a ``q``
    kept = get(key)                             # None, or what put() kept
    put(key, Kept(generation, upto, pending, counts, version, since_ms))
    counts + more; counts - less; counts.percentiles(more)    # Counts of two sets of calls
    forget()                                    # the next summary of every filter counts whole again

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

Limits: kept in the reading process only (``MAX_KEPT`` filters, least recently used dropped), so
each process counts a filter's first summary whole, and again after the generation moves.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate

MAX_KEPT = 16
"""Filters whose counts a process keeps."""

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


_kept: OrderedDict[Hashable, Kept] = OrderedDict()
_lock = threading.Lock()


def get(key: Hashable) -> Kept | None:
    with _lock:
        kept = _kept.get(key)
        if kept is not None:
            _kept.move_to_end(key)
        return kept


def put(key: Hashable, kept: Kept) -> None:
    """Keep ``kept`` for ``key``, unless what is kept is newer (another thread's later snapshot)."""
    with _lock:
        stored = _kept.get(key)
        if stored is not None and (stored.generation, stored.upto, stored.version) > (
            kept.generation,
            kept.upto,
            kept.version,
        ):
            return
        _kept[key] = kept
        _kept.move_to_end(key)
        while len(_kept) > MAX_KEPT:
            _kept.popitem(last=False)


def count() -> int:
    """How many filters' counts this process keeps."""
    with _lock:
        return len(_kept)


def forget() -> None:
    """Drop every kept count (the next summary of each filter is counted whole: a "cold" one)."""
    with _lock:
        _kept.clear()
