"""The soak runs reuse the store tests' throwaway PostgreSQL server."""

from tests.exporter.conftest import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
