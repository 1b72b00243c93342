"""Retention: delete old rows in short transactions, close calls of lost processes, give space back.

Usage::

    from exporter import close_lost_calls, prune, retention_days_from_env, run_retention

    run_retention(database, retention_days_from_env())   # both, as the store's writer does hourly
    prune("sqlite:///llm_calls.db", older_than=datetime.timedelta(days=30))
    close_lost_calls(database, heartbeat_timeout_ms=300_000)

Configuration: ``LLM_OTEL_RETENTION_DAYS`` (days, a positive number, default 7) through
``retention_days_from_env()``.

``prune`` deletes the ended calls (succeeded, failed, cancelled) enqueued before the cut-off with
their bodies, events and full-text rows, then the rollup rows of the hours and days that end before
the cut-off, the tasks started before it, the events left without a call, and the scheduler
snapshots whose last heartbeat is before it. The rollups stay exact without a take-back of each
call where none is needed: on SQLite the rollup rows of the days before the cut-off's UTC midnight
go first, whole, and the calls of those days are deleted under a ``rollups.BULK_DELETE_TABLE`` row
(the delete trigger takes back only the calls of the cut-off's day; it was a quarter of a delete
transaction's work, issue 10); the log's take-backs of the cut-off day's hours are folded before
those hours' rows go (``rollups.fold_range_sql``). It
works in batches of at most ``batch_size`` calls (or tasks, or events; snapshots, one row per
process, go at once), each in its own ``BEGIN IMMEDIATE`` transaction, sized as it goes to hold the
lock about ``BATCH_TARGET_MS`` (10 ms from its ``BEGIN`` to the end of its commit; its wait for the
lock does not count) and followed by a pause as long as it held the lock (at least
``BATCH_PAUSE_MS``), so a writer never waits long: with ``write_lock`` (the lock the process's own
writer takes, a ``FairLock``; ``SpanStore`` passes it) a writer that asked during a transaction has
the lock before retention's next one, however long it waits for a core; a writer in another
process polls for the lock every 1-2 ms (``exporter._connection.when_unlocked``), and so does
retention, its connection's busy handler off while it writes. A transaction that finds the
database locked past ``busy_timeout`` is tried again after a backoff (``LOCKED_RETRIES``): retention
completes under sustained writing. While pruning, the connection makes no automatic WAL checkpoint
(it would run inside a commit, the lock held): a passive one runs every ``CHECKPOINT_EVERY``
transactions, between them. A large backlog takes
minutes, so run it on a thread of its own rather than on the one that writes new calls. Then, on
SQLite, ``PRAGMA incremental_vacuum`` returns the freed pages to the file system in steps sized by
their slowest recent pages (``_PageSteps``; the file must have been created with
``auto_vacuum=INCREMENTAL``, which ``open_database`` does for new files; an older file keeps
reusing its free pages but does not shrink). The full-text indexes merge no segments inside the
delete transactions (``automerge`` 0 there, set back before each commit): the merges the deletes
call for run between the transactions, one ``('merge', N)`` step of each index after each delete
transaction, each in a transaction of its own, N sized by the slowest recent pages
(``_Batches.merge``, ``_PageSteps``: sized by the last step's, a step held the lock up to 110 ms at
1M calls; FTS5's automerge inside a commit took 0.2-0.6 s, issue 10; up to 8 steps of each index
after each delete, each paused after, took over 40% of a prune at 1M calls).
The indexes drop deleted entries as their segments merge, so they shrink over time. On PostgreSQL
the same deletes run in plain transactions, with no full-text rows and no vacuum step (the server's
autovacuum reuses the space).

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
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import peewee

from exporter import rollups
from exporter._connection import is_locked, polled
from exporter._exceptions import StoreConfigurationError, converted_errors
from exporter._sql import unindex
from exporter.database import immediate, is_sqlite, open_database
from exporter.mapping import to_json
from exporter.migrations import CJK_TABLE, EVENT_ORDER_LOCK_SQL, FTS_TABLE
from exporter.models import LLMCall, LLMCallBody, LLMCallEvent, LLMTask, SchedulerSnapshot, StoreLoss

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

RETENTION_DAYS_ENV = "LLM_OTEL_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 7.0
DEFAULT_BATCH_SIZE = 2000
MAX_BATCH_SIZE = 10_000  # stays under SQLite's limit of bound parameters per statement
FIRST_BATCH_SIZE = 10
BATCH_TARGET_MS = 10
"""How long one delete transaction should hold the write lock, its commit included (issue 10: a
writer waits ≤ 50 ms): the next batch is sized from how long the last ones held it (not from how
long they waited for it)."""
BATCH_PAUSE_MS = 5
"""The shortest pause after a transaction (it pauses as long as it held the lock): a writer of
another process, polling every 1-2 ms, takes the lock meanwhile."""
DEFAULT_HEARTBEAT_TIMEOUT_MS = 300_000
FIRST_VACUUM_PAGES = 64
"""Pages freed by the first ``incremental_vacuum`` step; later steps are sized by ``_PageSteps``."""
CHECKPOINT_EVERY = 16
"""Transactions between two passive WAL checkpoints (made between transactions, never inside one)."""
LOCKED_RETRIES = 30
"""Times a transaction that found the database locked (past ``busy_timeout``) is tried again."""
FIRST_MERGE_PAGES = 8
"""Pages of a full-text index merged by its first ``'merge'`` step; later steps are sized by
``_PageSteps``."""
MAX_MERGE_PAGES = 256
PAGE_RATE_WINDOW = 64
"""Steps whose ms per page size the next merge or vacuum step (``_PageSteps``): the slowest of them."""
PAGE_STEP_GROWTH = 1.25
"""How much a merge or vacuum step may grow over the last one."""
FOLD_FROM = 200
"""Rollup log entries at which retention folds the log in a transaction of its own, between its
deletes (``_Batches.fold_log``): each call it deletes in the cut-off's day logs a take-back, and the
log's own trigger folds at ``rollups.FOLD_AT`` (1,000) entries inside whichever delete transaction
logs the thousandth, 30-50 ms at 1M calls (issue 10: a writer waits <= 50 ms)."""
FTS_TABLES = (FTS_TABLE, CJK_TABLE)
FTS_DEFAULT_AUTOMERGE = 4

LOST_BATCH_SIZE = 200
"""Lost calls closed per transaction (a few ms: they are few, but a process may have left many)."""

LOST_ERROR_TYPE = "process_lost"
_LIVE = ("queued", "running")
_ENDED = ("succeeded", "failed", "cancelled")
_DAY_MS = rollups.DAY_MS
_HOUR_MS = rollups.HOUR_MS


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
    write_lock: AbstractContextManager[object] | None = None,
) -> RetentionResult:
    """Close the calls of lost processes, prune what is older than ``retention_days``, re-analyze.

    ``write_lock``: held around each write transaction; the lock the process's own writer takes
    around its transactions (``SpanStore`` passes it), so that the two take turns without waiting
    on SQLite's lock.
    """
    now_ms = _now_ms() if now_ms is None else now_ms
    closed = close_lost_calls(
        database, heartbeat_timeout_ms=heartbeat_timeout_ms, now_ms=now_ms, write_lock=write_lock
    )
    pruned = prune(
        database, older_than=retention_days, batch_size=batch_size, now_ms=now_ms, write_lock=write_lock
    )
    if is_sqlite(database):
        with converted_errors("analyzing the store"):
            database.execute_sql("PRAGMA analysis_limit = 1000")
            _write(database, write_lock, lambda: database.execute_sql("ANALYZE llm_calls"), transaction=False)
    return RetentionResult(lost_calls_closed=closed, rows_pruned=pruned)


def prune(
    database_or_url: peewee.Database | str,
    *,
    older_than: datetime.timedelta | float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now_ms: int | None = None,
    write_lock: AbstractContextManager[object] | None = None,
) -> int:
    """Delete what is older than ``older_than`` (a timedelta or days); returns the rows deleted.

    The count is of calls, tasks, orphan events and snapshots; the body, events and full-text row
    deleted with a call are not counted apart. ``write_lock``: see ``run_retention``.
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
        with converted_errors("pruning the store"), _checkpoints_between_transactions(database):
            batches = _Batches(database, write_lock, batch_size)
            whole_days_ms = cutoff_ms - cutoff_ms % _DAY_MS  # the days before end before the cut-off
            if is_sqlite(database):  # their rollup rows whole, then the calls with no take-back each
                _prune_whole_days(database, batches, whole_days_ms)
            calls = batches.run(
                partial(_prune_calls, database, cutoff_ms, whole_days_ms), merge=True, fold=True
            )
            if is_sqlite(database):  # the take-backs of the cut-off's day, before its hours go
                batches.timed(partial(_fold, database, whole_days_ms, cutoff_ms - cutoff_ms % _HOUR_MS))
            batches.run(partial(_prune_rollups, database, cutoff_ms))
            if is_sqlite(database):  # what the calls ended meanwhile added to those days
                _prune_whole_days(database, batches, whole_days_ms)
            events = batches.run(partial(_prune_orphan_events, database, cutoff_ms))
            tasks = batches.run(partial(_prune_tasks, database, cutoff_ms))
            snapshots = batches.run(partial(_prune_snapshots, database, cutoff_ms))
            if calls or events or tasks or snapshots:
                _give_space_back(database, batches)
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
    database: peewee.Database,
    *,
    heartbeat_timeout_ms: int,
    now_ms: int | None = None,
    write_lock: AbstractContextManager[object] | None = None,
) -> int:
    """Close as failed the queued/running calls of processes that stopped; returns how many.

    ``write_lock``: see ``run_retention``.
    """
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
        for start in range(0, len(lost), LOST_BATCH_SIZE):
            chunk = lost[start : start + LOST_BATCH_SIZE]
            closed += _write(
                database,
                write_lock,
                lambda chunk=chunk: sum(
                    _close_lost_call(database, *lost_call, now_ms) for lost_call in chunk
                ),
            )[0]
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


