"""Read side of the span store: what the admin API and the live feed ask the database.

Usage::

    from exporter import migrate, open_database, queries
    from exporter.models import db

    database = open_database("sqlite:///llm_calls.db")
    migrate(database)
    db.initialize(database)              # these functions read through exporter.models.db

    page = queries.list_calls(status=["failed"], source="billing", q="天气预报", page=1, page_size=50)
    slowest = queries.list_calls(min_duration_ms=5000, sort="duration")
    facets = queries.call_facets(source="billing")          # counts and p50/p95 of those calls
    call = queries.get_call(page["items"][0]["call_id"])
    for detail in queries.iter_calls(status=["failed"]):    # the JSONL export, in constant memory
        ...
    events = queries.call_events_after(queries.latest_event_id())
    stats = queries.status_aggregates(window_ms=3_600_000)

API (times are epoch milliseconds, durations milliseconds; the list filters are the same keywords
for ``list_calls``, ``call_facets`` and ``iter_calls``):

- ``list_calls(*, status, source, requested_by, model, parent_task_id, error_type, since_ms, until_ms,
  min_duration_ms, min_wait_ms, min_first_token_ms, q, sort="newest", page=1, page_size=50)`` →
  ``{"items", "total", "page", "page_size"}``. Filters combine with AND: ``status`` is a list (any
  of); the labels and ``error_type`` are equalities; the time range is ``since_ms <= enqueued_at <
  until_ms``; ``min_*_ms`` keep calls whose value is at least that (a call without the value is
  left out); ``q`` (at most 500 characters) searches prompt and response text: on SQLite, 3
  characters or more through FTS5 (trigram, any language, case-insensitive), 1-2 CJK characters
  and any other single character through the short-query index (``exporter.cjk_grams``: exact,
  a character in any of its cases, no text read), other 2 character queries through the trigram
  index's vocabulary (``exporter.short_terms``), each of these matching the indexed text (a call
  is found once indexed: when it ends, or up to ``exporter.writer.INDEX_DELAY_S`` after, the
  store's writer indexing ended calls in batches); on PostgreSQL
  (no FTS table) as a case-insensitive substring (``ILIKE``, wildcards escaped) of the previews
  and the bodies' JSON text, a scan of the calls the other filters keep.
  ``sort``: ``newest`` (``enqueued_at`` then ``call_id`` descending) or ``duration`` /
  ``first_token`` / ``wait`` (slowest first, calls without the value last, ties newest first):
  a total order, so the pages of a fixed set hold every call once. ``total`` is exact; items
  hold the ``llm_calls`` columns (previews, never the bodies).
- ``call_facets(*, <the list filters>)`` → the counts by status, the most frequent sources,
  requesters, models, error types and models of failed calls (``[{"value", "count"}]``, count
  descending then value, ``None`` last among equal counts, at most 50 each), the p50/p95 of the
  three timings and the error rate, of the calls the filters select.
- ``iter_calls(*, <the list filters>, sort="newest", chunk_size=500)`` → call details (summary plus
  decoded bodies, no events) in list order, read ``chunk_size`` at a time, each chunk in its own
  short read that continues after the last call of the previous one (never ``OFFSET``).
- ``get_call(call_id)`` → every column, the body (JSON decoded), the event timeline, the parent task.
- ``call_events_after(after_id, limit=500)`` → events with ``id > after_id`` and their call summary;
  ``latest_event_id()`` → the highest event id (0 when none), to follow the feed from now on.
- ``status_aggregates(window_ms, now_ms=None)`` → counts by status, error rate, p50/p95 of
  ``wait_ms`` / ``first_token_ms`` / ``duration_ms``, token and retry sums, over calls enqueued in
  the window (past ``EXACT_UP_TO`` calls, percentiles from the rollups: within 5%);
  ``status_series(window_ms, *, buckets=24, now_ms=None)`` → the same window cut into
  ``buckets`` equal intervals: ``[{"start_ms", "calls", "failed", "p95_duration_ms"}]``.
- ``store_summary()`` → ``{"engine", "calls", "oldest_call_ms"}``.
- ``scheduler_snapshots(live_within_ms=30000, now_ms=None, *, include_stale=False)`` → the snapshot
  rows of live processes (``include_stale``: all rows), each with a ``live`` flag.
- ``list_tasks(*, status, name, q, since_ms, until_ms, page=1, page_size=50)`` → task rows newest
  first, each with ``calls``, ``failed_calls``, ``input_tokens``, ``output_tokens`` of its calls;
  ``get_task(task_id)`` → the task row, those figures and ``calls`` (its call summaries, oldest
  first, at most ``MAX_TASK_CALLS``, ``calls_truncated`` when there are more).

Bad arguments raise ``QueryError`` (a ``ValueError``) naming the parameter and what it accepts;
database failures ``StoreDatabaseError``.

Why it stays fast at 1M calls (``bench/bench_list_1m.py``; ``docs/contracts/db.md`` lists the
indexes): every equality filter has an index ``(column, status, enqueued_at, <timings>)``, so a page
is read in index order and its total counted from the index alone, timing minimums included; the
page's rows are then fetched by primary key. Several statuses (or none, with an equality filter or
a timing sort) become one ordered index walk per status, merged (``UNION ALL``); a timing sort walks
``(status, <timing>, enqueued_at)``. The exact total is counted first; on SQLite it then decides
(``_plan``) between walking the index in the list's order, testing the other filters on each entry,
and reading what the filters' index finds and sorting it (the page's last sort key found in the
index first, so only the page's calls are read), whichever reads fewer entries: SQLite's own
statistics cannot tell (a mostly-NULL ``error_type`` looks unselective). A status set holding
``succeeded`` alone is counted as all calls minus the other statuses. A search term is looked up
once per store and kept (``exporter.search_matches``: its matches, brought up to date by the calls
indexed and deleted since, looked up whole again when a searched call changed): its total is
their count (with other filters, counted once, then kept likewise), a page walks the list's index
testing each call against them, or reads them by rowid and sorts them when they are few. Its
lookup: a query of 3 characters or more, the trigram index's candidates checked against their
text; of 1-2 CJK characters, one token of the short-query index; of one other character, the
tokens of its cases there (migration 16); of two other characters, the calls holding a trigram
that holds them (looked up in the index's vocabulary) and those with a column too short for a
trigram. Aggregates
over many calls, and facets of statuses, a time range and at most one of model, source and
error_type, read the rollups (``exporter.rollups``: whole hours and days kept by triggers, each
partial hour at an end from ``llm_calls``, or as its hour less the calls outside the range);
smaller ones the covering window index. Other facets
with a label read that label's index alone (it holds every column they count, migration 12), those
with a ``q`` the calls the list keeps for the term (read by rowid, up to
``search_matches.KEEP_ROWIDS_UP_TO``; past it, each facet's index walked against the term's
bitmap). What such facets of many calls counted is kept (``exporter.kept_summaries``, in the
process and in the store: ``llm_calls_summary_kept``): the next facets of the same filters, in any
process, count only the calls written or ended since, and those in flight. What stays slow by
nature: the first query of a term found in most calls (each candidate's text is read to keep the
total exact, or, for a short term, its many matches listed; later queries, in any process and
after retention, read what was kept: ``llm_calls_search_kept``), and the first facets of a timing
minimum without a label (each facet reads an index whole, or sorts the selected calls: SQLite has
no hash aggregate), of a ``q`` found in most calls, or of two labels each in most calls (every
selected call is counted here), on a new store and after each retention run or changed ended call.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import operator
import time
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

from peewee import (
    SQL,
    Case,
    Column,
    Expression,
    Field,
    NodeList,
    OperationalError,
    Ordering,
    Select,
    Value,
    fn,
)

from exporter import kept_summaries, rollups, search_matches, short_terms
from exporter._exceptions import QueryError, converted_errors
from exporter.cjk_grams import char_query, is_char_query, is_cjk_query
from exporter.database import is_sqlite, read_snapshot
from exporter.kept_summaries import Counts, Kept, Key
from exporter.mapping import to_json
from exporter.migrations import CJK_TABLE, EVENT_ORDER_SHARED_LOCK_SQL, FTS_TABLE, TEXT_VIEW
from exporter.models import LLMCall, LLMCallBody, LLMCallEvent, LLMTask, SchedulerSnapshot, StoreLoss, db
from exporter.search_matches import Matches, Term

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
"""Every value of ``llm_calls.status``."""
ENDED_STATUSES = ("succeeded", "failed", "cancelled")
TASK_STATUSES = ("running", "succeeded", "failed")
"""Every value of ``llm_tasks.status``."""
SORTS = ("newest", "duration", "first_token", "wait")
"""The orders of ``list_calls`` and ``iter_calls``: newest first, or slowest first by a timing."""
MAX_PAGE_SIZE = 200
MAX_EVENTS = 5000
MAX_CHUNK_SIZE = 5000
MAX_Q_CHARS = 500
MAX_FACET_VALUES = 50
MAX_TASK_CALLS = 1000
"""The most call summaries ``get_task`` returns (the oldest); ``calls_truncated`` says there are more."""
MAX_BUCKETS = 1000
FTS_MIN_CHARS = 3
"""Shortest ``q`` served by the trigram index; shorter ones are the short-query index's when all
CJK or one character (``exporter.cjk_grams``), else found through the trigram vocabulary (two
characters)."""
EXACT_UP_TO = 10_000
"""A status window or a filter summary over at most this many calls in whole rollup buckets
is read from ``llm_calls``, exactly; beyond, from the rollups (``exporter.rollups``: the same counts
and sums, percentiles within ``rollups.RELATIVE_ERROR``)."""

EXACT_LABELLED_UP_TO = 1_000
"""The same for a filter summary of one label, whose calls are read one row at a time (through the
label's index) rather than from an index alone."""

_NEWEST_FIRST = (LLMCall.enqueued_at.desc(), LLMCall.call_id.desc())
_ROWID = SQL("rowid")  # of llm_calls: every statement here reads that one table
_ROWID_UNINDEXED = SQL("+rowid")  # the same value, which the planner cannot look rows up by
_SORT_MATCHES_UP_TO = 2000
"""Up to this many FTS matches, a page reads and sorts them all; beyond, it walks an index."""
_BODY_JSON = ("request_params", "system_instructions", "input_messages", "output_messages", "attributes")
_BODY_TEXT = (LLMCallBody.system_instructions, LLMCallBody.input_messages, LLMCallBody.output_messages)
_METRICS = ("wait_ms", "first_token_ms", "duration_ms")
_SORT_COLUMNS = {"duration": "duration_ms", "first_token": "first_token_ms", "wait": "wait_ms"}
_LABELS = ("source", "requested_by", "model", "parent_task_id", "error_type")
"""The equality filters of the list, each leading an index ``(column, status, enqueued_at, ...)``."""
_FACETS = {
    "sources": "source",
    "requested_by": "requested_by",
    "models": "model",
    "error_types": "error_type",
}
_TOKENS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cached": "cached_tokens",
    "reasoning": "reasoning_tokens",
}


@dataclass(frozen=True)
class _Selection:
    """The calls a set of list filters selects, checked (``_selection`` builds it)."""

    statuses: tuple[str, ...]
    """Sorted; () for any."""
    equal: Mapping[str, str]
    """Column name → value, for the labels and ``error_type``."""
    since_ms: int | None
    until_ms: int | None
    minimums: Mapping[str, int]
    """Timing column name → the least value kept."""
    text: str
    """The stripped ``q``; "" for none."""
    matched: Sequence[int] | None = None
    """The rowids of the calls ``text`` matches, when known (``exporter.search_matches``): the text
    condition is then that the call is one of them."""

    def conditions(self, *, unindexed: Collection[str] = (), walk_text: bool = False) -> list[Expression]:
        """Every filter but the statuses, as conditions on ``llm_calls`` (ANDed).

        The conditions on the ``unindexed`` columns are written so that SQLite tests them on each
        entry of the index it walks, rather than choose an index by them (``_unindexed``).
        """

        def column(name: str) -> Any:
            field = LLMCall._meta.fields[name]
            return _unindexed(field) if name in unindexed else field

        conditions = [column(name) == value for name, value in self.equal.items()]
        conditions += _time_range(self.since_ms, self.until_ms, column("enqueued_at"))
        conditions += [column(name) >= value for name, value in self.minimums.items()]
        if self.matched is not None:
            conditions.append((_ROWID_UNINDEXED if walk_text else _ROWID).in_(_json_rowids(self.matched)))
        elif self.text:
            conditions.append(_text_search(self.text, walk=walk_text))
        return conditions

    @property
    def counted_statuses(self) -> tuple[str, ...]:
        """The statuses to name when counting: every status with an equality filter or a timing
        minimum, so the count reads an index that leads with the status (or follows the label)."""
        return self.statuses or (STATUSES if self.equal or self.minimums else ())


