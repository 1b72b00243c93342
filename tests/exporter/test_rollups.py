"""The rollups (exporter.rollups, migration 8) on SQLite and PostgreSQL: always what the ended rows
add up to, whatever writes them, and the status card and filter summary read from them agree with
the exact answers (counts and sums equal, percentiles within ``rollups.RELATIVE_ERROR``)."""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import random
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import peewee
import psycopg2
import pytest

from exporter import close_lost_calls, migrate, open_database, prune, queries, retention, rollups
from exporter._sql import statements_for
from exporter.database import immediate, is_sqlite
from exporter.migrations import MIGRATIONS, schema_version
from exporter.models import LLMCall, db
from tests.exporter.conftest import NOW_MS, Rows, drop_database, pg_admin
from tests.exporter.test_facets import _computed

HOUR = rollups.HOUR_MS
DAY = rollups.DAY_MS
NOW = NOW_MS + 37 * 60_000 + 1234  # not on an hour: every window has ragged ends
ENDED = ("succeeded", "failed", "cancelled")


def _spread(rows: Rows, count: int = 1200, seed: int = 5, days: float = 8.5) -> list[dict[str, Any]]:
    """``count`` calls (by default more than ``rollups.FOLD_AT``: some folded, some in the log)
    over the ``days`` before ``NOW`` with random statuses, labels (some NULL,
    one empty), timings (milliseconds to minutes) and tokens; returns their columns."""
    rng = random.Random(seed)
    written = []
    for _ in range(count):
        status = rng.choice(["succeeded"] * 6 + ["failed", "failed", "cancelled", "running", "queued"])
        ended = status in ENDED
        written.append(
            {
                "status": status,
                "enqueued_at": NOW - rng.randrange(0, int(days * DAY)),
                "model": rng.choice(["gpt-4o", "gpt-4o-mini", None]),
                "source": rng.choice(["app", "billing", "", None]),
                "requested_by": rng.choice(["alice", "bob", "carol", None]),
                "error_type": rng.choice(["RateLimitError", "APITimeoutError", None])
                if status == "failed"
                else None,
                "wait_ms": int(rng.lognormvariate(5, 2)) if status != "queued" else None,
                "first_token_ms": int(rng.lognormvariate(6, 1.5)) if ended and rng.random() < 0.8 else None,
                "duration_ms": int(rng.lognormvariate(7, 1.5)) if ended else None,
                "retry_count": rng.choice([0, 0, 0, 1, 2]),
                "input_tokens": rng.randrange(1, 5000),
                "output_tokens": rng.randrange(1, 2000) if ended else None,
                "cached_tokens": rng.choice([0, 128, None]),
                "reasoning_tokens": rng.choice([0, 64]),
            }
        )
    for columns, call_id in zip(written, rows.each(written), strict=True):
        columns["call_id"] = call_id
    return written


@pytest.fixture(scope="module")
def spread_templates(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Per engine, a store holding ``_spread``'s default calls, written on first use (by
    ``spread``) and copied by each test: the read-only tests below need the same 1,200 calls, and
    writing them (rollups and all) took most of each test's time."""
    templates: dict[str, Any] = {}
    yield templates
    if "postgresql" in templates:
        server, name, _ = templates["postgresql"]
        drop_database(server, name)


def _spread_template(engine: str, request: pytest.FixtureRequest) -> tuple[Any, ...]:
    """A store written by ``_spread(Rows(store))`` (closed, so it can be copied), and its calls."""
    if engine == "sqlite":
        path = request.getfixturevalue("tmp_path_factory").mktemp("spread") / "template.db"
        url, server, name = f"sqlite:///{path}", None, str(path)
    else:
        server = request.getfixturevalue("postgres_server")
        name = "spread_template"
        pg_admin(server, f"CREATE DATABASE {name}")
        url = server.url(name)
    database = open_database(url)
    migrate(database)
    db.initialize(database)
    written = _spread(Rows(database))
    database.close()  # a PostgreSQL template must have no session when it is copied
    return server, name, written


@pytest.fixture(params=["sqlite", "postgresql"])
def spread(
    request: pytest.FixtureRequest, spread_templates: dict[str, Any], tmp_path: Path
) -> Iterator[list[dict[str, Any]]]:
    """A copy, for this test alone and bound to ``exporter.models.db``, of the store that
    ``_spread(rows)`` writes with its defaults (the same calls, ids, log and rollup rows), on each
    engine in turn (like ``any_rows``); yields the calls' columns, as ``_spread`` returns them."""
    engine = request.param
    if engine not in spread_templates:
        spread_templates[engine] = _spread_template(engine, request)
    server, name, written = spread_templates[engine]
    if engine == "sqlite":
        target = tmp_path / "store.db"
        source = contextlib.closing(sqlite3.connect(name))
        with source as original, contextlib.closing(sqlite3.connect(target)) as copied:
            original.backup(copied)
        url = f"sqlite:///{target}"
    else:
        copy_name = f"spread_{next(_SPREAD_COPIES)}"
        pg_admin(server, f"CREATE DATABASE {copy_name} TEMPLATE {name}")
        url = server.url(copy_name)
    database = open_database(url)
    db.initialize(database)
    try:
        yield copy.deepcopy(written)
    finally:
        database.close()
        if engine == "postgresql":
            drop_database(server, copy_name)


