"""Benchmark: the admin over HTTP at 1M calls: list page + exact total, call detail, export (issue
10, target 12: ≤ 50 ms p95, detail ≤ 10 ms, export ≥ 5,000 calls/s in constant memory).

Usage::

    .venv/bin/python bench/bench_admin.py                      # 1M calls (the store of bench_list_1m)
    .venv/bin/python bench/bench_admin.py --rows 100000 --repeat 10
    .venv/bin/python bench/bench_admin.py --tree before=/tmp/old-checkout  # + that code's admin

The store is ``bench_list_1m``'s (``/tmp/llm_otel_bench_<rows>.db``, built once by either
benchmark and shared). The admin runs as in production, in a process of its own: ``create_app`` on
Werkzeug's threaded server; this process is the client (a new HTTP connection per request, the
token in ``Authorization``), and reads the same store in-process through ``exporter.queries``, the
**baseline**: each request is paired with the same query run in-process just before it, so
"HTTP / in-process" is what the admin adds (routing, parameters, serialization, the socket).
``--tree NAME=PATH`` runs another checkout's admin beside this one over the same store, each
request of it right after this one's (the same baseline): before/after a change in one run.
The store's file is read once before the list and the detail (``common.warm_page_cache``): this
VM's page cache gives a file's pages back within minutes, and a server in use holds them.

- list: ``GET /llm/calls`` (page of 50 and the exact total) for a few filters; p50 / p95 / max;
- detail: ``GET /llm/calls/<id>`` of random calls (columns, decoded bodies, timeline);
- export: ``GET /llm/calls/export`` (JSONL, streamed) of the newest 1/16 and 1/4 of the calls,
  calls per second, and the admin process's resident memory (``/proc``, sampled every 10 ms)
  before and at its peak: memory is constant when the peak does not grow with the export's size.
  The 1M store's bodies hold ~150 characters; the same export from a store of ``--bodies`` calls
  with ~4.5 KB of text each (built in a temporary file) says what real bodies cost.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import _common as common  # noqa: E402
import bench_list_1m as listing  # noqa: E402

from exporter import migrate, open_database, queries  # noqa: E402
from exporter.models import db  # noqa: E402

TOKEN = common.ADMIN_TOKEN
PREFIX = "/api/admin/jobs"
LIST_CASES: dict[str, dict[str, Any]] = {
    "newest, no filter": {},
    "page 5": {"page": 5},
    "status=failed": {"status": "failed"},
    "source": {"source": "source-3"},
    "status=failed & source": {"status": "failed", "source": "source-3"},
    "sort=duration": {"sort": "duration"},
    "min_duration_ms=15000": {"min_duration_ms": 15000},
    "q=refund policy (2%)": {"q": "refund policy"},
}
"""Query string of each case (the admin's names); the in-process baseline gets them parsed."""


def get(port: int, path: str, sink: Callable[[bytes], None] | None = None) -> tuple[int, bytes]:
    """GET ``path`` on a new connection; the body is read whole, or handed to ``sink`` in pieces."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        if sink is None:
            return response.status, response.read()
        while piece := response.read(1 << 16):
            sink(piece)
        return response.status, b""
    finally:
        connection.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _in_process(filters: dict[str, Any]) -> dict[str, Any]:
    """The admin's query for these query-string filters, as its parameters parse them."""
    args = {key: value for key, value in filters.items() if key != "status"}
    if "status" in filters:
        args["status"] = filters["status"].split(",")
    return queries.list_calls(**args, page_size=50)


@contextlib.contextmanager
def admins(url: str, trees: dict[str, Path]) -> Iterator[dict[str, tuple[int, int]]]:
    """This checkout's admin (named "") and each tree's, over ``url``: name → (pid, port)."""
    with contextlib.ExitStack() as stack:
        trees = {"": ROOT, **trees}
        yield {name: stack.enter_context(common.admin_process(url, tree)) for name, tree in trees.items()}


def _paired(
    http_calls: dict[str, Callable[[], Any]], local_call: Callable[[], Any], repeat: int
) -> dict[str, list[float]]:
    """ms of ``repeat`` HTTP requests to each admin, each round after the same query in-process (the
    baseline, ``"local"``), the admins in turns."""
    timings: dict[str, list[float]] = {"local": [], **{name: [] for name in http_calls}}
    names = list(http_calls)
    for round_ in range(repeat):
        started = time.perf_counter()
        local_call()
        timings["local"].append((time.perf_counter() - started) * 1000)
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            http_calls[name]()
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings


def _label(name: str, tree: str) -> str:
    return name if not tree else f"{name} (`{tree}`)"


def _row(name: str, timings: dict[str, list[float]], extra: str, tree: str = "") -> list[object]:
    over_http, local = timings[tree], timings["local"]
    http_median, local_median = statistics.median(over_http), statistics.median(local)
    return [
        _label(name, tree),
        f"{http_median:.1f}",
        f"{common.percentile(over_http, 95):.1f}",
        f"{min(over_http):.1f}–{max(over_http):.1f}",
        f"{local_median:.1f}",
        common.ratio(http_median, local_median),
        extra,
    ]


def bench_list(ports: dict[str, int], repeat: int, summary: dict[str, Any]) -> str:
    rows, p95s = [], {tree: {} for tree in ports}
    for name, filters in LIST_CASES.items():
        query = urllib.parse.urlencode({**filters, "page_size": 50})
        path = f"{PREFIX}/llm/calls?{query}"
        for port in ports.values():
            status, body = get(port, path)  # warm: the first run reads the pages from disk
            if status != 200:
                raise SystemExit(f"{path} answered {status}: {body[:300]!r}")
        total = json.loads(body)["total"]
        requests = {tree: (lambda port=port, path=path: get(port, path)) for tree, port in ports.items()}
        timings = _paired(requests, lambda f=filters: _in_process(f), repeat)
        for tree in ports:
            p95s[tree][name] = common.percentile(timings[tree], 95)
            rows.append(_row(name, timings, f"{total:,}", tree))
            print(f"  list {_label(name, tree)}: p95 {p95s[tree][name]:.1f} ms", flush=True)
    summary["list p95 ms"] = p95s.pop("")
    for tree, figures in p95s.items():
        summary.setdefault("trees", {}).setdefault(tree, {})["list p95 ms"] = figures
    return common.table(
        ["list page + total", "HTTP p50 ms", "p95", "min–max", "in-process p50", "HTTP / local", "total"],
        rows,
    )


def bench_detail(ports: dict[str, int], repeat: int, summary: dict[str, Any]) -> str:
    rng = random.Random(5)
    database = db.obj
    highest = database.execute_sql("SELECT MAX(rowid) FROM llm_calls").fetchone()[0]
    pick = "SELECT call_id FROM llm_calls WHERE rowid >= ? ORDER BY rowid LIMIT 1"
    ids = [database.execute_sql(pick, (rng.randint(1, highest),)).fetchone()[0] for _ in range(repeat + 1)]
    for port in ports.values():
        get(port, f"{PREFIX}/llm/calls/{ids[0]}")
    chosen = iter(ids)
    current: list[str] = []

    def local() -> None:
        current[:] = [next(chosen)]
        queries.get_call(current[0])

    def over_http(port: int) -> None:
        status, body = get(port, f"{PREFIX}/llm/calls/{current[0]}")
        if status != 200:
            raise SystemExit(f"call detail answered {status}: {body[:300]!r}")

    requests = {tree: (lambda port=port: over_http(port)) for tree, port in ports.items()}
    timings = _paired(requests, local, repeat)
    summary["detail p95 ms"] = common.percentile(timings[""], 95)
    for tree in ports:
        if tree:
            summary["trees"][tree]["detail p95 ms"] = common.percentile(timings[tree], 95)
    return common.table(
        ["call detail", "HTTP p50 ms", "p95", "min–max", "in-process p50", "HTTP / local", "calls"],
        [_row("`GET /llm/calls/<id>`, random calls", timings, str(repeat), tree) for tree in ports],
    )


def export_once(pid: int, port: int, since_ms: int | None) -> dict[str, float]:
    """One export over HTTP: calls, seconds, the admin's RSS before and at its peak (MB)."""
    query = f"?from={since_ms}" if since_ms is not None else ""
    before = rss_mb(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            with contextlib.suppress(OSError, ValueError):
                peak[0] = max(peak[0], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = [0]

    def count(piece: bytes) -> None:
        lines[0] += piece.count(b"\n")

    started = time.perf_counter()
    status, _ = get(port, f"{PREFIX}/llm/calls/export{query}", count)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if status != 200:
        raise SystemExit(f"export answered {status}")
    return {"calls": lines[0], "seconds": seconds, "rss_before": before, "rss_peak": peak[0]}


def bench_export(
    processes: dict[str, tuple[int, int]],
    label: str,
    spans: Sequence[tuple[str, int | None]],
    summary: dict[str, Any],
) -> list[list[object]]:
    rows = []
    for (what, since_ms), (tree, (pid, port)) in itertools.product(spans, processes.items()):
        export_once(pid, port, since_ms)  # warm (the pages in the cache), and the allocator's arenas
        result = export_once(pid, port, since_ms)
        rate = result["calls"] / result["seconds"]
        growth = result["rss_peak"] - result["rss_before"]
        kept = summary if not tree else summary["trees"][tree]
        kept.setdefault("export", []).append({"store": label, "what": what, **result, "rate": rate})
        rows.append(
            [
                _label(f"{label}, {what}", tree),
                f"{result['calls']:,}",
                f"{result['seconds']:.1f}",
                f"{rate:,.0f}",
                f"{result['rss_before']:.0f}",
                f"{result['rss_peak']:.0f} (+{growth:.0f})",
            ]
        )
        named = _label(f"{label} {what}", tree)
        print(f"  export {named}: {rate:,.0f} calls/s, RSS +{growth:.0f} MB", flush=True)
    return rows


def build_bodies_store(path: str, calls: int) -> None:
    """``calls`` calls with ~3 KB of prompt and ~1.5 KB of response each (realistic export lines)."""
    database = open_database(path)
    migrate(database)
    listing.write_bodies_store(database, calls)
    database.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="calls in the store (bench_list_1m's)")
    parser.add_argument("--db", help="the store (default /tmp/llm_otel_bench_<rows>.db, built when missing)")
    parser.add_argument("--repeat", type=int, default=40, help="requests per list case and call details")
    parser.add_argument("--bodies", type=int, default=20_000, help="calls of the ~4.5 KB-body export store")
    parser.add_argument("--markdown", help="write the results as a markdown fragment to this file")
    parser.add_argument("--summary", help="write the key figures as JSON to this file")
    parser.add_argument(
        "--tree", action="append", default=[], metavar="NAME=PATH", help="also run that checkout's admin"
    )
    args = parser.parse_args(argv)
    trees = {name: Path(tree) for name, tree in (item.split("=", 1) for item in args.tree)}
    path = args.db or f"/tmp/llm_otel_bench_{args.rows}.db"
    if not Path(path).exists():
        started = time.perf_counter()
        listing.build(path, args.rows, fts=True)
        print(f"built {args.rows:,} calls in {time.perf_counter() - started:.0f} s", flush=True)
    database = open_database(path)
    migrate(database)
    db.initialize(database)
    count = database.execute_sql("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
    span_sql = "SELECT MIN(enqueued_at), MAX(enqueued_at) FROM llm_calls"
    oldest, newest = database.execute_sql(span_sql).fetchone()
    print(common.describe_machine())
    before_load, started = common.load(), time.perf_counter()
    summary: dict[str, Any] = {"rows": count, **({"trees": {name: {} for name in trees}} if trees else {})}
    with admins(f"sqlite:///{path}", trees) as processes:
        ports = {tree: port for tree, (_, port) in processes.items()}
        print(common.warm_page_cache(path), flush=True)  # as a server in use holds the store
        sections = [bench_list(ports, args.repeat, summary)]
        print(common.warm_page_cache(path), flush=True)
        sections.append(bench_detail(ports, args.repeat, summary))
        span = newest - oldest
        exports = bench_export(
            processes,
            f"{count:,}-call store",
            [("newest 1/16", newest - span // 16), ("newest 1/4", newest - span // 4)],
            summary,
        )
    with tempfile.TemporaryDirectory(prefix="bench-admin-") as directory:
        bodies_path = os.path.join(directory, "bodies.db")
        build_bodies_store(bodies_path, args.bodies)
        with admins(f"sqlite:///{bodies_path}", trees) as processes:
            half = 1_700_000_000_000 + args.bodies // 2
            exports += bench_export(
                processes, "~4.5 KB bodies", [("half", half), (f"all {args.bodies:,}", None)], summary
            )
    sections.append(
        common.table(["export (JSONL over HTTP)", "calls", "s", "calls/s", "admin RSS MB", "peak"], exports)
    )
    database.close()
    text = (
        f"**admin over HTTP**: a store of {count:,} calls, {args.repeat} requests per case, each after the "
        f"same query in-process (the baseline); {time.perf_counter() - started:.0f} s; load average "
        f"{before_load} before, {common.load()} after.\n\n" + "\n\n".join(sections)
    )
    print("\n" + text, flush=True)
    common.write_markdown(args.markdown, text)
    common.write_summary(args.summary, summary)


if __name__ == "__main__":
    main()
