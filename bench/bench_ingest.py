"""Benchmark: store ingest against raw ``executemany`` of the same rows (issue 10, target 8), size on
disk per 100k calls (target 9), the app thread's hand-off and how soon a row is visible (DESIGN §9).

Usage::

    .venv/bin/python bench/bench_ingest.py                 # 5 rounds x 10,000 calls, size of 100k calls
    .venv/bin/python bench/bench_ingest.py --quick         # 3 rounds x 2,000 calls, size of 10k calls
    .venv/bin/python bench/bench_ingest.py --only ingest   # ingest | size | handoff
    .venv/bin/python bench/bench_ingest.py --tree before=/tmp/old-checkout   # + that code's store

Every call carries ~3.2 KB of text (a 200-character system instruction, an 1,800-character user
message, a 1,000-character answer: pseudo-English words from ~1,100 distinct ones, a fifth of runs
of Chinese characters, so the trigram index sees the variety of real text), a dispatch and a first
token event, tokens and labels, and an id made as the checkout's instrumentation makes it. Each
case writes into a fresh SQLite file, in a process of its own.

Ingest cases, calls per second from the first hand-over to the last row written:

- ``raw``, the reference: the rows already mapped (call, body, events), written with plain
  ``INSERT`` ``executemany`` in 500-call transactions, then indexed for full-text search as the
  writers index (the same index, the same text);
- ``ended``: ``SpanStore``, ``span_processor.on_end`` of every span, then ``flush`` (mapping, the
  writer's merges and its batching included);
- ``live``: ``SpanStore``, a ``queued`` and a ``dispatched`` notice then the end of each call, as
  fast as they come: a call's records mostly land in one batch;
- ``live-apart``: the same with the notices of 200 calls written before their ends (calls that
  last longer than a batch, as real LLM calls do): every call is written three times;
- ``raw-apart``: ``live-apart``'s rows written plainly, as ``raw`` writes the ended ones: each
  call's queued row (dispatch merged in), then its end as an ``UPDATE``, mapped beforehand by the
  store's own mapping (the reference for what writing a call twice costs SQLite itself);
- ``exporter``: ``SQLiteSpanExporter.export`` of 512-span batches.

Each round runs every case once, in an order rotated per round; a case's ratio is its rate over
the raw rate of the same round (median over rounds, 95% CI, min–max). ``--tree NAME=PATH`` adds
``NAME:ended``, ``NAME:live`` and ``NAME:live-apart`` run from another checkout. Process CPU per
call is printed too.

``size``: the file after N calls through the store (ended spans) and a checkpoint, per 100k calls,
with its largest tables and indexes (``dbstat``). ``handoff``: µs the app's thread spends per call
(a queued notice and ``on_end``), the database idle and while another connection holds it.
``visibility``: ms from a queued notice to its row being visible to another connection.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _common as common  # noqa: E402

CASES = ("raw", "raw-apart", "ended", "live", "live-apart", "exporter")
TREE_CASES = ("ended", "live", "live-apart")
RAW_CHUNK = 500
APART_CHUNK = 200
FULL = {"rounds": 5, "calls": 10_000, "size": 100_000}
QUICK = {"rounds": 3, "calls": 2_000, "size": 10_000}


# -- the calls --------------------------------------------------------------------------------------


def write_texts(path: Path, count: int, seed: int) -> None:
    """The text of ``count`` calls (system, user, answer), made once and read by every process."""
    rng = random.Random(seed)
    texts = [
        (common.realistic_text(rng, 200), common.realistic_text(rng, 1800), common.realistic_text(rng, 1000))
        for _ in range(count)
    ]
    path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")


def _call_id_maker() -> Any:
    """The checkout's way of making a call id (``new_call_id``; before it, 128 random bits): the
    store's b-trees keyed by the id fill as the app's calls fill them."""
    from llm_otel.instrumentation import call

    return getattr(call, "new_call_id", None) or (lambda: f"{random.getrandbits(128):032x}")


def make_spans(texts: Sequence[Sequence[str]], starts: list[dict[str, Any]] | None = None) -> list[Any]:
    """Ended streaming calls, one per text, as the instrumentation makes them (their ids too).
    ``starts`` gets each call's start attributes, which the instrumentation's ``queued`` notice
    carries (it built them for the span: the notice copies nothing)."""
    from opentelemetry.sdk.trace import TracerProvider

    from tests.exporter.call_spans import dispatch, finish, first_token, start_call

    tracer = TracerProvider().get_tracer("bench")
    new_id = _call_id_maker()
    spans = []
    for system, user, answer in texts:
        messages = [{"role": "user", "parts": [{"type": "text", "content": user}]}]
        output = [
            {"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}
        ]
        span = start_call(
            tracer,
            new_id(),
            **{
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": system}], ensure_ascii=False
                ),
                "gen_ai.input.messages": json.dumps(messages, ensure_ascii=False),
                "llm_otel.source": f"source-{len(spans) % 12}",
                "llm_otel.requested_by": f"user-{len(spans) % 300}",
            },
        )
        if starts is not None:
            starts.append(dict(span.attributes))
        dispatch(span, at_ms=5, wait=0.005)
        first_token(span, at_ms=300, ttft=0.295)
        finish(span, at_ms=900, **{"gen_ai.output.messages": json.dumps(output, ensure_ascii=False)})
        spans.append(span)
    return spans


def _fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


# -- one case in one process ------------------------------------------------------------------------


def _raw(path: Path, spans: list[Any]) -> tuple[float, float]:
    """Plain INSERTs of the mapped rows and the full-text index, as the writers index."""
    from exporter import migrate, migrations, open_database
    from exporter.mapping import span_to_rows

    database = open_database(str(path))
    migrate(database)
    database.close()
    rows = [r for r in map(span_to_rows, spans) if r is not None]
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    call_columns, body_columns = list(rows[0].call), list(rows[0].body)

    def insert(table: str, columns: list[str]) -> str:
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"

    calls_sql, bodies_sql = insert("llm_calls", call_columns), insert("llm_call_bodies", body_columns)
    index_sql = getattr(migrations, "FTS_INDEX_SQL", None)  # a checkout from before migration 4: its own copy
    if index_sql:
        bodies_sql = _bodies_sql(body_columns)
    events_sql = insert("llm_call_events", ["call_id", "kind", "at", "data"])
    index_calls = _index_calls(connection)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, len(rows), RAW_CHUNK):
        chunk = rows[start : start + RAW_CHUNK]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(calls_sql, [tuple(r.call[c] for c in call_columns) for r in chunk])
        connection.executemany(bodies_sql, [tuple(r.body[c] for c in body_columns) for r in chunk])
        connection.executemany(
            events_sql, [(e["call_id"], e["kind"], e["at"], e["data"]) for r in chunk for e in r.events]
        )
        if index_calls:  # both full-text indexes (the short-query index since migration 7)
            index_calls(connection.cursor(), json.dumps([r.call["call_id"] for r in chunk]))
        elif index_sql:
            connection.execute(index_sql, (json.dumps([r.call["call_id"] for r in chunk]),))
        else:
            texts = [(r.prompt_text, r.response_text, r.call["call_id"]) for r in chunk]
            connection.executemany(migrations.FTS_INSERT_SQL, texts)
        connection.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    connection.close()
    return wall, cpu


def _bodies_sql(columns: Sequence[str]) -> str:
    """The body insert with the rowid of its call (exporter.migrations, the FTS contract); ``call_id``
    first among ``columns``."""
    marks = ", ".join(f"?{number}" for number in range(1, len(columns) + 1))
    return (
        f"INSERT INTO llm_call_bodies (rowid, {', '.join(columns)}) "
        f"VALUES ((SELECT rowid FROM llm_calls WHERE call_id = ?1), {marks})"
    )


def _raw_apart(path: Path, spans: list[Any], starts: list[dict[str, Any]]) -> tuple[float, float]:
    """``live-apart``'s rows written plainly, as ``raw`` writes the ended ones: per ``APART_CHUNK``
    calls, their queued rows (the dispatch merged in, as the store merges it), bodies and live
    events in one transaction; then their ends: an ``UPDATE`` of the end columns, the body's
    ``UPDATE``, the end's new events and the full-text index in another. Mapped beforehand by the
    store's own mapping, outside the measurement."""
    from exporter import migrate, open_database
    from exporter._sql import BODY_COLUMNS, END_COLUMNS
    from exporter.mapping import RowBatch
    from exporter.records import CallNotice, EndedSpan, QueuedCall
    from tests.exporter.call_spans import dispatch_attributes, ns

    database = open_database(str(path))
    migrate(database)
    database.close()
    chunks = []
    for first in range(0, len(spans), APART_CHUNK):
        live, ended = RowBatch(), RowBatch()
        for span, started in zip(
            spans[first : first + APART_CHUNK], starts[first : first + APART_CHUNK], strict=True
        ):
            call_id = started["llm_otel.call.id"]
            live.add(QueuedCall(call_id, span, started))
            live.add(CallNotice("dispatched", call_id, span.start_time, ns(5), dispatch_attributes(0.005)))
            ended.add(EndedSpan(span, call_id))
        stored = {(e["call_id"], e["kind"]) for e in live.events}
        chunks.append((live, ended, [e for e in ended.events if (e["call_id"], e["kind"]) not in stored]))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
    call_columns = list(chunks[0][0].queued[0].call)
    calls_sql = (
        f"INSERT INTO llm_calls ({', '.join(call_columns)}) VALUES ({', '.join('?' * len(call_columns))})"
    )
    bodies_sql = _bodies_sql(BODY_COLUMNS)
    body_update_sql = (
        f"UPDATE llm_call_bodies SET {', '.join(f'{c} = ?' for c in BODY_COLUMNS[1:])} WHERE call_id = ?"
    )
    end_sql = f"UPDATE llm_calls SET {', '.join(f'{c} = ?' for c in END_COLUMNS)} WHERE call_id = ?"
    events_sql = "INSERT INTO llm_call_events (call_id, kind, at, data) VALUES (?, ?, ?, ?)"
    index_calls = _index_calls(connection)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for live, ended, end_events in chunks:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(calls_sql, [tuple(r.call[c] for c in call_columns) for r in live.queued])
        connection.executemany(bodies_sql, [tuple(r.body[c] for c in BODY_COLUMNS) for r in live.queued])
        connection.executemany(
            events_sql, [(e["call_id"], e["kind"], e["at"], e["data"]) for e in live.events]
        )
        connection.execute("COMMIT")
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            end_sql, [(*(r.call[c] for c in END_COLUMNS), r.call["call_id"]) for r in ended.finals]
        )
        connection.executemany(
            body_update_sql,
            [(*(r.body[c] for c in BODY_COLUMNS[1:]), r.body["call_id"]) for r in ended.finals],
        )
        connection.executemany(
            events_sql, [(e["call_id"], e["kind"], e["at"], e["data"]) for e in end_events]
        )
        index_calls(connection.cursor(), json.dumps([r.call["call_id"] for r in ended.finals]))
        connection.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    connection.close()
    return wall, cpu