_SPREAD_COPIES = itertools.count(1)


def _contributions(call: dict[str, Any], weight: int = 1) -> dict[str, Counter[tuple[Any, ...]]]:
    """What one call (its ``llm_calls`` columns) adds to each rollup table, by key and sum, as the
    module documents it, computed here."""
    added: dict[str, Counter[tuple[Any, ...]]] = {table: Counter() for table in rollups.TABLES}
    labels = [call[label] or "" for label in rollups.LABELS]
    nulls = sum(1 << bit for bit, label in enumerate(rollups.LABELS) if call[label] is None)
    requester = (call["requested_by"] or "", int(call["requested_by"] is None))
    status = call["status"]
    for size in rollups.BUCKET_SIZES:
        key = (size, call["enqueued_at"] - call["enqueued_at"] % size, status)
        added["llm_call_rollups"][(*key, "calls")] += weight
        added["llm_call_rollups"][(*key, "retries")] += weight * call["retry_count"]
        for name in rollups.TOKENS:
            added["llm_call_rollups"][(*key, name)] += weight * (call[name] or 0)
        added["llm_call_label_rollups"][(*key, *labels, nulls, "calls")] += weight
    for code, label in enumerate(rollups.PARTITIONS):
        value = "" if label is None else call[label]
        if value is None:
            continue
        for size in rollups.BUCKET_SIZES if label is None else (DAY,):
            key = (size, code, value, call["enqueued_at"] - call["enqueued_at"] % size, status)
            added["llm_call_requester_rollups"][(*key, *requester, "calls")] += weight
            timed = [
                (metric, rollups.bin_lower(call[name]))
                for metric, name in enumerate(rollups.METRICS)
                if call[name] is not None
            ]
            for metric, lower in timed:
                timing = (*key[:3], metric, *key[3:], lower, "calls")
                added["llm_call_timing_rollups"][timing] += weight
    return added


def _summed(parts: list[dict[str, Counter[tuple[Any, ...]]]]) -> dict[str, Counter[tuple[Any, ...]]]:
    total: dict[str, Counter[tuple[Any, ...]]] = {table: Counter() for table in rollups.TABLES}
    for part in parts:
        for table, sums in part.items():
            for key, value in sums.items():
                total[table][key] += value
    return {
        table: Counter({key: value for key, value in sums.items() if value}) for table, sums in total.items()
    }


_CALL_COLUMNS = ["enqueued_at", "status", *rollups.LABELS, "requested_by", "retry_count", *rollups.TOKENS]


