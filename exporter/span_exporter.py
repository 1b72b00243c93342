"""``SQLiteSpanExporter``: the span store as a plain OpenTelemetry ``SpanExporter``.

For apps that only want ended calls in the store, under their own span processor (no live rows: a
call appears when its span ends). ``llm_otel.setup()`` uses ``exporter.store.SpanStore`` instead,
which also writes calls while they are queued and running.

Usage::

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from exporter import SQLiteSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(SQLiteSpanExporter("sqlite:///llm_calls.db")))

Zero-code, through the ``opentelemetry_traces_exporter`` entry point ``llm_otel_sqlite``::

    OTEL_TRACES_EXPORTER=llm_otel_sqlite LLM_OTEL_DB=sqlite:///llm_calls.db \\
        opentelemetry-instrument python app.py

``db`` defaults to ``LLM_OTEL_DB``, else ``sqlite:///llm_calls.db``. Despite its name (kept for
compatibility) the exporter writes either store the package supports: SQLite, the default (a
``sqlite:///`` URL or a path), or PostgreSQL (``postgresql://user:pass@host:5432/dbname``, with
``pip install 'llm-otel[postgres]'``). Call spans (``llm_otel.call.id``) and task spans
(``llm_otel.span.kind="task"``) are written, other spans ignored. Each ``export()`` maps its spans
(``exporter.mapping``) and writes them in one transaction (``BEGIN IMMEDIATE`` on SQLite) on the
calling thread (the ``BatchSpanProcessor``'s worker), with the same statements as the live store, so
both may write the same store. ``export()`` never raises: when the database fails it logs the error
once and returns ``FAILURE`` (the processor drops that batch); the next export reopens the
database, so a deleted file or directory is created anew. Retention (``retention_days``, else
``LLM_OTEL_RETENTION_DAYS``, else 7) runs on the same thread at the first export and then hourly;
its failures are logged and do not fail the export.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

import peewee
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from exporter import _names as n
from exporter._connection import StoreFile, store_path
from exporter.database import open_database
from exporter.mapping import RowBatch
from exporter.migrations import migrate
from exporter.records import EndedSpan
from exporter.retention import run_retention
from exporter.store import RETENTION_INTERVAL_S, resolve_retention_days
from exporter.writer import current_process

logger = logging.getLogger(__name__)

DB_ENV = "LLM_OTEL_DB"
DEFAULT_DB = "sqlite:///llm_calls.db"


class SQLiteSpanExporter(SpanExporter):
    """Writes ended call and task spans to the span store (SQLite by default); see the module docstring."""

    def __init__(self, db: str | None = None, *, retention_days: float | None = None) -> None:
        self.retention_days = resolve_retention_days(retention_days)
        self.url = db or os.environ.get(DB_ENV) or DEFAULT_DB
        self.path = store_path(self.url)
        """The SQLite file's absolute path; None on PostgreSQL (``url`` is used as given)."""
        self._store = StoreFile(self._open)
        self._lock = threading.Lock()
        self._last_error: str | None = None
        self._shut_down = False
        self._next_retention = 0.0  # time.monotonic(): at the first export

    def _open(self) -> peewee.Database:
        database = open_database(self.path or self.url)
        migrate(database)
        return database

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the call and task rows of ``spans`` in one transaction; never raises."""
        if self._shut_down:
            return SpanExportResult.FAILURE
        try:
            batch = RowBatch()
            process = current_process()
            for span in spans:
                call_id = (span.attributes or {}).get(n.CALL_ID)
                batch.add(EndedSpan(span, call_id if isinstance(call_id, str) else None, process))
            if not batch:
                return SpanExportResult.SUCCESS
            with self._lock:
                self._store.write(batch)
                if time.monotonic() >= self._next_retention:
                    self._retain()
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_error:
                logger.warning("llm-otel SQLite exporter: %d spans not written (%s)", len(spans), message)
            self._last_error = message
            return SpanExportResult.FAILURE
        self._last_error = None
        return SpanExportResult.SUCCESS

    def _retain(self) -> None:
        self._next_retention = time.monotonic() + RETENTION_INTERVAL_S
        try:
            run_retention(self._store.database(), self.retention_days)
        except Exception as exc:
            logger.warning("llm-otel SQLite exporter: retention failed (%s: %s)", type(exc).__name__, exc)

    def shutdown(self) -> None:
        """Refuse later exports and close this thread's connection."""
        self._shut_down = True
        with self._lock:
            self._store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here: every ``export()`` has written before it returns."""
        return True
