"""The live feed's reads on SQLite and PostgreSQL: where "now" is, and no event missed or seen twice
while several writers (threads with their own connections) commit at once."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from exporter import latest_event_id, open_database, prune, queries
from exporter._connection import StoreFile
from exporter.mapping import RowBatch
from exporter.migrations import EVENT_ORDER_LOCK_SQL
from tests.exporter.conftest import NOW_MS, Rows


def test_latest_event_id_is_where_a_feed_from_now_starts(any_rows: Rows) -> None:
    assert latest_event_id() == 0
    assert queries.call_events_after(latest_event_id()) == []

    any_rows.calls(3)  # queued, dispatched, succeeded each
    events = queries.call_events_after(0)

    assert len(events) == 9
    assert latest_event_id() == events[-1]["id"]
    assert queries.call_events_after(latest_event_id()) == []
    new = any_rows.call(status="queued")
    assert [(event["call_id"], event["kind"]) for event in queries.call_events_after(events[-1]["id"])] == [
        (new, "queued")
    ]


def test_retention_deleting_the_newest_events_does_not_move_now_back(any_rows: Rows) -> None:
    """A store idle longer than its retention loses its newest events; ``now`` stays where it was
    (the admin's feed would otherwise take the store for a new one and reset every client), and the
    next event still comes after it. On both engines: the id counter, not ``max(id)``."""
    any_rows.calls(2)
    before = latest_event_id()
    prune(any_rows.database, older_than=0, now_ms=NOW_MS + 1)
    assert any_rows.database.execute_sql("SELECT count(*) FROM llm_call_events").fetchone()[0] == 0
    assert latest_event_id() == before
    new = any_rows.call(status="queued")
    assert [(event["call_id"], event["id"] > before) for event in queries.call_events_after(before)] == [
        (new, True)
    ]


def test_on_postgresql_now_counts_no_event_id_a_writer_has_not_committed(
    pg_rows: Rows, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequence gives out ids before their transaction commits: "now" is read holding the
    writers' event-id lock, so a feed from it still gets the writer's events once they commit.
    While a writer holds the lock longer than the reader waits, "now" is the newest committed id."""
    import psycopg2

    pg_rows.calls(1)
    committed = latest_event_id()
    monkeypatch.setattr(queries, "LATEST_EVENT_LOCK_TIMEOUT_MS", 50)
    writer = psycopg2.connect(postgres_url)
    try:
        with writer.cursor() as cursor:  # a writer's transaction, as exporter._sql runs it
            cursor.execute(EVENT_ORDER_LOCK_SQL)
            cursor.execute(
                "INSERT INTO llm_call_events (call_id, kind, at) VALUES (%s, 'queued', %s) RETURNING id",
                ("in-flight", NOW_MS),
            )
            [(in_flight,)] = cursor.fetchall()
        assert in_flight > committed
        assert latest_event_id() == committed  # the lock is held: not the sequence, which is ahead
        writer.commit()
    finally:
        writer.close()

    assert latest_event_id() == in_flight
    assert [event["call_id"] for event in queries.call_events_after(committed)] == ["in-flight"]


WRITERS = 4
BATCHES = 30
EVENTS_PER_BATCH = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated store bound to ``exporter.models.db`` (the reader's), on each engine."""
    if request.param == "sqlite":
        return request.getfixturevalue("store").database
    request.getfixturevalue("pg_store")
    return request.getfixturevalue("postgres_url")


def test_concurrent_writers_leave_no_gap_in_the_feed(store_url: str) -> None:
    """Each writer commits batches of events (and its scheduler snapshot, which the writer writes
    after the events, holding the transaction open a little longer) while the reader follows the
    feed by ``id > last``. A writer that took an id before another one but committed after it
    would make the reader skip that event, unless ids are committed in order."""
    failures: list[BaseException] = []
    start = threading.Barrier(WRITERS + 1)

    def write(writer: int) -> None:
        database = open_database(store_url)
        store = StoreFile(lambda: database)
        rng = random.Random(writer)
        try:
            start.wait()
            for batch in range(BATCHES):
                events = [_event(f"w{writer}-b{batch}-e{number}") for number in range(EVENTS_PER_BATCH)]
                store.write(RowBatch(events=events, snapshots=[_snapshot(f"host:{writer}", rng)]))
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    seen: list[dict[str, Any]] = []
    start.wait()
    while any(thread.is_alive() for thread in threads):
        seen += queries.call_events_after(seen[-1]["id"] if seen else 0, limit=50)
    for thread in threads:
        thread.join()
    while batch := queries.call_events_after(seen[-1]["id"] if seen else 0):
        seen += batch

    assert failures == []
    seen_ids = [event["id"] for event in seen]
    assert seen_ids == sorted(set(seen_ids))  # in order, none twice
    expected = {
        f"w{writer}-b{batch}-e{number}"
        for writer in range(WRITERS)
        for batch in range(BATCHES)
        for number in range(EVENTS_PER_BATCH)
    }
    seen_calls = [event["call_id"] for event in seen]
    assert len(seen_calls) == len(expected)
    assert set(seen_calls) == expected  # none missed


def _event(call_id: str) -> dict[str, Any]:
    return {"call_id": call_id, "kind": "queued", "at": NOW_MS, "data": None, "live": 0}


def _snapshot(process: str, rng: random.Random) -> dict[str, Any]:
    return {
        "process": process,
        "scheduler": "default",
        "queue_depth": rng.randrange(5),
        "in_flight": 1,
        "max_concurrency": 1,
        "min_interval": 0.0,
        "max_queue": 1000,
        "dispatched_total": 0,
        "last_dispatch_at": None,
        "oldest_wait_ms": None,
        "waiting": "[]",
        "store_dropped": 0,
        "store_last_error": None,
        "heartbeat_at": NOW_MS,
    }
