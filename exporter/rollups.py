"""Rollups of the ended calls: per-hour and per-day counts, sums and latency histograms.

The status card and the filter summary (``exporter.queries.status_aggregates``, ``status_series``,
``call_facets``) would otherwise read every call of their window: 2 s for 7 days at 1M calls. The
database keeps these tables up to date itself: triggers on ``llm_calls`` (migration 8, DDL below)
add a call's contribution when its row becomes ended (succeeded, failed, cancelled), take the old
contribution back and add the new one when an ended row changes (a span written twice, a call
closed as lost that ends after all), and take it back when the row is deleted. Whatever writes the
rows (the store's writer, ``SQLiteSpanExporter``, retention, fixtures, a test's ``INSERT``), the
rollups hold exactly what the ended rows hold, in the same transaction; nothing is counted twice.
Queued and running calls are not rolled up (they change with every notice): readers take them from
``llm_calls`` (``status IN ('queued', 'running')``: few, the calls in flight).

Tables (``docs/contracts/db.md``), each row one ``(bucket_ms, bucket_start)`` bucket of
``enqueued_at``, ``bucket_ms`` ``HOUR_MS`` or ``DAY_MS`` (UTC), both kept:

- ``llm_call_rollups`` (status): ``calls``, ``retries`` and the four token sums;
- ``llm_call_label_rollups`` (status, model, source, error_type): ``calls``;
- ``llm_call_requester_rollups`` (status, requested_by): ``calls``;
- ``llm_call_timing_rollups`` (metric, status, lower): ``calls`` whose ``wait_ms`` (metric 0),
  ``first_token_ms`` (1) or ``duration_ms`` (2) falls in the histogram bin starting at ``lower``.

``shard`` is 0 on SQLite (one writer at a time). On PostgreSQL it is the writing session's
``pg_backend_pid()``: concurrent writers then never update the same rollup row (they would wait on
each other's row locks to their commits, and deadlock, locking the rows of their batches' calls in
different orders); readers sum over the shards, and a session may take back what another added.

A label column holds ``''`` for NULL and ``nulls`` has a bit set for each NULL label (model 1,
source 2, error_type 4; requested_by 1), so that a key never holds a NULL (a NULL in a unique key
never conflicts) and an empty label stays apart from none.

Histogram bins (``BIN_LOWERS``): one per millisecond below 100 ms, then each bin ``[L, U]`` with
``U = floor(L * 1.045 / 0.955)``, up to 10^10 ms; negative timings count as 0. A percentile read
from the bins is the bin's ``representative`` (``round(2LU / (L + U))``): within 4.5% of every value
of the bin, plus 0.5 ms of rounding, so **within 5% of the exact nearest-rank value** (exact below
100 ms). Counts and sums are exact.

Reading a time range ``[since, until)``: the whole days inside it from the day rows, the whole hours
left at its ends from the hour rows, and the calls of the partial hours at each end from
``llm_calls`` (the window index), exactly (``pieces``).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from exporter.database import is_sqlite

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
BUCKET_SIZES = (HOUR_MS, DAY_MS)
RELATIVE_ERROR = 0.05
"""The most a percentile read from the bins differs from the exact one, relative to it."""
_BIN_HALF_WIDTH = 0.045
_EXACT_BELOW = 100
_LAST_LOWER = 10**10

ENDED = ("succeeded", "failed", "cancelled")
_ENDED_SQL = "(" + ", ".join(f"'{status}'" for status in ENDED) + ")"
METRICS = ("wait_ms", "first_token_ms", "duration_ms")
"""Metric codes of ``llm_call_timing_rollups``: the position in this tuple."""
LABELS = ("model", "source", "error_type")
"""The labels of ``llm_call_label_rollups``, in their ``nulls`` bit order."""
TOKENS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


def _bin_lowers() -> tuple[int, ...]:
    lowers = list(range(_EXACT_BELOW))
    lower = _EXACT_BELOW
    while lower < _LAST_LOWER:
        lowers.append(lower)
        lower = math.floor(lower * (1 + _BIN_HALF_WIDTH) / (1 - _BIN_HALF_WIDTH)) + 1
    lowers.append(_LAST_LOWER)
    return tuple(lowers)


BIN_LOWERS = _bin_lowers()
"""The lower bound (ms) of each histogram bin, ascending; a bin ends where the next begins."""


def bin_lower(value: int) -> int:
    """The lower bound of the bin holding ``value`` (negative values count as 0)."""
    return BIN_LOWERS[max(0, bisect.bisect_right(BIN_LOWERS, value) - 1)]


def binned(values: Iterable[int | None]) -> list[tuple[int, int]]:
    """The histogram ((lower, count) pairs) of ``values``, None left out: counted first, so each
    distinct value is looked up once."""
    counts: Counter[int] = Counter(values)
    counts.pop(None, None)  # type: ignore[call-overload]
    bins: dict[int, int] = {}
    for value, count in counts.items():
        lower = bin_lower(value)
        bins[lower] = bins.get(lower, 0) + count
    return list(bins.items())


def representative(lower: int) -> int:
    """The value reported for a bin: within 4.5% (plus rounding) of anything in it."""
    index = bisect.bisect_left(BIN_LOWERS, lower)
    if lower < _EXACT_BELOW or index + 1 >= len(BIN_LOWERS):
        return lower
    upper = BIN_LOWERS[index + 1] - 1
    return round(2 * lower * upper / (lower + upper))


def percentiles(bins: Iterable[tuple[int, int]]) -> dict[str, int | None]:
    """Nearest-rank p50 and p95 of a histogram ((lower, count) pairs, any order, repeats summed)."""
    counts: dict[int, int] = {}
    for lower, count in bins:
        counts[lower] = counts.get(lower, 0) + count
    return {name: None if lower is None else representative(lower) for name, lower in ranked(counts).items()}


def ranked(counts: Mapping[int, int]) -> dict[str, int | None]:
    """Nearest-rank p50 and p95 of the values counted in ``counts`` (value → how many times);
    None for both when nothing is counted."""
    total = sum(counts.values())
    if total <= 0:
        return {"p50": None, "p95": None}
    ranks = {"p50": math.ceil(0.50 * total), "p95": math.ceil(0.95 * total)}
    found: dict[str, int | None] = {}
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        for name, rank in ranks.items():
            if name not in found and seen >= rank:
                found[name] = value
    return found


@dataclass(frozen=True)
class Pieces:
    """A time range cut into what the rollups hold and what is read from ``llm_calls``."""

    raw: tuple[tuple[int, int], ...]
    """Half-open ``[start, end)`` ranges of ``enqueued_at`` read from ``llm_calls`` (every status)."""
    buckets: tuple[tuple[int, int, int], ...]
    """``(bucket_ms, first_start, end)``: the rollup rows of that size with ``first_start <=
    bucket_start < end``."""
    covered: tuple[int, int] | None
    """The range the buckets cover (their queued and running calls are read from ``llm_calls``)."""


def pieces(since: int, until: int) -> Pieces:
    """Cut ``[since, until)``: whole days, whole hours at their sides, raw partial hours at the ends."""
    hour_start, hour_end = -(-since // HOUR_MS) * HOUR_MS, until // HOUR_MS * HOUR_MS
    if hour_start >= hour_end:
        return Pieces(raw=((since, until),) if since < until else (), buckets=(), covered=None)
    raw = tuple((start, end) for start, end in ((since, hour_start), (hour_end, until)) if start < end)
    day_start, day_end = -(-hour_start // DAY_MS) * DAY_MS, hour_end // DAY_MS * DAY_MS
    if day_start < day_end:
        hours = [(HOUR_MS, hour_start, day_start), (HOUR_MS, day_end, hour_end)]
        buckets = [(DAY_MS, day_start, day_end), *(piece for piece in hours if piece[1] < piece[2])]
    else:
        buckets = [(HOUR_MS, hour_start, hour_end)]
    return Pieces(raw=raw, buckets=tuple(buckets), covered=(hour_start, hour_end))


def hour_pieces(since: int, until: int) -> Pieces:
    """``pieces`` with hour rows only (a series cuts its buckets at hours, not days)."""
    hour_start, hour_end = -(-since // HOUR_MS) * HOUR_MS, until // HOUR_MS * HOUR_MS
    if hour_start >= hour_end:
        return pieces(since, until)
    raw = tuple((start, end) for start, end in ((since, hour_start), (hour_end, until)) if start < end)
    return Pieces(raw=raw, buckets=((HOUR_MS, hour_start, hour_end),), covered=(hour_start, hour_end))


def label_value(value: str, nulls: int, bit: int) -> str | None:
    """A label as stored in a rollup key, back to what the call holds (None for NULL)."""
    return None if nulls & bit else value


# -- DDL (migration 8) ---------------------------------------------------------------------------------

_KEY = ("bucket_ms", "bucket_start", "status")
TABLES = {
    "llm_call_rollups": ((*_KEY, "shard"), ("calls", "retries", *TOKENS)),
    "llm_call_label_rollups": ((*_KEY, *LABELS, "nulls", "shard"), ("calls",)),
    "llm_call_requester_rollups": ((*_KEY, "requested_by", "nulls", "shard"), ("calls",)),
    "llm_call_timing_rollups": (
        ("bucket_ms", "metric", "bucket_start", "status", "lower", "shard"),
        ("calls",),
    ),
}
"""Each rollup table: (its key columns, its summed columns)."""
BINS_TABLE = "llm_call_timing_bins"
"""One row per histogram bin (``lower``): what the triggers look a timing's bin up in."""
_TEXT_COLUMNS = {"status", *LABELS, "requested_by"}


