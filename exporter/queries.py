"""Read side of the span store: what the admin API and the live feed ask the database.

Usage::

    from exporter import migrate, open_database, queries
    from exporter.models import db

    database = open_database("sqlite:///llm_calls.db")
    migrate(database)
    db.initialize(database)              # these functions read through exporter.models.db

    page = queries.list_calls(status=["failed"], source="billing", q="天气预报", page=1, page_size=50)
    call = queries.get_call(page["items"][0]["call_id"])
    events = queries.call_events_after(0)
    stats = queries.status_aggregates(window_ms=3_600_000)

API:

- ``list_calls(*, status, source, requested_by, model, parent_task_id, since_ms, until_ms, q, page,
  page_size)`` → ``{"items", "total", "page", "page_size"}``: newest first (``enqueued_at`` then
  ``call_id`` descending), exact ``total``; items hold the ``llm_calls`` columns (previews, never
  the bodies). Filters combine with AND; ``status`` is a list (any of); the time range is
  ``since_ms <= enqueued_at < until_ms``; ``q`` searches prompt and response text: on SQLite, 3
  characters or more through FTS5 (trigram, any language, case-insensitive), shorter as a plain
  substring; on PostgreSQL (no FTS table) as a case-insensitive substring (``ILIKE``, wildcards
  escaped) of the previews and the bodies' JSON text, a scan of the calls the other filters keep.
- ``get_call(call_id)`` → every column, the body (JSON decoded), the event timeline, the parent task.
- ``call_events_after(after_id, limit=500)`` → events with ``id > after_id`` and their call summary.
- ``status_aggregates(window_ms, now_ms=None)`` → counts by status, error rate, p50/p95 of
  ``wait_ms`` / ``first_token_ms`` / ``duration_ms``, token and retry sums, over calls enqueued in
  the window.
- ``scheduler_snapshots(live_within_ms=30000, now_ms=None, *, include_stale=False)`` → the snapshot
  rows of live processes (``include_stale``: all rows), each with a ``live`` flag.
- ``get_task(task_id)`` → the task row (its calls: ``list_calls(parent_task_id=...)``).

Bad arguments raise ``QueryError`` (a ``ValueError``); database failures ``StoreDatabaseError``.

Why it stays fast at 1M calls (``bench/bench_list_1m.py``): every filter column has an index
``(column, status, enqueued_at)`` (``docs/contracts/db.md``), so a page is read in index order and
its total counted from the index alone; the page's rows are then fetched by primary key. Several
statuses (or none, with an equality filter) become one ordered index walk per status, merged
(``UNION ALL``); a status set holding ``succeeded`` alone is counted as all calls minus the other
statuses. A search term with many FTS matches walks the list's index and tests each call against
the matches, rather than sorting them all. Aggregates read only the covering window index. What
stays slow by nature: a 1-2 character ``q`` (a scan of every text), a term found in most calls, and
aggregates over a window holding most of the store.
"""

from __future__ import annotations

import json
import math
import operator
import time
from collections.abc import Collection, Iterable, Sequence
from functools import reduce
from typing import Any

from peewee import SQL, Case, Expression, Field, NodeList, Select, Value, fn

from exporter._exceptions import QueryError, converted_errors
from exporter.database import is_sqlite, read_snapshot
from exporter.models import LLMCall, LLMCallBody, LLMCallEvent, LLMTask, SchedulerSnapshot, db

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
"""Every value of ``llm_calls.status``."""
ENDED_STATUSES = ("succeeded", "failed", "cancelled")
MAX_PAGE_SIZE = 200
MAX_EVENTS = 5000
FTS_MIN_CHARS = 3
"""Shortest ``q`` served by the trigram index; shorter queries are a substring scan."""

