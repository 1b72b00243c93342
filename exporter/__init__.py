"""The span store of llm-otel: peewee models, migrations, the SQLite span exporter, reads, retention.

See ``exporter.database`` (opening a store from a URL), ``exporter.migrations`` (the schema and the
FTS contract) and ``docs/contracts/db.md`` (every table, column and index).
"""

from exporter._exceptions import (
    QueryError,
    StoreConfigurationError,
    StoreDatabaseError,
    StoreError,
)
from exporter.database import open_database
from exporter.migrations import migrate

__all__ = [
    "QueryError",
    "StoreConfigurationError",
    "StoreDatabaseError",
    "StoreError",
    "migrate",
    "open_database",
]