def table_ddl(integer: str) -> list[str]:
    """CREATE TABLE statements of the rollups (``integer``: the engine's 64-bit integer type)."""
    statements = [f'CREATE TABLE IF NOT EXISTS "{BINS_TABLE}" ("lower" {integer} NOT NULL PRIMARY KEY)']
    for table, (key, sums) in TABLES.items():
        columns = [f'"{name}" {"TEXT" if name in _TEXT_COLUMNS else integer} NOT NULL' for name in key]
        columns[key.index("shard")] += " DEFAULT 0"
        columns += [f'"{name}" {integer} NOT NULL' for name in sums]
        primary = ", ".join(f'"{name}"' for name in key)
        statements.append(
            f'CREATE TABLE IF NOT EXISTS "{table}" ({", ".join(columns)}, PRIMARY KEY ({primary}))'
        )
    return statements


def _nulls(row: str, labels: Sequence[str]) -> str:
    return " + ".join(
        f"(CASE WHEN {row}.{label} IS NULL THEN {1 << bit} ELSE 0 END)" for bit, label in enumerate(labels)
    )


def contribution_sql(row: str, sign: str, shard: str = "0") -> list[str]:
    """The upserts adding ``sign`` times the rollup contribution of the ended row ``row`` (``NEW``,
    ``OLD`` in a SQLite trigger, a row variable in PostgreSQL's function), both bucket sizes, to
    the rows of ``shard``.

    Each is ``INSERT ... SELECT ... WHERE <ended> ON CONFLICT ... DO UPDATE`` summing the columns.
    """
    sizes = " UNION ALL ".join(f"SELECT {size} AS ms" for size in BUCKET_SIZES)
    start = f"{row}.enqueued_at - {row}.enqueued_at % s.ms"
    common = f"s.ms, {start}, {row}.status"
    bin_of = f"(SELECT b.lower FROM {BINS_TABLE} AS b WHERE b.lower <= t.value ORDER BY b.lower DESC LIMIT 1)"
    timings = " UNION ALL ".join(
        f"SELECT {code} AS metric, CASE WHEN {row}.{name} < 0 THEN 0 ELSE {row}.{name} END AS value"
        for code, name in enumerate(METRICS)
    )
    values = {  # table: (its key's values but the shard, its sums, more FROM)
        "llm_call_rollups": (
            common,
            f"{sign}, {sign} * {row}.retry_count, "
            + ", ".join(f"{sign} * COALESCE({row}.{name}, 0)" for name in TOKENS),
            "",
        ),
        "llm_call_label_rollups": (
            f"{common}, "
            + ", ".join(f"COALESCE({row}.{label}, '')" for label in LABELS)
            + f", {_nulls(row, LABELS)}",
            sign,
            "",
        ),
        "llm_call_requester_rollups": (
            f"{common}, COALESCE({row}.requested_by, ''), {_nulls(row, ['requested_by'])}",
            sign,
            "",
        ),
        "llm_call_timing_rollups": (
            f"s.ms, t.metric, {start}, {row}.status, {bin_of}",
            sign,
            f", ({timings}) AS t",
        ),
    }
    statements = []
    for table, (key, sums) in TABLES.items():
        keyed, summed, extra_from = values[table]
        only_values = " AND t.value IS NOT NULL" if extra_from else ""
        names = ", ".join([*key, *sums])
        conflict = ", ".join(key)
        added = ", ".join(f"{name} = {table}.{name} + excluded.{name}" for name in sums)
        statements.append(
            f"INSERT INTO {table} ({names}) SELECT {keyed}, {shard}, {summed} "
            f"FROM ({sizes}) AS s{extra_from} WHERE {row}.status IN {_ENDED_SQL}{only_values} "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {added}"
        )
    return statements