def _stored(database: peewee.Database) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every rollup table's nonzero sums, by key (summed over the shards), with the log's entries
    not folded yet added as the fold would add them."""
    parts = []
    for table, (key, sums) in rollups.TABLES.items():
        rows = database.execute_sql(f"SELECT {', '.join(key)}, {', '.join(sums)} FROM {table}").fetchall()
        found: Counter[tuple[Any, ...]] = Counter()
        for row in rows:
            for name, value in zip(sums, row[len(key) :], strict=True):
                found[(*row[: len(key) - 1], name)] += int(value)
        parts.append({table: found})
    logged = ["sign", *_CALL_COLUMNS, *(rollups._LOGGED[name] for name in rollups.METRICS)]
    for row in database.execute_sql(f"SELECT {', '.join(logged)} FROM {rollups.LOG_TABLE}").fetchall():
        call = dict(zip([*_CALL_COLUMNS, *rollups.METRICS], row[1:], strict=True))
        parts.append(_contributions(call, weight=row[0]))
    return _summed(parts)


def _expected(database: peewee.Database) -> dict[str, Counter[tuple[Any, ...]]]:
    """What the rollups must hold, computed here from the rows of ``llm_calls``."""
    columns = [*_CALL_COLUMNS, *rollups.METRICS]
    rows = database.execute_sql(f"SELECT {', '.join(columns)} FROM llm_calls").fetchall()
    return _summed([_contributions(dict(zip(columns, values, strict=True))) for values in rows])


def _calls_of(stored: dict[str, Counter[tuple[Any, ...]]], size: int, start: int, status: str) -> int:
    """The calls ``llm_call_rollups`` holds for one bucket and status."""
    return stored["llm_call_rollups"][(size, start, status, "calls")]


def _within(found: dict[str, int | None], exact: dict[str, int | None]) -> bool:
    """Whether each percentile read from the rollups is within the stated error of the exact one."""
    for name, value in exact.items():
        if value is None or found[name] is None:
            if value != found[name]:
                return False
        elif abs(found[name] - value) > rollups.RELATIVE_ERROR * value:
            return False
    return True


# What the rollups hold


def test_the_rollups_hold_what_the_rows_add_up_to(any_rows: Rows) -> None:
    _spread(any_rows, count=2500)  # past rollups.FOLD_AT: most of it folded from the log
    database = any_rows.database

    stored = _stored(database)
    assert stored == _expected(database)
    every = database.execute_sql("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
    assert sum(value for key, value in stored["llm_call_rollups"].items() if key[-1] == "calls") == 2 * every
    if is_sqlite(database):
        assert (
            database.execute_sql(f"SELECT COUNT(*) FROM {rollups.LOG_TABLE}").fetchone()[0] < rollups.FOLD_AT
        )


def test_updates_and_deletes_are_taken_back_folded_or_not(any_rows: Rows) -> None:
    written = _spread(any_rows, count=1200)  # the first ~1000 folded, the rest in the log
    ended = [call["call_id"] for call in written if call["status"] in ENDED]
    live = [call["call_id"] for call in written if call["status"] not in ENDED]

    LLMCall.update(status="failed", error_type="APITimeoutError").where(
        LLMCall.call_id.in_(ended[:20])
    ).execute()
    LLMCall.update(duration_ms=LLMCall.duration_ms + 5000, model=None).where(
        LLMCall.call_id.in_(ended[20:40])
    ).execute()
    LLMCall.update(enqueued_at=LLMCall.enqueued_at - 3 * DAY).where(
        LLMCall.call_id.in_(ended[40:50])
    ).execute()
    LLMCall.update(status="running", duration_ms=None).where(LLMCall.call_id.in_(ended[50:55])).execute()
    LLMCall.update(status="succeeded", duration_ms=900).where(LLMCall.call_id.in_(live[:10])).execute()
    LLMCall.update(status="running", wait_ms=7).where(LLMCall.call_id.in_(live[-10:])).execute()
    LLMCall.delete().where(LLMCall.call_id.in_(ended[60:80] + ended[-20:] + live[10:15])).execute()

    assert _stored(any_rows.database) == _expected(any_rows.database)


def test_a_call_ended_twice_or_closed_as_lost_then_ended_counts_once(any_rows: Rows) -> None:
    """The writer's final row written again (a span exported twice), a call closed as lost whose
    real end arrives later, and a late live notice: each call counts once, as its row now says."""
    database = any_rows.database
    running = any_rows.call(
        status="running", enqueued_at=NOW - 2 * DAY, process="gone:1", updated_at=NOW - DAY
    )
    twice = any_rows.call(status="succeeded", enqueued_at=NOW - 3 * DAY)
    statements = statements_for(database)
    final = LLMCall.select().where(LLMCall.call_id == twice).dicts().get()
    lost_end = LLMCall.select().where(LLMCall.call_id == running).dicts().get()

    with immediate(database):
        cursor = database.cursor()
        cursor.executemany(statements.final_call, [final, final])  # the same end twice in one batch
        cursor.executemany(statements.final_call, [final])  # and in another
    assert close_lost_calls(database, heartbeat_timeout_ms=60_000, now_ms=NOW) == 1
    assert _stored(database) == _expected(database)
    assert _calls_of(_stored(database), DAY, (NOW - 2 * DAY) // DAY * DAY, "failed") == 1

    lost_end.update(status="succeeded", ended_at=NOW, duration_ms=4000, wait_ms=10)
    with immediate(database):
        database.cursor().executemany(statements.final_call, [lost_end])  # its real end, late
        notice = {"call_id": running, "enqueued_at": lost_end["enqueued_at"], "updated_at": NOW}
        database.cursor().executemany(
            statements.updates["dispatched"], [notice | {"started_at": 1, "wait_ms": 1}]
        )

    stored = _stored(database)
    assert stored == _expected(database)
    day = (NOW - 2 * DAY) // DAY * DAY
    assert (_calls_of(stored, DAY, day, "failed"), _calls_of(stored, DAY, day, "succeeded")) == (0, 1)
    assert _calls_of(stored, DAY, (NOW - 3 * DAY) // DAY * DAY, "succeeded") == 1


def test_the_rollups_migration_fills_them_from_a_store_without(any_rows: Rows) -> None:
    database = any_rows.database
    for table in (*rollups.TABLES, rollups.BINS_TABLE, rollups.LOG_TABLE):  # back to version 7
        database.execute_sql(f"DROP TABLE {table}")
    if is_sqlite(database):
        triggers = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'llm_call%rollup%'"
        for (name,) in database.execute_sql(triggers).fetchall():
            database.execute_sql(f"DROP TRIGGER {name}")
    else:
        for name in ("insert", "update", "delete"):
            database.execute_sql(f"DROP TRIGGER llm_calls_rollup_{name} ON llm_calls")
    database.execute_sql("DELETE FROM llm_otel_schema WHERE version > 7")
    assert schema_version(database) == 7
    _spread(any_rows, count=300)

    assert migrate(database) == len(MIGRATIONS)

    assert _stored(database) == _expected(database)
    assert sum(_stored(database)["llm_call_rollups"].values())
    any_rows.call(status="failed", enqueued_at=NOW)  # the triggers run from now on
    assert _stored(database) == _expected(database)


def test_the_rollups_migration_replaces_those_of_migration_8(any_rows: Rows) -> None:
    """A store at version 8 (rollups of the ended calls, a partial index of the calls in flight):
    the migration drops them and rolls up every call."""
    database = any_rows.database
    _spread(any_rows, count=300)
    for table in (*rollups.TABLES, rollups.LOG_TABLE):
        database.execute_sql(f"DROP TABLE {table}")
    database.execute_sql(  # one of migration 8's tables, in its shape
        "CREATE TABLE llm_call_requester_rollups (bucket_ms BIGINT NOT NULL, bucket_start BIGINT NOT NULL, "
        "status TEXT NOT NULL, requested_by TEXT NOT NULL, nulls BIGINT NOT NULL, shard BIGINT NOT NULL, "
        "calls BIGINT NOT NULL, PRIMARY KEY (bucket_ms, bucket_start, status, requested_by, nulls, shard))"
    )
    database.execute_sql("CREATE INDEX llm_calls_live ON llm_calls (enqueued_at) WHERE status = 'queued'")
    database.execute_sql("DELETE FROM llm_otel_schema WHERE version > 8")

    assert migrate(database) == len(MIGRATIONS)

    assert _stored(database) == _expected(database)
    assert "label" in {column.name for column in database.get_columns("llm_call_requester_rollups")}
    assert "llm_calls_live" not in {index.name for index in database.get_indexes("llm_calls")}


def test_retention_prunes_the_rollups_with_the_calls(any_rows: Rows) -> None:
    _spread(any_rows, count=1500, days=12)  # folded: rows in the rollup tables
    cutoff = NOW - 7 * DAY

    prune(any_rows.database, older_than=7, now_ms=NOW)

    stored = _stored(any_rows.database)
    assert stored == _expected(any_rows.database)
    for table in rollups.TABLES:
        key = rollups.TABLES[table][0]
        starts, status = key.index("bucket_start"), key.index("status")
        rows = any_rows.database.execute_sql(f"SELECT {', '.join(key)} FROM {table}").fetchall()
        old = [row for row in rows if row[starts] + row[0] <= cutoff]
        assert rows and old, table
        assert all(row[status] not in ENDED for row in old), table  # old buckets: the calls in flight left


@pytest.mark.parametrize("count", [300, 1500], ids=["in-the-log", "folded"])
def test_retention_drops_the_days_before_its_cut_off_whole_and_keeps_its_day_exact(
    any_rows: Rows, count: int
) -> None:
    calls = _spread(any_rows, count=count, days=12)
    cutoff = NOW - 6.5 * DAY
    cut_day = cutoff - cutoff % DAY  # half a day before the cut-off: its day straddles it
    assert any(cut_day <= call["enqueued_at"] < cutoff and call["status"] in ENDED for call in calls)

    prune(any_rows.database, older_than=6.5, now_ms=NOW)

    stored = _stored(any_rows.database)
    assert stored == _expected(any_rows.database)  # the cut-off's day and hour: what is left of them
    kept = sum(
        1
        for call in calls
        if cut_day <= call["enqueued_at"] < cut_day + DAY
        and (call["enqueued_at"] >= cutoff or call["status"] not in ENDED)
    )
    assert sum(_calls_of(stored, DAY, cut_day, status) for status in rollups.STATUSES) == kept
    for table, (key, _) in rollups.TABLES.items():
        starts, status = key.index("bucket_start"), key.index("status")
        rows = any_rows.database.execute_sql(f"SELECT {', '.join(key)} FROM {table}").fetchall()
        assert not [row for row in rows if row[starts] < cut_day and row[status] in ENDED], table


def test_retention_folds_the_log_between_its_deletes_not_inside_one(
    rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call deleted in the cut-off's day logs a take-back; retention folds the log in a
    transaction of its own every ``retention.FOLD_FROM`` entries, so that the log's trigger (at
    ``rollups.FOLD_AT``) never folds it inside a delete transaction, which would hold the lock ~5x
    longer."""
    cutoff = NOW - 6.5 * DAY
    cut_day = cutoff - cutoff % DAY
    old = int(cut_day + (cutoff - cut_day) // 2)  # in the cut-off's day, before the cut-off
    rows.each([{"status": "succeeded", "enqueued_at": old + n, "events": False} for n in range(2500)])
    rows.calls(10, status="succeeded", enqueued_at=NOW - HOUR)
    database = rows.database
    logged = f"SELECT IFNULL(MAX(rowid), 0) FROM {rollups.LOG_TABLE}"
    transactions: list[tuple[str, int, int]] = []  # (what, log entries before, after)
    write = retention._write

    def watched(database: Any, lock: Any, work: Any, **options: Any) -> Any:
        before = database.execute_sql(logged).fetchone()[0]
        result = write(database, lock, work, **options)
        what = getattr(getattr(work, "func", None), "__name__", "a step")
        transactions.append((what, before, database.execute_sql(logged).fetchone()[0]))
        return result

    monkeypatch.setattr(retention, "_write", watched)

    assert prune(database, older_than=6.5, now_ms=NOW) == 2500

    folds = [entries for what, entries, _ in transactions if what == "_fold_log"]
    assert len(folds) >= 2500 // rollups.FOLD_AT and all(entries >= retention.FOLD_FROM for entries in folds)
    emptied = [(what, before, after) for what, before, after in transactions if after < before]
    assert emptied and {what for what, *_ in emptied} <= {"_fold_log", "_fold"}, emptied
    assert max(after for *_, after in transactions) < rollups.FOLD_AT
    assert _stored(database) == _expected(database)


def test_retention_deletes_a_buckets_rows_through_an_index(any_rows: Rows) -> None:
    """The requester and timing rollups' keys put the label's value before ``bucket_start``: a
    bucket's rows are found through their bucket index (migration 17), not by reading the rows of
    every value."""
    database = any_rows.database
    for statement in rollups.prune_statements("?" if is_sqlite(database) else "%s"):
        table = statement.split()[2]
        if table not in rollups.BUCKET_INDEXES:
            continue
        if is_sqlite(database):
            plan = " ".join(
                str(row) for row in database.execute_sql(f"EXPLAIN QUERY PLAN {statement}", (DAY, 0))
            )
        else:
            with database.atomic():  # a tiny table: let the plan show its index, in this transaction only
                database.execute_sql("SET LOCAL enable_seqscan = off")
                plan = " ".join(str(row) for row in database.execute_sql(f"EXPLAIN {statement}", (DAY, 0)))
        assert rollups.BUCKET_INDEXES[table] in plan, plan


def test_a_call_deleted_under_the_bulk_delete_row_is_not_taken_back(rows: Rows) -> None:
    """Retention's delete transactions hold a ``BULK_DELETE_TABLE`` row: the calls enqueued before
    it are deleted without a take-back each (their buckets' rows are deleted whole), the others are
    taken back as any deleted row."""
    old, new = rows.each(
        [{"status": "succeeded", "enqueued_at": NOW - 9 * DAY}, {"status": "succeeded", "enqueued_at": NOW}]
    )
    database = rows.database
    before = _stored(database)
    with immediate(database):
        database.execute_sql(rollups.BULK_DELETE_BEGIN_SQL, (NOW - 8 * DAY,))
        database.execute(LLMCall.delete().where(LLMCall.call_id.in_([old, new])))
        database.execute_sql(rollups.BULK_DELETE_END_SQL)

    after = _stored(database)
    assert _calls_of(after, DAY, (NOW - 9 * DAY) // DAY * DAY, "succeeded") == 1  # left for retention
    assert _calls_of(after, DAY, NOW // DAY * DAY, "succeeded") == 0
    assert _calls_of(before, DAY, NOW // DAY * DAY, "succeeded") == 1
    assert database.execute_sql(f"SELECT count(*) FROM {rollups.BULK_DELETE_TABLE}").fetchone()[0] == 0


# Reading them


def test_pieces_count_each_call_of_the_range_once_and_read_few_rows() -> None:
    """Whatever the range and the newest call: a call enqueued inside is counted once (by the rollup
    rows, a raw range, or a row less a raw range) and one outside not at all; the log's entries are
    added where the rows count; at most 24 hour rows, and at each end the shorter part of its hour
    (no call comes after the newest), never more calls than the partial hours hold."""
    rng = random.Random(3)
    ranges = [(0, 40 * DAY), (5 * HOUR + 1, DAY + 2 * HOUR), (13 * HOUR, 2 * DAY - 11 * HOUR + 7)]
    ranges += [(HOUR + 10, HOUR + 20), (HOUR + 10, 2 * HOUR - 10), (HOUR + 10, 2 * HOUR + 20)]
    ranges += [
        (start, start + rng.choice([rng.randrange(1, 3 * HOUR), rng.randrange(1, 20 * DAY)]))
        for start in (rng.randrange(0, 40 * DAY) for _ in range(300))
    ]
    for since, until in ranges:
        for newest in (None, rng.randrange(since - HOUR, until + HOUR), until - 1):
            p = rollups.pieces(since, until, newest=newest)

            def rows(at: int, p: rollups.Pieces = p) -> int:
                return sum(
                    sign
                    for pieces, sign in ((p.buckets, 1), (p.taken, -1))
                    for size, first, end in pieces
                    if first <= at // size * size < end
                )

            hours = {since // HOUR * HOUR + HOUR * k for k in range(-1, 3)} | {until // HOUR * HOUR}
            points = {since - 1, since, until - 1, until, *hours, *(hour - 1 for hour in hours)}
            points |= {rng.randrange(since - HOUR, until + HOUR) for _ in range(50)}
            for at in points:
                raw = sum(sign for start, end, sign in p.raw if start <= at < end)
                assert rows(at) + raw == (since <= at < until), (since, until, newest, at, p)
                assert rows(at) == (p.covered is not None and p.covered[0] <= at < p.covered[1])
            hour_rows = sum(
                (end - first) // HOUR for size, first, end in (*p.buckets, *p.taken) if size == HOUR
            )
            assert hour_rows <= 24, (since, until, p)  # at most 12 a day, at each end
            last = until if newest is None else newest + 1

            def read(ranges: Iterable[tuple[int, int]], last: int = last) -> int:
                return sum(max(0, min(end, last) - start) for start, end in ranges if start < last)

            whole = range(-(-since // HOUR) * HOUR, until // HOUR * HOUR, HOUR)
            partial = ((since, whole.start), (whole.stop, until)) if whole else ((since, until),)
            assert read((start, end) for start, end, _ in p.raw) <= min(read(partial), HOUR)
    huge = rollups.pieces(-(10**13), 10 * DAY + 5)  # a bound from year 1653: a few pieces still
    assert len(huge.buckets) + len(huge.taken) <= 4


def test_the_hour_a_range_ends_in_is_read_as_its_row_less_what_comes_after() -> None:
    """A status window ending now, 40 minutes into an hour: the hour's row, less the calls after
    now (none yet); one starting 40 minutes into an hour: its part inside, 20 minutes of calls."""
    since, until = 100 * HOUR + 40 * 60_000, 200 * HOUR + 40 * 60_000

    p = rollups.pieces(since, until, newest=until - 5)

    assert p.raw == ((since, 101 * HOUR, 1), (until, 201 * HOUR, -1))
    assert p.covered == (101 * HOUR, 201 * HOUR)


def test_percentiles_from_the_bins_are_within_the_stated_error() -> None:
    rng = random.Random(1)
    for _ in range(200):
        values = [
            int(rng.lognormvariate(rng.uniform(0, 12), rng.uniform(0.1, 3)))
            for _ in range(rng.randrange(1, 400))
        ]
        known = sorted(values)
        exact = {
            "p50": known[math.ceil(0.5 * len(known)) - 1],
            "p95": known[math.ceil(0.95 * len(known)) - 1],
        }
        found = rollups.percentiles((rollups.bin_lower(value), 1) for value in values)
        assert _within(found, exact), (found, exact)
        assert all(found[name] == exact[name] for name in exact if exact[name] < 100)  # exact below 100 ms


def _rolled_equal_exact(window: int, monkeypatch: pytest.MonkeyPatch, now: int = NOW) -> dict[str, Any]:
    """``status_aggregates`` of ``window`` up to ``now`` read exactly, then from the rollups: equal
    but for the percentiles, which are within ``rollups.RELATIVE_ERROR``. Returns the exact one."""
    exact = queries.status_aggregates(window, now_ms=now)
    monkeypatch.setattr(queries, "EXACT_UP_TO", 0)
    rolled = queries.status_aggregates(window, now_ms=now)

    timings = ("wait_ms", "first_token_ms", "duration_ms")
    assert {key: value for key, value in rolled.items() if key not in timings} == {
        key: value for key, value in exact.items() if key not in timings
    }
    for name in timings:
        assert _within(rolled[name], exact[name]), (name, rolled[name], exact[name])
    return exact


@pytest.mark.parametrize("window", [HOUR + 40 * 60_000, 5 * HOUR, DAY, 7 * DAY, 30 * DAY])
@pytest.mark.parametrize("minutes_before", [0, 30], ids=["ends 37 min into an hour", "7 min into"])
def test_status_aggregates_from_the_rollups_equal_the_exact_ones(
    spread: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, window: int, minutes_before: int
) -> None:
    """Ending after the newest call, 37 minutes into an hour, a window reads that hour as its row
    less the calls after its end; ending 7 minutes into an hour, with calls after its end, it reads
    the hour it starts in as the row less the 7 minutes before its start."""
    now = NOW - minutes_before * 60_000
    newest = max(call["enqueued_at"] for call in spread)
    assert (newest > now) == bool(minutes_before)
    assert any(sign == -1 for *_, sign in rollups.pieces(now - window, now + 1, newest=newest).raw)

    exact = _rolled_equal_exact(window, monkeypatch, now)

    assert exact["total"] > 0


@pytest.mark.parametrize("window", [5 * HOUR, 7 * DAY])
def test_status_aggregates_from_the_rollups_count_what_changed_since_they_were_folded(
    spread: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Calls deleted and changed inside the window after the rollups took them in: on SQLite their
    take-backs wait in the rollup log (weight -1 beside the calls read from ``llm_calls``), and the
    counts, tokens and retries still equal the exact ones."""
    inside = sorted(call["call_id"] for call in spread if NOW - window <= call["enqueued_at"] <= NOW)
    gone, changed = inside[::7], inside[3::7]
    db.obj.execute(LLMCall.delete().where(LLMCall.call_id.in_(gone)))
    more = {
        LLMCall.input_tokens: peewee.fn.COALESCE(LLMCall.input_tokens, 0) + 1000,
        LLMCall.retry_count: LLMCall.retry_count + 2,
    }
    db.obj.execute(LLMCall.update(more).where(LLMCall.call_id.in_(changed)))
    exact = _rolled_equal_exact(window, monkeypatch)

    assert exact["total"] == len(inside) - len(gone)


def test_a_window_without_a_whole_hour_is_read_from_the_calls_exactly(
    spread: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last hour, 37 minutes into one: its calls read, its percentiles exact, however few calls
    the rollups would take to read from the rows."""
    exact = queries.status_aggregates(HOUR, now_ms=NOW)
    tables = _rollups_read_always(monkeypatch)

    assert queries.status_aggregates(HOUR, now_ms=NOW) == exact
    assert exact["total"] > 0
    assert tables == []
    assert not rollups.holds_whole_hour(NOW - HOUR, NOW + 1)
    assert rollups.holds_whole_hour(NOW - HOUR - 40 * 60_000, NOW + 1)


def test_the_status_card_reads_the_rollups_at_its_windows(
    spread: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "EXACT_UP_TO", 0)
    statements: list[str] = []
    real = db.obj.execute_sql
    monkeypatch.setattr(
        db.obj, "execute_sql", lambda sql, *args, **kw: statements.append(sql) or real(sql, *args, **kw)
    )

    queries.status_aggregates(DAY, now_ms=NOW)

    assert any("FROM llm_call_timing_rollups" in sql for sql in statements)


@pytest.mark.parametrize(("window", "buckets"), [(DAY, 24), (7 * DAY, 24), (6 * HOUR, 3)])
def test_status_series_from_the_rollups_counts_each_call_of_its_hours(
    spread: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, window: int, buckets: int
) -> None:
    written = spread
    monkeypatch.setattr(queries, "EXACT_UP_TO", 0)

    series = queries.status_series(window, buckets=buckets, now_ms=NOW)

    starts = [bucket["start_ms"] for bucket in series]
    end = (NOW // HOUR + 1) * HOUR
    assert starts[0] == NOW - window and starts[1:] == [
        end - (buckets - i) * (window // buckets) for i in range(1, buckets)
    ]
    for index, bucket in enumerate(series):
        until = starts[index + 1] if index + 1 < buckets else NOW + 1
        inside = [call for call in written if bucket["start_ms"] <= call["enqueued_at"] < until]
        assert bucket["calls"] == len(inside)
        assert bucket["failed"] == sum(call["status"] == "failed" for call in inside)
        durations = sorted(call["duration_ms"] for call in inside if call["duration_ms"] is not None)
        exact = durations[math.ceil(0.95 * len(durations)) - 1] if durations else None
        assert _within({"p95": bucket["p95_duration_ms"]}, {"p95": exact})
    assert sum(bucket["calls"] for bucket in series) == sum(
        NOW - window <= call["enqueued_at"] <= NOW for call in written
    )


ROLLED_FILTERS: list[dict[str, Any]] = [
    {},
    {"status": ["failed"]},
    {"status": ["succeeded", "running"]},
    {"status": ["queued"]},
    {"since_ms": NOW - 7 * DAY},
    {"since_ms": NOW - DAY, "until_ms": NOW - HOUR},
    {"until_ms": NOW - 2 * DAY - 1234},
    {"status": ["failed", "cancelled"], "since_ms": NOW - 3 * DAY - 5, "until_ms": NOW - 1000},
    {"model": "gpt-4o"},
    {"source": ""},  # an empty label: not a NULL one
    {"source": "billing", "status": ["failed", "running"]},
    {"error_type": "RateLimitError"},
    {"model": "gpt-4o-mini", "since_ms": NOW // DAY * DAY - 3 * DAY, "until_ms": NOW // DAY * DAY},
]


def _selects(call: dict[str, Any], filters: dict[str, Any]) -> bool:
    return all(
        call[name] in value
        if name == "status"
        else call["enqueued_at"] >= value
        if name == "since_ms"
        else call["enqueued_at"] < value
        if name == "until_ms"
        else (call["duration_ms"] or -1) >= value
        if name == "min_duration_ms"
        else call[name] == value
        for name, value in filters.items()
    )


def _rollups_read_always(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Facets read the rollups whenever they can (however few the calls); the list of the rollup
    tables read, as they are read."""
    monkeypatch.setattr(queries, "EXACT_UP_TO", 0)
    monkeypatch.setattr(queries, "EXACT_LABELLED_UP_TO", 0)
    read: list[str] = []
    real = rollups.rolled
    monkeypatch.setattr(
        rollups,
        "rolled",
        lambda database, table, *args, **kw: read.append(table) or real(database, table, *args, **kw),
    )
    return read


@pytest.mark.parametrize("filters", ROLLED_FILTERS, ids=str)
def test_facets_from_the_rollups_equal_the_exact_ones(
    spread: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, filters: dict[str, Any]
) -> None:
    written = spread
    exact = queries.call_facets(**filters)
    assert exact == _computed([call for call in written if _selects(call, filters)])
    read = _rollups_read_always(monkeypatch)

    rolled = queries.call_facets(**filters)

    assert set(read) == set(rollups.TABLES) - {"llm_call_rollups"}
    timings = ("wait_ms", "first_token_ms", "duration_ms")
    assert {key: value for key, value in rolled.items() if key not in timings} == {
        key: value for key, value in exact.items() if key not in timings
    }
    for name in timings:
        assert _within(rolled[name], exact[name]), (name, rolled[name], exact[name])


def test_facets_the_rollups_do_not_hold_are_read_from_the_calls(
    spread: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two labels, a requester, a timing minimum, a label over part of a day: exact, from the rows."""
    written = spread
    read = _rollups_read_always(monkeypatch)
    for filters in (
        {"model": "gpt-4o", "source": "app"},
        {"requested_by": "bob", "status": ["failed"]},
        {"min_duration_ms": 500},
        {"model": "gpt-4o", "since_ms": NOW - DAY},
    ):
        selected = [call for call in written if _selects(call, filters)]
        assert queries.call_facets(**filters) == _computed(selected), filters  # exact: not the rollups
    assert not set(read) & {"llm_call_requester_rollups", "llm_call_timing_rollups"}


def test_postgresql_writers_never_wait_on_each_others_rollup_rows(postgres_url: str) -> None:
    """Two sessions ending calls of the same hour at once: the second does not wait for the first
    one's commit (each session adds to its own shard of the rows), and both are counted."""
    database = open_database(postgres_url)
    migrate(database)
    database.close()
    insert = (
        "INSERT INTO llm_calls (call_id, status, stream, enqueued_at, retry_count, updated_at, duration_ms) "
        "VALUES (%s, 'succeeded', false, %s, 0, %s, 1000)"
    )
    first, second = psycopg2.connect(postgres_url), psycopg2.connect(postgres_url)
    try:
        first.cursor().execute(insert, ("call-1", NOW, NOW))  # its transaction stays open
        with second.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
            cursor.execute(insert, ("call-2", NOW + 1, NOW))
        second.commit()
        first.commit()
        with first.cursor() as cursor:
            cursor.execute("SELECT SUM(calls) FROM llm_call_rollups WHERE bucket_ms = %s", (HOUR,))
            assert cursor.fetchone()[0] == 2
    finally:
        first.close()
        second.close()
