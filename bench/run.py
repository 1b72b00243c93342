"""``make bench``: every benchmark, then their figures written into ``docs/performance.md``.

Usage::

    make bench                                  # every benchmark in full (about an hour, 1M calls)
    make bench ARGS=--quick                     # a look in a few minutes (smaller stores, fewer rounds)
    .venv/bin/python bench/run.py --only instrumentation --only ingest
    .venv/bin/python bench/run.py --quick --no-write   # print, leave the docs alone

Each benchmark runs in a process of its own and writes a markdown fragment and a JSON summary of
its key figures; this script puts each fragment between its markers in ``docs/performance.md``
(``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``), with the machine, the versions, the date and
the command, and a table of issue 10's write-side targets checked against the summaries. The text
around the markers is written by hand and stays.

The official instrumentation is needed for the comparison (``bench_instrumentation.py`` says how to
install it for the benchmark only); without it, its rows are left out.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOC = ROOT / "docs" / "performance.md"
sys.path.insert(0, str(BENCH))

import _common as common  # noqa: E402

BENCHMARKS = {
    "instrumentation": ("bench_instrumentation.py", [], ["--quick"]),
    "ingest": ("bench_ingest.py", [], ["--quick"]),
    "retention": ("bench_retention.py", [], ["--quick"]),
    "list": ("bench_list_1m.py", ["--rows", "1000000"], ["--rows", "100000", "--repeat", "5"]),
    "live": ("bench_live_feed.py", [], ["--calls", "100", "--idle", "5"]),
    "page": ("bench_page.py", [], ["--rounds", "3", "--no-100k"]),
}
"""name → (script, its arguments in full, with ``--quick``)."""
PRINTED = {"list", "live", "page"}
"""Benchmarks that print their tables (kept as printed) rather than write markdown."""


def run(name: str, quick: bool, work: Path) -> tuple[str, dict[str, Any]]:
    script, full, fast = BENCHMARKS[name]
    markdown, summary = work / f"{name}.md", work / f"{name}.json"
    command = [sys.executable, str(BENCH / script), *(fast if quick else full)]
    if name not in PRINTED:
        command += ["--markdown", str(markdown), "--summary", str(summary)]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    print(done.stdout[-4000:], flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed (exit {done.returncode})")
    seconds = time.perf_counter() - started
    shown = " ".join(["bench/" + script, *(fast if quick else full)])
    if name in PRINTED:
        body = "```text\n" + done.stdout.strip() + "\n```"
    else:
        body = markdown.read_text(encoding="utf-8").strip()
    text = f"`.venv/bin/python {shown}` ({seconds / 60:.0f} min):\n\n{body}"
    return text, json.loads(summary.read_text()) if summary.exists() else {}


def targets(summaries: dict[str, dict[str, Any]]) -> str:
    """Issue 10's write-side targets against this run's figures."""
    rows: list[list[str]] = []
    instrumentation = summaries.get("instrumentation", {})

    def versus(case: str, unit: str, target: str, bar: str) -> None:
        added = instrumentation.get(case)
        if not added or "llm-otel+store" not in added:
            return
        ours = added["llm-otel+store"]
        v2, content = added.get("openai-v2"), added.get("openai-v2+content")
        measured = f"+{ours:.1f} {unit}" if case == "stream" else f"+{ours:.0f} {unit}"
        if v2 is not None and content is not None:
            measured += f" (openai-v2 {v2:+.1f}, with content {content:+.1f})"
            met = ours <= (v2 if target == "v2" else content)
            bar_met = ours <= content
            verdict = "met" if met else ("bar met" if bar_met else f"missed: {ours / content:.1f}x the bar")
        else:
            verdict = "no openai-v2 to compare"
        rows.append([case, measured, bar, verdict])

    versus("mock", "µs/call", "v2", "≤ openai-v2 without content (bar: with content)")
    versus("http", "µs/call", "content", "≤ 1.0x openai-v2 with content")
    versus("stream", "µs/chunk", "content", "≤ openai-v2 per chunk")
    ingest = summaries.get("ingest", {})
    for case in ("ended", "live", "live-apart"):
        ratio = ingest.get(f"ingest {case} / raw")
        if ratio is not None:
            verdict = "met" if ratio >= 0.8 else ("bar met" if ratio >= 0.5 else "missed")
            rows.append(
                [f"ingest, {case}", f"{ratio:.2f}x raw", "≥ 0.8x raw executemany (bar 0.5x)", verdict]
            )
    size = ingest.get("size this GB per 100k")
    if size is not None:
        rows.append(
            ["size on disk", f"{size:.2f} GB per 100k calls", "≤ 1.0 GB", "met" if size <= 1.0 else "missed"]
        )
    for case, result in summaries.get("retention", {}).items():
        if case.startswith("this "):
            wait = result["max_wait_ms"]
            ok = result["completed"]
            verdict = "met" if ok and wait <= 50 else ("bar met" if ok and wait <= 100 else "missed")
            where = case.removeprefix("this ")
            rows.append(
                [f"retention, {where}", f"max wait {wait:.0f} ms", "≤ 50 ms (bar 100), completes", verdict]
            )
    return common.table(["target", "this run", "goal", "verdict"], rows, "llll")


def splice(document: str, name: str, text: str) -> str:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    block = f"{start}\n{text.strip()}\n{end}"
    if pattern.search(document):
        return pattern.sub(lambda _: block, document)
    return document.rstrip() + f"\n\n{block}\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller stores, fewer rounds: a few minutes")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run these only")
    parser.add_argument("--no-write", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    started = time.strftime("%Y-%m-%d %H:%M")
    sections: dict[str, str] = {}
    summaries: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-run-") as directory:
        for name in names:
            sections[name], summaries[name] = run(name, args.quick, Path(directory))
    command = "make bench" + (" ARGS=--quick" if args.quick else "")
    machine = (
        f"Last run: {started}, `{command}`{' (only ' + ', '.join(names) + ')' if args.only else ''}; "
        f"{common.describe_machine()}; load average at the end {common.load()}."
    )
    if args.no_write:
        print(machine + "\n\n" + targets(summaries))
        return
    document = DOC.read_text(encoding="utf-8")
    document = splice(document, "machine", machine)
    if "instrumentation" in summaries or "ingest" in summaries or "retention" in summaries:
        document = splice(document, "targets", targets(summaries))
    for name, text in sections.items():
        document = splice(document, name, text)
    DOC.write_text(document, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