def _index_calls(connection: sqlite3.Connection) -> Any:
    """The writers' full-text indexing of a batch (``exporter._sql.index``), ready on
    ``connection``; None in a checkout from before the short-query index."""
    try:
        from exporter._sql import index
        from exporter.cjk_grams import register
    except ImportError:
        return None
    register(connection)
    return index


def _store(path: Path, spans: list[Any], starts: list[dict[str, Any]], case: str) -> tuple[float, float]:
    from exporter.store import SpanStore
    from tests.exporter.call_spans import dispatch_attributes, ns

    store = SpanStore(str(path), queue_size=len(spans) * 3 + 10)
    assert store.flush(60)
    time.sleep(0.2)  # the store's first maintenance runs on its own thread: let it end
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if case == "ended":
        for span in spans:
            store.span_processor.on_end(span)
    elif case == "live":
        for span, started in zip(spans, starts, strict=True):
            store.on_call_event("queued", span, span.start_time, started)
            store.on_call_event("dispatched", span, ns(5), dispatch_attributes(0.005))
            store.span_processor.on_end(span)
    else:  # live-apart
        for start in range(0, len(spans), APART_CHUNK):
            chunk = spans[start : start + APART_CHUNK]
            for span, started in zip(chunk, starts[start : start + APART_CHUNK], strict=True):
                store.on_call_event("queued", span, span.start_time, started)
                store.on_call_event("dispatched", span, ns(5), dispatch_attributes(0.005))
            assert store.flush(600)
            for span in chunk:
                store.span_processor.on_end(span)
    assert store.flush(600)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    stats = store.stats()
    store.shutdown()
    assert stats["dropped"] == 0, stats
    return wall, cpu


