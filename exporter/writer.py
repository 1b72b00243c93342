"""The store's background writer: one thread per process, a bounded queue, batched transactions.

The app's threads only hand records over (``put``: a size check and a ``SimpleQueue.put``, a
microsecond, never a lock held by the database, never a wait); ``exporter.records`` lists every
kind of record. The writer thread takes up to ``BATCH_MAX`` records at a time (after the first, it
sleeps up to ``LINGER_S`` while more arrive, woken only by a flush, the shutdown or a queue half
full: records put meanwhile do not wake it one by one, each wake-up a hand-over of the GIL between
the app's thread and the writer), maps them to rows (``exporter.mapping.RowBatch``) and writes
each batch in one transaction (``BEGIN IMMEDIATE`` on SQLite, a plain ``BEGIN`` on PostgreSQL)
with ``executemany`` (``exporter._sql``). Records become visible in the database a few tens of
milliseconds after ``put``.

A call whose span ended within the batch is written once, from its ``EndedSpan``: its
``QueuedCall`` and ``CallNotice`` records in the same batch add nothing the ended span does not
carry (its events included), so they are not mapped or written. A call queued in an earlier batch
has its end mapped with the prompt preview its queued row computed (``RowBatch.prompts``, when the
input is the same) and written as its end's columns alone (``exporter._sql.ended_apart``).

Full-text indexing (SQLite). FTS5 writes a segment at every commit that indexed something: ~30 µs
plus ~0.4 µs a distinct trigram, 127 µs for a call of 300 characters alone in its transaction
against 20 µs in a batch of 100 (docs/performance.md). So the calls a batch ends are listed in
``llm_calls_unindexed`` (``RowBatch.defer_index``) and indexed together in a later batch: once
``INDEX_BATCH`` are listed, ``INDEX_DELAY_S`` after the first of them, at each ``flush`` and at the
shutdown, and at the writer's first batch (what a writer that stopped left listed). Meanwhile a
search takes them for calls in flight (``exporter.search_matches``): a call is found once it is
indexed, at most ``INDEX_DELAY_S`` after its end is written.

Usage (``exporter.store.SpanStore`` does this for you)::

    writer = StoreWriter(lambda: ready_database(url), jobs=[Job("retention", 3600, retention)])
    writer.put(EndedSpan(span, call_id))            # any exporter.records.Record
    writer.add_status_source(scheduler.status)
    writer.flush(timeout=5)                         # True once everything put before is written
    writer.shutdown(timeout=5)

Faults. Any failure of the database (locked past ``busy_timeout``, read-only file, disk full,
deleted file or directory, ...) keeps the batch in hand and retries it with exponential backoff
(``BACKOFF_MIN`` to ``BACKOFF_MAX``), reopening the database each time (``connect()`` again, so a
deleted directory or file is created anew and migrated). Meanwhile ``put`` keeps accepting until
the queue holds ``queue_size`` records, then drops and counts. Each distinct error is logged once
at WARNING and kept in ``stats()["last_error"]`` and in the scheduler snapshot rows; the writer
logs at INFO when writing resumes. A record the database refuses as such (a constraint or binding
error) is dropped and counted alone, so it cannot block the others; a heartbeat whose snapshot
rows it refuses is skipped (the closings it carried are then written alone). When a call's end is
refused (queue full), ``keep_closing`` keeps a small row saying how it ended, written with the next
heartbeat, so that the call does not stay ``running``.

Losses. What the writer loses is also written to the store itself (``llm_store_losses``, kept
for the retention window), so that the admin shows it after this process has exited: one
``dropped`` row per episode of drops (records dropped, of which calls whose end was dropped, the
first and the last drop, and why: the queue full, and the error writing failed with if it did),
upserted with each heartbeat while records keep being dropped, then left as it is; and one
``file_replaced`` row when the store file was deleted, moved
away or replaced under the writer (``exporter._connection.StoreFile``), written into the new store,
with the records and calls this process had written into the one that went. The ``dropped`` rows
went with it too: the new store gets one episode counting every drop of this process.

Heartbeat. Every ``HEARTBEAT_S`` (and at each ``flush``) the thread upserts one
``llm_scheduler_snapshots`` row per status source (a callable returning a dict shaped like
``llm_otel.Scheduler.status()``), keyed by (``host:pid``, scheduler name), with the writer's
dropped count, last error and the time; with no source it writes one row under the scheduler name
``""`` so that other processes still see this one alive. ``shutdown`` deletes this process's rows.

Jobs. Periodic maintenance (retention, closing calls of lost processes) runs on a short-lived
helper thread with its own connection, so the writer keeps writing between the job's batches: each
``Job`` runs when the writer starts and then every ``interval_s``; a failed job is retried after
``JOB_RETRY_S``. The writer and the jobs take one lock around each write transaction, so in this
process they take turns at once instead of waiting on SQLite's lock.

After ``os.fork()`` the child starts with an empty queue and starts its own writer thread on its
first ``put`` (the parent's thread and connection do not exist in the child).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import peewee

from exporter import _connection
from exporter._fair_lock import FairLock
from exporter.mapping import KnownPrompt, RowBatch, to_json
from exporter.records import CallNotice, EndedSpan, QueuedCall, Record

logger = logging.getLogger(__name__)

BATCH_MAX = 500
"""Most records written in one transaction."""
LINGER_S = 0.02
"""How long the writer waits for more records after the first of a batch (well under the 250 ms
within which a change must be visible)."""
HEARTBEAT_S = 1.0
"""Seconds between two scheduler snapshot upserts."""
INDEX_DELAY_S = 1.0
"""Most seconds an ended call stays unindexed for full-text search (its end written, listed in
``llm_calls_unindexed``) before the writer indexes the calls listed."""
INDEX_BATCH = 100
"""Calls listed unindexed that make the writer index them at its next batch: past ~100, a call
costs FTS5 little less (~140 µs for 3 KB at 100, ~210 at 10), while the transaction that indexes
them holds the write lock longer (~15 ms for 100 such calls), which other processes' writers wait
for."""
BACKOFF_MIN = 0.05
BACKOFF_MAX = 5.0
"""Seconds to wait before retrying a failed batch: doubled per failure, between these bounds."""
JOB_RETRY_S = 60.0
"""Seconds after which a failed maintenance job runs again."""
WAITING_MAX = 100
"""Most waiting callers listed in a snapshot row's ``waiting``."""
KNOWN_PROMPTS_MAX = 10_000
"""Most prompt previews kept for calls in flight (``RowBatch.prompts``); past it they are
forgotten, and those calls' ends map their prompts again."""

