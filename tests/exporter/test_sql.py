"""The write statements (``exporter._sql``): what SQLite's once-a-batch checks write is exactly what
the per-event checks write (PostgreSQL's statement, run on SQLite as the reference)."""

from __future__ import annotations

import random

import peewee

from exporter._connection import transaction
from exporter._sql import SQLITE, SQLITE_DIALECT, _statements, write_batch
from exporter.mapping import RowBatch

CHECKING = _statements(SQLITE_DIALECT, fts=True, event_lock="", events_checked=False)
"""SQLite's statements with the event checks inside each insert, as on PostgreSQL."""

KINDS = ("queued", "dispatched", "first_token", "retry", "succeeded", "failed")


def _call(call_id: str, status: str) -> dict:
    return {
        "call_id": call_id,
        "status": status,
        "stream": 0,
        "retry_count": 0,
        "enqueued_at": 1_000,
        "updated_at": 1_000,
    }


def _events(database: peewee.Database) -> list[tuple]:
    return database.execute_sql(
        "SELECT id, call_id, kind, at, data FROM llm_call_events ORDER BY id"
    ).fetchall()


def _write(database: peewee.Database, statements, calls: list[dict], events: list[dict]) -> None:
    with transaction(database.connection(), statements.begin) as cursor:
        cursor.executemany(
            "INSERT INTO llm_calls (call_id, status, stream, retry_count, enqueued_at, updated_at) "
            "VALUES (:call_id, :status, :stream, :retry_count, :enqueued_at, :updated_at) "
            "ON CONFLICT(call_id) DO UPDATE SET status = excluded.status",
            calls,
        )
        write_batch(cursor, RowBatch(events=events), statements)


def test_batch_checked_events_are_those_the_per_event_checks_insert(tmp_path):
    """Random batches of events (repeats within a batch and across batches, retries at one time or
    two, live notices of ended calls and of calls with no row) leave the same rows either way."""
    from exporter import migrate, open_database

    rng = random.Random(10)
    stores = {}
    for name in ("batched", "checking"):
        database = open_database(str(tmp_path / f"{name}.db"))
        migrate(database)
        stores[name] = database
    call_ids = [f"{number:032x}" for number in range(6)]
    for _ in range(40):
        calls = [
            _call(call_id, rng.choice(("queued", "running", "succeeded")))
            for call_id in rng.sample(call_ids, rng.randint(0, 4))
        ]
        events = [
            {
                "call_id": rng.choice(call_ids),
                "kind": rng.choice(KINDS),
                "at": rng.choice((1_000, 1_001)),
                "data": rng.choice((None, '{"wait_ms":3}')),
                "live": rng.choice((0, 1)),
            }
            for _ in range(rng.randint(1, 12))
        ]
        _write(stores["batched"], SQLITE, calls, events)
        _write(stores["checking"], CHECKING, calls, events)
    written = _events(stores["batched"])
    assert written == _events(stores["checking"])
    kinds = {kind for _, _, kind, _, _ in written}
    assert {"retry", "queued", "succeeded"} <= kinds  # the random batches wrote every sort of event
    assert len(written) < 40 * 6  # and many were left out as duplicates
