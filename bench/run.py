"""``make bench``: every benchmark, then their figures and issue 10's twelve targets written into
``docs/performance.md``.

Usage::

    make bench                                  # every benchmark in full (about an hour, 1M calls)
    make bench ARGS=--quick                     # a look in a few minutes (smaller stores, fewer rounds)
    .venv-bench/bin/python bench/run.py --only instrumentation --only ingest
    .venv-bench/bin/python bench/run.py --quick --no-write   # print, leave the docs alone
    .venv-bench/bin/python bench/run.py --only ingest --tree before=/tmp/old-checkout   # before/after

Each benchmark runs in a process of its own (and runs each of its variants in fresh processes,
interleaved: see ``bench/_common.py``). A benchmark that takes ``--markdown PATH --summary PATH``
writes a markdown fragment and a JSON summary of its key figures; one that does not prints its
tables, which are kept as printed (and read back for the targets). This script puts each fragment
between its markers in ``docs/performance.md`` (``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``,
added at the end when missing), with the machine, the versions, the date, the load and the
command, and the table of issue 10's twelve targets (``<!-- bench:targets -->``), each checked
against this run's figures. The text around the markers is written by hand and stays.

A ``bench/bench_*.py`` that is not listed in ``BENCHMARKS`` runs too, under its own name: with
``--quick`` and ``--markdown``/``--summary`` when its ``--help`` offers them. A summary may fill
target rows itself: ``{"targets": {"6": {"measured": "...", "verdict": "...", "why": "..."}}}``
replaces what this script would write in row 6 (so a benchmark that owns a target states it).

The official instrumentation is needed for the comparison (``make bench`` installs it in
``.venv-bench``); without it, its rows are left out.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOC = ROOT / "docs" / "performance.md"
RESULTS = BENCH / "results.json"
"""Every benchmark's last summary and printed output, so that ``--only`` keeps the others' figures."""
sys.path.insert(0, str(BENCH))

import _common as common  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    markdown: bool = True
    """Takes ``--markdown`` and ``--summary``; else its printed output is kept."""
    trees: bool = False
    """Takes ``--tree NAME=PATH``: runs another checkout's code beside this one (before/after)."""


BENCHMARKS = {
    "instrumentation": Benchmark("bench_instrumentation.py", (), ("--quick",), trees=True),
    "ingest": Benchmark("bench_ingest.py", (), ("--quick",), trees=True),
    "retention": Benchmark("bench_retention.py", (), ("--quick",), trees=True),
    "list": Benchmark(
        "bench_list_1m.py", ("--rows", "1000000"), ("--rows", "100000", "--repeat", "5"), markdown=False
    ),
    "admin": Benchmark(
        "bench_admin.py", ("--rows", "1000000"), ("--rows", "100000", "--repeat", "15", "--bodies", "5000")
    ),
    "live": Benchmark("bench_live_feed.py", (), ("--calls", "100", "--idle", "5"), markdown=False),
    "page": Benchmark("bench_page.py", (), ("--rounds", "3", "--no-100k"), markdown=False),
}
"""Name → how to run it. ``list`` runs before ``admin``: they share the store it builds."""