StatusSource = Callable[[], Mapping[str, Any]]


@dataclass(frozen=True)
class Job:
    """A maintenance function run on its own connection at start, then every ``interval_s``.

    ``run(database, write_lock)``: ``write_lock`` is the lock the writer holds around each of its
    transactions; a job holds it around each of its own, so that the two take turns at once rather
    than wait on SQLite's lock (whose busy handler sleeps in steps and can starve one of them).
    """

    name: str
    interval_s: float
    run: Callable[[peewee.Database, AbstractContextManager[object]], object]


def current_process() -> str:
    """``host:pid``, as ``llm_otel.process`` spells it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Flush:
    """A marker in the queue: set once every record before it is written."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _DropWarning:
    """Logs once when records start being dropped; again only after the queue has drained."""

    def __init__(self) -> None:
        self.seen = 0
        self.warned = False

    def check(self, dropped: int, queued: int, queue_size: int) -> None:
        if dropped > self.seen:
            if not self.warned:
                logger.warning(
                    "llm-otel store: the writer queue is full (%d records); new records are dropped "
                    "and counted until the database takes writes again",
                    queue_size,
                )
                self.warned = True
            self.seen = dropped
        elif self.warned and queued == 0:
            self.warned = False


@dataclass(frozen=True)
class _Episode:
    """Records dropped since ``started_ms`` on top of ``base`` (records, calls) reported before."""

    started_ms: int
    base: tuple[int, int]
    process: str
    row: dict[str, Any] = field(default_factory=dict)

    def at(self, dropped: int, dropped_calls: int, last_drop_ms: int, reason: str | None) -> _Episode:
        """This episode's ``llm_store_losses`` row as of the counters given."""
        row = {
            "process": self.process,
            "kind": "dropped",
            "started_at": self.started_ms,
            "ended_at": max(last_drop_ms, self.started_ms),
            "records": dropped - self.base[0],
            "calls": dropped_calls - self.base[1],
            "reason": reason,
        }
        return _Episode(self.started_ms, self.base, self.process, row)


