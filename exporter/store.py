"""The live span store: every LLM call in the database from the moment it is queued.

Usage (``llm_otel.setup(db=...)`` does exactly this)::

    from exporter.store import SpanStore
    from llm_otel import lifecycle

    store = SpanStore("sqlite:///llm_calls.db")          # retention_days: env or 7
    tracer_provider.add_span_processor(store.span_processor)
    lifecycle.add_listener(store.on_call_event)          # queued / dispatched / first token / retry
    store.add_status_source(scheduler.status)            # snapshot rows, once a second
    ...
    store.flush(timeout=5)                                # True once everything so far is written
    store.shutdown(timeout=5)

What is written, and when:

- a call's row appears ``queued`` when the call is queued (``on_call_event("queued", ...)``, with
  its body), turns ``running`` at dispatch, gets its first token and retries as they happen, and is
  overwritten with the final row when its span ends (``span_processor.on_end``), which also writes
  its full-text row; each step appends an ``llm_call_events`` row;
- a task span gets its ``llm_tasks`` row ``running`` when it starts and final when it ends;
- every second, one ``llm_scheduler_snapshots`` row per status source (the heartbeat of this
  process, with the writer's dropped count and last error).

The app's thread only hands a record to the background writer (``exporter.writer``): no database
work, no lock the database holds, no waiting, whatever state the database is in. Rows are visible
about 20 ms later (the writer's batching linger; the bar is 250 ms). When the database fails
(locked, read-only, full, deleted), records wait in a bounded queue (``queue_size``) while the
writer retries with backoff; past that, they are dropped and counted in ``stats()``; writing
resumes by itself.

Maintenance runs on a helper thread with its own connection: retention (``retention_days``; None
takes ``LLM_OTEL_RETENTION_DAYS``, else 7) when the store starts and then hourly, and every
``heartbeat_timeout_s`` the calls left ``queued``/``running`` by a process whose heartbeat is
older than that are closed as ``failed`` (``process_lost``).

The store writes SQLite (``sqlite:///path`` or a plain path; the file and its directory are created
when missing) or PostgreSQL (``postgresql://user:pass@host:5432/dbname``, an existing database;
needs ``pip install 'llm-otel[postgres]'``, and suits several processes or app instances on several
machines); either is migrated on first use. A URL it cannot use (another scheme, no driver) raises
``StoreConfigurationError`` at once; a server or file that is unavailable is retried like any fault.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import peewee
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from exporter import _names as n
from exporter._connection import close_quietly, store_path
from exporter._exceptions import StoreConfigurationError
from exporter.database import open_database
from exporter.mapping import attribute_dict, closing_row
from exporter.migrations import migrate
from exporter.records import CallNotice, EndedSpan, QueuedCall, TaskStarted
from exporter.retention import close_lost_calls, retention_days_from_env, run_retention
from exporter.writer import Job, StatusSource, StoreWriter

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0
"""Seconds between two retention runs (the first one runs when the store starts)."""
EXIT_FLUSH_S = 2.0
"""Seconds the interpreter's exit waits for the writer to write what is queued (none while the
database is failing: see ``StoreWriter.shutdown``)."""

_NOTICE_KINDS = frozenset({n.DISPATCHED, n.FIRST_TOKEN, n.RETRY})


class SpanStore:
    """A span store (SQLite or PostgreSQL) fed live from call notices and ended spans; see the module."""

    def __init__(
        self,
        url: str,
        *,
        retention_days: float | None = None,
        queue_size: int = 10_000,
        heartbeat_timeout_s: float = 60.0,
    ) -> None:
        retention = resolve_retention_days(retention_days)
        if queue_size < 1:
            raise StoreConfigurationError(f"queue_size must be at least 1, got {queue_size}")
        if heartbeat_timeout_s <= 0:
            raise StoreConfigurationError(f"heartbeat_timeout_s must be positive, got {heartbeat_timeout_s}")
        self.url = url
        self.path = store_path(url)
        """The SQLite file's absolute path; None on PostgreSQL (``url`` is used as given)."""
        self.retention_days = retention
        heartbeat_timeout_ms = round(heartbeat_timeout_s * 1000)
        jobs = [
            Job(
                "retention",
                RETENTION_INTERVAL_S,
                lambda database, write_lock: run_retention(
                    database,
                    retention,
                    heartbeat_timeout_ms=heartbeat_timeout_ms,
                    write_lock=write_lock,
                ),
            ),
            Job(
                "closing the calls of lost processes",
                heartbeat_timeout_s,
                lambda database, write_lock: close_lost_calls(
                    database, heartbeat_timeout_ms=heartbeat_timeout_ms, write_lock=write_lock
                ),
            ),
        ]
        self._writer = StoreWriter(self._open, queue_size=queue_size, jobs=jobs)
        self.span_processor: SpanProcessor = _StoreSpanProcessor(self._writer)
        """Add it to the TracerProvider: task rows at start, final call and task rows at end."""
        atexit.register(_shutdown_at_exit, weakref.ref(self))

    def _open(self) -> peewee.Database:
        database = open_database(self.path or self.url)
        try:
            migrate(database)
        except BaseException:
            # A connection left open on a damaged or emptied file keeps that file's old WAL index
            # in use, and no connection can then switch the new store to WAL ("database is locked").
            close_quietly(database)
            raise
        return database

    def on_call_event(
        self, kind: str, span: ReadableSpan, timestamp_ns: int, attributes: Mapping[str, Any]
    ) -> None:
        """The ``llm_otel.lifecycle`` listener: hand a call's live notice to the writer.

        ``queued`` writes the row from the call's start attributes (the notice's ``attributes``, or a
        copy of the span's when the notice has none);
        ``dispatched``, ``first_token`` and ``retry`` advance it (``attributes`` are the notice's).
        Other kinds and spans that are not calls are ignored. Never raises, never blocks.
        """
        try:
            if kind == n.QUEUED:
                # The notice carries the call's start attributes: no copy of the span's on this thread.
                attributes = attributes or attribute_dict(span)
                call_id = attributes.get(n.CALL_ID)
                if call_id:
                    self._writer.put(QueuedCall(call_id, span, attributes))
            elif kind in _NOTICE_KINDS:
                call_id = span.attributes.get(n.CALL_ID)
                if call_id:
                    self._writer.put(CallNotice(kind, call_id, span.start_time, timestamp_ns, attributes))
        except Exception:
            logger.exception("llm-otel store: could not take a %s notice", kind)

    def add_status_source(self, source: StatusSource) -> None:
        """Write ``source()`` (a dict like ``llm_otel.Scheduler.status()``) as a snapshot row each second."""
        self._writer.add_status_source(source)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything handed over before this call is written; False if ``timeout`` ran out."""
        return self._writer.flush(timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush (up to ``timeout``) and stop the writer; later records are dropped. Idempotent."""
        self._writer.shutdown(timeout)

    def stats(self) -> dict[str, Any]:
        """``queued`` (not yet written), ``written``, ``dropped`` (records lost) and ``last_error``."""
        return self._writer.stats()