def _selection(
    *,
    status: Sequence[str] | None = None,
    source: str | None = None,
    requested_by: str | None = None,
    model: str | None = None,
    parent_task_id: str | None = None,
    error_type: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    min_duration_ms: int | None = None,
    min_wait_ms: int | None = None,
    min_first_token_ms: int | None = None,
    q: str | None = None,
) -> _Selection:
    """Check the list filters (``QueryError`` naming the bad one) and return what they select."""
    labels = zip(_LABELS, (source, requested_by, model, parent_task_id, error_type), strict=True)
    equal = {name: value for name, value in labels if value is not None}
    for name, value in equal.items():
        if not isinstance(value, str):
            raise QueryError(f"{name} must be a string, got {value!r}")
    minimums = {
        name: value
        for name, value in (
            ("duration_ms", min_duration_ms),
            ("wait_ms", min_wait_ms),
            ("first_token_ms", min_first_token_ms),
        )
        if value is not None
    }
    for name, value in minimums.items():
        _check_int(f"min_{name}", value, minimum=0)
    _time_range(since_ms, until_ms)  # checks them
    if q is not None and not isinstance(q, str):
        raise QueryError(f"q must be a string, got {q!r}")
    if q is not None and len(q) > MAX_Q_CHARS:
        raise QueryError(f"q must be at most {MAX_Q_CHARS} characters, got {len(q)}")
    return _Selection(
        statuses=_statuses(status),
        equal=equal,
        since_ms=since_ms,
        until_ms=until_ms,
        minimums=minimums,
        text=q.strip() if q else "",
    )


def list_calls(
    *,
    status: Sequence[str] | None = None,
    source: str | None = None,
    requested_by: str | None = None,
    model: str | None = None,
    parent_task_id: str | None = None,
    error_type: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    min_duration_ms: int | None = None,
    min_wait_ms: int | None = None,
    min_first_token_ms: int | None = None,
    q: str | None = None,
    sort: str = "newest",
    page: int = 1,
    page_size: int = 50,
) -> dict[str, Any]:
    """One page of calls in ``sort`` order, and the exact number of calls matching the filters."""
    selection = _selection(
        status=status,
        source=source,
        requested_by=requested_by,
        model=model,
        parent_task_id=parent_task_id,
        error_type=error_type,
        since_ms=since_ms,
        until_ms=until_ms,
        min_duration_ms=min_duration_ms,
        min_wait_ms=min_wait_ms,
        min_first_token_ms=min_first_token_ms,
        q=q,
    )
    _check_sort(sort)
    _check_int("page", page, minimum=1)
    _check_int("page_size", page_size, minimum=1, maximum=MAX_PAGE_SIZE)
    offset = (page - 1) * page_size
    with converted_errors("listing calls"), read_snapshot(db.obj):  # one snapshot: page and total
        searched = _searched(selection, sort, offset, page_size)
        if searched is not None:
            ids, total = searched
        else:
            plan = _plan(selection, sort, reach=offset + page_size)
            ids = [row[0] for row in db.execute(plan.page(plan.conditions(selection), offset, page_size))]
            total = plan.total
        rows = _calls_by_id(ids)
    if searched is not None:  # what the term matched, for the next process too
        search_matches.save(db.obj)
    items = [_summary(rows[call_id]) for call_id in ids]
    return {"items": items, "total": total, "page": page, "page_size": page_size}


def call_facets(
    *,
    status: Sequence[str] | None = None,
    source: str | None = None,
    requested_by: str | None = None,
    model: str | None = None,
    parent_task_id: str | None = None,
    error_type: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    min_duration_ms: int | None = None,
    min_wait_ms: int | None = None,
    min_first_token_ms: int | None = None,
    q: str | None = None,
) -> dict[str, Any]:
    """What the calls the filters select are made of: counts, frequent values, timings, error rate.

    Percentiles are nearest-rank (as ``status_aggregates``) over the calls that have the value;
    ``error_rate`` is failed / ended, None when none ended.
    """
    selection = _selection(
        status=status,
        source=source,
        requested_by=requested_by,
        model=model,
        parent_task_id=parent_task_id,
        error_type=error_type,
        since_ms=since_ms,
        until_ms=until_ms,
        min_duration_ms=min_duration_ms,
        min_wait_ms=min_wait_ms,
        min_first_token_ms=min_first_token_ms,
        q=q,
    )
    with converted_errors("computing call facets"), read_snapshot(db.obj):
        if _rolled_up(selection):
            rolled = _rolled_facets(selection)
            if rolled is not None:
                return rolled
        matches = None
        if selection.text:
            selection, matches = _with_kept_matches(selection)
        counts, flying = _summary_counts(selection, matches)
    if matches is not None:  # what the term matched, for the list and the next process too
        search_matches.save(db.obj)
    kept_summaries.save(db.obj)  # what was counted, for the next process too
    return _facets(counts, flying)


def _facets(counts: Counts, flying: Counts) -> dict[str, Any]:
    """``call_facets``'s answer from the counts of the calls selected (those of ``flying`` apart:
    the calls in flight, counted afresh beside kept counts)."""
    statuses = dict.fromkeys(STATUSES, 0)
    models: Counter[str | None] = Counter()
    failures: Counter[str | None] = Counter()
    for (model, status), count in (counts.by_model_status + flying.by_model_status).items():
        statuses[status] += count
        models[model] += count
        if status == "failed":
            failures[model] += count
    values = {key: counts.values[key] + flying.values[key] for key in counts.values} | {"models": models}
    ended = sum(statuses[name] for name in ENDED_STATUSES)
    return {
        "total": sum(statuses.values()),
        "statuses": statuses,
        **{key: _top_values(values[key].items()) for key in _FACETS},
        "failures_by_model": _top_values(failures.items()),
        **counts.percentiles(flying),
        "error_rate": statuses["failed"] / ended if ended else None,
    }


_KEEP_FROM = 5_000
"""A summary of at least this many calls is kept (``exporter.kept_summaries``) for the next summary
of the same filters, which then counts only the calls written or ended since, and those in flight
(counted in the status index at each summary: not worth it for fewer). A ``q``'s is always kept:
the next one reads only the matches added since."""
_IN_FLIGHT = ("queued", "running")
_IN_FLIGHT_SCAN_FROM = 20_000
"""Past this many rowids, the calls in flight among them are read from the status index."""


def _summary_counts(selection: _Selection, matches: Matches | None) -> tuple[Counts, Counts]:
    """The counts of the calls ``selection`` holds: what an earlier summary of the same filters
    counted, when kept, brought up to date; else counted whole (and kept when many). Two parts,
    which add up: the second holds calls in flight, when the first was kept without them."""
    state = search_matches.state(db.obj)
    if state is None or (selection.text and matches is None):
        return _counted(selection), Counts()
    store, generation, deleted = state
    version = (generation, deleted)  # every change a kept count cannot follow moves one of them
    filters = (  # a later since_ms of the same filters slides the kept counts (a window up to now)
        selection.statuses,
        tuple(sorted(selection.equal.items())),
        selection.since_ms is None,
        selection.until_ms,
        tuple(sorted(selection.minimums.items())),
        selection.text,
    )
    key = (str(db.obj.database), store, json.dumps(filters), matches.lookup if matches is not None else 0)
    kept = kept_summaries.get(key)
    if kept is not None and kept.generation != version:
        kept = None
    if kept is None:  # what another process (or this one before a restart) counted, if still true
        kept = kept_summaries.read(db.obj, key, version)
    if kept is not None and (kept.since_ms or 0) > (selection.since_ms or 0):
        kept = None
    if matches is not None:
        return _matched_counts(key, selection, matches, kept, version), Counts()
    return _selected_counts(key, selection, version, kept)


def _matched_counts(
    key: Key, selection: _Selection, matches: Matches, kept: Kept | None, version: tuple[int, int]
) -> Counts:
    """The counts of a ``q``'s calls: those kept at an earlier version of its matches and those of
    the matches added since (indexed calls: any change to one moves the search generation)."""
    others = replace(selection, text="", matched=None)
    added = None
    if kept is not None and kept.lookup is None:  # read from the store: no version of these matches
        added = _matched_since(kept, matches)
    elif kept is not None and kept.version <= matches.version:
        since = matches.added_since(kept.version)
        if since is not None and not since[1]:  # matches deleted since: the kept counts hold them
            added = since[0]
    slid = None
    if added is not None:
        new = set(added)
        slid = _slid_out(kept, others, lambda rowid: rowid in matches and rowid not in new)
    if slid is not None:
        counts = kept.counts - slid
        if added:
            counts += _counted_rows(others, among=added)
    else:
        # Too many to read by rowid: each facet's index walked, its entries tested against the
        # matches' bitmap (not the text: every candidate's body would be read again).
        counts = _counted(others, bits=_bytes_of(matches)) if matches.rowids is None else _counted(selection)
    kept = Kept(
        version, matches.upto, matches.pending, counts, matches.version, selection.since_ms, matches.lookup
    )
    kept_summaries.put(key, kept, whole=slid is None)
    return counts


def _matched_since(kept: Kept, matches: Matches) -> list[int] | None:
    """The rowids ``matches`` holds that the matches ``kept`` was counted from (up to ``kept.upto``,
    but its ``pending`` calls, then not indexed) did not: their calls indexed since. None when
    ``kept`` is of later calls than ``matches``."""
    if kept.upto > matches.upto:
        return None
    added = sorted(rowid for rowid in kept.pending - matches.pending if rowid in matches)
    bits, upto = matches.bits, kept.upto
    for offset in range((upto + 1) >> 3, len(bits)):
        byte = bits[offset]
        if byte:
            base = offset << 3
            added.extend(base + bit for bit in range(8) if byte >> bit & 1 and base + bit > upto)
    return added


def _selected_counts(
    key: Key, selection: _Selection, generation: tuple[int, int], kept: Kept | None
) -> tuple[Counts, Counts]:
    """The counts of ``selection``'s calls: of the ended ones, those kept (up to a rowid) and those
    written or ended since; of the calls in flight, counted now (their rows change in place)."""
    top = db.execute_sql("SELECT MAX(rowid) FROM llm_calls").fetchone()[0] or 0
    statuses = selection.statuses or STATUSES
    flying = tuple(status for status in statuses if status in _IN_FLIGHT)
    ended = replace(selection, statuses=tuple(status for status in statuses if status not in _IN_FLIGHT))
    slid = None
    if kept is not None and kept.upto <= top:  # (without an ended status, nothing is kept to slide)
        slid = _slid_out(kept, ended, lambda rowid: rowid not in kept.pending) if ended.statuses else Counts()
    if kept is None or slid is None:
        counts = _counted(selection)
        if counts.total >= _KEEP_FROM:
            in_flight = _flying_counts(replace(selection, statuses=flying)) if flying else Counts()
            pending = frozenset(_in_flight_rowids(0, top))
            kept = Kept(generation, top, pending, counts - in_flight, 0, selection.since_ms)
            kept_summaries.put(key, kept, whole=True)
        return counts, Counts()
    still, landed = kept.pending, frozenset()
    if kept.pending and _in_flight_count(kept.upto) < len(kept.pending):  # some have ended since
        still = frozenset(_in_flight_rowids(0, kept.upto))
        landed = kept.pending - still
    counts = kept.counts - slid
    if ended.statuses and landed:
        counts += _counted_rows(ended, among=landed)
    if ended.statuses and top > kept.upto:
        counts += _counted_rows(ended, among=range(kept.upto + 1, top + 1))
    if landed or top > kept.upto or kept.since_ms != selection.since_ms:
        pending = still | frozenset(_in_flight_rowids(kept.upto, top))
        kept_summaries.put(key, Kept(generation, top, pending, counts, 0, selection.since_ms))
    return counts, _flying_counts(replace(selection, statuses=flying)) if flying else Counts()


_SLIDE_UP_TO = 20_000
"""A later ``since_ms`` takes at most this many calls out of kept counts; past it, counted whole."""


def _slid_out(kept: Kept, others: _Selection, counted: Callable[[int], bool]) -> Counts | None:
    """The counts of the kept calls that ``others``'s later ``since_ms`` leaves out: those enqueued
    from the kept ``since_ms`` to it, up to the kept rowid, that the kept counts hold (``counted``);
    None when more than ``_SLIDE_UP_TO`` (then counted whole)."""
    if kept.since_ms == others.since_ms:
        return Counts()
    sql = "SELECT rowid FROM llm_calls INDEXED BY llm_calls_window "
    sql += "WHERE enqueued_at >= ? AND enqueued_at < ? AND +rowid <= ?"
    rowids = db.execute_sql(sql, (kept.since_ms, others.since_ms, kept.upto)).fetchall()
    if len(rowids) > _SLIDE_UP_TO:
        return None
    held = [rowid for (rowid,) in rowids if counted(rowid)]
    return _counted_rows(replace(others, since_ms=kept.since_ms), among=held) if held else Counts()


