"""Benchmark: the start-up of the ``llm-otel`` command (the CLI imports nothing it does not need).

Usage::

    .venv/bin/python bench/bench_startup.py                                   # 10 rounds
    .venv/bin/python bench/bench_startup.py --quick                           # 5 rounds
    .venv/bin/python bench/bench_startup.py --tree before=/tmp/old-checkout   # + that code

Each round runs, in fresh processes, for this checkout and each ``--tree`` (in a shuffled order
within the round, so that load changes hit every tree alike):

- ``import``: ``python -X importtime -c "import llm_otel.cli"``, the cumulative import time of
  ``llm_otel.cli`` as ``-X importtime`` reports it;
- ``--help``: ``llm-otel --help``, wall time and CPU time (user + system, of the process);
- ``export``: ``llm-otel export`` of a small store (the ``errors`` fixture, written once by this
  checkout) to ``/dev/null``: a store command, wall and CPU time;
- ``openai``: whether ``llm-otel --help`` imported the openai SDK.

``llm-otel`` is run as its console script runs it (``from llm_otel.cli import main``), with
``PYTHONPATH`` set to the tree. Printed: the medians over the rounds with their ~95% confidence
interval, and each tree's ratio to this checkout (of the medians).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
from _common import ROOT, Summary

CONSOLE_SCRIPT = (
    "import sys\n"
    "from llm_otel.cli import main\n"
    "code = main()\n"
    "print('openai' in sys.modules, file=sys.stderr)\n"
    "sys.exit(code)\n"
)
"""``llm-otel`` as its console script runs it, saying at the end whether the openai SDK was imported."""


def _env(tree: Path) -> dict[str, str]:
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith(("LLM_OTEL_", "OPENAI_"))},
        "PYTHONPATH": str(tree),
    }


def _timed(command: Sequence[str], tree: Path) -> tuple[float, float, str]:
    """Run ``command``; its wall time and CPU time in ms and its stderr."""
    with tempfile.TemporaryFile("w+") as stderr:
        started = os.times()
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, env=_env(tree), cwd=tree
        )
        _, status, usage = os.wait4(process.pid, 0)
        ended = os.times()
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        text = stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {tree}: {text}")
    wall_ms = (ended.elapsed - started.elapsed) * 1000
    return wall_ms, (usage.ru_utime + usage.ru_stime) * 1000, text


def _import_ms(tree: Path) -> float:
    _, _, text = _timed([sys.executable, "-X", "importtime", "-c", "import llm_otel.cli"], tree)
    [cumulative] = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \| llm_otel\.cli$", text, re.MULTILINE)
    return int(cumulative) / 1000


def measure(trees: dict[str, Path], rounds: int, store: Path) -> dict[str, dict[str, list[Any]]]:
    figures: dict[str, dict[str, list[Any]]] = {
        name: {key: [] for key in ("import", "help wall", "help cpu", "export wall", "export cpu", "openai")}
        for name in trees
    }
    export = [sys.executable, "-c", CONSOLE_SCRIPT, "export", "--db", str(store), "--output", os.devnull]
    for _ in range(rounds):
        order = list(trees)
        random.shuffle(order)
        for name in order:
            tree, seen = trees[name], figures[name]
            seen["import"].append(_import_ms(tree))
            wall, cpu, text = _timed([sys.executable, "-c", CONSOLE_SCRIPT, "--help"], tree)
            seen["help wall"].append(wall)
            seen["help cpu"].append(cpu)
            seen["openai"].append(text.strip().splitlines()[-1] == "True")
            wall, cpu, _ = _timed(export, tree)
            seen["export wall"].append(wall)
            seen["export cpu"].append(cpu)
    return figures


def report(figures: dict[str, dict[str, list[Any]]], rounds: int) -> tuple[str, dict[str, Any]]:
    columns = ("import", "help wall", "help cpu", "export wall", "export cpu")
    rows, summary = [], {}
    base = {key: Summary.of(figures["this"][key]).median for key in columns}
    for name, seen in figures.items():
        medians = {key: Summary.of(seen[key]) for key in columns}
        summary[name] = {key.replace(" ", "_") + "_ms": medians[key].median for key in columns}
        summary[name]["imports_openai"] = any(seen["openai"])
        cells = [medians[key].text() for key in columns]
        if name != "this":
            cells = [
                f"{cell} ({common.ratio(medians[key].median, base[key])})"
                for cell, key in zip(cells, columns, strict=True)
            ]
        rows.append([name, *cells, "yes" if any(seen["openai"]) else "no"])
    header = ["tree", "import llm_otel.cli (ms)", "--help wall (ms)", "--help CPU (ms)"]
    header += ["export wall (ms)", "export CPU (ms)", "imports openai"]
    text = (
        f"{common.describe_machine()}; load {common.load()}; {rounds} rounds, medians [95% CI]"
        " (a tree's ratio to this checkout)\n\n" + common.table(header, rows)
    )
    return text, summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 10")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--markdown", help="write the results as a markdown fragment to this file")
    parser.add_argument("--summary", help="write the key figures as JSON to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 10)
    trees = {"this": ROOT, **{name: Path(path) for name, path in (item.split("=", 1) for item in args.tree)}}
    with tempfile.TemporaryDirectory() as work:
        store = Path(work) / "errors.db"
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from exporter.fixtures import load_fixture; load_fixture('errors', sys.argv[1])",
                f"sqlite:///{store}",
            ],
            check=True,
            env=_env(ROOT),
        )
        text, summary = report(measure(trees, rounds, store), rounds)
    print(text)
    common.write_markdown(args.markdown, text)
    common.write_summary(args.summary, summary)


if __name__ == "__main__":
    main()