def _prune_calls(database: peewee.Database, cutoff_ms: int, whole_days_ms: int, limit: int) -> int:
    """Up to ``limit`` ended calls enqueued before ``cutoff_ms``, with their bodies, events and
    full-text entries. On SQLite the rollup trigger takes back only those enqueued from
    ``whole_days_ms`` on (``rollups.BULK_DELETE_TABLE``): the rows of the days before it are gone."""
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
    with _no_automerge(database) if is_sqlite(database) else nullcontext():
        if is_sqlite(database):  # the index entries first: they are read back through the bodies
            unindex(database.cursor(), to_json(ids))
        database.execute(LLMCallEvent.delete().where(LLMCallEvent.call_id.in_(ids)))
        database.execute(LLMCallBody.delete().where(LLMCallBody.call_id.in_(ids)))
        if is_sqlite(database):
            database.execute_sql(rollups.BULK_DELETE_BEGIN_SQL, (whole_days_ms,))
        database.execute(LLMCall.delete().where(LLMCall.call_id.in_(ids)))
        if is_sqlite(database):  # in the same transaction: no other connection ever sees the row
            database.execute_sql(rollups.BULK_DELETE_END_SQL)
    return len(ids)


@contextmanager
def _no_automerge(database: peewee.Database) -> Iterator[None]:
    """Inside one delete transaction: the full-text tables write the entries removed as a segment
    but merge no segments (``automerge`` 0, set back before the commit, so no other connection ever
    sees it). FTS5 merges a few hundred pages at a time after every 64 it writes, up to 0.2-0.6 s
    inside the transaction; ``_Batches.merge`` does that work in short steps between transactions."""
    settings = {table: _automerge(database, table) for table in FTS_TABLES}
    for table in FTS_TABLES:
        _fts_command(database, table, "automerge", 0)
    yield
    for table, value in settings.items():  # after the deletes, whose first statement wrote the segments
        _fts_command(database, table, "automerge", value)