ROLLED_UP_COLUMNS = ("status", "enqueued_at", *LABELS, "requested_by", "retry_count", *TOKENS, *METRICS)
"""The columns of ``llm_calls`` the rollups hold: an update that changes none of them changes nothing."""

_CHANGED = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in ROLLED_UP_COLUMNS)


def sqlite_trigger_ddl() -> list[str]:
    """SQLite: the triggers keeping the rollups equal to the ended rows of ``llm_calls``."""
    add_new = "; ".join(contribution_sql("NEW", "1"))
    take_old = "; ".join(contribution_sql("OLD", "-1"))
    return [
        f"CREATE TRIGGER IF NOT EXISTS llm_calls_rollup_insert AFTER INSERT ON llm_calls "
        f"WHEN NEW.status IN {_ENDED_SQL} BEGIN {add_new}; END",
        # Two update triggers, each running only the statements it needs (an ended row that changes,
        # a live row that ends).
        f"CREATE TRIGGER IF NOT EXISTS llm_calls_rollup_take_back AFTER UPDATE ON llm_calls "
        f"WHEN OLD.status IN {_ENDED_SQL} AND ({_CHANGED}) BEGIN {take_old}; END",
        f"CREATE TRIGGER IF NOT EXISTS llm_calls_rollup_update AFTER UPDATE ON llm_calls "
        f"WHEN NEW.status IN {_ENDED_SQL} AND ({_CHANGED}) BEGIN {add_new}; END",
        f"CREATE TRIGGER IF NOT EXISTS llm_calls_rollup_delete AFTER DELETE ON llm_calls "
        f"WHEN OLD.status IN {_ENDED_SQL} BEGIN {take_old}; END",
    ]