class _StoreSpanProcessor(SpanProcessor):
    """Hands task starts and ended call and task spans to the writer (``SpanStore.span_processor``)."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            attributes = span.attributes
            if attributes is not None and attributes.get(n.TASK_KIND) == n.TASK_KIND_VALUE:
                self._writer.put(TaskStarted(span, dict(attributes), self._writer.process))
        except Exception:
            logger.exception("llm-otel store: could not take a task start")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            attributes = span.attributes
            if attributes is None:
                return
            call_id = attributes.get(n.CALL_ID)
            if call_id:
                if not self._writer.put(EndedSpan(span, call_id)):
                    closing = closing_row(span)  # the queue is full: keep at least how it ended
                    if closing is not None:
                        self._writer.keep_closing(closing)
            elif attributes.get(n.TASK_KIND) == n.TASK_KIND_VALUE:
                self._writer.put(EndedSpan(span, process=self._writer.process))
        except Exception:
            logger.exception("llm-otel store: could not take an ended span")

    def shutdown(self) -> None:
        self._writer.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._writer.flush(timeout_millis / 1000)


def resolve_retention_days(retention_days: float | None) -> float:
    """``retention_days``, or ``LLM_OTEL_RETENTION_DAYS``, or 7; refuses what is not positive."""
    if retention_days is None:
        return retention_days_from_env()
    if (
        isinstance(retention_days, bool)
        or not isinstance(retention_days, (int, float))
        or not retention_days > 0
    ):
        raise StoreConfigurationError(
            f"retention_days must be a positive number of days, got {retention_days!r}"
        )
    return float(retention_days)


def _shutdown_at_exit(ref: weakref.ReferenceType[SpanStore]) -> None:
    """Write what is queued and stop, before the TracerProvider's own exit hook waits on it again."""
    store = ref()
    if store is not None:
        store.shutdown(EXIT_FLUSH_S)