_LINGERED = object()
"""``StoreWriter._next``: the linger ended with no record."""


def _is_call_end(record: Record | None) -> bool:
    """Whether ``record`` is the ended span of a call (the record that carries the whole call)."""
    return type(record) is EndedSpan and bool(record.call_id)


class StoreWriter:
    """One background writer thread with a bounded queue; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], peewee.Database],
        *,
        queue_size: int = 10_000,
        jobs: Sequence[Job] = (),
    ) -> None:
        """``connect()`` returns an open, migrated database; it is called on the writer's threads."""
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._connect = connect
        self._queue_size = queue_size
        self._wake_at = max(1, min(BATCH_MAX, queue_size // 2))  # queued records that end a linger
        self._jobs = tuple(jobs)
        self._sources: tuple[StatusSource, ...] = ()
        self._reset()
        self._thread.start()
        os.register_at_fork(after_in_child=functools.partial(_reset_after_fork, weakref.ref(self)))

    def _reset(self) -> None:
        """Fresh state for this process: an empty queue, zero counters, an unstarted thread."""
        self.process = current_process()
        self._lock = threading.Lock()  # guards the counters below; never held during I/O
        # one write transaction at a time, the writer's or a job's, in the order they asked for it
        self._write_lock = FairLock()
        self._queue: queue.SimpleQueue[Record | _Flush | None] = queue.SimpleQueue()
        self._wake = threading.Event()  # ends the writer's linger: a flush, the shutdown, a full batch
        self._dropped = 0
        self._dropped_calls = 0  # of which the ended span of a call
        self._refused = 0  # of which refused by ``put`` because the queue was full
        self._first_drop_ms: int | None = None  # the first drop not yet in a written loss row
        self._earliest_drop_ms: int | None = None  # this process's first drop
        self._drops_went_with_file = False  # the file holding the drops' rows was replaced
        self._last_drop_ms = 0
        self._drop_reason: str | None = None
        self._episode: _Episode | None = None  # the episode of drops whose row was last written
        self._reported = (0, 0)  # records and calls dropped in the episodes that are over
        self._file_losses: list[dict[str, Any]] = []  # file_replaced rows not yet written
        self._written = 0
        self._file_written = [0, 0]  # records and calls written into the store file open now
        self._in_hand = 0
        self._last_error: str | None = None
        self._logged: set[str] = set()
        self._closings: dict[str, dict[str, Any]] = {}
        self._prompts: dict[str, KnownPrompt] = {}  # of calls queued, until their end is mapped
        self._closed = False
        self._failing = False  # the last write failed: the database is unavailable
        self._stopped_unwritten = False  # the thread stopped with records it could not write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm-otel-store-writer", daemon=True)
        self._forked = False

    def _start_in_child(self) -> None:
        with self._lock:
            if self._forked:
                self._forked = False
                self._thread.start()

    # -- the app's side: never blocks --------------------------------------------------------------

    def put(self, record: Record) -> bool:
        """Hand ``record`` to the writer; False (and counted as dropped) when the queue is full."""
        if self._forked:
            self._start_in_child()
        queued = self._queue.qsize()
        if self._closed or queued >= self._queue_size:
            with self._lock:
                self._count_drop(record, self._full_reason())
                self._refused += 1
            return False
        self._queue.put(record)
        if queued >= self._wake_at and not self._wake.is_set():
            self._wake.set()
        return True

    def keep_closing(self, row: dict[str, Any]) -> None:
        """Remember how a call ended whose record ``put`` refused (``mapping.closing_row``).

        Written with the next heartbeat, so that the call does not stay ``running``; at most
        ``queue_size`` are kept (a few hundred bytes each).
        """
        with self._lock:
            if not self._closed and len(self._closings) < self._queue_size:
                self._closings[row["call_id"]] = row

    def add_status_source(self, source: StatusSource) -> None:
        """Write ``source()`` as a scheduler snapshot row with every heartbeat."""
        with self._lock:
            if source not in self._sources:
                self._sources = (*self._sources, source)

    def _full_reason(self) -> str:
        if self._closed:
            return "the store was shut down"
        reason = f"the writer's queue ({self._queue_size} records) was full"
        return f"{reason} while writing failed ({self._last_error})" if self._failing else reason

    def _count_drop(self, record: Record | None, reason: str) -> None:
        """Count one dropped record, lost because of ``reason`` (the caller holds ``_lock``)."""
        self._drop_reason = reason
        self._dropped += 1
        if _is_call_end(record):
            self._dropped_calls += 1
            self._prompts.pop(record.call_id, None)
        self._last_drop_ms = time.time_ns() // 1_000_000
        if self._first_drop_ms is None:
            self._first_drop_ms = self._last_drop_ms
        if self._earliest_drop_ms is None:
            self._earliest_drop_ms = self._last_drop_ms

    def stats(self) -> dict[str, Any]:
        """``queued`` (waiting to be written), ``written``, ``dropped`` (records), ``dropped_calls``
        (of which calls' ends) and ``last_error``."""
        with self._lock:
            return {
                "queued": self._queue.qsize() + self._in_hand,
                "written": self._written,
                "dropped": self._dropped,
                "dropped_calls": self._dropped_calls,
                "last_error": self._last_error,
            }

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record put before this call is written; False if ``timeout`` ran out."""
        if self._forked:
            self._start_in_child()
        if self._closed or not self._thread.is_alive():
            return not self._stopped_unwritten and self._queue.empty() and self._in_hand == 0
        marker = _Flush()
        self._queue.put(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush (up to ``timeout``), then stop the thread; records still unwritten are dropped.

        While the database is failing there is no flush: it would only hold the caller (often the
        app's exit) for the whole ``timeout``; the unwritten records are dropped, counted and logged.
        """
        if self._closed:
            return
        deadline = time.monotonic() + timeout
        if not self._failing:
            self.flush(timeout)
        self._closed = True
        self._stop.set()
        self._queue.put(None)
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))

    # -- the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        store = _connection.StoreFile(self._connect, self._write_lock, on_replaced=self._note_replaced)
        pending: list[Record] = []
        markers: list[_Flush] = []
        backoff = 0.0
        failing_since: float | None = None
        next_heartbeat = 0.0
        index_due = 0.0  # when the calls listed unindexed are indexed: the first batch indexes what is left
        unindexed = 0
        job_due = dict.fromkeys(self._jobs, 0.0)
        job_thread: threading.Thread | None = None
        stopping = False
        drops = _DropWarning()

        while not stopping:
            if not pending and not markers:
                wake_at = min(next_heartbeat, index_due)
                stopping = self._take(pending, markers, max(0.0, wake_at - time.monotonic()))
            drops.check(self._refused, self._queue.qsize(), self._queue_size)
            heartbeat = bool(markers) or time.monotonic() >= next_heartbeat
            index = bool(markers) or stopping or time.monotonic() >= index_due
            if pending or heartbeat or index:
                try:
                    listed = self._write(store, pending, heartbeat, index)
                except Exception as exc:  # the database is unavailable: keep the batch, back off
                    self._failing = True
                    self._note_error(exc)
                    failing_since = failing_since or time.monotonic()
                    backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
                    stopping = self._stop.wait(backoff)
                    continue
                if failing_since is not None:
                    self._note_recovery(time.monotonic() - failing_since)
                failing_since, backoff = None, 0.0
                self._failing = False
                self._written_out(pending, markers)
                if heartbeat:
                    next_heartbeat = time.monotonic() + HEARTBEAT_S
                if index:
                    index_due, unindexed = math.inf, 0
                if listed:
                    unindexed += listed
                    first_due = time.monotonic() + INDEX_DELAY_S
                    index_due = time.monotonic() if unindexed >= INDEX_BATCH else min(index_due, first_due)
            if job_thread is None or not job_thread.is_alive():
                try:
                    job_thread = self._start_due_jobs(job_due)
                except RuntimeError:  # no new threads while the interpreter shuts down
                    job_thread = None

        if failing_since is None:
            self._forget_process(store)
        store.close()
        left = list(pending)
        while True:  # what is still queued: records are dropped (not flush markers, not the sentinel)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and not isinstance(item, _Flush):
                left.append(item)
        with self._lock:
            for record in left:
                self._count_drop(record, f"the writer stopped with records unwritten ({self._last_error})")
            self._in_hand = 0
            self._stopped_unwritten = bool(left)
        if left:
            logger.warning(
                "llm-otel store: stopped with %d records unwritten (%s)", len(left), self._last_error
            )

    def _written_out(self, pending: list[Record], markers: list[_Flush]) -> None:
        calls = sum(map(_is_call_end, pending))
        with self._lock:
            self._written += len(pending)
            self._file_written[0] += len(pending)
            self._file_written[1] += calls
            self._in_hand = 0
        pending.clear()
        for marker in markers:
            marker.done.set()
        markers.clear()

    def _note_recovery(self, failed_for: float) -> None:
        with self._lock:
            self._logged.clear()
            dropped = self._dropped
        logger.info(
            "llm-otel store: writing resumed after %.1f s (%d records dropped so far)", failed_for, dropped
        )

    def _take(self, pending: list[Record], markers: list[_Flush], timeout: float) -> bool:
        """Block until a record arrives (or ``timeout``), then take up to ``BATCH_MAX`` of them
        within ``LINGER_S``: one transaction for many records costs the app's process far less CPU
        than one each.

        Meanwhile it sleeps, woken by a flush, the shutdown or a queue half full (``put``), to
        take what is queued: records put meanwhile do not wake it one by one, and the queue still
        holds ``queue_size`` records beyond the batch in hand, as when it took each as it came.
        Stops after a flush marker so that ``flush`` waits only for what was put before it.
        Returns True when the stop sentinel was taken.
        """
        try:
            item: Record | _Flush | None = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        linger_until = time.monotonic() + LINGER_S
        while True:
            if item is None:
                return True
            if isinstance(item, _Flush):
                markers.append(item)
                break
            pending.append(item)
            if len(pending) >= BATCH_MAX:
                break
            following = self._next(linger_until)
            if following is _LINGERED:
                break
            item = following
        with self._lock:
            self._in_hand = len(pending)
        return False

    def _next(self, until: float) -> Any:
        """The next queued item (a record, a flush marker, the stop sentinel), sleeping until ``until``
        (``time.monotonic``) for one; ``_LINGERED`` when none came by then. ``put`` (a queue half
        full), ``flush`` and ``shutdown`` wake it."""
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            left = until - time.monotonic()
            if left <= 0:
                return _LINGERED
            self._wake.clear()  # a wake-up left from an earlier flush would end this linger at once
            if self._queue.qsize():  # put between the look and the clear: its wake-up was cleared
                continue
            self._wake.wait(left)

    def _write(
        self, store: _connection.StoreFile, pending: list[Record], heartbeat: bool, index: bool
    ) -> int:
        """Write ``pending`` (and a heartbeat) in one transaction, the calls it ends listed to be
        indexed later, or (``index``) indexed with those listed; raises when the database fails.
        Returns how many ended calls it listed (SQLite).

        Records whose mapping fails, or that the database refuses, are dropped from ``pending``.
        """
        batch = self._map(pending)
        batch.defer_index, batch.index_deferred = not index, index
        with self._lock:
            batch.losses = list(self._file_losses)
        episode = None
        if heartbeat:
            batch.snapshots = self._snapshot_rows()
            episode = self._episode_now()
            if episode is not None:
                batch.losses.append(episode.row)
            with self._lock:
                batch.closings = list(self._closings.values())
        listed = len(batch.finals) if store.statements.fts and batch.defer_index else 0
        try:
            store.write(batch)
        except Exception as exc:
            if _connection.is_fault(exc):
                raise
            self._note_error(exc, "the database refused a batch; writing its records one by one")
            self._write_one_by_one(store, pending)  # each call indexed in its own transaction
            listed = 0
            if index:  # what earlier batches listed
                store.write(RowBatch(index_deferred=True))
            if heartbeat:
                self._write_heartbeat(store, batch)
        with self._lock:
            for row in batch.closings:
                self._closings.pop(row["call_id"], None)
            del self._file_losses[: len(batch.losses) - (episode is not None)]
            if episode is not None:
                self._episode_written(episode)
            if self._drops_went_with_file:
                self._report_drops_again(episode)
            replaced = list(self._file_losses)
        if replaced:  # the file was replaced while this batch was being written: say so in the new one
            store.write(RowBatch(losses=replaced))
            with self._lock:
                del self._file_losses[: len(replaced)]
        return listed

    def _episode_now(self) -> _Episode | None:
        """The row of the episode of drops going on (or just ended), or None when nothing was dropped."""
        with self._lock:
            episode = self._episode
            if episode is None:
                if self._first_drop_ms is None:
                    return None
                episode = _Episode(self._first_drop_ms, self._reported, self.process)
            return episode.at(self._dropped, self._dropped_calls, self._last_drop_ms, self._drop_reason)

    def _episode_written(self, episode: _Episode) -> None:
        """After its row was written (the caller holds ``_lock``): an episode with no new drop since
        the row written before it is over; later drops start another."""
        previous = self._episode
        if previous is not None and previous.row["records"] == episode.row["records"]:
            records, calls = episode.row["records"], episode.row["calls"]
            self._reported = (episode.base[0] + records, episode.base[1] + calls)
            self._episode = None
            if (self._dropped, self._dropped_calls) == self._reported:
                self._first_drop_ms = None
            else:
                self._first_drop_ms = self._last_drop_ms
        else:
            self._episode = episode

    def _report_drops_again(self, written: _Episode | None) -> None:
        """After the file was replaced (the caller holds ``_lock``): the rows of the drops went with
        it, so the new file gets one episode counting every drop of this process. Its key is that of
        the row this batch wrote into the new file, if it wrote one, so that the row is replaced."""
        self._drops_went_with_file = False
        if self._dropped:
            self._episode = None
            self._reported = (0, 0)
            self._first_drop_ms = written.started_ms if written is not None else self._earliest_drop_ms

    def _note_replaced(self, reason: str) -> None:
        """The store file went (``StoreFile``): record what this process had written into it."""
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            records, calls = self._file_written
            self._file_written = [0, 0]
            self._drops_went_with_file = True
            self._file_losses.append(
                {
                    "process": self.process,
                    "kind": "file_replaced",
                    "started_at": now_ms,
                    "ended_at": now_ms,
                    "records": records,
                    "calls": calls,
                    "reason": reason,
                }
            )
        logger.warning(
            "llm-otel store: %s; the %d calls (%d records) this process had written are not in it",
            reason,
            calls,
            records,
        )

    def _write_heartbeat(self, store: _connection.StoreFile, batch: RowBatch) -> None:
        """Write the snapshots and closings of a refused batch; what the database refuses is skipped
        (raising would retry the batch forever and block every record behind it)."""
        for rows in (
            RowBatch(snapshots=batch.snapshots, closings=batch.closings, losses=batch.losses),
            RowBatch(closings=batch.closings, losses=batch.losses),
            RowBatch(closings=batch.closings),
        ):
            try:
                store.write(rows)
                return
            except Exception as exc:
                if _connection.is_fault(exc):
                    raise
                self._note_error(exc, "the database refused a heartbeat; it was skipped")

    def _write_one_by_one(self, store: _connection.StoreFile, pending: list[Record]) -> None:
        kept = []
        for record in pending:
            try:
                store.write(self._map([record]))
            except Exception as exc:
                if _connection.is_fault(exc):
                    raise
                self._drop(exc, record)
                continue
            kept.append(record)
        pending[:] = kept

    def _map(self, pending: list[Record]) -> RowBatch:
        """Map ``pending`` into one batch; records that cannot be mapped are dropped from it.

        The live records of a call whose ``EndedSpan`` is in ``pending`` are left out (its final
        rows carry everything they would write), unless that span cannot be mapped.
        """
        ended = {record.call_id for record in pending if type(record) is EndedSpan and record.call_id}
        superseded: dict[str, list[Record]] = {}
        written_by_end: set[str] = set()
        if len(self._prompts) > KNOWN_PROMPTS_MAX:
            self._prompts.clear()
        batch = RowBatch(prompts=self._prompts)
        kept: list[Record] = []
        for record in pending:
            if ended and type(record) in (QueuedCall, CallNotice) and record.call_id in ended:
                if type(record) is QueuedCall:
                    batch.first_written.add(record.call_id)
                if record.call_id in written_by_end:
                    kept.append(record)
                else:
                    superseded.setdefault(record.call_id, []).append(record)
                continue
            if self._add(batch, record):
                kept.append(record)
                if type(record) is EndedSpan and record.call_id in ended:
                    written_by_end.add(record.call_id)
                    kept += superseded.pop(record.call_id, ())
            elif type(record) is EndedSpan:  # the call is written as its live records had it
                kept += [live for live in superseded.pop(record.call_id, ()) if self._add(batch, live)]
        pending[:] = kept
        return batch

    def _add(self, batch: RowBatch, record: Record) -> bool:
        """Add ``record``'s rows to ``batch``; False (dropped and counted) if it cannot be mapped."""
        try:
            batch.add(record)
        except Exception as exc:
            self._drop(exc, record)
            return False
        return True

    def _drop(self, exc: Exception, record: Record) -> None:
        self._note_error(exc, "a record could not be written and was dropped")
        with self._lock:
            self._count_drop(record, f"a record could not be written ({type(exc).__name__}: {exc})")

    def _note_error(self, exc: BaseException, what: str = "writing failed; retrying with backoff") -> None:
        """Keep ``exc`` as the last error; log each distinct error once until writing recovers."""
        message = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._last_error = message
            first = message not in self._logged
            self._logged.add(message)
        if first:
            logger.warning("llm-otel store: %s (%s)", what, message)

    def _snapshot_rows(self) -> list[dict[str, Any]]:
        stats = self.stats()
        now_ms = time.time_ns() // 1_000_000
        common = {
            "process": self.process,
            "store_dropped": stats["dropped"],
            "store_last_error": stats["last_error"],
            "heartbeat_at": now_ms,
        }
        rows = []
        for source in self._sources:
            try:
                rows.append({**_snapshot_fields(source()), **common})
            except Exception as exc:
                self._note_error(exc, f"the status source {source!r} failed")
        return rows or [{**_snapshot_fields({"name": ""}), **common}]

    def _forget_process(self, store: _connection.StoreFile) -> None:
        """On shutdown: remove this process's snapshot rows (it no longer runs a scheduler)."""
        try:
            with store.transaction() as cursor:
                cursor.execute(store.statements.forget_process, (self.process,))
        except Exception as exc:
            self._note_error(exc, "could not remove this process's scheduler snapshots")

    def _start_due_jobs(self, job_due: dict[Job, float]) -> threading.Thread | None:
        now = time.monotonic()
        due = [job for job, at in job_due.items() if at <= now]
        if not due:
            return None
        for job in due:
            job_due[job] = now + job.interval_s
        thread = threading.Thread(
            target=self._run_jobs, args=(due, job_due), name="llm-otel-store-maintenance", daemon=True
        )
        thread.start()
        return thread

    def _run_jobs(self, jobs: list[Job], job_due: dict[Job, float]) -> None:
        database = None
        try:
            database = self._connect()
            for job in jobs:
                if self._stop.is_set():
                    return
                try:
                    job.run(database, self._write_lock)
                except Exception as exc:
                    job_due[job] = time.monotonic() + min(job.interval_s, JOB_RETRY_S)
                    logger.warning(
                        "llm-otel store: %s failed (%s: %s); retrying later",
                        job.name,
                        type(exc).__name__,
                        exc,
                    )
        except Exception as exc:
            for job in jobs:
                job_due[job] = time.monotonic() + min(job.interval_s, JOB_RETRY_S)
            logger.warning(
                "llm-otel store: maintenance could not open the database (%s: %s)", type(exc).__name__, exc
            )
        finally:
            _connection.close_quietly(database)