def _automerge(database: peewee.Database, table: str) -> int:
    row = database.execute_sql(f"SELECT v FROM {table}_config WHERE k = 'automerge'").fetchone()
    return FTS_DEFAULT_AUTOMERGE if row is None else int(row[0])


def _fts_command(database: peewee.Database, table: str, command: str, value: int) -> None:
    database.execute_sql(f"INSERT INTO {table} ({table}, rank) VALUES (?, ?)", (command, int(value)))


def _merge_step(database: peewee.Database, table: str, pages: int) -> bool:
    """Up to ``pages`` pages of the full-text table's segment merges (only levels FTS5's own
    automerge would merge, or a merge already begun: FTS5 takes a lower level with more segments
    first); whether it had work."""
    connection = database.connection()
    before = connection.total_changes
    _fts_command(database, table, "merge", pages)
    return connection.total_changes - before >= 2  # FTS5's documented test


def _prune_rollups(database: peewee.Database, cutoff_ms: int, limit: int) -> int:
    """The ended calls' rollup rows of up to ``limit`` buckets that end before the cut-off (those
    calls are gone, and the triggers took them back: rows of zeros); returns the buckets removed."""
    marker = "?" if is_sqlite(database) else "%s"
    old = database.execute_sql(
        f"SELECT bucket_ms, bucket_start FROM llm_call_rollups WHERE bucket_start + bucket_ms <= {marker} "
        f"AND status IN {rollups.ENDED_SQL} "
        f"GROUP BY bucket_ms, bucket_start ORDER BY bucket_start LIMIT {int(limit)}",
        (cutoff_ms,),
    ).fetchall()
    for bucket in old:
        for statement in rollups.prune_statements(marker):
            database.execute_sql(statement, bucket)
    return len(old)


