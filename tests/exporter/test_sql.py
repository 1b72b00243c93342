"""The write statements (``exporter._sql``): what SQLite's once-a-batch checks write is exactly what
the per-event checks write (PostgreSQL's statement, run on SQLite as the reference), and an end
written alone (``final_end``) leaves the store exactly as the whole upsert does."""

from __future__ import annotations

import random

import peewee
from opentelemetry.sdk.trace import TracerProvider

from exporter._connection import transaction
from exporter._sql import SQLITE, SQLITE_DIALECT, _statements, ended_apart, write_batch
from exporter.mapping import RowBatch, closing_row
from exporter.records import CallNotice, EndedSpan, QueuedCall
from tests.exporter.call_spans import (
    call_attributes,
    dispatch,
    finish,
    first_token,
    first_token_attributes,
    ns,
    retry,
    retry_attributes,
    start_call,
)

CHECKING = _statements(SQLITE_DIALECT, fts=True, event_lock="", events_checked=False, ends_apart=True)
"""SQLite's statements with the event checks inside each insert, as on PostgreSQL."""
WHOLE = _statements(SQLITE_DIALECT, fts=True, event_lock="", events_checked=True, ends_apart=False)
"""SQLite's statements with every final row written whole, as on PostgreSQL."""

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


def _store_contents(database: peewee.Database) -> dict[str, list[tuple]]:
    """Every row the writer's statements and the triggers write: the calls, bodies, events, the
    rollups and their log, the search generation and the full-text rows."""
    tables = {
        "llm_calls": "SELECT rowid, * FROM llm_calls ORDER BY call_id",
        "llm_call_bodies": "SELECT rowid, * FROM llm_call_bodies ORDER BY call_id",
        "llm_call_events": "SELECT * FROM llm_call_events ORDER BY id",
        "llm_call_rollup_log": "SELECT * FROM llm_call_rollup_log ORDER BY rowid",
        "llm_calls_search_state": "SELECT generation FROM llm_calls_search_state",
        "llm_calls_fts_docsize": "SELECT * FROM llm_calls_fts_docsize ORDER BY id",
        "llm_calls_cjk_docsize": "SELECT * FROM llm_calls_cjk_docsize ORDER BY id",
    }
    for table in ("llm_call_rollups", "llm_call_label_rollups", "llm_call_requester_rollups"):
        tables[table] = f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4, 5"
    tables["llm_call_timing_rollups"] = "SELECT * FROM llm_call_timing_rollups ORDER BY 1, 2, 3, 4, 5, 6, 7"
    return {table: database.execute_sql(sql).fetchall() for table, sql in tables.items()}


def _call_records(tracer, rng: random.Random, number: int) -> list[list]:
    """One call's records, in the moments they would reach the writer (each moment a list), some
    ways its stored row can differ from its end: a notice without its queued row, a queued row
    whose start differs from the span's (another model, source or process), the end dropped then
    written after its closing, an end written twice, a failure."""
    call_id = f"{number:04x}{rng.getrandbits(112):028x}"
    start = rng.randint(0, 5_000)
    span = start_call(tracer, call_id, at_ms=start)
    queued = call_attributes(call_id)
    if rng.random() < 0.25:
        changed = rng.choice(("gen_ai.request.model", "llm_otel.source", "llm_otel.process"))
        queued = {**queued, changed: "changed"}
    moments: list[list] = []
    if rng.random() < 0.85:
        moments.append([QueuedCall(call_id, span, queued)])
    if rng.random() < 0.8:
        wait = dispatch(span, at_ms=start + 20, wait=0.02)
        moments.append([CallNotice("dispatched", call_id, span.start_time, ns(start + 20), wait)])
    if rng.random() < 0.3:
        retry(span, at_ms=start + 40, attempt=1, status_code=429)
        notice = retry_attributes(1, status_code=429)
        moments.append([CallNotice("retry", call_id, span.start_time, ns(start + 40), notice)])
    if rng.random() < 0.5:
        first_token(span, at_ms=start + 300, ttft=0.28)
        ttft = first_token_attributes(0.28)
        moments.append([CallNotice("first_token", call_id, span.start_time, ns(start + 300), ttft)])
    failed = rng.random() < 0.2
    extra = {"error.type": "RateLimitError", "llm_otel.error.message": "slow down"} if failed else {}
    finish(span, at_ms=start + 900, status="failed" if failed else "succeeded", **extra)
    if rng.random() < 0.15:
        moments.append([closing_row(span)])  # the end dropped (queue full): its closing first
    moments.append([EndedSpan(span, call_id)])
    if rng.random() < 0.15:
        moments.append([EndedSpan(span, call_id)])  # written twice (two writers, a retried batch)
    return moments


def _batches(rng: random.Random, calls: list[list[list]]) -> list[RowBatch]:
    """The calls' moments interleaved in time and cut into batches of random sizes, mapped as the
    writer maps them (a call's live records left out of a batch that holds its end)."""
    moments = []
    while any(calls):
        call = rng.choice([call for call in calls if call])
        moments.append(call.pop(0))
    batches = []
    while moments:
        records = [record for moment in moments[: rng.randint(1, 6)] for record in moment]
        del moments[: len(records)]
        ended = {record.call_id for record in records if type(record) is EndedSpan}
        batch = RowBatch()
        for record in records:
            if isinstance(record, dict):
                batch.closings.append(record)
            elif type(record) in (QueuedCall, CallNotice) and record.call_id in ended:
                if type(record) is QueuedCall:
                    batch.first_written.add(record.call_id)
            else:
                batch.add(record)
        batches.append(batch)
    return batches


def test_an_end_written_alone_leaves_the_store_as_the_whole_upsert_does(tmp_path):
    """Random calls (queued, dispatched, retried, first token, ended, in batches of every size;
    notices without their queued row, a queued row whose start differs from the span's, ends
    written twice or after their closing) leave every table the same, rollups and search state
    included, whether a stored call's end is written alone or whole."""
    from exporter import migrate, open_database

    rng = random.Random(11)
    tracer = TracerProvider().get_tracer("test")
    stores = {}
    for name in ("apart", "whole"):
        database = open_database(str(tmp_path / f"{name}.db"))
        migrate(database)
        stores[name] = database
    alone = 0
    for _ in range(4):
        calls = [_call_records(tracer, rng, number) for number in range(30)]
        for batch in _batches(rng, calls):
            if batch.finals:  # what write_batch will find, before the batch changes the rows
                cursor = stores["apart"].connection().cursor()
                finals = [rows.call for rows in batch.finals]
                alone += len(ended_apart(cursor, finals, batch.first_written, SQLITE.stored_starts)[0])
            for statements, database in ((SQLITE, stores["apart"]), (WHOLE, stores["whole"])):
                with transaction(database.connection(), statements.begin) as cursor:
                    write_batch(cursor, batch, statements)
    apart, whole = _store_contents(stores["apart"]), _store_contents(stores["whole"])
    for table, rows in whole.items():
        assert apart[table] == rows, table
    statuses = dict(
        stores["whole"].execute_sql("SELECT status, count(*) FROM llm_calls GROUP BY 1").fetchall()
    )
    assert sum(statuses.values()) == 120 and statuses.keys() == {"succeeded", "failed"}
    assert 20 < alone < 100  # many ends were written alone, many whole
    assert whole["llm_call_rollup_log"] and whole["llm_calls_fts_docsize"]