_NEWEST_FIRST = (LLMCall.enqueued_at.desc(), LLMCall.call_id.desc())
_ROWID = SQL("rowid")  # of llm_calls: every statement here reads that one table
_ROWID_UNINDEXED = SQL("+rowid")  # the same value, which the planner cannot look rows up by
_SORT_MATCHES_UP_TO = 2000
"""Up to this many FTS matches, a page reads and sorts them all; beyond, it walks an index."""
_BODY_JSON = ("request_params", "system_instructions", "input_messages", "output_messages", "attributes")
_BODY_TEXT = (LLMCallBody.system_instructions, LLMCallBody.input_messages, LLMCallBody.output_messages)
_METRICS = ("wait_ms", "first_token_ms", "duration_ms")
_TOKENS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cached": "cached_tokens",
    "reasoning": "reasoning_tokens",
}


def list_calls(
    *,
    status: Sequence[str] | None = None,
    source: str | None = None,
    requested_by: str | None = None,
    model: str | None = None,
    parent_task_id: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    q: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> dict[str, Any]:
    """One page of calls, newest first, and the exact number of calls matching the filters."""
    _check_int("page", page, minimum=1)
    _check_int("page_size", page_size, minimum=1, maximum=MAX_PAGE_SIZE)
    equal = {
        name: value
        for name, value in (
            ("source", source),
            ("requested_by", requested_by),
            ("model", model),
            ("parent_task_id", parent_task_id),
        )
        if value is not None
    }
    shared = [LLMCall._meta.fields[name] == value for name, value in equal.items()]
    shared += _time_range(since_ms, until_ms)
    if q is not None and not isinstance(q, str):
        raise QueryError(f"q must be a string, got {q!r}")
    text = q.strip() if q else ""
    # An equality filter leads an index (column, status, enqueued_at): naming every status (a call's
    # status is always one of STATUSES) lets the total be counted from that index alone.
    statuses = _statuses(status) or (STATUSES if equal else ())
    with converted_errors("listing calls"), read_snapshot(db.obj):  # one snapshot: page and total
        matches = _fts_matches(text) if text and _uses_fts(text) else None
        if text:
            # A frequent term: walk the list's index newest first and test each call against the
            # matches, rather than read and sort every matching call.
            shared.append(_text_search(text, walk=matches is not None and matches > _SORT_MATCHES_UP_TO))
        ids = [call_id for call_id, _ in _page(shared, statuses, bool(text), page, page_size).tuples()]
        rows = _calls_by_id(ids)
        if matches is not None and len(shared) == 1 and not statuses:
            total = matches  # one FTS row per call (exporter.migrations): no need to join
        else:
            total = _total(shared, statuses)
    items = [_summary(rows[call_id]) for call_id in ids]
    return {"items": items, "total": total, "page": page, "page_size": page_size}


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
    """Events with ``id > after_id`` in id order, each with ``call``: its call's current summary."""
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


def status_aggregates(window_ms: int, now_ms: int | None = None) -> dict[str, Any]:
    """Aggregates over the calls enqueued in ``[now_ms - window_ms, now_ms]``.

    Counts and sums are computed by the database; the percentiles from the three timing columns, read
    through the covering window index (never a row, never the text) and ranked here. Percentiles
    are nearest-rank (p50 of 1..100 is 50, p95 is 95) and None when no call has the value;
    ``error_rate`` is failed / ended (succeeded + failed + cancelled), None when none ended.
    """
    _check_int("window_ms", window_ms, minimum=1)
    now_ms = _now_ms() if now_ms is None else now_ms
    since_ms = now_ms - window_ms
    in_window = (LLMCall.enqueued_at >= since_ms) & (LLMCall.enqueued_at <= now_ms)
    # Every column read here is in the llm_calls_window index: both statements read that index only.
    sums = [fn.SUM(Case(None, [(LLMCall.status == status, 1)], 0)) for status in STATUSES]
    sums += [fn.SUM(LLMCall.retry_count)] + [fn.SUM(LLMCall._meta.fields[name]) for name in _TOKENS.values()]
    timings = LLMCall.select(*(LLMCall._meta.fields[name] for name in _METRICS)).where(in_window)
    with converted_errors("computing call aggregates"), read_snapshot(db.obj):
        totals = db.execute(LLMCall.select(*sums).where(in_window)).fetchone()
        timing_rows = db.execute(timings).fetchall()
    # int(): PostgreSQL's SUM of a BIGINT is a NUMERIC, which the driver reads as a Decimal.
    counts = {status: int(count or 0) for status, count in zip(STATUSES, totals, strict=False)}
    retries, *token_sums = totals[len(STATUSES) :]
    ended = sum(counts[status] for status in ENDED_STATUSES)
    return {
        "window_ms": window_ms,
        "since_ms": since_ms,
        "until_ms": now_ms,
        "total": sum(counts.values()),
        "counts": counts,
        "ended": ended,
        "error_rate": counts["failed"] / ended if ended else None,
        **{name: _percentiles(row[i] for row in timing_rows) for i, name in enumerate(_METRICS)},
        "tokens": {name: int(value or 0) for name, value in zip(_TOKENS, token_sums, strict=True)},
        "retries": int(retries or 0),
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


def get_task(task_id: str) -> dict[str, Any] | None:
    """The task row (``attributes`` decoded), or None."""
    with converted_errors("reading a task"):
        return _task_row(task_id)


def _page(shared: list[Expression], statuses: Sequence[str], text: bool, page: int, page_size: int) -> Select:
    """The query of one page of (call_id, enqueued_at), newest first."""
    if len(statuses) > 1 and not text:
        # One index walk per status, each already newest first, merged by SQLite (UNION ALL):
        # no sort of every matching row.
        arms = [_page_columns().where(*shared, _status_is((one,))) for one in statuses]
        query = reduce(operator.add, arms).order_by(SQL("enqueued_at DESC"), SQL("call_id DESC"))
    else:
        conditions = [*shared, _status_is(statuses)] if statuses else shared
        query = _where(_page_columns(), conditions).order_by(*_NEWEST_FIRST)
    return query.limit(page_size).offset((page - 1) * page_size)


def _page_columns() -> Select:
    return LLMCall.select(LLMCall.call_id, LLMCall.enqueued_at)


def _total(shared: list[Expression], statuses: Sequence[str]) -> int:
    """The exact number of calls matching, counted in an index."""
    count = LLMCall.select(fn.COUNT(SQL("*")))
    if shared or "succeeded" not in statuses:
        return _where(count, [*shared, _status_is(statuses)] if statuses else shared).scalar()
    # Most calls succeed: count the whole table (SQLite counts index pages, not entries), minus the
    # calls in the other statuses, rather than every matching entry.
    others = [one for one in STATUSES if one not in statuses]
    every = count.scalar()
    return every - count.where(_status_is(others)).scalar() if others else every


def _statuses(status: Sequence[str] | None) -> tuple[str, ...]:
    """The wanted statuses, sorted and checked; () for any."""
    if not status:
        return ()
    if isinstance(status, str):
        raise QueryError("status must be a list of statuses, e.g. ['failed', 'cancelled']")
    unknown = sorted(set(status) - set(STATUSES))
    if unknown:
        raise QueryError(
            f"unknown status {', '.join(map(str, unknown))}; expected any of {', '.join(STATUSES)}"
        )
    return tuple(sorted(set(status)))


def _status_is(statuses: Sequence[str]) -> Expression:
    return LLMCall.status == statuses[0] if len(statuses) == 1 else LLMCall.status.in_(statuses)


def _time_range(since_ms: int | None, until_ms: int | None) -> list[Expression]:
    """``since_ms <= enqueued_at < until_ms``; either bound may be None."""
    conditions = []
    if since_ms is not None:
        _check_int("since_ms", since_ms)
        conditions.append(LLMCall.enqueued_at >= since_ms)
    if until_ms is not None:
        _check_int("until_ms", until_ms)
        conditions.append(LLMCall.enqueued_at < until_ms)
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise QueryError(f"since_ms ({since_ms}) is after until_ms ({until_ms})")
    return conditions


def _where(query: Select, conditions: list[Expression]) -> Select:
    """``query`` with the conditions ANDed; none leaves it without WHERE (SQLite's fast count)."""
    return query.where(*conditions) if conditions else query


def _uses_fts(q: str) -> bool:
    return len(q) >= FTS_MIN_CHARS and is_sqlite(db.obj)


def _fts_literal(q: str) -> str:
    """``q`` as one FTS5 string (double quotes doubled): the user's text is a phrase, never syntax."""
    return '"' + q.replace('"', '""') + '"'


def _fts_matches(q: str) -> int:
    """How many calls the FTS index matches for ``q`` (>= 3 characters, SQLite)."""
    sql = "SELECT COUNT(*) FROM llm_calls_fts WHERE llm_calls_fts MATCH ?"
    return db.execute_sql(sql, (_fts_literal(q),)).fetchone()[0]


def _text_search(q: str, *, walk: bool) -> Expression:
    """The condition for ``q``: FTS5 MATCH (>= 3 chars), else substring; ILIKE on PostgreSQL.

    ``walk`` writes the FTS join as ``+rowid``, which SQLite cannot use to look calls up by rowid:
    it then reads the calls through the list's index, in order, and stops once the page is full.
    """
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if not is_sqlite(db.obj):
        # No FTS table: ILIKE over the previews and the bodies' JSON text, where non-ASCII text is
        # kept as is (a quote, backslash or newline in ``q`` is escaped there: found in previews only).
        bodies = LLMCallBody.select(LLMCallBody.call_id).where(_any_ilike(_BODY_TEXT, pattern))
        previews = _any_ilike((LLMCall.prompt_preview, LLMCall.response_preview), pattern)
        return previews | LLMCall.call_id.in_(bodies)
    # An FTS row's rowid is its call's llm_calls rowid (exporter.migrations): joining on it reads
    # the matches from the FTS index alone, without looking each one up in the FTS content table.
    if _uses_fts(q):
        matching = SQL("(SELECT rowid FROM llm_calls_fts WHERE llm_calls_fts MATCH ?)", [_fts_literal(q)])
        return (_ROWID_UNINDEXED if walk else _ROWID).in_(matching)
    fts_rows = SQL(
        "(SELECT rowid FROM llm_calls_fts WHERE prompt LIKE ? ESCAPE '\\' OR response LIKE ? ESCAPE '\\')",
        [pattern, pattern],
    )
    return _in_previews(q) | _ROWID.in_(fts_rows)


def _any_ilike(columns: Sequence[Field], pattern: str) -> Expression:
    """``column ILIKE pattern ESCAPE '\\'`` for any of ``columns`` (PostgreSQL)."""
    escaped = NodeList((Value(pattern, converter=False), SQL("ESCAPE"), Value("\\", converter=False)))
    return reduce(operator.or_, (Expression(column, "ILIKE", escaped) for column in columns))


def _in_previews(q: str) -> Expression:
    return LLMCall.prompt_preview.contains(q) | LLMCall.response_preview.contains(q)


def _percentiles(values: Iterable[int | None]) -> dict[str, int | None]:
    """Nearest-rank p50 and p95 of the values that are not None (None when there are none)."""
    known = sorted(value for value in values if value is not None)
    if not known:
        return {"p50": None, "p95": None}
    return {"p50": known[math.ceil(0.50 * len(known)) - 1], "p95": known[math.ceil(0.95 * len(known)) - 1]}


def _calls_by_id(call_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """The llm_calls rows of these ids (primary-key lookups), by id."""
    if not call_ids:
        return {}
    query = LLMCall.select().where(LLMCall.call_id.in_(list(call_ids))).dicts()
    return {row["call_id"]: row for row in query}


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


def _check_int(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise QueryError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise QueryError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise QueryError(f"{name} must be <= {maximum}, got {value}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