def _prune_whole_days(database: peewee.Database, batches: _Batches, before_ms: int) -> None:
    """SQLite: the ended calls' rollup rows of the days before ``before_ms`` (a UTC midnight) and
    their log entries, whole: the calls enqueued then are deleted without a take-back each."""
    batches.run(partial(_prune_rollups, database, before_ms))
    batches.timed(lambda: database.execute_sql(rollups.PRUNE_LOG_SQL, (before_ms,)).rowcount)


def _fold(database: peewee.Database, start_ms: int, end_ms: int) -> int:
    for statement in rollups.fold_range_sql(start_ms, end_ms):
        database.execute_sql(statement)
    return 0


def _fold_log(database: peewee.Database) -> int:
    for statement in rollups.fold_log_sql():
        database.execute_sql(statement)
    return 0


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
    """The stale snapshots, and the writers' losses that ended before ``cutoff_ms`` (a few rows)."""
    database.execute(StoreLoss.delete().where(StoreLoss.ended_at < cutoff_ms))
    stale = SchedulerSnapshot.delete().where(SchedulerSnapshot.heartbeat_at < cutoff_ms)
    return database.execute(stale).rowcount


class _Batches:
    """Write transactions one after another, each sized to hold the write lock ``BATCH_TARGET_MS``.

    ``size`` starts at ``FIRST_BATCH_SIZE`` and follows how long the last transaction held the lock
    (from its ``BEGIN`` to the end of its commit, not its wait for the lock), at most doubling, never
    above ``batch_size``: what a row costs to delete depends on its indexes, its full-text entries
    and the file. After each transaction it pauses as long as that transaction held the lock (at
    least ``BATCH_PAUSE_MS``), so that writers get at least the share of the lock retention takes:
    in this process the writer that asked meanwhile has the lock at once (``write_lock``, a
    ``FairLock``, hands it over in turn), in another process within its next poll (1-2 ms).
    """

    def __init__(
        self, database: peewee.Database, write_lock: AbstractContextManager[object] | None, batch_size: int
    ) -> None:
        self.database = database
        self.write_lock = write_lock
        self.batch_size = batch_size
        self.transactions = 0
        self.merge_steps = {table: _PageSteps(FIRST_MERGE_PAGES, MAX_MERGE_PAGES) for table in FTS_TABLES}

    def run(self, step: Callable[[int], int], *, merge: bool = False, fold: bool = False) -> int:
        """Run ``step(size)`` in one transaction after another until it deletes fewer than asked;
        with ``merge``, a step of the full-text merges its deletes call for after each (``merge``);
        with ``fold``, the rollup log folded once it holds ``FOLD_FROM`` entries (``fold_log``)."""
        total = 0
        size = min(self.batch_size, FIRST_BATCH_SIZE)
        while True:
            deleted, held_ms = self.timed(lambda size=size: step(size))
            total += deleted
            if merge and deleted:
                self.merge()
            if fold and deleted:
                self.fold_log()
            if deleted < size:
                return total
            size = self.next_size(size, held_ms, self.batch_size)

    def merge(self) -> None:
        """One step of each full-text table's pending segment merges (the deletes made none,
        ``_no_automerge``): a transaction of its own per table, sized to hold the lock
        ``BATCH_TARGET_MS`` (``_PageSteps``), so merging takes at most the deletes' share of the
        lock; paused after only if it had work."""
        if not is_sqlite(self.database):
            return
        for table, steps in self.merge_steps.items():
            pages = steps.pages
            worked, held_ms = self.timed(partial(_merge_step, self.database, table, pages), pause=False)
            if worked:
                steps.took(pages, held_ms)
                self.pause(held_ms)

    def fold_log(self) -> None:
        """SQLite: the rollup log folded in a transaction of its own once it holds ``FOLD_FROM``
        entries (a fifth of what its trigger waits for: a fifth of the fold's time)."""
        if not is_sqlite(self.database):
            return
        entries = self.database.execute_sql(f"SELECT MAX(rowid) FROM {rollups.LOG_TABLE}").fetchone()[0]
        if (entries or 0) >= FOLD_FROM:
            self.timed(partial(_fold_log, self.database))

    def timed(
        self, work: Callable[[], int], *, transaction: bool = True, pause: bool = True
    ) -> tuple[int, float]:
        """``work()`` in one write transaction, then (with ``pause``) the pause; (its result, the ms
        it held the lock)."""
        result, held_s = _write(self.database, self.write_lock, work, transaction=transaction)
        held_ms = held_s * 1000
        self.transactions += 1
        if self.transactions % CHECKPOINT_EVERY == 0 and is_sqlite(self.database):
            self.database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if pause:
            self.pause(held_ms)
        return result, held_ms

    @staticmethod
    def pause(held_ms: float) -> None:
        time.sleep(max(BATCH_PAUSE_MS, held_ms) / 1000)

    @staticmethod
    def next_size(size: int, held_ms: float, most: int) -> int:
        fitting = int(size * BATCH_TARGET_MS / max(held_ms, 0.1))
        return max(1, min(most, size * 2, fitting))