def postgresql_trigger_ddl() -> list[str]:
    """PostgreSQL: a function adding a row's contribution, and the triggers calling it (each with
    the ``WHEN`` of SQLite's, so a live row's updates call no function)."""
    add = "; ".join(contribution_sql("r", "factor", shard="pg_backend_pid()"))
    changed = _CHANGED.replace(" IS NOT ", " IS DISTINCT FROM ")
    ended = f"(OLD.status IN {_ENDED_SQL} OR NEW.status IN {_ENDED_SQL})"
    triggers = {
        "insert": ("INSERT", f"NEW.status IN {_ENDED_SQL}"),
        "update": ("UPDATE", f"{ended} AND ({changed})"),
        "delete": ("DELETE", f"OLD.status IN {_ENDED_SQL}"),
    }
    return [
        "CREATE OR REPLACE FUNCTION llm_call_rollup_add(r llm_calls, factor BIGINT) RETURNS void "
        f"LANGUAGE plpgsql AS $$ BEGIN {add}; END $$",
        "CREATE OR REPLACE FUNCTION llm_calls_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM llm_call_rollup_add(OLD, -1); END IF; "
        "IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM llm_call_rollup_add(NEW, 1); END IF; "
        "RETURN NULL; END $$",
        *(
            f"CREATE TRIGGER llm_calls_rollup_{name} AFTER {event} ON llm_calls FOR EACH ROW "
            f"WHEN ({condition}) EXECUTE FUNCTION llm_calls_rollup()"
            for name, (event, condition) in triggers.items()
        ),
    ]


