"""The writer's losses in ``llm_store_losses``, on SQLite and PostgreSQL: one ``dropped`` row per
episode of drops, written once the database takes writes again, with what was dropped and why;
``exporter.store_losses`` reads them back; retention removes them with the window."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import Tracer, TracerProvider

from exporter import migrate, open_database, prune, store_losses
from exporter.models import db
from exporter.store import SpanStore
from tests.exporter.call_spans import finish, ns, start_call


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    url = (
        f"sqlite:///{tmp_path / 'losses.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    database = open_database(url)
    migrate(database)
    db.initialize(database)
    yield url
    database.close()


def make_calls(store: SpanStore, tracer: Tracer, prefix: str, count: int) -> None:
    for i in range(count):
        span = start_call(tracer, f"{prefix}{i}")
        store.on_call_event("queued", span, ns(0), {})
        finish(span, at_ms=10)


def test_each_episode_of_drops_is_one_row_with_what_was_lost_and_why(url: str) -> None:
    store = SpanStore(url, queue_size=4)
    provider = TracerProvider()
    provider.add_span_processor(store.span_processor)
    tracer = provider.get_tracer("losses")
    assert store.flush(5)
    write_lock = store._writer._write_lock  # the lock the writer takes around each transaction
    try:
        for episode, count in enumerate((10, 6)):
            with write_lock:  # the writer waits its turn (a retention batch): records pile up, then drop
                make_calls(store, tracer, f"e{episode}-", count)
            assert store.flush(5) and store.flush(5)  # two heartbeats: the episode is over
        stats = store.stats()
    finally:
        store.shutdown(2)

    losses = store_losses(0)
    assert losses["episodes"] == 2
    assert (losses["dropped_records"], losses["dropped_calls"]) == (stats["dropped"], stats["dropped_calls"])
    assert stats["dropped"] > 0
    for row in losses["items"]:
        assert row["kind"] == "dropped" and row["records"] > 0 and row["started_at"] <= row["ended_at"]
        assert "queue (4 records) was full" in row["reason"]
    prune(url, older_than=0)
    assert store_losses(0)["episodes"] == 0  # retention removes them
