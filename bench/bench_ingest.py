"""Benchmark: store ingest, the app thread's cost per call, write latency, size on disk.

Usage::

    .venv/bin/python bench/bench_ingest.py                      # 20,000 calls per ingest case
    .venv/bin/python bench/bench_ingest.py --calls 50000 --size 100000

Every call carries ~3 KB of text (system + user ~2 KB, answer ~1 KB, English and Chinese words in
random order, so the trigram index sees realistic text), a dispatch and a first token event, tokens
and labels. Each case writes to a fresh SQLite file under ``--dir`` (default: a temporary one).

1. Ingest of ended calls, calls per second (DESIGN §9: the store ≥ 0.5x raw ``executemany``):
   ``raw`` plain ``INSERT`` of the already-mapped rows (call, body, events, FTS row) with
   ``sqlite3.executemany`` in 500-call transactions, the reference; ``raw, no FTS`` the same without
   the full-text rows (the DESIGN's anchor: ~37k rows/s); ``SpanStore`` ``on_end`` for every span then
   ``flush`` (mapping included, on the writer thread); ``SpanStore live`` the same plus a ``queued``
   and a ``dispatched`` notice per call (three records); ``SQLiteSpanExporter`` ``export`` of
   512-span batches.
2. The app thread's time in the store per call (``on_call_event("queued")`` + ``on_end``), p50/p99
   in µs, with the database idle and while another connection holds an exclusive lock (DESIGN §9:
   ≤ 1 ms p99 even while locked).
3. Notice → row visible to another connection, p50/p95/max in ms (DESIGN §9: ≤ 250 ms p95).
4. With ``--size N``: the file size after N ended calls through the store, and per 100k calls.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from exporter.mapping import CallRows, span_to_rows, to_json
from exporter.migrations import FTS_INSERT_SQL
from exporter.span_exporter import SQLiteSpanExporter
from exporter.store import SpanStore
from tests.exporter.call_spans import dispatch, dispatch_attributes, finish, first_token, ns, start_call

WORDS_EN = [
    "report",
    "quarter",
    "revenue",
    "growth",
    "customer",
    "refund",
    "policy",
    "invoice",
    "total",
    "translate",
    "paragraph",
    "reply",
    "ticket",
    "classify",
    "forecast",
    "weather",
    "parser",
    "tests",
    "stack",
    "trace",
    "summary",
    "meeting",
    "notes",
    "schedule",
]
WORDS_ZH = [
    "今天",
    "天气",
    "预报",
    "下雨",
    "季度",
    "报告",
    "总结",
    "翻译",
    "客户",
    "退款",
    "政策",
    "单元",
    "测试",
    "会议",
    "记录",
    "安排",
]


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS_ZH) if rng.random() < 0.2 else rng.choice(WORDS_EN)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def make_spans(count: int, seed: int = 7) -> list[ReadableSpan]:
    """``count`` ended streaming calls with ~3 KB of text each."""
    rng = random.Random(seed)
    tracer = TracerProvider().get_tracer("bench")
    spans = []
    for i in range(count):
        messages = [
            {"role": "user", "parts": [{"type": "text", "content": _text(rng, 1800)}]},
        ]
        output = [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": _text(rng, 1000)}],
                "finish_reason": "stop",
            }
        ]
        span = start_call(
            tracer,
            f"call-{seed}-{i:08d}",
            **{
                "gen_ai.system_instructions": to_json([{"type": "text", "content": _text(rng, 200)}]),
                "gen_ai.input.messages": to_json(messages),
                "llm_otel.source": f"source-{i % 12}",
                "llm_otel.requested_by": f"user-{i % 300}",
            },
        )
        dispatch(span, at_ms=5, wait=0.005)
        first_token(span, at_ms=300, ttft=0.295)
        finish(span, at_ms=900, **{"gen_ai.output.messages": to_json(output)})
        spans.append(span)
    return spans


def _fresh(directory: Path, name: str) -> Path:
    path = directory / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _migrated(path: Path) -> sqlite3.Connection:
    from exporter import migrate, open_database

    database = open_database(str(path))
    migrate(database)
    database.close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _plain_insert(table: str, columns: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def raw_ingest(path: Path, rows: list[CallRows], *, fts: bool) -> float:
    """Seconds to write the mapped rows with plain INSERTs and ``executemany``, 500 calls per transaction."""
    connection = _migrated(path)
    call_columns = list(rows[0].call)
    body_columns = list(rows[0].body)
    call_sql = _plain_insert("llm_calls", call_columns)
    body_sql = _plain_insert("llm_call_bodies", body_columns)
    event_sql = _plain_insert("llm_call_events", ["call_id", "kind", "at", "data"])
    started = time.perf_counter()
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(call_sql, [tuple(r.call[c] for c in call_columns) for r in chunk])
        connection.executemany(body_sql, [tuple(r.body[c] for c in body_columns) for r in chunk])
        connection.executemany(
            event_sql, [(e["call_id"], e["kind"], e["at"], e["data"]) for r in chunk for e in r.events]
        )
        if fts:
            connection.executemany(
                FTS_INSERT_SQL, [(r.prompt_text, r.response_text, r.call["call_id"]) for r in chunk]
            )
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def store_ingest(path: Path, spans: list[ReadableSpan], *, live: bool) -> float:
    """Seconds from the first hand-over to the end of ``flush`` through a SpanStore."""
    store = SpanStore(str(path), queue_size=len(spans) * 3 + 10)
    assert store.flush(30)
    started = time.perf_counter()
    for span in spans:
        if live:
            store.on_call_event("queued", span, span.start_time or 0, {})
            store.on_call_event("dispatched", span, ns(5), dispatch_attributes(0.005))
        store.span_processor.on_end(span)
    assert store.flush(600)
    elapsed = time.perf_counter() - started
    assert store.stats()["dropped"] == 0
    store.shutdown()
    return elapsed


def exporter_ingest(path: Path, spans: list[ReadableSpan]) -> float:
    span_exporter = SQLiteSpanExporter(str(path))
    span_exporter.export(spans[:1])  # open, migrate and run retention outside the measurement
    started = time.perf_counter()
    for start in range(1, len(spans), 512):
        span_exporter.export(spans[start : start + 512])
    elapsed = time.perf_counter() - started
    span_exporter.shutdown()
    return elapsed


def app_thread_cost(path: Path, spans: list[ReadableSpan], *, locked: bool) -> list[float]:
    """Per call, µs the app thread spends in the store: a queued notice plus ``on_end``."""
    store = SpanStore(str(path))
    assert store.flush(30)
    holder = None
    if locked:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    costs = []
    clock = time.perf_counter_ns
    for span in spans:
        started = clock()
        store.on_call_event("queued", span, span.start_time or 0, {})
        store.span_processor.on_end(span)
        costs.append((clock() - started) / 1000)
    if holder is not None:
        holder.execute("COMMIT")
        holder.close()
    assert store.flush(120)
    assert store.stats()["dropped"] == 0
    store.shutdown()
    return costs


def visibility(path: Path, spans: list[ReadableSpan]) -> list[float]:
    """Per call, ms from the queued notice to its row being visible to another connection."""
    store = SpanStore(str(path))
    assert store.flush(30)
    reader = sqlite3.connect(path)
    latencies = []
    for span in spans:
        call_id = span.attributes["llm_otel.call.id"]  # type: ignore[index]
        started = time.perf_counter()
        store.on_call_event("queued", span, span.start_time or 0, {})
        while not reader.execute("SELECT 1 FROM llm_calls WHERE call_id = ?", (call_id,)).fetchone():
            time.sleep(0.0002)
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    reader.close()
    store.shutdown()
    return latencies


def size_on_disk(path: Path, spans_for: Callable[[int], list[ReadableSpan]], calls: int) -> int:
    store = SpanStore(str(path), queue_size=20_000)
    done = 0
    while done < calls:
        chunk = spans_for(min(5000, calls - done))
        for span in chunk:
            store.span_processor.on_end(span)
        assert store.flush(600)
        done += len(chunk)
    store.shutdown()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(
        Path(f"{path}{suffix}").stat().st_size for suffix in ("", "-wal") if Path(f"{path}{suffix}").exists()
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000, help="calls per ingest case")
    parser.add_argument(
        "--size", type=int, default=0, help="also measure the file size after this many calls"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="where the files go (default: a temporary dir)"
    )
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    directory.mkdir(parents=True, exist_ok=True)

    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, files in {directory}")
    spans = make_spans(args.calls)
    started = time.perf_counter()
    rows = [r for r in map(span_to_rows, spans) if r is not None]
    mapping_us = (time.perf_counter() - started) / len(spans) * 1e6
    print(f"mapping: {mapping_us:.0f} µs per call (done on the writer thread)")

    print(f"\n1. ingest of {args.calls} ended calls (~3 KB text each)")
    results = {
        "raw executemany": raw_ingest(_fresh(directory, "raw"), rows, fts=True),
        "raw executemany, no FTS": raw_ingest(_fresh(directory, "raw-nofts"), rows, fts=False),
        "SpanStore (on_end + flush)": store_ingest(_fresh(directory, "store"), spans, live=False),
        "SpanStore live (queued + dispatched + end)": store_ingest(
            _fresh(directory, "live"), spans, live=True
        ),
        "SQLiteSpanExporter (512-span exports)": exporter_ingest(_fresh(directory, "exporter"), spans),
    }
    reference = args.calls / results["raw executemany"]
    for name, seconds in results.items():
        rate = args.calls / seconds
        print(f"   {name:45s} {rate:9,.0f} calls/s   {rate / reference:5.2f}x raw")

    sample = spans[: min(4000, len(spans))]
    print(f"\n2. app thread per call (queued notice + on_end), {len(sample)} calls")
    for locked in (False, True):
        costs = app_thread_cost(_fresh(directory, f"cost-{locked}"), sample, locked=locked)
        state = "database locked" if locked else "database idle  "
        print(
            f"   {state}: p50 {statistics.median(costs):6.1f} µs   p99 {_pct(costs, 0.99):6.1f} µs   "
            f"max {max(costs):8.1f} µs"
        )

    latencies = visibility(_fresh(directory, "latency"), spans[:200])
    print(
        f"\n3. queued notice -> row visible to another connection, {len(latencies)} calls: "
        f"p50 {statistics.median(latencies):.1f} ms   p95 {_pct(latencies, 0.95):.1f} ms   "
        f"max {max(latencies):.1f} ms"
    )

    if args.size:
        seeds = iter(range(100, 10_000))
        size = size_on_disk(_fresh(directory, "size"), lambda n: make_spans(n, next(seeds)), args.size)
        print(
            f"\n4. size on disk after {args.size} calls: {size / 1e6:.1f} MB "
            f"= {size / args.size * 100_000 / 1e6:.0f} MB per 100k calls"
        )


if __name__ == "__main__":
    main()