def _exporter(path: Path, spans: list[Any]) -> tuple[float, float]:
    from exporter.span_exporter import SQLiteSpanExporter

    span_exporter = SQLiteSpanExporter(str(path))
    span_exporter.export(spans[:1])  # open, migrate and run retention outside the measurement
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(1, len(spans), 512):
        span_exporter.export(spans[start : start + 512])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    span_exporter.shutdown()
    return wall, cpu


def _size(path: Path, texts: list[Any], calls: int) -> dict[str, Any]:
    from exporter.store import SpanStore

    store = SpanStore(str(path), queue_size=20_000)
    done = 0
    while done < calls:
        count = min(5000, calls - done)
        chunk = [texts[(done + i) % len(texts)] for i in range(count)]
        for span in make_spans(chunk):
            store.span_processor.on_end(span)
        assert store.flush(600)
        done += count
    store.shutdown()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        parts = connection.execute(  # by table, its indexes and FTS5's shadow tables included
            "SELECT CASE WHEN m.tbl_name LIKE 'llm_calls_fts%' THEN 'llm_calls_fts' "
            "WHEN m.tbl_name LIKE 'llm_calls_cjk%' THEN 'llm_calls_cjk' ELSE m.tbl_name END, "
            "SUM(d.pgsize) FROM dbstat AS d JOIN sqlite_master AS m ON m.name = d.name "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 6"
        ).fetchall()
    size = sum(Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists())
    return {"bytes": size, "calls": calls, "parts": parts}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, spec.get("tree") or str(ROOT))
    sys.path.insert(1, str(ROOT))  # tests.exporter.call_spans
    texts = json.loads(Path(spec["texts"]).read_text(encoding="utf-8"))
    path = _fresh(Path(spec["db"]))
    case = spec["case"]
    if case == "size":
        return _size(path, texts, spec["calls"])
    starts: list[dict[str, Any]] = []
    spans = make_spans(texts[: spec["calls"]], starts)
    if case == "raw":
        wall, cpu = _raw(path, spans)
    elif case == "raw-apart":
        wall, cpu = _raw_apart(path, spans, starts)
    elif case == "exporter":
        wall, cpu = _exporter(path, spans)
    else:
        wall, cpu = _store(path, spans, starts, case)
    return {"wall": wall, "cpu": cpu, "calls": len(spans)}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{spec['case']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- ingest -----------------------------------------------------------------------------------------


def bench_ingest(
    work: Path, texts: Path, rounds: int, calls: int, trees: dict[str, str], summary: dict[str, Any]
) -> str:
    cases = [*CASES, *(f"{name}:{case}" for name in trees for case in TREE_CASES)]
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    before, started = common.load(), time.perf_counter()
    for round_ in range(rounds):
        shift = round_ % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            tree, _, name = case.rpartition(":")
            spec = {
                "case": name,
                "round": round_,
                "calls": calls,
                "texts": str(texts),
                "db": str(work / f"{case.replace(':', '-')}.db"),
                "tree": trees.get(tree),
            }
            results[case].append(run_child(spec))
        print(f"  ingest: round {round_ + 1}/{rounds} (load {common.load()})", flush=True)
    raw_rates = [r["calls"] / r["wall"] for r in results["raw"]]
    rows = []
    for case in cases:
        rates = [r["calls"] / r["wall"] for r in results[case]]
        ratios = common.Summary.of(rate / raw for rate, raw in zip(rates, raw_rates, strict=True))
        summary[f"ingest {case} / raw"] = ratios.median
        cpu = statistics.median(r["cpu"] / r["calls"] * 1e6 for r in results[case])
        rows.append(
            [
                f"`{case}`",
                f"{statistics.median(rates):,.0f}",
                f"{min(rates):,.0f}–{max(rates):,.0f}",
                "" if case == "raw" else f"{ratios.median:.2f}x [{ratios.ci_low:.2f}..{ratios.ci_high:.2f}]",
                "" if case == "raw" else ratios.spread(2),
                f"{cpu:,.0f}",
            ]
        )
    apart_rates = [r["calls"] / r["wall"] for r in results["raw-apart"]]
    apart = common.Summary.of(
        r["calls"] / r["wall"] / raw for r, raw in zip(results["live-apart"], apart_rates, strict=True)
    )
    summary["ingest live-apart / raw-apart"] = apart.median
    return (
        f"**ingest**: {calls:,} calls per case, {rounds} rounds, each case a fresh process and file; "
        f"{time.perf_counter() - started:.0f} s; load average {before} before, {common.load()} after.\n\n"
        + common.table(
            [
                "case",
                "calls/s (median)",
                "calls/s min–max",
                "/ raw [95% CI]",
                "/ raw min–max",
                "process CPU µs/call",
            ],
            rows,
        )
        + f"\n\n`live-apart` / `raw-apart` (the same two writes a call, plain): {apart.median:.2f}x "
        f"[{apart.ci_low:.2f}..{apart.ci_high:.2f}], min–max {apart.spread(2)}.\n"
    )


def bench_size(work: Path, texts: Path, calls: int, trees: dict[str, str], summary: dict[str, Any]) -> str:
    sections = []
    for name, tree in {"this": None, **trees}.items():
        spec = {
            "case": "size",
            "calls": calls,
            "texts": str(texts),
            "db": str(work / f"size-{name}.db"),
            "tree": tree,
        }
        result = run_child(spec)
        per_100k = result["bytes"] / calls * 100_000
        summary[f"size {name} GB per 100k"] = per_100k / 1e9
        parts = ", ".join(
            f"`{part}` {size / calls * 100_000 / 1e9:.2f} GB" for part, size in result["parts"][:5]
        )
        label = "this checkout" if tree is None else f"`{name}`"
        sections.append(
            f"- {label}: **{per_100k / 1e9:.2f} GB per 100k calls** "
            f"({result['bytes'] / 1e6:,.0f} MB after {calls:,} calls); largest: {parts}"
        )
        os.unlink(spec["db"])
    return (
        "**size** on disk (SQLite, 4 KB pages, after a checkpoint), by table with its indexes:\n\n"
        + "\n".join(sections)
    )


# -- hand-off and visibility (in this process) ------------------------------------------------------


def bench_handoff(work: Path, texts: list[Any]) -> str:
    sys.path.insert(0, str(ROOT))
    from exporter.store import SpanStore

    starts: list[dict[str, Any]] = []
    spans = make_spans(texts[:4000], starts)
    lines = []
    for locked in (False, True):
        path = _fresh(work / f"handoff-{locked}.db")
        store = SpanStore(str(path))
        assert store.flush(30)
        holder = None
        if locked:
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
        costs = []
        for span, attributes in zip(spans, starts, strict=True):
            started = time.perf_counter_ns()
            store.on_call_event("queued", span, span.start_time or 0, attributes)
            store.span_processor.on_end(span)
            costs.append((time.perf_counter_ns() - started) / 1000)
        if holder is not None:
            holder.execute("COMMIT")
            holder.close()
        assert store.flush(120) and store.stats()["dropped"] == 0
        store.shutdown()
        state = "locked by another connection" if locked else "idle"
        p50, p99 = statistics.median(costs), common.percentile(costs, 99)
        lines.append(f"- database {state}: p50 {p50:.1f} µs, p99 {p99:.1f} µs, max {max(costs):,.0f} µs")
    path = _fresh(work / "visibility.db")
    store = SpanStore(str(path))
    assert store.flush(30)
    reader = sqlite3.connect(path)
    latencies = []
    for span, attributes in zip(spans[:200], starts, strict=False):
        call_id = span.attributes["llm_otel.call.id"]
        started = time.perf_counter()
        store.on_call_event("queued", span, span.start_time or 0, attributes)
        while not reader.execute("SELECT 1 FROM llm_calls WHERE call_id = ?", (call_id,)).fetchone():
            time.sleep(0.0002)
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    reader.close()
    store.shutdown()
    return (
        f"**handoff**: the app's thread per call (a queued notice and `on_end`), {len(spans):,} calls "
        "(bar: ≤ 1 ms p99, even while locked):\n\n"
        + "\n".join(lines)
        + f"\n\n**visibility**: queued notice → row visible to another connection, {len(latencies)} calls: "
        f"p50 {statistics.median(latencies):.1f} ms, p95 {common.percentile(latencies, 95):.1f} ms, "
        f"max {max(latencies):.1f} ms (bar: ≤ 250 ms p95)."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--only", choices=("ingest", "size", "handoff"), action="append")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--calls", type=int, help="calls per ingest case")
    parser.add_argument("--size", type=int, help="calls written for the size measurement")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--markdown", help="write the results as a markdown fragment to this file")
    parser.add_argument("--summary", help="write the key figures as JSON to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    settings = QUICK if args.quick else FULL
    rounds, calls = args.rounds or settings["rounds"], args.calls or settings["calls"]
    size_calls = args.size or settings["size"]
    trees = dict(item.split("=", 1) for item in args.tree)
    print(common.describe_machine())
    sections = []
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as directory:
        work = Path(directory)
        texts_path = work / "texts.json"
        write_texts(texts_path, max(calls, 10_000), seed=7)
        for what in args.only or ("ingest", "size", "handoff"):
            if what == "ingest":
                sections.append(bench_ingest(work, texts_path, rounds, calls, trees, summary))
            elif what == "size":
                sections.append(bench_size(work, texts_path, size_calls, trees, summary))
            else:
                texts = json.loads(texts_path.read_text(encoding="utf-8"))
                sections.append(bench_handoff(work, texts))
            print("\n" + sections[-1] + "\n", flush=True)
    common.write_markdown(args.markdown, "\n\n".join(sections))
    common.write_summary(args.summary, summary)


if __name__ == "__main__":
    main()