def _snapshot_fields(status: Mapping[str, Any]) -> dict[str, Any]:
    """A scheduler's ``status()`` dict as snapshot columns (seconds become milliseconds)."""
    waiting = [
        {
            "call_id": waiter.get("call_id"),
            "source": waiter.get("source"),
            "since": _s_to_ms(waiter.get("since")),
        }
        for waiter in list(status.get("waiting") or ())[:WAITING_MAX]
    ]
    return {
        "scheduler": str(status.get("name") or ""),
        "queue_depth": int(status.get("queue_depth") or 0),
        "in_flight": int(status.get("in_flight") or 0),
        "max_concurrency": status.get("max_concurrency"),
        "min_interval": float(status.get("min_interval") or 0.0),
        "max_queue": status.get("max_queue"),
        "dispatched_total": int(status.get("dispatched_total") or 0),
        "last_dispatch_at": _s_to_ms(status.get("last_dispatch_at")),
        "oldest_wait_ms": _s_to_ms(status.get("oldest_wait")),
        "waiting": to_json(waiting),
    }


def _s_to_ms(value: Any) -> int | None:
    return round(value * 1000) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _reset_after_fork(ref: weakref.ReferenceType[StoreWriter]) -> None:
    """In a forked child: drop the parent's queue and connection; start a thread on first use."""
    writer = ref()
    if writer is not None and not writer._closed:
        writer._reset()
        writer._forked = True
