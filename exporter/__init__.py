"""The span store of llm-otel: peewee models, migrations, the SQLite span exporter, reads, retention.

See ``exporter.database`` (opening a store from a URL), ``exporter.migrations`` (the schema and the
FTS contract), ``exporter.cjk_grams`` (the tokens of 1-2 CJK character and 1 character search),
``exporter.queries`` (the read side), ``exporter.retention``, ``exporter.store``
(``SpanStore``: live rows from a background writer), ``exporter.span_exporter``
(``SQLiteSpanExporter``) and ``docs/contracts/db.md`` (every table, column and index).
"""

from exporter._exceptions import (
    QueryError,
    StoreConfigurationError,
    StoreDamagedError,
    StoreDatabaseError,
    StoreError,
)
from exporter.database import open_database
from exporter.migrations import migrate
from exporter.queries import (
    call_events_after,
    call_facets,
    get_call,
    get_task,
    iter_calls,
    latest_event_id,
    list_calls,
    list_tasks,
    scheduler_snapshots,
    status_aggregates,
    status_series,
    store_losses,
    store_summary,
)
from exporter.retention import (
    RetentionResult,
    close_lost_calls,
    prune,
    retention_days_from_env,
    run_retention,
)
from exporter.span_exporter import SQLiteSpanExporter
from exporter.store import SpanStore

__all__ = [
    "QueryError",
    "RetentionResult",
    "SQLiteSpanExporter",
    "SpanStore",
    "StoreConfigurationError",
    "StoreDamagedError",
    "StoreDatabaseError",
    "StoreError",
    "call_events_after",
    "call_facets",
    "close_lost_calls",
    "get_call",
    "get_task",
    "iter_calls",
    "latest_event_id",
    "list_calls",
    "list_tasks",
    "migrate",
    "open_database",
    "prune",
    "retention_days_from_env",
    "run_retention",
    "scheduler_snapshots",
    "status_aggregates",
    "status_series",
    "store_losses",
    "store_summary",
]