class _PageSteps:
    """The size in pages of the next step of a full-text merge or of ``incremental_vacuum``: what
    the slowest of the last ``PAGE_RATE_WINDOW`` steps would do in ``BATCH_TARGET_MS``, growing by
    ``PAGE_STEP_GROWTH`` at most.

    Why not the last step's rate, as the delete batches are sized: a page costs these steps 20x more
    or less from one step to the next (a merge through segments whose entries deleted entries cancel
    reads many pages to write the few it counts; a vacuum step moves pages whose parents must be
    rewritten). Sized by the last step, a run of cheap steps doubled the size up to the most, and
    the next costly one held the lock 60-110 ms at 1M calls (issue 10: a writer waits <= 50 ms)."""

    def __init__(self, first: int, most: int) -> None:
        self.pages = first
        self.most = most
        self.rates: deque[float] = deque(maxlen=PAGE_RATE_WINDOW)

    def took(self, pages: int, held_ms: float) -> None:
        """A step of ``pages`` held the lock ``held_ms``: the next step's size."""
        self.rates.append(held_ms / pages)
        fitting = int(BATCH_TARGET_MS / max(max(self.rates), 1e-3))
        self.pages = max(1, min(self.most, int(pages * PAGE_STEP_GROWTH) + 1, fitting))