def backfill_sql() -> list[str]:
    """Fill the rollups from the ended rows already stored (a store migrated to version 6)."""
    sizes = " UNION ALL ".join(f"SELECT {size} AS ms" for size in BUCKET_SIZES)
    start = "c.enqueued_at - c.enqueued_at % s.ms"
    source = f"FROM llm_calls AS c, ({sizes}) AS s WHERE c.status IN {_ENDED_SQL}"
    labels = ", ".join(f"COALESCE(c.{label}, '')" for label in LABELS)
    bin_of = f"(SELECT b.lower FROM {BINS_TABLE} AS b WHERE b.lower <= c.{{}} ORDER BY b.lower DESC LIMIT 1)"
    metrics = " UNION ALL ".join(
        f"SELECT c.enqueued_at AS enqueued_at, c.status AS status, {code} AS metric, "
        f"CASE WHEN c.{name} < 0 THEN 0 ELSE {bin_of.format(name)} END AS lower FROM llm_calls AS c "
        f"WHERE c.status IN {_ENDED_SQL} AND c.{name} IS NOT NULL"
        for code, name in enumerate(METRICS)
    )
    t_start = "t.enqueued_at - t.enqueued_at % s.ms"
    into = "INSERT INTO {} (bucket_ms, bucket_start, status, {}) ".format
    return [
        into("llm_call_rollups", f"calls, retries, {', '.join(TOKENS)}")
        + f"SELECT s.ms, {start}, c.status, COUNT(*), SUM(c.retry_count), "
        + ", ".join(f"COALESCE(SUM(c.{name}), 0)" for name in TOKENS)
        + f" {source} GROUP BY s.ms, {start}, c.status",
        into("llm_call_label_rollups", f"{', '.join(LABELS)}, nulls, calls")
        + f"SELECT s.ms, {start}, c.status, {labels}, {_nulls('c', LABELS)}, COUNT(*) {source} "
        f"GROUP BY s.ms, {start}, c.status, {labels}, {_nulls('c', LABELS)}",
        into("llm_call_requester_rollups", "requested_by, nulls, calls")
        + f"SELECT s.ms, {start}, c.status, COALESCE(c.requested_by, ''), {_nulls('c', ['requested_by'])}, "
        f"COUNT(*) {source} GROUP BY s.ms, {start}, c.status, COALESCE(c.requested_by, ''), "
        f"{_nulls('c', ['requested_by'])}",
        into("llm_call_timing_rollups", "metric, lower, calls")
        + f"SELECT s.ms, {t_start}, t.status, t.metric, t.lower, COUNT(*) "
        f"FROM ({metrics}) AS t, ({sizes}) AS s GROUP BY s.ms, {t_start}, t.status, t.metric, t.lower",
    ]


# -- reading -----------------------------------------------------------------------------------------


def _bucket_conditions(p: Pieces, marker: str) -> tuple[str, list[int]]:
    """``(bucket_ms = ? AND bucket_start >= ? AND bucket_start < ?) OR ...`` for the buckets of ``p``."""
    sql = " OR ".join(
        f"(bucket_ms = {marker} AND bucket_start >= {marker} AND bucket_start < {marker})" for _ in p.buckets
    )
    return f"({sql})", [value for piece in p.buckets for value in piece]