def discovered() -> dict[str, Benchmark]:
    """``bench/bench_*.py`` scripts not in ``BENCHMARKS``, with the options their ``--help`` offers."""
    known = {benchmark.script for benchmark in BENCHMARKS.values()}
    found = {}
    for path in sorted(BENCH.glob("bench_*.py")):
        if path.name in known:
            continue
        usage = subprocess.run(
            [sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=ROOT
        ).stdout
        quick = ("--quick",) if "--quick" in usage else ()
        name = path.stem.removeprefix("bench_")
        found[name] = Benchmark(path.name, (), quick, markdown="--markdown" in usage and "--summary" in usage)
    return found


@dataclass
class Result:
    text: str
    """The markdown between the benchmark's markers."""
    summary: dict[str, Any]
    printed: str
    seconds: float
    when: str = ""
    """When it ran (``YYYY-MM-DD HH:MM UTC``, and ``--quick``)."""


def run(name: str, benchmark: Benchmark, quick: bool, trees: Sequence[str], work: Path) -> Result:
    markdown, summary = work / f"{name}.md", work / f"{name}.json"
    arguments = list(benchmark.quick if quick else benchmark.full)
    if benchmark.trees:
        arguments += [option for tree in trees for option in ("--tree", tree)]
    command = [sys.executable, str(BENCH / benchmark.script), *arguments]
    if benchmark.markdown:
        command += ["--markdown", str(markdown), "--summary", str(summary)]
    print(f"== {name}: {' '.join(command[1:])} (load {common.load()})", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    print(done.stdout[-4000:], flush=True)
    if done.returncode != 0:
        text = f"`{benchmark.script}` failed in this run (exit {done.returncode}); see its output."
        return Result(text, {}, done.stdout, seconds)
    if benchmark.markdown and markdown.exists():
        body = markdown.read_text(encoding="utf-8").strip()
    else:
        body = "```text\n" + done.stdout.strip() + "\n```"
    shown = " ".join(["bench/" + benchmark.script, *arguments])
    text = f"`.venv-bench/bin/python {shown}` ({seconds / 60:.0f} min):\n\n{body}"
    data = json.loads(summary.read_text()) if summary.exists() else {}
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + (", --quick" if quick else "")
    return Result(text, data, done.stdout, seconds, when)


def load_results() -> dict[str, Result]:
    """The last results of every benchmark (``RESULTS``)."""
    if not RESULTS.exists():
        return {}
    return {name: Result(**fields) for name, fields in json.loads(RESULTS.read_text()).items()}


def save_results(results: dict[str, Result]) -> None:
    stored = {name: {**vars(result), "text": ""} for name, result in results.items()}
    RESULTS.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# -- the twelve targets -----------------------------------------------------------------------------

TARGETS: dict[int, tuple[str, str]] = {
    1: (
        "CPU added per non-streaming chat call, all threads, store attached (`httpx2.MockTransport`)",
        "≤ openai-v2 without content (bar: ≤ with content)",
    ),
    2: ("the same over real HTTP, ~3 KB of text per call", "≤ 1.0x openai-v2 with content"),
    3: ("CPU per streamed chunk, store attached", "≤ openai-v2 per chunk"),
    4: ("list page + exact total at 1M, any `q` (alone, with a status or label)", "≤ 50 ms p95 each"),
    5: ("slowest-first sorts and latency filters at 1M, alone and with each filter", "≤ 50 ms p95"),
    6: ("status aggregates at 1M: 1h / 24h / 7d", "≤ 50 ms p95 each"),
    7: ('the "this filter" summary (facets, p50/p95, error rate) at 1M', "≤ 100 ms p95"),
    8: ("store ingest, live and ended-only, vs raw `executemany` of the same rows", "≥ 0.8x both (bar 0.5x)"),
    9: ("size on disk per 100k calls of ~3.2 KB text", "≤ 1.0 GB"),
    10: ("retention of a day at 1M while the app writes: longest write wait", "≤ 50 ms (bar 100); completes"),
    11: (
        "span end → websocket message, 50 clients; admin CPU, 50 idle clients",
        "≤ 100 ms p95 (bar 250); ≤ 2% of a core",
    ),
    12: (
        "admin over HTTP at 1M: list + total; call detail; export",
        "≤ 50 ms p95; ≤ 10 ms; ≥ 5,000 calls/s in constant memory",
    ),
}
WHY: dict[int, str] = {
    1: "the store's SQLite work runs in the app's process: ~180 µs of writer CPU a mock call "
    "(the upsert into 11 indexes, the rollup log, events, the full-text index, the commit), more "
    "than openai-v2's whole instrumentation (see below)",
    2: "as target 1, and the full-text index of a 3 KB call costs the writer ~140 µs of CPU even "
    "indexed 100 at a time (since 2026-12-03; ~400 µs alone in a transaction: docs/performance.md, "
    "the index's price per transaction)",
    3: "llm-otel alone costs within ~2 µs a chunk of openai-v2 (the stream proxy and the "
    "accumulator, which keeps the text); what the store adds is the writer's work a call, not a "
    "chunk: a 210-chunk stream outlasts the writer's 20 ms batch, so its records go in more, "
    "smaller transactions than a 10-chunk one's (docs/performance.md, per streamed chunk)",
    8: "`live-apart` writes each call's rows twice (queued, then ended), which `raw` never does: the "
    "same two writes made plainly (`raw-apart`) are themselves ~0.82x of `raw` (the second write moves "
    "the call's entries in the ten indexes that hold its status, and rewrites its body and its rollup "
    "log entry); the store adds its mapping and merges to that (0.86-0.99x of `raw-apart` in runs here)",
    10: "at 1M retention completes (a day, ~130k calls, in 213-671 s beside the app, by machine): the "
    "longest waits are single steps of retention that hold the lock: merge steps of the short-query "
    "index (one page held 40 ms on the machine of 2026-12-05, 67-92 ms on that of 12-03: where a deleted "
    "day's entries cancel against the oldest segment FTS5 writes nothing, and reads through a common "
    "character's run of a day's rowids in one step, whatever its page count) and, on the slower machine "
    "of 12-06, a step of the calls' delete (`prune_calls`, max 120.6 ms; the merge steps 86.9); the "
    "app's writes alone wait 0.6-35 ms by machine (docs/performance.md, retention)",
    4: "the first query of a term in a store's search generation checks each candidate's text "
    "(~1 µs each: the index holds no positions, migration 4); later ones, in any process, read the "
    "matches kept (migrations 10, 11); `ab` is looked up in the trigram vocabulary, its 514,637 "
    "rowids passed to Python once",
    7: "a filter's first summary on a store (and after each retention run) counts it whole: a timing "
    "minimum without a label reads each facet's index whole (SQLite has no hash aggregate), a `q` in "
    "half the calls walks each facet's index against the term's bitmap; later ones of the filter, in "
    "any process, count only the calls written or ended since (`exporter.kept_summaries`, migration 15)",
    5: "the first query of a `q` checks every candidate's text before the page (later ones walk the "
    "sort's index against the kept matches)",
    12: "the list's own query: its exact total counts every matching row (~20–40 ms at 1M without a "
    "filter); the admin adds 1.0–1.7x (HTTP / in-process in bench_admin); export rates vary 3x with "
    "the machine's load",
    11: "span end → committed is the app's writer (its 20 ms linger), committed → client the admin "
    "(the feed checks `data_version` every 5 ms, then the fan-out)",
}
"""Why a target is missed, as measured (written by hand; shown when the target is not met)."""

Row = tuple[str, str]
"""(measured, verdict) of one target in this run."""


def _verdict(
    value: float, target: float, bar: float | None, unit: str, higher_is_better: bool = False
) -> str:
    """met, or by how much the target (and the bar) were missed."""

    def meets(limit: float) -> bool:
        return value >= limit if higher_is_better else value <= limit

    def by(limit: float) -> str:
        if unit == "x":
            return f"{value:.2f}x against {limit:g}x"
        gap = abs(value - limit)
        return f"by {gap:,.{1 if gap < 10 else 0}f} {unit}"

    if meets(target):
        return "**met**"
    if bar is not None and meets(bar):
        return f"bar met; target missed {by(target)}"
    return f"**missed {by(target)}**" + (f"; bar missed too ({by(bar)})" if bar is not None else "")


def _instrumentation(summaries: dict[str, dict[str, Any]], case: str, number: int) -> Row | None:
    added = summaries.get("instrumentation", {}).get(case)
    if not added or "llm-otel+store" not in added:
        return None
    ours, alone = added["llm-otel+store"], added.get("llm-otel")
    v2, content = added.get("openai-v2"), added.get("openai-v2+content")
    unit, digits = ("µs/chunk", 2) if case == "stream" else ("µs/call", 0)
    measured = f"{ours:+.{digits}f} {unit} with the store"
    if alone is not None:
        measured += f" (llm-otel alone {alone:+.{digits}f})"
    if v2 is None or content is None:
        return measured, "no openai-v2 in this run"
    measured += f"; openai-v2 {v2:+.{digits}f}, with content {content:+.{digits}f}"
    if number == 1:
        return measured, _verdict(ours, v2, content, unit)
    return measured, _verdict(ours / content, 1.0, None, "x") + " openai-v2+content"


def _ingest(summaries: dict[str, dict[str, Any]]) -> Row | None:
    ingest = summaries.get("ingest", {})
    ratios = {case: ingest.get(f"ingest {case} / raw") for case in ("live", "live-apart", "ended")}
    if ratios["ended"] is None:
        return None
    measured = ", ".join(f"{case} {ratio:.2f}x" for case, ratio in ratios.items() if ratio is not None)
    apart = ingest.get("ingest live-apart / raw-apart")
    if apart is not None:  # what writing each call twice costs SQLite itself, apart from the store
        measured += f" raw; live-apart {apart:.2f}x raw-apart (the same two writes, plain)"
    else:
        measured += " raw"
    worst = min(ratio for ratio in ratios.values() if ratio is not None)
    return measured, _verdict(worst, 0.8, 0.5, "x", higher_is_better=True) + " (the worst case, against raw)"


def _size(summaries: dict[str, dict[str, Any]]) -> Row | None:
    size = summaries.get("ingest", {}).get("size this GB per 100k")
    if size is None:
        return None
    return f"{size:.2f} GB per 100k calls", _verdict(size, 1.0, None, "GB")


def _retention(summaries: dict[str, dict[str, Any]]) -> Row | None:
    retention = summaries.get("retention", {})
    cases = {key.removeprefix("this "): value for key, value in retention.items() if key.startswith("this ")}
    if not cases:
        return None
    measured = "; ".join(
        f"{where}: max {result['max_wait_ms']:.0f} ms{'' if result['completed'] else ', did NOT complete'}"
        for where, result in cases.items()
    )
    worst = max(result["max_wait_ms"] for result in cases.values())
    calls = min(result.get("calls", TARGET_10_CALLS) for result in cases.values())
    if calls < TARGET_10_CALLS:
        measured = f"at {calls:,} calls (`--quick`): {measured}"
    if not all(result["completed"] for result in cases.values()):
        return measured, "**missed: retention did not complete**"
    verdict = _verdict(worst, 50, 100, "ms")
    if calls < TARGET_10_CALLS:  # a smaller store's figure says nothing of the target's
        verdict = f"{verdict.strip('*')} at {calls:,} calls; not measured at 1M"
    return measured, verdict


TARGET_10_CALLS = 1_000_000
"""The store size of target 10."""


_LIST_ROW = re.compile(r"^(.{44}) +(-?[\d.]+) +(-?[\d.]+) +(-?\d+)\s*$")
_COLD_ROW = re.compile(r"^\s+cold \(.*\)\s+(-?[\d.]+) ms median, (-?[\d.]+) p95")


def list_tables(printed: str) -> dict[str, dict[str, tuple[float, float]]]:
    """``bench_list_1m``'s printed tables: section title → case → (median ms, p95 ms). A case's
    "cold" line (its first queries, nothing kept from an earlier one) is a case of its own,
    ``<case> (first query)``: a target holds only if the first query meets it too."""
    tables: dict[str, dict[str, tuple[float, float]]] = {}
    section = case = ""
    for line in printed.splitlines():
        if "median ms" in line:
            section = line.split("  ")[0].strip()
            tables[section] = {}
        elif section and (match := _LIST_ROW.match(line)):
            case = match.group(1).strip()
            tables[section][case] = (float(match.group(2)), float(match.group(3)))
        elif section and case and (match := _COLD_ROW.match(line)):
            tables[section][f"{case} (first query)"] = (float(match.group(1)), float(match.group(2)))
    return tables


def _worst(cases: dict[str, tuple[float, float]]) -> tuple[str, float] | None:
    if not cases:
        return None
    name = max(cases, key=lambda case: cases[case][1])
    return name, cases[name][1]


def _read_side(results: dict[str, Result], number: int) -> Row | None:
    if "list" not in results:
        return None
    tables = list_tables(results["list"].printed)
    size = _store_size(results["list"].text)
    if number == 4:
        cases = {k: v for k, v in tables.get("list page + exact total", {}).items() if k.startswith("q=")}
    elif number == 5:
        cases = {
            **tables.get("latency filters: page + exact total", {}),
            **tables.get("slowest first: page + exact total", {}),
        }
    elif number == 6:
        cases = tables.get("status_aggregates", {})
        if not cases:
            return None
        measured = " / ".join(f"{p95:.1f}" for _, p95 in cases.values()) + f" ms p95 ({size})"
        return measured, _verdict(max(p95 for _, p95 in cases.values()), 50, None, "ms") + " (slowest)"
    else:
        cases = tables.get("call_facets (the filter's summary)", {})
    worst = _worst(cases)
    if worst is None:
        return None
    limit = 100 if number == 7 else 50
    within = sum(1 for _, p95 in cases.values() if p95 <= limit)
    measured = f"{within}/{len(cases)} cases ≤ {limit} ms p95; slowest `{worst[0]}` {worst[1]:,.1f} ms"
    measured += f" ({size})"
    return measured, _verdict(worst[1], limit, None, "ms")


def _store_size(text: str) -> str:
    """``at N calls``, from the benchmark's command line (``--rows N``)."""
    match = re.search(r"--rows (\d+)", text)
    return f"at {int(match.group(1)):,} calls" if match else "at 1,000,000 calls"


def _live(results: dict[str, Result]) -> Row | None:
    if "live" not in results:
        return None
    printed = results["live"].printed
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s*$", printed, re.M)
    idle = re.search(r"admin CPU with (\d+) idle clients: ([\d.]+)% of a core", printed)
    if not rows:
        return None
    clients, _p50, p95, *_ = max(rows, key=lambda row: int(row[0]))
    measured = f"p95 {float(p95):.0f} ms with {clients} clients"
    verdict = _verdict(float(p95), 100, 250, "ms")
    if idle:
        share = float(idle.group(2))
        measured += f"; idle admin {share:.2f}% of a core ({idle.group(1)} clients)"
        if share > 2:
            verdict += f"; idle CPU missed by {share - 2:.2f} points"
    return measured, verdict


def _admin(summaries: dict[str, dict[str, Any]]) -> Row | None:
    admin = summaries.get("admin", {})
    if "list p95 ms" not in admin:
        return None
    worst_case = max(admin["list p95 ms"], key=admin["list p95 ms"].get)
    worst = admin["list p95 ms"][worst_case]
    detail = admin["detail p95 ms"]
    exports = admin.get("export", [])
    slowest = min(exports, key=lambda export: export["rate"]) if exports else None
    growth = max((export["rss_peak"] - export["rss_before"] for export in exports), default=0.0)
    measured = (
        f"list p95 ≤ {worst:.0f} ms (slowest `{worst_case}`); detail p95 {detail:.1f} ms; "
        + (f"export ≥ {slowest['rate']:,.0f} calls/s ({slowest['store']})" if slowest else "")
        + f", admin RSS +{growth:.0f} MB at most"
        + f" (at {admin.get('rows', 0):,} calls)"
    )
    misses = []
    if worst > 50:
        misses.append(f"list by {worst - 50:.0f} ms")
    if detail > 10:
        misses.append(f"detail by {detail - 10:.1f} ms")
    if slowest and slowest["rate"] < 5000:
        misses.append(f"export by {5000 - slowest['rate']:,.0f} calls/s")
    return measured, "**met**" if not misses else "**missed**: " + ", ".join(misses)


def targets(results: dict[str, Result], fresh: set[str]) -> str:
    """Issue 10's twelve targets against the last figures of each benchmark (``fresh``: those that
    ran now; a row measured in an earlier run says when)."""
    summaries = {name: result.summary for name, result in results.items()}
    rows_by_target: dict[int, Callable[[], Row | None]] = {
        1: lambda: _instrumentation(summaries, "mock", 1),
        2: lambda: _instrumentation(summaries, "http", 2),
        3: lambda: _instrumentation(summaries, "stream", 3),
        4: lambda: _read_side(results, 4),
        5: lambda: _read_side(results, 5),
        6: lambda: _read_side(results, 6),
        7: lambda: _read_side(results, 7),
        8: lambda: _ingest(summaries),
        9: lambda: _size(summaries),
        10: lambda: _retention(summaries),
        11: lambda: _live(results),
        12: lambda: _admin(summaries),
    }
    stated = {
        int(number): row
        for summary in summaries.values()
        for number, row in summary.get("targets", {}).items()
    }
    sources = {1: "instrumentation", 2: "instrumentation", 3: "instrumentation", 8: "ingest", 9: "ingest"}
    sources |= {4: "list", 5: "list", 6: "list", 7: "list", 10: "retention", 11: "live", 12: "admin"}
    table = []
    for number, (what, goal) in TARGETS.items():
        why = WHY.get(number, "")
        found = None
        if number in stated:
            row = stated[number]
            measured, verdict, why = row.get("measured", ""), row.get("verdict", ""), row.get("why", why)
        else:
            found = rows_by_target[number]()
            measured, verdict = found if found else ("not measured yet", "")
        source = results.get(sources[number])
        if found and source is not None and sources[number] not in fresh:
            measured += f" (run of {source.when})"
        if verdict.startswith("**met**") or not verdict:
            why = ""
        table.append([str(number), what, goal, measured, verdict, why])
    return common.table(["#", "what", "target", "measured", "verdict", "why, when missed"], table, "rlllll")


# -- the document -----------------------------------------------------------------------------------


def splice(document: str, name: str, text: str) -> str:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    block = f"{start}\n{text.strip()}\n{end}"
    if pattern.search(document):
        return pattern.sub(lambda _: block, document)
    return document.rstrip() + f"\n\n{block}\n"


def main(argv: Sequence[str] | None = None) -> None:
    benchmarks = {**BENCHMARKS, **discovered()}
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller stores, fewer rounds: a few minutes")
    parser.add_argument("--only", action="append", choices=sorted(benchmarks), help="run these only")
    parser.add_argument("--no-write", action="store_true", help="leave docs/performance.md alone")
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run that checkout's code where a benchmark can (instrumentation, ingest, retention)",
    )
    args = parser.parse_args(argv)
    names = args.only or list(benchmarks)
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), common.load()
    ran: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-run-") as directory:
        for name in names:
            ran[name] = run(name, benchmarks[name], args.quick, args.tree, Path(directory))
    command = "make bench" + (" ARGS=--quick" if args.quick else "")
    minutes = statistics.fsum(result.seconds for result in ran.values()) / 60
    machine = (
        f"Last run: {started}, `{command}`"
        + (f" (only {', '.join(names)})" if args.only else "")
        + f", {minutes:.0f} min; {common.describe_machine()}. Load average (1, 5, 15 min) "
        f"{load_before} at the start, {common.load()} at the end: the 2 cores were shared with other "
        "engineers' test runs, so read the same-run ratios and medians, not the absolute figures."
        + (" `--quick`: smaller stores (100k calls, not 1M) and fewer rounds." if args.quick else "")
        + "\n\nRerun: `make bench` (about an hour), `make bench ARGS=--quick` (minutes), or one "
        "benchmark: `.venv-bench/bin/python bench/run.py --only NAME` (" + ", ".join(benchmarks) + ")."
    )
    results = {**load_results(), **ran}
    table = targets(results, set(ran))
    if args.no_write:
        print(machine + "\n\n" + table)
        return
    document = DOC.read_text(encoding="utf-8")
    document = splice(document, "machine", machine)
    document = splice(document, "targets", table)
    for name, result in ran.items():
        document = splice(document, name, result.text)
    DOC.write_text(document, encoding="utf-8")
    save_results(results)
    print(table)
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