def _write(
    database: peewee.Database,
    write_lock: AbstractContextManager[object] | None,
    work: Callable[[], _T],
    *,
    transaction: bool = True,
) -> tuple[_T, float]:
    """``work()`` holding ``write_lock`` and, with ``transaction``, in a ``BEGIN IMMEDIATE``
    transaction; (its result, the seconds the lock was held: from the ``BEGIN`` to the end of the
    commit). On SQLite a database locked by another process is tried again every ``LOCK_POLL_S``
    for as long as the connection's ``busy_timeout`` (``_connection.polled``), and past that again
    after a backoff (``LOCKED_RETRIES`` times): retention completes under sustained writing."""

    def attempt() -> tuple[_T, float]:
        with write_lock or nullcontext():
            started = time.perf_counter()
            with immediate(database) if transaction else nullcontext():
                result = work()
            return result, time.perf_counter() - started

    for tries in range(LOCKED_RETRIES + 1):
        try:
            return polled(database, attempt)
        except (peewee.OperationalError, sqlite3.OperationalError) as exc:
            if not is_locked(exc) or tries == LOCKED_RETRIES:
                raise
            logger.info("retention: the database is locked by another process; trying again (%s)", exc)
        time.sleep(min(5.0, 0.05 * 2**tries))
    raise AssertionError("unreachable")


@contextmanager
def _checkpoints_between_transactions(database: peewee.Database) -> Iterator[None]:
    """No automatic WAL checkpoint at the commits of this connection while pruning: one would run
    inside the commit, the write lock still held (``_Batches`` checkpoints between transactions)."""
    if not is_sqlite(database):
        yield
        return
    before = database.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0]
    database.execute_sql("PRAGMA wal_autocheckpoint = 0").fetchall()
    try:
        yield
    finally:
        database.execute_sql(f"PRAGMA wal_autocheckpoint = {int(before)}").fetchall()
        database.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _give_space_back(database: peewee.Database, batches: _Batches) -> None:
    """Free the file's empty pages in steps sized by their slowest recent pages (SQLite only)."""
    if not is_sqlite(database):
        return
    if database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] != 2:
        logger.info(
            "this store was created without auto_vacuum=INCREMENTAL: free pages are reused, not returned"
        )
        return
    steps = _PageSteps(FIRST_VACUUM_PAGES, 1 << 20)
    free = database.execute_sql("PRAGMA freelist_count").fetchone()[0]
    while free:
        pages = steps.pages
        _, held_ms = batches.timed(partial(_vacuum_step, database, pages), transaction=False)
        remaining = database.execute_sql("PRAGMA freelist_count").fetchone()[0]
        if remaining >= free:
            break
        steps.took(min(pages, free - remaining), held_ms)
        free = remaining


def _vacuum_step(database: peewee.Database, pages: int) -> int:
    """Free up to ``pages`` pages, in a transaction of their own: through executescript, which
    steps the pragma to its end (one ``execute()`` would free one page)."""
    database.connection().executescript(f"PRAGMA incremental_vacuum({pages});")
    return pages


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