def _flying_counts(selection: _Selection) -> Counts:
    """The counts of ``selection``, whose statuses are those of calls in flight (few, in a store
    whose calls end): read through the ranges of those statuses in the filters' index."""
    if is_sqlite(db.obj) and selection.equal:
        return _counted_rows(selection, status_ranges=True)
    return _counted(selection)


def _in_flight_count(upto: int) -> int:
    """How many calls with ``rowid <= upto`` are in flight (counted in the status index)."""
    sql = "SELECT COUNT(*) FROM llm_calls INDEXED BY llm_calls_status_enqueued_at "
    sql += "WHERE status IN ('queued', 'running') AND rowid <= ?"
    return db.execute_sql(sql, (upto,)).fetchone()[0]


def _in_flight_rowids(lo: int, hi: int) -> list[int]:
    """Rowids ``lo < rowid <= hi`` of the calls in flight."""
    table = (
        "llm_calls INDEXED BY llm_calls_status_enqueued_at" if hi - lo > _IN_FLIGHT_SCAN_FROM else "llm_calls"
    )
    sql = f"SELECT rowid FROM {table} WHERE status IN ('queued', 'running') AND rowid > ? AND rowid <= ?"
    return [row[0] for row in db.execute_sql(sql, (lo, hi)).fetchall()]


def _counted(selection: _Selection, *, bits: bytes | None = None) -> Counts:
    """The counts of the calls ``selection`` holds, counted whole (only those of the rowids set in
    ``bits``, one byte a rowid, when given: ``_bytes_of``)."""
    if is_sqlite(db.obj) and (selection.equal or selection.text or (bits is None and _few(selection))):
        # The calls are found through the filter's index or the text's matches (or they are few),
        # then read: read each once, for every facet. (PostgreSQL groups them itself.)
        return _counted_rows(selection, bits=bits)
    # Read each facet from its own index, whole, which holds what the filters test. One pass over
    # the model index gives the models, the statuses and the failures by model.
    by_model_status = Counter(dict(_grouped(selection, ("model", "status"), bits=bits)))
    values = {
        key: Counter({value: count for (value,), count in _grouped(selection, (name,), bits=bits)})
        for key, name in _FACETS.items()
        if name != "model"
    }
    histograms = {name: Counter() for name in _METRICS}
    for name in _METRICS:
        for (_status, value), count in _grouped(selection, (name,), known=name, bits=bits):
            histograms[name][value] += count
    return Counts(by_model_status, values, histograms)


_SPREAD = [bytes((byte >> bit) & 1 for bit in range(8)) for byte in range(256)]


def _bytes_of(matches: Matches) -> bytes:
    """The matches' bitmap as one byte a rowid (1: matched), which SQL reads by ``substr``."""
    return b"".join(map(_SPREAD.__getitem__, matches.bits))


def _in_bytes(bits: bytes) -> SQL:
    """The condition that a call's byte in ``bits`` (``_bytes_of``) is set: tested on each entry of
    the index walked, which holds the rowid (~0.15 µs an entry here)."""
    return SQL("substr(?, rowid + 1, 1) = x'01'", [bits])


def _with_kept_matches(selection: _Selection) -> tuple[_Selection, Matches | None]:
    """``selection`` with the rowids its ``q`` matched, as the list keeps them between queries
    (``exporter.search_matches``), when they are few enough to be kept as rowids: its calls are
    then read by rowid, with no text to check again. Otherwise ``selection`` as it is. And the
    matches, when kept (None for a ``q`` the trigram index does not serve)."""
    term = _search_term(selection.text)
    matches = search_matches.current(db.obj, term) if term is not None else None
    if matches is None or matches.rowids is None:
        return selection, matches
    return replace(selection, matched=matches.rowids), matches


_OLDEST_AND_NEWEST = (  # each from one end of the window index
    "SELECT (SELECT MIN(enqueued_at) FROM llm_calls), (SELECT MAX(enqueued_at) FROM llm_calls)"
)
"""The first and last ``enqueued_at`` of the store: the bounds of an open range, and the newest
call, after which a range holds no call (``rollups.pieces``)."""


def _rolled_up(selection: _Selection) -> bool:
    """Whether the rollups hold what ``selection`` selects: statuses, a time range and at most one
    of the labels they partition by (``rollups.PARTITIONS``)."""
    return not (selection.minimums or selection.text) and (
        not selection.equal or (len(selection.equal) == 1 and set(selection.equal) <= set(rollups.LABELS))
    )


