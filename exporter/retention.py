"""Retention: delete old rows in short transactions, close calls of lost processes, give space back.

Usage::

    from exporter import close_lost_calls, prune, retention_days_from_env, run_retention

    run_retention(database, retention_days_from_env())   # both, as the store's writer does hourly
    prune("sqlite:///llm_calls.db", older_than=datetime.timedelta(days=30))
    close_lost_calls(database, heartbeat_timeout_ms=300_000)

Configuration: ``LLM_OTEL_RETENTION_DAYS`` (days, a positive number, default 7) through
``retention_days_from_env()``.

``prune`` deletes the ended calls (succeeded, failed, cancelled) enqueued before the cut-off with
their bodies, events and full-text rows, the tasks started before it, the events left without a
call, and the scheduler snapshots whose last heartbeat is before it. It works in batches of at most
``batch_size`` calls (or tasks, or events; snapshots, one row per process, go at once), each in its
own ``BEGIN IMMEDIATE`` transaction, sized as it goes to hold the lock about ``BATCH_TARGET_MS``
(50 ms) and followed by a pause at least as long (``BATCH_PAUSE_MS``, 30 ms), so a writer never
waits long. That deletes roughly 2,000 calls a second from a 1M-call file: a large backlog takes
minutes, so run it on a thread of its own rather than on the one that writes new calls. Then, on
SQLite, ``PRAGMA incremental_vacuum`` returns the freed pages to the file system a step at a time
(the file must have been created with ``auto_vacuum=INCREMENTAL``, which ``open_database`` does for
new files; an older file keeps reusing its free pages but does not shrink) and a passive WAL
checkpoint lets the file shrink without waiting on readers. The FTS5 index drops deleted entries
as its segments merge during later writes, so it shrinks over time rather than at once. On
PostgreSQL the same deletes run in plain transactions, with no full-text rows and no vacuum step
(the server's autovacuum reuses the space).

``close_lost_calls`` closes as ``failed`` (``error_type="process_lost"``, ``ended_at`` = now, plus a
``failed`` event) every ``queued`` or ``running`` call whose process stopped sending scheduler
heartbeats more than ``heartbeat_timeout_ms`` ago, or, for a process with no snapshot row, whose
row was last updated longer ago than that.

``run_retention`` does both (lost calls first, so they are pruned in their turn) and, on SQLite,
refreshes the query planner's statistics (``ANALYZE`` with a small ``analysis_limit``; PostgreSQL's
autovacuum does that itself).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import peewee

from exporter._exceptions import StoreConfigurationError, converted_errors
from exporter._sql import unindex
from exporter.database import immediate, is_sqlite, open_database
from exporter.mapping import to_json
from exporter.migrations import EVENT_ORDER_LOCK_SQL
from exporter.models import LLMCall, LLMCallBody, LLMCallEvent, LLMTask, SchedulerSnapshot

logger = logging.getLogger(__name__)

RETENTION_DAYS_ENV = "LLM_OTEL_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_BATCH_SIZE = 2000
MAX_BATCH_SIZE = 10_000  # stays under SQLite's limit of bound parameters per statement
FIRST_BATCH_SIZE = 200
BATCH_TARGET_MS = 50
"""How long one delete transaction should hold the write lock (DESIGN §9: a writer waits ≤ 100 ms)."""
BATCH_PAUSE_MS = 30
"""The shortest pause between two delete transactions, which lets waiting writers take the lock."""
DEFAULT_HEARTBEAT_TIMEOUT_MS = 300_000
VACUUM_STEP_PAGES = 2048
"""Pages freed per ``incremental_vacuum`` step (8 MB of 4 KB pages): each step is one short write."""

LOST_ERROR_TYPE = "process_lost"
_LIVE = ("queued", "running")
_ENDED = ("succeeded", "failed", "cancelled")
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class RetentionResult:
    """What one ``run_retention`` did."""

    lost_calls_closed: int
    rows_pruned: int


def retention_days_from_env(default: float = DEFAULT_RETENTION_DAYS) -> float:
    """``LLM_OTEL_RETENTION_DAYS`` as days (unset or blank: ``default``)."""
    raw = os.environ.get(RETENTION_DAYS_ENV, "").strip()
    if not raw:
        return default
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not days > 0 or days == float("inf"):
        raise StoreConfigurationError(
            f"{RETENTION_DAYS_ENV} must be a positive number of days (e.g. 7 or 0.5), got {raw!r}"
        )
    return days


def run_retention(
    database: peewee.Database,
    retention_days: float,
    *,
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now_ms: int | None = None,
) -> RetentionResult:
    """Close the calls of lost processes, prune what is older than ``retention_days``, re-analyze."""
    now_ms = _now_ms() if now_ms is None else now_ms
    closed = close_lost_calls(database, heartbeat_timeout_ms=heartbeat_timeout_ms, now_ms=now_ms)
    pruned = prune(database, older_than=retention_days, batch_size=batch_size, now_ms=now_ms)
    if is_sqlite(database):
        with converted_errors("analyzing the store"):
            database.execute_sql("PRAGMA analysis_limit = 1000")
            database.execute_sql("ANALYZE llm_calls")
    return RetentionResult(lost_calls_closed=closed, rows_pruned=pruned)


def prune(
    database_or_url: peewee.Database | str,
    *,
    older_than: datetime.timedelta | float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now_ms: int | None = None,
) -> int:
    """Delete what is older than ``older_than`` (a timedelta or days); returns the rows deleted.

    The count is of calls, tasks, orphan events and snapshots; the body, events and full-text row
    deleted with a call are not counted apart.
    """
    age_ms = _age_ms(older_than)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise StoreConfigurationError(
            f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}"
        )
    cutoff_ms = (_now_ms() if now_ms is None else now_ms) - age_ms
    database = open_database(database_or_url) if isinstance(database_or_url, str) else database_or_url
    try:
        with converted_errors("pruning the store"):
            calls = _batches(database, partial(_prune_calls, database, cutoff_ms), batch_size)
            events = _batches(database, partial(_prune_orphan_events, database, cutoff_ms), batch_size)
            tasks = _batches(database, partial(_prune_tasks, database, cutoff_ms), batch_size)
            snapshots = _batches(database, partial(_prune_snapshots, database, cutoff_ms), batch_size)
            if calls or events or tasks or snapshots:
                _give_space_back(database)
    finally:
        if database is not database_or_url:
            database.close()
    logger.info(
        "pruned %d calls, %d orphan events, %d tasks and %d scheduler snapshots older than %s",
        calls,
        events,
        tasks,
        snapshots,
        datetime.timedelta(milliseconds=age_ms),
    )
    return calls + events + tasks + snapshots


def close_lost_calls(
    database: peewee.Database, *, heartbeat_timeout_ms: int, now_ms: int | None = None
) -> int:
    """Close as failed the queued/running calls of processes that stopped; returns how many."""
    if (
        isinstance(heartbeat_timeout_ms, bool)
        or not isinstance(heartbeat_timeout_ms, int)
        or heartbeat_timeout_ms < 0
    ):
        raise StoreConfigurationError(
            f"heartbeat_timeout_ms must be an integer >= 0, got {heartbeat_timeout_ms!r}"
        )
    now_ms = _now_ms() if now_ms is None else now_ms
    limit_ms = now_ms - heartbeat_timeout_ms
    with converted_errors("closing lost calls"):
        heartbeats = dict(
            database.execute(
                SchedulerSnapshot.select(
                    SchedulerSnapshot.process, peewee.fn.MAX(SchedulerSnapshot.heartbeat_at)
                ).group_by(SchedulerSnapshot.process)
            ).fetchall()
        )
        live = database.execute(
            LLMCall.select(LLMCall.call_id, LLMCall.process, LLMCall.updated_at).where(
                LLMCall.status.in_(_LIVE)
            )
        ).fetchall()
        lost = []
        for call_id, process, updated_at in live:
            last_seen = heartbeats.get(process)
            if (last_seen if last_seen is not None else updated_at) < limit_ms:
                lost.append((call_id, process, last_seen))
        closed = 0
        for start in range(0, len(lost), DEFAULT_BATCH_SIZE):
            with immediate(database):
                for call_id, process, last_seen in lost[start : start + DEFAULT_BATCH_SIZE]:
                    closed += _close_lost_call(database, call_id, process, last_seen, now_ms)
    if closed:
        logger.warning("closed %d calls of lost processes as failed (%s)", closed, LOST_ERROR_TYPE)
    return closed


def _close_lost_call(
    database: peewee.Database, call_id: str, process: str | None, last_seen: int | None, now_ms: int
) -> int:
    """Close one call if it is still live (re-checked inside the transaction); 1 if closed."""
    if last_seen is None:
        message = f"process {process or '(unknown)'} left the call unfinished and sent no scheduler heartbeat"
    else:
        message = (
            f"process {process} left the call unfinished; its last scheduler heartbeat was at {last_seen}"
        )
    update = LLMCall.update(
        status="failed",
        error_type=LOST_ERROR_TYPE,
        error_message=message,
        ended_at=now_ms,
        updated_at=now_ms,
    ).where((LLMCall.call_id == call_id) & LLMCall.status.in_(_LIVE))
    if database.execute(update).rowcount != 1:
        return 0
    data = json.dumps({"error_type": LOST_ERROR_TYPE, "error_message": message})
    if not is_sqlite(database):  # event ids committed in order (exporter.migrations, the feed contract)
        database.execute_sql(EVENT_ORDER_LOCK_SQL)
    database.execute(LLMCallEvent.insert(call_id=call_id, kind="failed", at=now_ms, data=data))
    return 1


def _prune_calls(database: peewee.Database, cutoff_ms: int, limit: int) -> int:
    ids = [
        call_id
        for (call_id,) in database.execute(
            LLMCall.select(LLMCall.call_id)
            .where((LLMCall.enqueued_at < cutoff_ms) & LLMCall.status.in_(_ENDED))
            .limit(limit)
        ).fetchall()
    ]
    if not ids:
        return 0
    if is_sqlite(database):  # the index entries first: they are read back through the bodies
        unindex(database.cursor(), to_json(ids))
    database.execute(LLMCallEvent.delete().where(LLMCallEvent.call_id.in_(ids)))
    database.execute(LLMCallBody.delete().where(LLMCallBody.call_id.in_(ids)))
    database.execute(LLMCall.delete().where(LLMCall.call_id.in_(ids)))
    return len(ids)


def _prune_orphan_events(database: peewee.Database, cutoff_ms: int, limit: int) -> int:
    """Old events whose call row is gone (or never came: a writer dropped it under a fault)."""
    has_call = LLMCall.select(LLMCall.call_id).where(LLMCall.call_id == LLMCallEvent.call_id)
    orphans = (
        LLMCallEvent.select(LLMCallEvent.id)
        .where((LLMCallEvent.at < cutoff_ms) & ~peewee.fn.EXISTS(has_call))
        .limit(limit)
    )
    ids = [event_id for (event_id,) in database.execute(orphans).fetchall()]
    if ids:
        database.execute(LLMCallEvent.delete().where(LLMCallEvent.id.in_(ids)))
    return len(ids)


def _prune_tasks(database: peewee.Database, cutoff_ms: int, limit: int) -> int:
    old = LLMTask.select(LLMTask.task_id).where(LLMTask.started_at < cutoff_ms).limit(limit)
    ids = [task_id for (task_id,) in database.execute(old).fetchall()]
    if ids:
        database.execute(LLMTask.delete().where(LLMTask.task_id.in_(ids)))
    return len(ids)


def _prune_snapshots(database: peewee.Database, cutoff_ms: int, limit: int) -> int:
    stale = SchedulerSnapshot.delete().where(SchedulerSnapshot.heartbeat_at < cutoff_ms)
    return database.execute(stale).rowcount


def _batches(database: peewee.Database, step: Callable[[int], int], batch_size: int) -> int:
    """Run ``step(size)`` in one IMMEDIATE transaction after another until it deletes fewer than asked.

    ``size`` starts small and adapts so that each transaction lasts about ``BATCH_TARGET_MS`` (the
    time a writer may wait for the lock), never above ``batch_size``: what a row costs to delete
    depends on its indexes, its full-text row and the file's size. Between transactions it pauses
    as long as the last one took (at least ``BATCH_PAUSE_MS``): a waiting writer retries on SQLite's
    busy-handler schedule (gaps of 25 ms in its first 100 ms, then 50-100 ms) and would otherwise
    find the lock taken again.
    """
    total = 0
    size = min(batch_size, FIRST_BATCH_SIZE)
    while True:
        started = time.perf_counter()
        with immediate(database):
            deleted = step(size)
        elapsed_ms = (time.perf_counter() - started) * 1000
        total += deleted
        if deleted < size:
            return total
        fitting = int(size * BATCH_TARGET_MS / max(elapsed_ms, 0.1))
        size = max(1, min(batch_size, size * 2, fitting))
        time.sleep(max(BATCH_PAUSE_MS, elapsed_ms) / 1000)


def _give_space_back(database: peewee.Database) -> None:
    """Free the file's empty pages a step at a time, then a passive checkpoint (SQLite only)."""
    if not is_sqlite(database):
        return
    if database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] != 2:
        logger.info(
            "this store was created without auto_vacuum=INCREMENTAL: free pages are reused, not returned"
        )
        return
    free = database.execute_sql("PRAGMA freelist_count").fetchone()[0]
    while free:
        # Through executescript, which steps the pragma to its end: one execute() frees one page.
        database.connection().executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES});")
        remaining = database.execute_sql("PRAGMA freelist_count").fetchone()[0]
        if remaining >= free:
            break
        free = remaining
    database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _age_ms(older_than: datetime.timedelta | float) -> int:
    if isinstance(older_than, datetime.timedelta):
        age_ms = older_than / datetime.timedelta(milliseconds=1)
    elif isinstance(older_than, int | float) and not isinstance(older_than, bool):
        age_ms = older_than * _DAY_MS
    else:
        raise StoreConfigurationError(
            f"older_than must be a timedelta or a number of days, got {older_than!r}"
        )
    if not 0 <= age_ms < float("inf"):
        raise StoreConfigurationError(f"older_than must be zero or more, got {older_than!r}")
    return int(age_ms)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