def rolled(
    database: peewee.Database,
    table: str,
    columns: Sequence[str],
    p: Pieces,
    *,
    statuses: Sequence[str] = ENDED,
    metric: int | None = None,
) -> list[tuple[Any, ...]]:
    """``columns`` (the group) and the sums of ``table``'s summed columns over the buckets of ``p``,
    for the ended ``statuses`` (and one ``metric`` of the timing rollups); groups whose count is 0
    (taken back) are left out."""
    statuses = [status for status in statuses if status in ENDED]
    if not p.buckets or not statuses:
        return []
    marker = "?" if is_sqlite(database) else "%s"
    buckets, bucket_params = _bucket_conditions(p, marker)
    sums = TABLES[table][1]
    group = ", ".join(columns)
    listed = ", ".join([marker] * len(statuses))
    params = [] if metric is None else [metric]
    where = "" if metric is None else f" AND metric = {marker}"
    if metric is None and table == "llm_call_timing_rollups":  # the key's second column: a range per metric
        where = " AND metric IN (" + ", ".join(str(code) for code in range(len(METRICS))) + ")"
    sql = (
        f"SELECT {group}{', ' if group else ''}{', '.join(f'SUM({name})' for name in sums)} FROM {table} "
        f"WHERE {buckets} AND status IN ({listed}){where}"
        + (f" GROUP BY {group}" if group else "")
        + f" HAVING SUM({sums[0]}) != 0"
    )
    rows = database.execute_sql(sql, [*bucket_params, *statuses, *params]).fetchall()
    return [(*row[: len(columns)], *(int(value) for value in row[len(columns) :])) for row in rows]


def raw_rows(
    database: peewee.Database, columns: Sequence[str], p: Pieces, statuses: Sequence[str] = ()
) -> list[tuple[Any, ...]]:
    """``columns`` of every call of the raw ranges of ``p`` (``statuses``: only these; () for any)."""
    marker = "?" if is_sqlite(database) else "%s"
    picked = f" AND status IN ({', '.join([marker] * len(statuses))})" if statuses else ""
    selects, params = [], []
    for start, end in p.raw:
        selects.append(
            f"SELECT {', '.join(columns)} FROM llm_calls "
            f"WHERE enqueued_at >= {marker} AND enqueued_at < {marker}{picked}"
        )
        params += [start, end, *statuses]
    if not selects:
        return []
    return database.execute_sql(" UNION ALL ".join(selects), params).fetchall()


LIVE_INDEX_COLUMNS = ("enqueued_at", "status", *LABELS, "requested_by", *METRICS, "retry_count", *TOKENS)
LIVE_INDEX_DDL = (
    'CREATE INDEX IF NOT EXISTS "llm_calls_live" ON "llm_calls" ('
    + ", ".join(f'"{column}"' for column in LIVE_INDEX_COLUMNS)
    + ") WHERE status IN ('queued', 'running')"
)
"""The queued and running calls, with every column the rollup readers take of them: a partial
index, which holds only the calls in flight (a row leaves it when it ends)."""


def live_groups(
    database: peewee.Database,
    group: Sequence[str],
    p: Pieces,
    statuses: Sequence[str] = (),
    *,
    sums: Sequence[str] = (),
    known: str | None = None,
) -> list[tuple[Any, ...]]:
    """``group``, ``COUNT(*)`` and the ``sums`` of the queued and running calls (of ``statuses``,
    () for any) in the range the buckets of ``p`` cover (those with a ``known`` value of that
    column), grouped by the database from ``llm_calls_live`` alone."""
    live = [status for status in statuses or ("queued", "running") if status not in ENDED]
    if p.covered is None or not live:
        return []
    marker = "?" if is_sqlite(database) else "%s"
    selected = [*group, "COUNT(*)", *(f"SUM({name})" for name in sums)]
    picked = "" if len(live) == 2 else f" AND status = {marker}"
    having = f" AND {known} IS NOT NULL" if known else ""
    grouped = f" GROUP BY {', '.join(group)}" if group else ""
    # SQLite would rather take (status, enqueued_at) and read each row: it cannot tell the partial
    # index holds every column.
    table = "llm_calls INDEXED BY llm_calls_live" if marker == "?" else "llm_calls"
    sql = (
        f"SELECT {', '.join(selected)} FROM {table} WHERE status IN ('queued', 'running') "  # the index's
        f"AND enqueued_at >= {marker} AND enqueued_at < {marker}{picked}{having}{grouped}"
    )
    rows = database.execute_sql(sql, [*p.covered, *live[: 1 if picked else 0]]).fetchall()
    return [
        (*row[: len(group)], *(int(value or 0) for value in row[len(group) :]))
        for row in rows
        if row[len(group)]
    ]