def _rolled_facets(selection: _Selection) -> dict[str, Any] | None:
    """``call_facets`` of a selection of statuses, a time range and at most one label, from the
    rollups; None when it holds too few calls for them (``EXACT_UP_TO``: then read exactly), the
    store is empty, or a label's range is not whole days (its partition has day rows only).

    A bound left open reaches to whole days past the oldest and newest calls: no ragged edge.
    """
    oldest, newest = db.execute_sql(_OLDEST_AND_NEWEST).fetchone()
    if oldest is None:
        return None
    since, until = selection.since_ms, selection.until_ms
    since = oldest // rollups.DAY_MS * rollups.DAY_MS if since is None else since
    until = (newest // rollups.DAY_MS + 1) * rollups.DAY_MS if until is None else until
    pieces = rollups.pieces(since, until, newest=newest)
    equal = dict(selection.equal)
    if equal and (pieces.raw or pieces.taken or any(size != rollups.DAY_MS for size, *_ in pieces.buckets)):
        return None
    statuses = selection.statuses or STATUSES
    labels = ("status", *rollups.LABELS, "nulls")
    totals = rollups.rolled(db.obj, "llm_call_label_rollups", labels, pieces, statuses=statuses, equal=equal)
    if sum(row[len(labels)] for row in totals) <= (EXACT_LABELLED_UP_TO if equal else EXACT_UP_TO):
        return None
    partition = (0, "")
    for label, value in equal.items():
        partition = (rollups.PARTITIONS.index(label), value)
    counts = dict.fromkeys(STATUSES, 0)
    values: dict[str, Counter[Any]] = {key: Counter() for key in (*_FACETS, "failures_by_model")}
    histograms: dict[str, list[tuple[int, int]]] = {name: [] for name in _METRICS}

    def add(status: str, model: Any, source: Any, error_type: Any, calls: int) -> None:
        counts[status] += calls
        values["models"][model] += calls
        values["sources"][source] += calls
        values["error_types"][error_type] += calls
        if status == "failed":
            values["failures_by_model"][model] += calls

    for status, model, source, error_type, nulls, calls in totals:
        named = [
            rollups.label_value(value, nulls, 1 << bit)
            for bit, value in enumerate((model, source, error_type))
        ]
        add(status, *named, calls)
    for requested_by, nulls, calls in rollups.rolled(
        db.obj,
        "llm_call_requester_rollups",
        ("requested_by", "nulls"),
        pieces,
        statuses=statuses,
        partition=partition,
    ):
        values["requested_by"][rollups.label_value(requested_by, nulls, 1)] += calls
    for metric, lower, calls in rollups.rolled(
        db.obj,
        "llm_call_timing_rollups",
        ("metric", "lower"),
        pieces,
        statuses=statuses,
        partition=partition,
        metrics=range(len(_METRICS)),
    ):
        histograms[_METRICS[metric]].append((lower, calls))
    columns = ("status", "model", "source", "error_type", "requested_by", *_METRICS)
    rows = rollups.pending(db.obj, columns, pieces, statuses=statuses, equal=equal)
    for (weight, status, model, source, error_type, requested_by), calls in Counter(
        row[:6] for row in rows
    ).items():
        add(status, model, source, error_type, weight * calls)
        values["requested_by"][requested_by] += weight * calls
    weights, *by_column = rollups.pending_columns(rows, 1 + len(columns))
    for index, name in enumerate(_METRICS, start=5):
        histograms[name] += rollups.column_bins(weights, by_column[index])
    ended = sum(counts[name] for name in ENDED_STATUSES)
    return {
        "total": sum(counts.values()),
        "statuses": counts,
        **{key: _top_values(value for value in values[key].items() if value[1]) for key in _FACETS},
        "failures_by_model": _top_values(value for value in values["failures_by_model"].items() if value[1]),
        **{name: rollups.percentiles(histograms[name]) for name in _METRICS},
        "error_rate": counts["failed"] / ended if ended else None,
    }


def iter_calls(
    *,
    status: Sequence[str] | None = None,
    source: str | None = None,
    requested_by: str | None = None,
    model: str | None = None,
    parent_task_id: str | None = None,
    error_type: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    min_duration_ms: int | None = None,
    min_wait_ms: int | None = None,
    min_first_token_ms: int | None = None,
    q: str | None = None,
    sort: str = "newest",
    chunk_size: int = 500,
) -> Iterator[dict[str, Any]]:
    """Every matching call as a detail (summary and decoded bodies, no events), in ``sort`` order.

    Reads ``chunk_size`` calls at a time, each chunk in its own short read continuing after the
    previous chunk's last call (keyset pagination, never ``OFFSET``): memory stays constant and no
    transaction stays open while the caller streams. A call that changes between two chunks is
    listed where it stood when its chunk was read (a call whose timing grows past the point already
    read is not listed again). The arguments are checked at once, before the first ``next()``.
    """
    selection = _selection(
        status=status,
        source=source,
        requested_by=requested_by,
        model=model,
        parent_task_id=parent_task_id,
        error_type=error_type,
        since_ms=since_ms,
        until_ms=until_ms,
        min_duration_ms=min_duration_ms,
        min_wait_ms=min_wait_ms,
        min_first_token_ms=min_first_token_ms,
        q=q,
    )
    _check_sort(sort)
    _check_int("chunk_size", chunk_size, minimum=1, maximum=MAX_CHUNK_SIZE)
    return _details(selection, sort, chunk_size)


def _details(selection: _Selection, sort: str, chunk_size: int) -> Iterator[dict[str, Any]]:
    with converted_errors("exporting calls"), read_snapshot(db.obj):
        plan = _plan(selection, sort, reach=chunk_size)
    after: tuple[Any, ...] | None = None
    while True:
        chunk = _detail_chunk(selection, plan, after, chunk_size)
        yield from chunk
        if len(chunk) < chunk_size:
            return
        last = chunk[-1]
        column = _SORT_COLUMNS.get(sort)
        after = (last["enqueued_at"], last["call_id"])
        if column is not None:
            after = (last[column], *after)


def _detail_chunk(
    selection: _Selection, plan: _Plan, after: tuple[Any, ...] | None, size: int
) -> list[dict[str, Any]]:
    """The next ``size`` details after the sort key ``after`` (None: from the start), one read."""
    with converted_errors("exporting calls"), read_snapshot(db.obj):
        conditions = plan.conditions(selection)
        ids: list[str] = []
        for extra in _after(plan.sort, after):  # a timing sort goes on with the calls without the value
            query = plan.ordered([*conditions, *extra]).limit(size - len(ids))
            ids += [row[0] for row in db.execute(query).fetchall()]
            if len(ids) == size:
                break
        rows = _calls_by_id(ids)
        bodies = _rows_by_id(LLMCallBody, ids)
    details = []
    for call_id in ids:
        detail = _summary(rows[call_id])
        body = bodies.get(call_id, {})
        detail.update({name: _json(body.get(name)) for name in _BODY_JSON})
        details.append(detail)
    return details


def _after(sort: str, after: tuple[Any, ...] | None) -> list[list[Expression]]:
    """The conditions selecting the calls after sort key ``after``, as successive alternatives.

    For a timing sort the calls with the value come first (descending), then those without it
    (newest first): two ranges, each one an index can serve, read one after the other.
    """
    column = _SORT_COLUMNS.get(sort)
    if column is None:
        return [[] if after is None else _before(*after)]
    field = LLMCall._meta.fields[column]
    if after is None:
        return [[field.is_null(False)], [field.is_null()]]
    value, enqueued_at, call_id = after
    if value is None:
        return [[field.is_null(), *_before(enqueued_at, call_id)]]
    later_ties = (
        (field < value)
        | (LLMCall.enqueued_at < enqueued_at)
        | ((LLMCall.enqueued_at == enqueued_at) & (LLMCall.call_id < call_id))
    )
    return [[field.is_null(False), field <= value, later_ties], [field.is_null()]]


def _before(enqueued_at: int, call_id: str) -> list[Expression]:
    """Calls after (``enqueued_at``, ``call_id``) newest first; the first term is an index range."""
    return [
        LLMCall.enqueued_at <= enqueued_at,
        (LLMCall.enqueued_at < enqueued_at) | (LLMCall.call_id < call_id),
    ]


def get_call(call_id: str) -> dict[str, Any] | None:
    """Everything about one call, or None: its columns, decoded body, events and parent task."""
    with converted_errors("reading a call"), read_snapshot(db.obj):
        row = LLMCall.select().where(LLMCall.call_id == call_id).dicts().first()
        if row is None:
            return None
        body = LLMCallBody.select().where(LLMCallBody.call_id == call_id).dicts().first() or {}
        events = LLMCallEvent.select().where(LLMCallEvent.call_id == call_id).order_by(LLMCallEvent.id)
        events = [_event(event) for event in events.dicts()]
        task = _task_row(row["parent_task_id"]) if row["parent_task_id"] else None
    call = _summary(row)
    call.update({name: _json(body.get(name)) for name in _BODY_JSON})
    call["events"] = events
    call["task"] = task
    return call


def call_events_after(after_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """Events with ``id > after_id`` in id order, each with ``call``: its call's current summary.

    Paging by id misses nothing: the writers commit event ids in increasing order (on PostgreSQL
    under a lock, see ``docs/contracts/db.md``), so no smaller id appears after a larger one is seen.
    """
    _check_int("after_id", after_id, minimum=0)
    _check_int("limit", limit, minimum=1, maximum=MAX_EVENTS)
    with converted_errors("reading call events"), read_snapshot(db.obj):
        query = LLMCallEvent.select().where(LLMCallEvent.id > after_id).order_by(LLMCallEvent.id).limit(limit)
        events = [_event(event) for event in query.dicts()]
        call_ids = {event["call_id"] for event in events}
        calls = _calls_by_id(call_ids)
    for event in events:
        row = calls.get(event["call_id"])
        event["call"] = _summary(row) if row else None
    return events


_SQLITE_LATEST_EVENT_ID = (
    "SELECT max(coalesce((SELECT max(id) FROM llm_call_events), 0), "
    "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'llm_call_events'), 0))"
)
_POSTGRESQL_LATEST_EVENT_ID = (
    "SELECT greatest(coalesce((SELECT max(id) FROM llm_call_events), 0), "
    "coalesce(pg_sequence_last_value(pg_get_serial_sequence('llm_call_events', 'id')::regclass), 0))"
)
_POSTGRESQL_COMMITTED_EVENT_ID = "SELECT coalesce(max(id), 0) FROM llm_call_events"
LATEST_EVENT_LOCK_TIMEOUT_MS = 1000
"""PostgreSQL: how long ``latest_event_id`` waits for a writer holding the event ids' lock (writers
hold it for about 10 ms) before it answers with the newest committed id instead."""


def latest_event_id() -> int:
    """The highest event id given out (0 when there is none): a feed that starts from now.

    It is the id counter, not ``max(id)``: retention deleting the newest events (a store idle longer
    than its retention) does not lower it, so the admin's feed does not take the store for a new
    one, and the next event still comes after it. Every id up to it is committed (or was rolled
    back), so a feed from it misses nothing. On SQLite the counter is ``AUTOINCREMENT``'s (one
    writer; it moves in the inserting transaction). On PostgreSQL it is the ``BIGSERIAL``
    sequence's last value, which runs ahead of inserts not yet committed: it is read holding the
    writers' event-id lock shared (``migrations.EVENT_ORDER_SHARED_LOCK_SQL``), when none is in
    flight. While a writer holds that lock longer than ``LATEST_EVENT_LOCK_TIMEOUT_MS``, the answer
    is ``max(id)``, the newest committed id: never ahead of the feed, but lowered by retention.
    """
    with converted_errors("reading the latest event id"):
        if is_sqlite(db.obj):
            return db.execute_sql(_SQLITE_LATEST_EVENT_ID).fetchone()[0]
        try:
            with db.atomic():
                db.execute_sql(f"SET LOCAL lock_timeout = {int(LATEST_EVENT_LOCK_TIMEOUT_MS)}")
                db.execute_sql(EVENT_ORDER_SHARED_LOCK_SQL)
                return db.execute_sql(_POSTGRESQL_LATEST_EVENT_ID).fetchone()[0]
        except OperationalError as exc:
            if getattr(exc.__context__, "pgcode", None) != _LOCK_NOT_AVAILABLE:  # the driver's error
                raise
            return db.execute_sql(_POSTGRESQL_COMMITTED_EVENT_ID).fetchone()[0]


_LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock not had within ``lock_timeout``."""


def status_aggregates(window_ms: int, now_ms: int | None = None) -> dict[str, Any]:
    """Aggregates over the calls enqueued in ``[now_ms - window_ms, now_ms]``.

    Percentiles are nearest-rank (p50 of 1..100 is 50, p95 is 95) and None when no call has the
    value; ``error_rate`` is failed / ended (succeeded + failed + cancelled), None when none ended.
    A window holding a whole hour, and more than ``EXACT_UP_TO`` calls in the hour rows it reads,
    is read from the rollups (``rollups.pieces``: its whole days and hours, each partial hour at an
    end as its calls from ``llm_calls`` or as its hour row less the calls outside the window, the
    rollup log's entries): counts and sums exact, percentiles within ``rollups.RELATIVE_ERROR``;
    another one from ``llm_calls``, through the covering window index (never a row, never the
    text), its percentiles exact: a window without a whole hour holds at most the calls of the two
    hours it touches, which cost about what the rollups would read for it.
    """
    _check_int("window_ms", window_ms, minimum=1)
    now_ms = _now_ms() if now_ms is None else now_ms
    since_ms = now_ms - window_ms
    with converted_errors("computing call aggregates"), read_snapshot(db.obj):
        figures = None
        if rollups.holds_whole_hour(since_ms, now_ms + 1):
            newest = db.execute_sql(_OLDEST_AND_NEWEST).fetchone()[1]
            pieces = rollups.pieces(since_ms, now_ms + 1, newest=newest)
            totals = rollups.rolled(db.obj, "llm_call_rollups", ("status",), pieces)
            if sum(row[1] for row in totals) > EXACT_UP_TO:
                figures = _rolled_aggregates(pieces, totals)
        if figures is None:
            figures = _exact_aggregates(since_ms, now_ms)
    counts = figures["counts"]
    ended = sum(counts[status] for status in ENDED_STATUSES)
    return {
        "window_ms": window_ms,
        "since_ms": since_ms,
        "until_ms": now_ms,
        "total": sum(counts.values()),
        "counts": counts,
        "ended": ended,
        "error_rate": counts["failed"] / ended if ended else None,
        **{name: figures[name] for name in _METRICS},
        "tokens": figures["tokens"],
        "retries": figures["retries"],
    }


def _exact_aggregates(since_ms: int, now_ms: int) -> dict[str, Any]:
    """Counts, sums and percentiles of the window, from the covering window index."""
    in_window = (LLMCall.enqueued_at >= since_ms) & (LLMCall.enqueued_at <= now_ms)
    # Every column read here is in the llm_calls_window index: both statements read that index only.
    sums = [fn.SUM(Case(None, [(LLMCall.status == status, 1)], 0)) for status in STATUSES]
    sums += [fn.SUM(LLMCall.retry_count)] + [fn.SUM(LLMCall._meta.fields[name]) for name in _TOKENS.values()]
    timings = LLMCall.select(*(LLMCall._meta.fields[name] for name in _METRICS)).where(in_window)
    totals = db.execute(LLMCall.select(*sums).where(in_window)).fetchone()
    timing_rows = db.execute(timings).fetchall()
    # int(): PostgreSQL's SUM of a BIGINT is a NUMERIC, which the driver reads as a Decimal.
    retries, *token_sums = totals[len(STATUSES) :]
    return {
        "counts": {status: int(count or 0) for status, count in zip(STATUSES, totals, strict=False)},
        **{name: _percentiles(row[i] for row in timing_rows) for i, name in enumerate(_METRICS)},
        "tokens": {name: int(value or 0) for name, value in zip(_TOKENS, token_sums, strict=True)},
        "retries": int(retries or 0),
    }


def _rolled_aggregates(pieces: rollups.Pieces, totals: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Counts, sums and histograms of the window from its rollup buckets (``totals``: their
    ``llm_call_rollups`` sums by status), plus what ``rollups.pending`` holds for the rest."""
    counts = dict.fromkeys(STATUSES, 0)
    sums = [0] * (1 + len(_TOKENS))  # retries, then the tokens
    for status, calls, *summed in totals:
        counts[status] += calls
        sums = [total + value for total, value in zip(sums, summed, strict=True)]
    histograms: dict[str, list[tuple[int, int]]] = {name: [] for name in _METRICS}
    for metric, lower, calls in rollups.rolled(
        db.obj, "llm_call_timing_rollups", ("metric", "lower"), pieces, metrics=range(len(_METRICS))
    ):
        histograms[_METRICS[metric]].append((lower, calls))
    columns = ("status", *_METRICS, "retry_count", *_TOKENS.values())  # the window index's
    rows = rollups.pending(db.obj, columns, pieces)
    for (weight, status), calls in Counter(row[:2] for row in rows).items():
        counts[status] += weight * calls
    weights, *by_column = rollups.pending_columns(rows, 1 + len(columns))
    for index, name in enumerate(_METRICS, start=1):
        histograms[name] += rollups.column_bins(weights, by_column[index])
    for index in range(len(sums)):
        sums[index] += rollups.column_sum(weights, by_column[1 + len(_METRICS) + index])
    return {
        "counts": counts,
        **{name: rollups.percentiles(histograms[name]) for name in _METRICS},
        "tokens": dict(zip(_TOKENS, sums[1:], strict=True)),
        "retries": sums[0],
    }


def status_series(window_ms: int, *, buckets: int = 24, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The window ``[now_ms - window_ms, now_ms]`` cut into ``buckets`` intervals, oldest first.

    Each has ``start_ms``, ``calls`` (enqueued in it), ``failed`` and ``p95_duration_ms``
    (nearest rank, None when no call in it has a duration). Bucket ``i`` starts at
    ``since + i * window_ms // buckets``; a call enqueued at ``now_ms`` counts in the last one. Read
    from the covering window index. When the intervals are whole hours and the window holds more
    than ``EXACT_UP_TO`` calls in whole hours, they are read from the hourly rollups instead
    (``_rolled_series``: the intervals then end with the hour holding ``now_ms``).
    """
    _check_int("window_ms", window_ms, minimum=1)
    _check_int("buckets", buckets, minimum=1, maximum=min(MAX_BUCKETS, window_ms))
    now_ms = _now_ms() if now_ms is None else now_ms
    since_ms = now_ms - window_ms
    width = window_ms // buckets
    with converted_errors("computing the call series"), read_snapshot(db.obj):
        if window_ms % buckets == 0 and width % rollups.HOUR_MS == 0:
            pieces = rollups.hour_pieces(since_ms, now_ms + 1)
            totals = rollups.rolled(db.obj, "llm_call_rollups", ("bucket_start", "status"), pieces)
            if sum(row[2] for row in totals) > EXACT_UP_TO:
                return _rolled_series(since_ms, now_ms, buckets, width, pieces, totals)
        in_window = (LLMCall.enqueued_at >= since_ms) & (LLMCall.enqueued_at <= now_ms)
        query = LLMCall.select(LLMCall.enqueued_at, LLMCall.status, LLMCall.duration_ms).where(in_window)
        rows = db.execute(query).fetchall()
    calls = [0] * buckets
    failed = [0] * buckets
    durations: list[list[int]] = [[] for _ in range(buckets)]
    for enqueued_at, status, duration_ms in rows:
        index = min((enqueued_at - since_ms) * buckets // window_ms, buckets - 1)
        calls[index] += 1
        failed[index] += status == "failed"
        if duration_ms is not None:
            durations[index].append(duration_ms)
    return [
        {
            "start_ms": since_ms + index * window_ms // buckets,
            "calls": calls[index],
            "failed": failed[index],
            "p95_duration_ms": _percentiles(durations[index])["p95"],
        }
        for index in range(buckets)
    ]


def _rolled_series(
    since_ms: int,
    now_ms: int,
    buckets: int,
    width: int,
    pieces: rollups.Pieces,
    totals: list[tuple[Any, ...]],
) -> list[dict[str, Any]]:
    """``status_series`` from the hourly rollups: intervals of ``width`` (whole hours) ending with
    the hour holding ``now_ms``, the first one from ``since_ms`` (up to an hour longer), so that
    every hour row falls in one interval; p95 within ``rollups.RELATIVE_ERROR``."""
    end = (now_ms // rollups.HOUR_MS + 1) * rollups.HOUR_MS
    base = end - buckets * width  # interval i > 0 starts at base + i * width; the first at since_ms
    starts = [since_ms] + [base + index * width for index in range(1, buckets)]
    calls = [0] * buckets
    failed = [0] * buckets
    durations: list[list[tuple[int, int]]] = [[] for _ in range(buckets)]

    def index_of(at: int) -> int:
        return max(0, (at - base) // width)

    for bucket_start, status, count, *_ in totals:
        index = index_of(bucket_start)
        calls[index] += count
        failed[index] += count if status == "failed" else 0
    # The hour rows summed by interval in the database: a few rows per interval and bin, not per hour.
    interval = (
        f"CASE WHEN bucket_start < {int(base)} THEN 0 ELSE (bucket_start - {int(base)}) / {int(width)} END"
    )
    duration = _METRICS.index("duration_ms")
    for index, lower, count in rollups.rolled(
        db.obj, "llm_call_timing_rollups", (interval, "lower"), pieces, metrics=(duration,)
    ):
        durations[int(index)].append((lower, count))
    pending: list[list[tuple[int, int | None]]] = [[] for _ in range(buckets)]
    for weight, enqueued_at, status, duration_ms in rollups.pending(
        db.obj, ("enqueued_at", "status", "duration_ms"), pieces
    ):
        index = index_of(enqueued_at)
        calls[index] += weight
        failed[index] += weight if status == "failed" else 0
        pending[index].append((weight, duration_ms))
    for index, values in enumerate(pending):
        durations[index] += rollups.weighted_bins(values)
    return [
        {
            "start_ms": starts[index],
            "calls": calls[index],
            "failed": failed[index],
            "p95_duration_ms": rollups.percentiles(durations[index])["p95"],
        }
        for index in range(buckets)
    ]


def store_summary() -> dict[str, Any]:
    """The engine, the number of calls stored and when the oldest was enqueued (None when empty)."""
    with converted_errors("reading the store summary"), read_snapshot(db.obj):
        calls = LLMCall.select(fn.COUNT(SQL("*"))).scalar()
        oldest = LLMCall.select(fn.MIN(LLMCall.enqueued_at)).scalar()
    return {
        "engine": "sqlite" if is_sqlite(db.obj) else "postgresql",
        "calls": calls,
        "oldest_call_ms": oldest,
    }


def scheduler_snapshots(
    live_within_ms: int = 30_000, now_ms: int | None = None, *, include_stale: bool = False
) -> list[dict[str, Any]]:
    """Scheduler snapshot rows whose heartbeat is within ``live_within_ms`` of now (``live`` True).

    With ``include_stale`` the older rows come too, with ``live`` False. Newest heartbeat first.
    """
    _check_int("live_within_ms", live_within_ms, minimum=0)
    now_ms = _now_ms() if now_ms is None else now_ms
    cutoff = now_ms - live_within_ms
    query = SchedulerSnapshot.select().order_by(
        SchedulerSnapshot.heartbeat_at.desc(), SchedulerSnapshot.process, SchedulerSnapshot.scheduler
    )
    if not include_stale:
        query = query.where(SchedulerSnapshot.heartbeat_at >= cutoff)
    with converted_errors("reading scheduler snapshots"):
        rows = list(query.dicts())
    for row in rows:
        row["waiting"] = _json(row["waiting"])
        row["live"] = row["heartbeat_at"] >= cutoff
    return rows


def store_losses(since_ms: int, limit: int = 20) -> dict[str, Any]:
    """The writers' losses (``llm_store_losses``) that ended at or after ``since_ms``: the newest
    ``limit`` rows, newest first, and the totals of them all (``records``, ``calls``, ``count``)."""
    _check_int("since_ms", since_ms)
    _check_int("limit", limit, minimum=1, maximum=MAX_PAGE_SIZE)
    recent = StoreLoss.ended_at >= since_ms
    with converted_errors("reading the store's losses"), read_snapshot(db.obj):
        rows = list(
            StoreLoss.select()
            .where(recent)
            .order_by(StoreLoss.ended_at.desc(), StoreLoss.id.desc())
            .limit(limit)
            .dicts()
        )
        count, records, calls = (
            StoreLoss.select(
                fn.COUNT(SQL("*")),
                fn.COALESCE(fn.SUM(StoreLoss.records), 0),
                fn.COALESCE(fn.SUM(StoreLoss.calls), 0),
            )
            .where(recent & (StoreLoss.kind == "dropped"))
            .scalar(as_tuple=True)
        )
        replaced = StoreLoss.select(fn.COUNT(SQL("*"))).where(recent & (StoreLoss.kind != "dropped")).scalar()
    return {
        "items": rows,
        "dropped_records": records,
        "dropped_calls": calls,
        "episodes": count,
        "files_replaced": replaced,
    }


def list_tasks(
    *,
    status: Sequence[str] | None = None,
    name: str | None = None,
    q: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    page: int = 1,
    page_size: int = 50,
) -> dict[str, Any]:
    """One page of tasks, newest first (``started_at`` then ``task_id``), with their calls' figures.

    ``status`` is a list of ``running|succeeded|failed``; ``name`` an equality; ``q`` a
    case-insensitive substring of the name or the id (wildcards are plain characters); the time
    range is ``since_ms <= started_at < until_ms``. ``total`` is exact.
    """
    statuses = _statuses(status, TASK_STATUSES)
    if name is not None and not isinstance(name, str):
        raise QueryError(f"name must be a string, got {name!r}")
    if q is not None and not isinstance(q, str):
        raise QueryError(f"q must be a string, got {q!r}")
    if q is not None and len(q) > MAX_Q_CHARS:
        raise QueryError(f"q must be at most {MAX_Q_CHARS} characters, got {len(q)}")
    _check_int("page", page, minimum=1)
    _check_int("page_size", page_size, minimum=1, maximum=MAX_PAGE_SIZE)
    conditions = _time_range(since_ms, until_ms, LLMTask.started_at)
    if statuses:
        conditions.append(LLMTask.status.in_(statuses))
    if name is not None:
        conditions.append(LLMTask.name == name)
    if q and q.strip():
        conditions.append(LLMTask.name.contains(q.strip()) | LLMTask.task_id.contains(q.strip()))
    query = _where(LLMTask.select(*_TASK_COLUMNS), conditions)
    query = query.order_by(LLMTask.started_at.desc(), LLMTask.task_id.desc())
    with converted_errors("listing tasks"), read_snapshot(db.obj):
        tasks = list(query.limit(page_size).offset((page - 1) * page_size).dicts())
        total = _where(LLMTask.select(fn.COUNT(SQL("*"))), conditions).scalar()
        figures = _task_figures([task["task_id"] for task in tasks])
    items = [task | figures.get(task["task_id"], _NO_CALLS) for task in tasks]
    return {"items": items, "total": total, "page": page, "page_size": page_size}


def get_task(task_id: str) -> dict[str, Any] | None:
    """The task row (``attributes`` decoded) with its calls' figures and summaries, or None.

    ``calls`` holds the summaries of its calls, oldest first, at most ``MAX_TASK_CALLS``;
    ``calls_truncated`` is True when the task has more.
    """
    with converted_errors("reading a task"), read_snapshot(db.obj):
        task = _task_row(task_id)
        if task is None:
            return None
        figures = _task_figures([task_id]).get(task_id, _NO_CALLS)
        calls = list(
            LLMCall.select()
            .where(LLMCall.parent_task_id == task_id)
            .order_by(LLMCall.enqueued_at, LLMCall.call_id)
            .limit(MAX_TASK_CALLS + 1)
            .dicts()
        )
    task.update(figures)
    task["calls_truncated"] = len(calls) > MAX_TASK_CALLS
    task["calls"] = [_summary(row) for row in calls[:MAX_TASK_CALLS]]
    return task


_TASK_COLUMNS = (
    LLMTask.task_id,
    LLMTask.name,
    LLMTask.status,
    LLMTask.started_at,
    LLMTask.ended_at,
    LLMTask.duration_ms,
    LLMTask.process,
)
_NO_CALLS = {"calls": 0, "failed_calls": 0, "input_tokens": 0, "output_tokens": 0}


def _task_figures(task_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """``calls``, ``failed_calls``, ``input_tokens``, ``output_tokens`` of each task's calls."""
    if not task_ids:
        return {}
    query = (
        LLMCall.select(
            LLMCall.parent_task_id,
            fn.COUNT(SQL("*")),
            fn.SUM(Case(None, [(LLMCall.status == "failed", 1)], 0)),
            fn.SUM(LLMCall.input_tokens),
            fn.SUM(LLMCall.output_tokens),
        )
        .where(LLMCall.parent_task_id.in_(list(task_ids)))
        .group_by(LLMCall.parent_task_id)
    )
    return {
        task_id: {
            "calls": int(calls),
            "failed_calls": int(failed or 0),
            "input_tokens": int(input_tokens or 0),
            "output_tokens": int(output_tokens or 0),
        }
        for task_id, calls, failed, input_tokens, output_tokens in db.execute(query).fetchall()
    }


@dataclass(frozen=True)
class _Plan:
    """How to read the calls a selection holds in ``sort`` order, and how many there are."""

    sort: str
    total: int
    statuses: tuple[str, ...]
    """The statuses kept (() for any)."""
    arms: bool = False
    """One index walk per status, merged (UNION ALL), rather than one query."""
    unindexed: Collection[str] = ()
    """Columns whose conditions are tested on each entry of the index read (``_unindexed``)."""
    walk_text: bool = False
    """The FTS matches are tested on each entry of the index walked (``_text_search``)."""
    sorted_here: bool = False
    """The database sorts the matching calls (the first ORDER BY term made unindexed), rather than
    reading them in the order of an index."""
    keys_first: bool = False
    """Sorting: first find the sort key of the page's last call in the index alone, then look up
    only the calls up to it (SQLite; the filters' index holds the sort keys)."""

    def conditions(self, selection: _Selection) -> list[Expression]:
        return selection.conditions(unindexed=self.unindexed, walk_text=self.walk_text)

    def ordered(
        self, conditions: list[Expression], *, keys_only: bool = False, with_rowid: bool = False
    ) -> Select:
        """The query of (call_id, enqueued_at[, timing][, rowid]) of the matching calls in order (no
        limit yet); ``keys_only``: of ([timing,] enqueued_at[, rowid]), in the order of those keys
        alone (ties in any order), which the index read holds: no row is looked up for the
        ``call_id`` that breaks ties."""
        column = _SORT_COLUMNS.get(self.sort)
        if self.arms and len(self.statuses) > 1:
            arms = [
                _where(
                    _page_columns(column, with_rowid, keys_only=keys_only), [*conditions, _status_is((one,))]
                )
                for one in self.statuses
            ]
            order = _compound_order(column)
            return reduce(operator.add, arms).order_by(*(order[:-1] if keys_only else order))
        if self.statuses:
            conditions = [*conditions, _status_is(self.statuses, unindexed="status" in self.unindexed)]
        order = _order(column, sorted_here=self.sorted_here)
        columns = _page_columns(column, with_rowid, keys_only=keys_only)
        return _where(columns, conditions).order_by(*(order[:-1] if keys_only else order))

    def page(self, conditions: list[Expression], offset: int, limit: int) -> Select:
        """The query of the ``limit`` calls after the first ``offset``."""
        if self.keys_first and offset + limit < self.total:
            last = db.execute(self.ordered(conditions, keys_only=True).limit(1).offset(offset + limit - 1))
            conditions = [*conditions, *_up_to(self.sort, last.fetchone())]
        return self.ordered(conditions).limit(limit).offset(offset)


def _up_to(sort: str, key: tuple[Any, ...]) -> list[Expression]:
    """The calls whose sort key comes before ``key`` or equals it, in list order (unindexed)."""
    enqueued_at = _unindexed(LLMCall.enqueued_at)
    column = _SORT_COLUMNS.get(sort)
    if column is None:
        return [enqueued_at >= key[0]]
    timing = _unindexed(LLMCall._meta.fields[column])
    value, newest = key
    if value is None:  # every call with the value, then those without it up to ``newest``
        return [timing.is_null(False) | (enqueued_at >= newest)]
    return [timing.is_null(False), (timing > value) | ((timing == value) & (enqueued_at >= newest))]


def _plan(selection: _Selection, sort: str, *, reach: int, total: int | None = None) -> _Plan:
    """Count the selection and choose how to read its first ``reach`` calls in order.

    Both engines run the same shapes; on SQLite, whose statistics mislead its planner here (a
    column that is mostly NULL, such as ``error_type``, looks unselective; ``analysis_limit``
    samples), the choice is made here from the exact total: walk the index that has the list's
    order (one walk per status, merged) and test the other filters on each entry, or read the
    matching calls through the filters' index and sort them, whichever reads fewer entries.
    ``total``: the count, when already known.
    """
    column = _SORT_COLUMNS.get(sort)
    labels = set(selection.equal)
    minimums = set(selection.minimums)
    text = selection.text
    if selection.matched is not None:
        matches: int | None = len(selection.matched)
    else:
        index = _full_text_index(text) if text else None
        matches = _fts_matches(text, *index) if index else None
    # Few FTS matches are read and sorted; so are many for a timing sort, which would otherwise
    # test each entry of five walks (one per status) against the matches, evaluating them five times.
    text_decides = matches is not None and (matches <= _SORT_MATCHES_UP_TO or column is not None)
    many_matches = matches is not None and not text_decides
    if text_decides:  # count the matches, testing the other filters on each
        count_unindexed: Collection[str] = {*labels, *minimums, "enqueued_at", "status"}
    else:  # an equality filter's index holds the timings: the minimums are checked there
        count_unindexed = minimums if labels else ()
    conditions = selection.conditions(unindexed=count_unindexed, walk_text=many_matches)
    if total is None and matches is not None and len(conditions) == 1 and not selection.statuses:
        total = matches  # one FTS row per call (exporter.migrations): no need to join
    elif total is None and text_decides:
        total = _total(conditions, selection.statuses, unindexed_status=True)
    elif total is None:
        total = _total(conditions, selection.counted_statuses)
    statuses = selection.statuses or (STATUSES if labels or column else ())
    if text_decides:  # the matches are read and sorted
        return _Plan(sort, total, selection.statuses, unindexed=count_unindexed, sorted_here=True)
    if text and matches is None:  # a pair not both CJK (the trigram vocabulary's calls) or PostgreSQL's ILIKE
        return _Plan(sort, total, statuses)
    if column is None:
        if labels or not minimums:
            # The label's index (or the window / status index) has the order and the timings.
            return _Plan(sort, total, statuses, arms=not text, unindexed=minimums, walk_text=many_matches)
        if _walks(total, reach, lookups=bool(text)):  # the window index has the order and the timings
            unindexed = {*minimums, "status"}
            return _Plan(sort, total, selection.statuses, unindexed=unindexed, walk_text=many_matches)
        statuses = selection.statuses or STATUSES  # (status, <timing>, enqueued_at) ranges, sorted
        sorted_in_index = {"unindexed": {"enqueued_at"}, "sorted_here": True, "keys_first": not text}
        return _Plan(sort, total, statuses, walk_text=many_matches, **sorted_in_index)
    # A timing sort (a q was dealt with above).
    others = {*labels, *(minimums - {column})}
    if _walks(total, reach, lookups=bool(others)):  # (status, <timing>, enqueued_at) in order
        return _Plan(sort, total, statuses, arms=True, unindexed={*others, "enqueued_at"})
    # Read through the label's index (which holds the timings) or the filters', and sort.
    unindexed = minimums if labels else ()
    return _Plan(sort, total, statuses, unindexed=unindexed, sorted_here=True, keys_first=True)


def _searched(selection: _Selection, sort: str, offset: int, limit: int) -> tuple[list[str], int] | None:
    """(call ids of the page, exact total) of a ``q`` of the trigram index, from what the term
    matched (``exporter.search_matches``, kept between queries); None where that does not serve
    (PostgreSQL, a store before migration 10, 1-2 character queries)."""
    term = _search_term(selection.text) if selection.text else None
    matches = search_matches.current(db.obj, term) if term is not None else None
    if term is None or matches is None:
        return None
    others = replace(selection, text="")
    total = _matched_total(others, term, matches)
    reach = offset + limit
    if total <= offset:
        return [], total
    # What a walk costs, in index entries read by SQLite (~0.2 µs each): up to reach * calls / total
    # of them, of which reach * calls / matches tested here (~1 µs each, as if the other filters
    # kept as many matches as calls); against _MATCH_READ_COST per match for the plain plans.
    calls = max(matches.upto, 1)
    walk = reach * calls // total + 5 * reach * calls // max(matches.count, 1)
    if matches.rowids is not None and _MATCH_READ_COST * len(matches.rowids) < walk:
        # Few matches: the plans of a q over their rowids (read them and sort, or walk an index).
        known = replace(selection, matched=matches.rowids)
        plan = _plan(known, sort, reach=reach, total=total)
        return [row[0] for row in db.execute(plan.page(plan.conditions(known), offset, limit))], total
    # Walk the calls the other filters select in the order of the sort keys (without the call_id
    # that breaks their ties: no row looked up for it), keeping the matches up to the page's last
    # key with all its ties; then order the ties.
    plan = _walk_plan(others, sort)
    cursor = db.execute(plan.ordered(plan.conditions(others), keys_only=True, with_rowid=True))
    kept: list[tuple[Any, ...]] = []  # (sort keys..., rowid) of the matches, in key order
    bits = matches.bits  # every rowid walked is at most ``matches.upto`` (the same snapshot)
    try:
        for row in cursor:
            rowid = row[-1]
            if bits[rowid >> 3] >> (rowid & 7) & 1:
                if len(kept) >= reach and row[:-1] != kept[-1][:-1]:
                    break
                kept.append(row)
    finally:
        cursor.close()
    return _page_in_order(kept, offset, limit), total


def _page_in_order(walked: list[tuple[Any, ...]], offset: int, limit: int) -> list[str]:
    """The call ids of the page of ``walked`` (rows of sort keys and a rowid, in the order of the
    keys) after its first ``offset``, in the list's order: calls of equal keys by ``call_id``,
    descending. Only the key groups the page reaches into are looked up."""
    groups = [list(tied) for _, tied in itertools.groupby(walked, key=lambda row: row[:-1])]
    first = 0
    while first < len(groups) and offset >= len(groups[first]):
        offset -= len(groups[first])
        first += 1
    rowids = [row[-1] for tied in groups[first:] for row in tied]
    if not rowids:
        return []
    query = LLMCall.select(_ROWID, LLMCall.call_id).where(_ROWID.in_(_json_rowids(rowids)))
    ids = dict(db.execute(query).fetchall())
    ordered = [
        call_id for tied in groups[first:] for call_id in sorted((ids[row[-1]] for row in tied), reverse=True)
    ]
    return ordered[offset : offset + limit]


def _search_term(q: str) -> Term | None:
    """The SQL of the calls a full-text index finds for ``q`` and their check (``Term``), on SQLite
    (None elsewhere): 1-2 CJK characters and one other character from the short-query index, two
    other characters through the trigram vocabulary (``_pair_found``), 3 characters or more from
    the trigram index."""
    if not is_sqlite(db.obj):
        return None
    if is_cjk_query(q) or is_char_query(q):  # tokens of the short-query index: exact, no check
        sql = f"SELECT rowid FROM {CJK_TABLE} WHERE {CJK_TABLE} MATCH ? AND rowid > ? AND rowid <= ? "
        return Term(q, sql + "ORDER BY rowid", (_short_query(q),))
    if _is_pair(q):
        return Term(q, find=lambda database, lo, hi: _pair_found(q, lo, hi))
    if _index_decides(q):
        sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ? AND rowid > ? AND rowid <= ? "
        sql += "ORDER BY rowid"
        return Term(q, sql, (_fts_query(q),))
    holds, params = _body_holds(q, "b.")
    sql = (
        f"SELECT f.rowid FROM {FTS_TABLE} AS f JOIN llm_call_bodies AS b ON b.rowid = f.rowid "
        f"WHERE {FTS_TABLE} MATCH ? AND {holds} AND f.rowid > ? AND f.rowid <= ? ORDER BY f.rowid"
    )
    return Term(q, sql, (_fts_query(q), *params))


def _matched_total(others: _Selection, term: Term, matches: Matches) -> int:
    """How many of ``matches`` the ``others`` filters keep (kept between queries, by filters)."""
    if others == _Selection((), {}, None, None, {}, ""):
        return matches.count
    filters = (
        others.statuses,
        tuple(sorted(others.equal.items())),
        others.since_ms,
        others.until_ms,
        tuple(sorted(others.minimums.items())),
    )
    kept = search_matches.kept_count(matches, term, filters)
    if kept is not None:  # counted before: the blocks where matches came or went counted again
        counted, added, touched = kept
        blocks = {block: count for block, count in counted.items() if block not in touched}
        bits = search_matches.BLOCK_BITS
        again = [*matches.in_blocks(touched), *(rowid for rowid in added if rowid >> bits not in touched)]
        for block, count in _counted_among(others, again).items():
            blocks[block] = blocks.get(block, 0) + count
    elif matches.rowids is not None:  # each match read by its rowid
        blocks = _counted_among(others, matches.rowids)
    else:  # test the calls the filters select (read from their index) against the matches
        # As ``_plan`` counts: an equality filter's index holds the timings, else the timing's index.
        conditions = others.conditions(unindexed=others.minimums if others.equal else ())
        statuses = others.counted_statuses
        if statuses:
            conditions.append(_status_is(statuses))
        cursor = db.execute(_where(LLMCall.select(_ROWID), conditions))
        bits = matches.bits  # every rowid read is at most ``matches.upto`` (the same snapshot)
        matched = Counter(
            rowid >> search_matches.BLOCK_BITS for (rowid,) in cursor if bits[rowid >> 3] >> (rowid & 7) & 1
        )
        blocks = dict(matched)
    search_matches.keep_count(matches, term, filters, blocks)
    return sum(blocks.values())


def _counted_among(others: _Selection, rowids: Collection[int]) -> dict[int, int]:
    """How many of the calls ``rowids`` the ``others`` filters keep, per count block
    (``search_matches.BLOCK_BITS``; each call read by its rowid)."""
    if not rowids:
        return {}
    unindexed = {*others.equal, *others.minimums, "enqueued_at", "status"}
    conditions = [*others.conditions(unindexed=unindexed), _ROWID.in_(_json_rowids(rowids))]
    if others.statuses:
        conditions.append(_status_is(others.statuses, unindexed=True))
    block = SQL(f"rowid >> {search_matches.BLOCK_BITS}")
    query = _where(LLMCall.select(block, fn.COUNT(SQL("*"))), conditions).group_by(block)
    return dict(db.execute(query).fetchall())


def _json_rowids(rowids: Collection[int]) -> SQL:
    return SQL("(SELECT value FROM json_each(?))", [json.dumps(list(rowids))])


def _walk_plan(others: _Selection, sort: str) -> _Plan:
    """A plan that reads the calls ``others`` selects in the list's order from an index, without
    sorting them (so a walk can stop once it has found a page of matches)."""
    column = _SORT_COLUMNS.get(sort)
    labels, minimums = set(others.equal), set(others.minimums)
    if column is not None:  # (status, <timing>, enqueued_at) walks, merged
        unindexed = {*labels, *(minimums - {column}), "enqueued_at"}
        return _Plan(sort, 0, others.statuses or STATUSES, arms=True, unindexed=unindexed)
    if labels:  # the label's (label, status, enqueued_at, <timings>) walks, merged
        return _Plan(sort, 0, others.statuses or STATUSES, arms=True, unindexed=minimums)
    if minimums:  # the window index holds the statuses and the timings
        return _Plan(sort, 0, others.statuses, unindexed={*minimums, "status"})
    return _Plan(sort, 0, others.statuses, arms=True)


_LOOKUP_COST = 16
"""How many index entries reading one row costs, about (measured at 1M calls)."""
_MATCH_READ_COST = 10
"""How many index entries a kept match costs the plain plans over the matches' rowids (their list
parsed, then each read or tested: ~2 µs, measured at 1M calls), against a walk (``_searched``)."""


def _walks(total: int, reach: int, *, lookups: bool) -> bool:
    """Whether to walk an index in order to the ``reach``-th of ``total`` matching calls (about
    ``reach * calls / total`` entries, each read from the table too when ``lookups``) rather than
    read the ``total`` calls from the filters' index and sort them. On SQLite; elsewhere the
    database's planner decides and either shape serves it."""
    if not is_sqlite(db.obj):
        return True
    if total == 0:
        return False
    return total * total >= reach * _row_estimate() * (_LOOKUP_COST if lookups else 1)


def _row_estimate() -> int:
    """About how many calls the store holds (an upper bound, from the rowid range: two lookups)."""
    sql = "SELECT (SELECT MAX(rowid) FROM llm_calls) - (SELECT MIN(rowid) FROM llm_calls) + 1"
    return db.execute_sql(sql).fetchone()[0] or 0


def _page_columns(column: str | None, with_rowid: bool = False, *, keys_only: bool = False) -> Select:
    """(call_id, enqueued_at[, timing][, rowid]); ``keys_only``: ([timing,] enqueued_at[, rowid]),
    the sort keys without the ``call_id`` that breaks their ties."""
    sort_columns = [LLMCall._meta.fields[column]] if column else []
    rowid = [_ROWID.alias("call_rowid")] if with_rowid else []
    if keys_only:
        return LLMCall.select(*sort_columns, LLMCall.enqueued_at, *rowid)
    return LLMCall.select(LLMCall.call_id, LLMCall.enqueued_at, *sort_columns, *rowid)


def _order(column: str | None, *, sorted_here: bool = False) -> tuple[Ordering, ...]:
    """The list's order; ``sorted_here`` makes its first term unindexed, so that the database
    sorts the rows its filters found rather than walk an index in that order."""
    first = _unindexed(LLMCall._meta.fields[column or "enqueued_at"]) if sorted_here else None
    if column is None:
        return _NEWEST_FIRST if first is None else (first.desc(), LLMCall.call_id.desc())
    timing = first if first is not None else LLMCall._meta.fields[column]
    return (timing.desc(nulls="LAST"), *_NEWEST_FIRST)


def _unindexed(field: Field) -> Any:
    """``field`` as ``+field`` on SQLite: the same value, which the planner neither looks rows up
    by nor reads in order from an index; the field itself elsewhere."""
    return NodeList((SQL("+"), field), glue="") if is_sqlite(db.obj) else field


def _compound_order(column: str | None) -> tuple[SQL, ...]:
    """``_order`` for a compound select, whose columns are referred to by name."""
    newest = (SQL("enqueued_at DESC"), SQL("call_id DESC"))
    return newest if column is None else (SQL(f"{column} DESC NULLS LAST"), *newest)


def _total(conditions: list[Expression], statuses: Sequence[str], *, unindexed_status: bool = False) -> int:
    """The exact number of calls matching, counted in an index."""
    count = LLMCall.select(fn.COUNT(SQL("*")))
    if conditions or "succeeded" not in statuses:
        if statuses:
            conditions = [*conditions, _status_is(statuses, unindexed=unindexed_status)]
        return _where(count, conditions).scalar()
    # Most calls succeed: count the whole table (SQLite counts index pages, not entries), minus the
    # calls in the other statuses, rather than every matching entry.
    others = [one for one in STATUSES if one not in statuses]
    every = count.scalar()
    return every - count.where(_status_is(others)).scalar() if others else every


def _grouped(
    selection: _Selection, columns: Sequence[str], *, known: str | None = None, bits: bytes | None = None
) -> list[tuple[tuple[Any, ...], int]]:
    """(values of ``columns``, count) over the calls ``selection`` holds (those with a ``known``
    value of that column, when given), one statement.

    On SQLite the filters are written so that the index read is the one that serves best: the
    text's matches when there is a ``q``, else an equality filter's index (which holds the statuses,
    times and timings), else the index that leads with ``columns`` (the label's; for a timing
    ``(status, <timing>, enqueued_at)``), read whole in its order, which holds what the filters test
    (the window index, for a timing with a minimum of another).
    """
    fields = [LLMCall._meta.fields[name] for name in columns]
    if known is not None:
        fields = [LLMCall.status, LLMCall._meta.fields[known]]  # the order of its index
    every = {*selection.equal, *selection.minimums, "enqueued_at", "status"}
    if selection.text or bits is not None:
        unindexed: Collection[str] = every
    elif selection.equal:
        unindexed = every - set(selection.equal)
    else:
        unindexed = every - {known} if known else every
    conditions = selection.conditions(unindexed=unindexed)
    if bits is not None:
        conditions.append(_in_bytes(bits))
    if selection.statuses:
        conditions.append(_status_is(selection.statuses, unindexed="status" in unindexed))
    if known is not None:
        conditions.append(LLMCall._meta.fields[known].is_null(False))
    grouping = fields
    walked = not selection.text and bits is None and not selection.equal
    if known is not None and walked and set(selection.minimums) - {known}:
        # A minimum of another timing: its index lacks this one, the window index holds both.
        grouping = [_unindexed(field) for field in fields]
    query = _where(LLMCall.select(*fields, fn.COUNT(SQL("*"))), conditions).group_by(*grouping)
    return [(tuple(row[:-1]), int(row[-1])) for row in db.execute(query).fetchall()]


def _few(selection: _Selection) -> bool:
    """Whether reading the selected calls costs less than reading an index whole (SQLite)."""
    return _plan(selection, "newest", reach=1).total * _LOOKUP_COST < _row_estimate()


def _counted_rows(
    selection: _Selection,
    *,
    among: Collection[int] | None = None,
    bits: bytes | None = None,
    status_ranges: bool = False,
) -> Counts:
    """What ``call_facets`` counts, from one read of the selected calls' columns (among the calls
    of the rowids ``among``, when given: read by rowid; or of those set in ``bits``). With a label,
    its index is read whole, the statuses tested in each entry, or (``status_ranges``) the ranges
    of the statuses in it."""
    every = {*selection.equal, *selection.minimums, "enqueued_at", "status"}
    unindexed: Collection[str] = ()  # without a label or a q: the planner picks the filters' index
    if selection.text or among is not None:
        unindexed = every
    elif selection.equal:
        unindexed = every - set(selection.equal) - ({"status"} if status_ranges else set())
    conditions = selection.conditions(unindexed=unindexed)
    if isinstance(among, range):
        conditions.append(_ROWID.between(among.start, among.stop - 1))
    elif among is not None:
        conditions.append(_ROWID.in_(_json_rowids(among)))
    if bits is not None:
        conditions.append(_in_bytes(bits))
    statuses = selection.statuses if unindexed else selection.counted_statuses  # (status, <timing>) ranges
    if statuses:
        conditions.append(_status_is(statuses, unindexed="status" in unindexed))
    names = ("status", "model", *(name for name in _FACETS.values() if name != "model"), *_METRICS)
    query = _where(LLMCall.select(*(LLMCall._meta.fields[name] for name in names)), conditions)
    rows = db.execute(query).fetchall()
    if not rows:
        return Counts()
    columns = dict(zip(names, zip(*rows, strict=True), strict=True))
    values = {key: Counter(columns[name]) for key, name in _FACETS.items() if name != "model"}
    histograms = {name: Counter(columns[name]) for name in _METRICS}
    for histogram in histograms.values():
        histogram.pop(None, None)
    return Counts(Counter(zip(columns["model"], columns["status"], strict=True)), values, histograms)


def _top_values(pairs: Iterable[tuple[Any, int]]) -> list[dict[str, Any]]:
    """The ``MAX_FACET_VALUES`` most frequent values: count descending, then value (None last)."""
    ranked = sorted(pairs, key=lambda pair: (-pair[1], pair[0] is None, pair[0] or ""))
    return [{"value": value, "count": count} for value, count in ranked[:MAX_FACET_VALUES]]


def _statuses(status: Sequence[str] | None, allowed: Sequence[str] = STATUSES) -> tuple[str, ...]:
    """The wanted statuses, sorted and checked; () for any."""
    if not status:
        return ()
    if not isinstance(status, (list, tuple, set, frozenset)):
        raise QueryError(f"status must be a list of statuses, e.g. ['failed']; any of {', '.join(allowed)}")
    unknown = sorted({str(one) for one in status if one not in allowed})
    if unknown:
        raise QueryError(f"unknown status {', '.join(unknown)}; expected any of {', '.join(allowed)}")
    return tuple(sorted(set(status)))


def _status_is(statuses: Sequence[str], *, unindexed: bool = False) -> Expression:
    status = _unindexed(LLMCall.status) if unindexed else LLMCall.status
    return status == statuses[0] if len(statuses) == 1 else status.in_(statuses)


def _time_range(
    since_ms: int | None, until_ms: int | None, column: Field = LLMCall.enqueued_at
) -> list[Expression]:
    """``since_ms <= column < until_ms``; either bound may be None."""
    conditions = []
    if since_ms is not None:
        _check_int("since_ms", since_ms)
        conditions.append(column >= since_ms)
    if until_ms is not None:
        _check_int("until_ms", until_ms)
        conditions.append(column < until_ms)
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise QueryError(f"since_ms ({since_ms}) is after until_ms ({until_ms})")
    return conditions


def _where(query: Select, conditions: list[Expression]) -> Select:
    """``query`` with the conditions ANDed; none leaves it without WHERE (SQLite's fast count)."""
    return query.where(*conditions) if conditions else query


def _full_text_index(q: str) -> tuple[str, str] | None:
    """(table, FTS5 query) of the full-text index that finds the calls holding ``q``: the trigram
    index for 3 characters or more, the short-query index for 1-2 CJK characters and one other
    character; None for two characters not both CJK (``_is_pair``) or a store without full-text
    tables (PostgreSQL)."""
    if not is_sqlite(db.obj):
        return None
    if len(q) >= FTS_MIN_CHARS:
        return FTS_TABLE, _fts_query(q)
    if is_cjk_query(q) or is_char_query(q):
        return CJK_TABLE, _short_query(q)
    return None


def _short_query(q: str) -> str:
    """The FTS5 query of the short-query index for ``q`` (``is_cjk_query`` or ``is_char_query``):
    one token (the CJK character, or the pair side by side), or the OR of the tokens of the
    character's cases (``cjk_grams.char_query``)."""
    return _fts_string(q) if is_cjk_query(q) else char_query(q)


def _index_decides(q: str) -> bool:
    """Whether the full-text index alone decides ``q`` (one trigram, one CJK token, or the tokens
    of one character's cases): its matches need no check against their text."""
    return len(q) <= FTS_MIN_CHARS


def _fts_string(text: str) -> str:
    """``text`` as one FTS5 string (double quotes doubled): never FTS5 syntax."""
    return '"' + text.replace('"', '""') + '"'


def _fts_query(q: str) -> str:
    """The FTS5 query of the calls whose text holds trigrams covering ``q`` (>= 3 characters).

    Each trigram is one FTS5 string (double quotes doubled), so the user's text is never FTS5
    syntax. The index keeps no positions (``detail=none``, exporter.migrations): for ``q`` longer
    than one trigram the calls it finds are then checked against their text (``_holds``), so
    trigrams side by side are enough: ``q[0:3]``, ``q[3:6]``, ... and the last three characters,
    and of a long ``q`` only ``_MAX_TRIGRAMS`` of them, spread over it, those without a space
    first. FTS5 evaluates an AND by reading every term's list of rowids whole (no positions to
    skip by), so each trigram costs the number of calls holding it; the text check keeps the
    matches exact whichever trigrams find the candidates. (At 1M calls: ``q`` of 38 characters in
    2% of the calls, 13 trigrams 43 ms, 4 trigrams 2 ms, the same 19,730 candidates.)
    """
    starts = [*range(0, len(q) - 2, 3), len(q) - 3]
    trigrams = list(dict.fromkeys(q[start : start + 3] for start in starts))
    if len(trigrams) > _MAX_TRIGRAMS:
        # Trigrams holding a space (" th", "he ") are among the commonest of any text.
        trigrams = [trigram for trigram in trigrams if not _has_space(trigram)] or trigrams
        last = len(trigrams) - 1
        spread = sorted({round(i * last / (_MAX_TRIGRAMS - 1)) for i in range(_MAX_TRIGRAMS)})
        trigrams = [trigrams[i] for i in spread]
    return " AND ".join(_fts_string(trigram) for trigram in trigrams)


_MAX_TRIGRAMS = 4
"""The most trigrams of a ``q`` looked up in the index (``_fts_query``)."""


def _has_space(text: str) -> bool:
    return any(char.isspace() for char in text)


def _body_pattern(q: str) -> tuple[str, str]:
    """(operator, pattern) finding ``q`` in a body's JSON text, case-insensitively.

    The bodies hold JSON written with its characters as they are (``exporter.mapping.to_json``), so
    ``q`` is searched as that JSON spells it (a quote as ``\\"``, a newline as ``\\n``).
    """
    return _pattern(to_json(q)[1:-1])


def _pattern(spelled: str) -> tuple[str, str]:
    """(operator, pattern) finding ``spelled`` in a text, case-insensitively. LIKE ignores the case
    of ASCII letters only: a text with other cased letters (é, Ж) is a GLOB with each letter in its
    cases (``[éÉ]``)."""
    if all(char.isascii() or char.lower() == char.upper() for char in spelled):
        return "LIKE", _like_pattern(spelled)
    pattern = []
    for char in spelled:
        cases = sorted({case for case in (char, char.lower(), char.upper()) if len(case) == 1})
        if char in "*?[":
            pattern.append(f"[{char}]")
        else:
            pattern.append(char if len(cases) == 1 else "[" + "".join(cases) + "]")
    return "GLOB", "*" + "".join(pattern) + "*"


def _body_holds(q: str, body: str = "") -> tuple[str, list[str]]:
    """SQL (and its parameters) true when the body holds ``q``; ``body``: its alias and a dot."""
    operator_, pattern = _body_pattern(q)
    escape = " ESCAPE '\\'" if operator_ == "LIKE" else ""
    columns = ("input_messages", "output_messages", "system_instructions")  # the likeliest first
    sql = " OR ".join(f"{body}{column} {operator_} ?{escape}" for column in columns)
    return f"({sql})", [pattern] * len(columns)


def _holds(q: str) -> Expression:
    """The call's body holds ``q``: the check of each call the trigrams of ``q`` find, read by its
    rowid (a body's rowid is its call's, exporter.migrations)."""
    sql, params = _body_holds(q)
    same_call = Column(LLMCallBody, "rowid") == Column(LLMCall, "rowid")
    return fn.EXISTS(LLMCallBody.select(SQL("1")).where(same_call & SQL(sql, params)))


def _fts_matches(q: str, table: str, query: str) -> int:
    """How many calls hold ``q``: the matches of ``query`` in the full-text ``table``, each body
    checked unless the index decides alone."""
    if _index_decides(q):
        return db.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE {table} MATCH ?", (query,)).fetchone()[0]
    holds, params = _body_holds(q, "b.")
    sql = (
        f"SELECT COUNT(*) FROM {table} AS f JOIN llm_call_bodies AS b ON b.rowid = f.rowid "
        f"WHERE {table} MATCH ? AND {holds}"
    )
    return db.execute_sql(sql, (query, *params)).fetchone()[0]


def _text_search(q: str, *, walk: bool) -> Expression:
    """The condition for ``q``: FTS5 trigrams (>= 3 chars), else substring; ILIKE on PostgreSQL.

    ``walk`` writes the FTS join as ``+rowid``, which SQLite cannot use to look calls up by rowid:
    it then reads the calls through the list's index, in order, and stops once the page is full.
    """
    pattern = _like_pattern(q)
    if not is_sqlite(db.obj):
        # No FTS table: ILIKE over the previews and the bodies' JSON text, where non-ASCII text is
        # kept as is (a quote, backslash or newline in ``q`` is escaped there: found in previews only).
        bodies = LLMCallBody.select(LLMCallBody.call_id).where(_any_ilike(_BODY_TEXT, pattern))
        previews = _any_ilike((LLMCall.prompt_preview, LLMCall.response_preview), pattern)
        return previews | LLMCall.call_id.in_(bodies)
    # An FTS row's rowid is its call's llm_calls rowid (exporter.migrations): joining on it reads
    # the matches from the FTS index alone.
    index = _full_text_index(q)
    if index is not None:
        table, query = index
        matching = SQL(f"(SELECT rowid FROM {table} WHERE {table} MATCH ?)", [query])
        found = (_ROWID_UNINDEXED if walk else _ROWID).in_(matching)
        return found if _index_decides(q) else found & _holds(q)
    return _pair_condition(q, walk=walk)  # two characters, not both CJK


def _is_pair(q: str) -> bool:
    """Whether ``q`` is two characters, not both CJK: found through the trigram index's vocabulary
    (``exporter.short_terms``) on SQLite."""
    return len(q) == 2 and not is_cjk_query(q)


def _pair_decided(q: str) -> bool:
    """Whether the trigrams holding ``q`` decide alone which calls hold it: ASCII, whose letters the
    index folds as LIKE compares them, but for ``k`` and ``s`` (the Kelvin sign and the long s fold
    to them too). Other pairs' calls are checked against their text."""
    return all(char.isascii() and char.lower() not in "ks" for char in q)


def _text_holds(q: str, body: str, columns: Sequence[str] = ("prompt", "response")) -> tuple[str, list[str]]:
    """SQL (and its parameters) true when the text the full-text index reads of the body ``body``
    (its alias), in ``columns`` of the view, holds ``q``: the JSON it comes from first (no text
    extracted), then the view's text."""
    spelled_operator, spelled = _body_pattern(q)
    operator_, pattern = _pattern(q)
    escapes = {op: " ESCAPE '\\'" if op == "LIKE" else "" for op in (spelled_operator, operator_)}
    json_columns = [json for column in columns for json in _TEXT_SOURCES[column]]
    in_json = " OR ".join(
        f"{body}.{json} {spelled_operator} ?{escapes[spelled_operator]}" for json in json_columns
    )
    in_text = " OR ".join(f"t.{column} {operator_} ?{escapes[operator_]}" for column in columns)
    sql = f"({in_json}) AND EXISTS (SELECT 1 FROM {TEXT_VIEW} AS t WHERE t.id = {body}.rowid AND ({in_text}))"
    return sql, [spelled] * len(json_columns) + [pattern] * len(columns)


_TEXT_SOURCES = {"prompt": ("input_messages", "system_instructions"), "response": ("output_messages",)}
"""The body's JSON columns each column of the text view (``exporter.migrations``) is read from."""


def _pair_sources(q: str, *, ranged: bool) -> list[tuple[str, list[object]]]:
    """The SQL (and parameters) of the rowids of the calls holding the pair ``q`` that the index's
    trigrams holding it find (checked unless ``_pair_decided``; none when no trigram holds it), and
    of those with a column too short for a trigram, checked. ``ranged``: each ends with ``AND
    rowid > ? AND rowid <= ?`` and is ordered by rowid."""
    sources = []
    trigrams = short_terms.trigrams_holding(db.obj, short_terms.folded_pairs(q))
    if trigrams:
        match = short_terms.any_of(trigrams)
        if _pair_decided(q):
            sql = f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?"
            ranges = " AND rowid > ? AND rowid <= ? ORDER BY rowid"
            sources.append((sql + (ranges if ranged else ""), [match]))
        else:
            holds, params = _text_holds(q, "b")
            sql = f"SELECT f.rowid FROM {FTS_TABLE} AS f JOIN llm_call_bodies AS b ON b.rowid = f.rowid "
            sql += f"WHERE {FTS_TABLE} MATCH ? AND {holds}"
            ranges = " AND f.rowid > ? AND f.rowid <= ? ORDER BY f.rowid"
            sources.append((sql + (ranges if ranged else ""), [match, *params]))
    short, params = _short_columns_holding(q, f"{FTS_TABLE}_docsize AS d")
    sources.append((short + (" AND d.id > ? AND d.id <= ? ORDER BY d.id" if ranged else ""), params))
    return sources


def _short_columns_holding(q: str, rows: str) -> tuple[str, list[object]]:
    """The SQL (and parameters) of the rowids ``d.id`` of the ``_docsize`` rows ``rows`` (SQL after
    FROM) whose prompt or response is too short for a trigram and holds ``q``."""
    prompt, prompt_params = _text_holds(q, "b", ("prompt",))
    response, response_params = _text_holds(q, "b", ("response",))
    # CROSS JOIN: the index's rows read first, then only their calls' bodies.
    sql = (
        f"SELECT d.id FROM {rows} CROSS JOIN llm_call_bodies AS b WHERE b.rowid = d.id "
        f"AND (({short_terms.SHORT_PROMPT} AND {prompt}) OR ({short_terms.SHORT_RESPONSE} AND {response}))"
    )
    return sql, [*prompt_params, *response_params]


def _pair_condition(q: str, *, walk: bool) -> Expression:
    """The calls holding the pair ``q`` (``_pair_sources``), as a condition on ``llm_calls``."""
    rowid = _ROWID_UNINDEXED if walk else _ROWID
    found = [rowid.in_(SQL(f"({sql})", params)) for sql, params in _pair_sources(q, ranged=False)]
    return reduce(operator.or_, found)


_PAIR_CHECKED_UP_TO = 2000
"""Rowid ranges up to this long are checked call by call for a pair (``_pair_found``), not looked
up in the index's vocabulary (~0.1 ms a seek, ~1-2 seeks per distinct first character)."""


def _checked_calls(q: str) -> tuple[str, tuple[object, ...]]:
    """The SQL (and parameters) of the rowids of the indexed calls whose text holds ``q``, each
    call's text checked (the index's ``_docsize`` rows read in order, then each call's body),
    ending with ``AND d.id > ? AND d.id <= ?``, ordered by rowid."""
    holds, params = _text_holds(q, "b")
    sql = (
        f"SELECT d.id AS rowid FROM {FTS_TABLE}_docsize AS d CROSS JOIN llm_call_bodies AS b "
        f"WHERE b.rowid = d.id AND {holds} AND d.id > ? AND d.id <= ? ORDER BY d.id"
    )
    return sql, tuple(params)


def _pair_found(q: str, lo: int, hi: int) -> Sequence[int]:
    """The sorted rowids ``lo < rowid <= hi`` of the calls holding the pair ``q`` (``Term.find``)."""
    if hi - lo <= _PAIR_CHECKED_UP_TO:
        sql, params = _checked_calls(q)
        return [row[0] for row in db.execute_sql(sql, (*params, lo, hi))]
    *matched, (short_sql, short_params) = _pair_sources(q, ranged=True)
    found = array("q")
    for sql, params in matched:
        found.extend(search_matches.rowids_of(db.obj, sql, (*params, lo, hi)))
    # The calls with a column too short for a trigram: kept too (most stores have few or none).
    short = search_matches.current(db.obj, _SHORT_TEXTS)
    if short is not None and short.rowids is not None:
        among = json.dumps([rowid for rowid in short.rowids if lo < rowid <= hi])
        rows = f"json_each(?) AS j CROSS JOIN {FTS_TABLE}_docsize AS d ON d.id = j.value"
        short_sql, short_params = _short_columns_holding(q, rows)
        cursor = db.execute_sql(short_sql, (among, *short_params))
    else:
        cursor = db.execute_sql(short_sql, (*short_params, lo, hi))
    missing = [
        rowid
        for (rowid,) in cursor
        if (at := bisect.bisect_left(found, rowid)) == len(found) or found[at] != rowid
    ]
    return sorted([*found, *missing]) if missing else found


def _short_texts_found(database: Any, lo: int, hi: int) -> list[int]:
    """The sorted rowids ``lo < rowid <= hi`` of the indexed calls whose prompt or response holds
    one or two characters (no trigram): what a pair's lookup checks besides its trigrams' calls."""
    sql = (
        f"SELECT d.id FROM {FTS_TABLE}_docsize AS d CROSS JOIN llm_call_bodies AS b "
        f"WHERE d.id > ? AND d.id <= ? AND {short_terms.SHORT_COLUMN} AND b.rowid = d.id AND ("
        f"({short_terms.SHORT_PROMPT} AND (length(b.input_messages) > 2 "
        "OR length(b.system_instructions) > 2) "
        f"AND EXISTS (SELECT 1 FROM {TEXT_VIEW} AS t WHERE t.id = d.id AND t.prompt != '')) "
        f"OR ({short_terms.SHORT_RESPONSE} AND length(b.output_messages) > 2 "
        f"AND EXISTS (SELECT 1 FROM {TEXT_VIEW} AS t WHERE t.id = d.id AND t.response != ''))) ORDER BY d.id"
    )
    return [row[0] for row in database.execute_sql(sql, (lo, hi))]


_SHORT_TEXTS = Term(" short texts", find=_short_texts_found)
"""The calls with a column of text too short for a trigram, kept as a term's matches are (its key
starts with a space: no ``q``, which is stripped, is that)."""


def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards and the escape character escaped (``ESCAPE '\\'``)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _any_ilike(columns: Sequence[Field], pattern: str) -> Expression:
    """``column ILIKE pattern ESCAPE '\\'`` for any of ``columns`` (PostgreSQL)."""
    escaped = NodeList((Value(pattern, converter=False), SQL("ESCAPE"), Value("\\", converter=False)))
    return reduce(operator.or_, (Expression(column, "ILIKE", escaped) for column in columns))


def _percentiles(values: Iterable[int | None]) -> dict[str, int | None]:
    """Nearest-rank p50 and p95 of the values that are not None (None when there are none)."""
    known = sorted(value for value in values if value is not None)
    if not known:
        return {"p50": None, "p95": None}
    return {"p50": known[math.ceil(0.50 * len(known)) - 1], "p95": known[math.ceil(0.95 * len(known)) - 1]}


def _calls_by_id(call_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """The llm_calls rows of these ids (primary-key lookups), by id."""
    return _rows_by_id(LLMCall, call_ids)


def _rows_by_id(
    model: type[LLMCall] | type[LLMCallBody], call_ids: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The rows of ``model`` with these ``call_id`` values (primary-key lookups), by id.

    One statement written here: peewee would build the SQL of a 500-id ``IN`` and a dict per row
    through its converters, which cost an export as much as the decoding of the bodies.
    """
    if not call_ids:
        return {}
    columns = [field.column_name for field in model._meta.sorted_fields]
    marker = "?" if is_sqlite(db.obj) else "%s"
    sql = (
        f"SELECT {', '.join(columns)} FROM {model._meta.table_name} "
        f"WHERE call_id IN ({', '.join([marker] * len(call_ids))})"
    )
    rows = (dict(zip(columns, row, strict=True)) for row in db.execute_sql(sql, list(call_ids)))
    return {row["call_id"]: row for row in rows}


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    summary = dict(row)
    summary["stream"] = bool(summary["stream"])
    summary["finish_reasons"] = _json(summary["finish_reasons"])
    return summary


def _event(row: dict[str, Any]) -> dict[str, Any]:
    row["data"] = _json(row["data"])
    return row


def _task_row(task_id: str) -> dict[str, Any] | None:
    row = LLMTask.select().where(LLMTask.task_id == task_id).dicts().first()
    if row is not None:
        row["attributes"] = _json(row["attributes"])
    return row


def _json(text: str | None) -> Any:
    """Decode a JSON column; text that is not JSON (written by something else) is returned as is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check_sort(sort: object) -> None:
    if sort not in SORTS:
        raise QueryError(f"unknown sort {sort!r}; expected one of {', '.join(SORTS)}")


def _check_int(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise QueryError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise QueryError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise QueryError(f"{name} must be <= {maximum}, got {value}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
