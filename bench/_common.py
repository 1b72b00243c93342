"""What every benchmark shares: the machine's description, paired statistics, markdown tables.

The statistics are distribution-free, because CPU time on a shared 2-core VM is neither normal
nor stable: a benchmark runs its variants in interleaved rounds, takes each variant's value minus
the baseline's **of the same round** (a paired difference), and reports the median of those
differences over rounds with their min–max and a ~95% confidence interval of the median (order
statistics). Ratios are of medians measured in the same run.

Each benchmark writes its results as a markdown fragment with ``--markdown PATH``;
``bench/run.py`` (``make bench``) splices the fragments into ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "bench-token"
_ADMIN = textwrap.dedent(
    """
    import logging, sys
    from werkzeug.serving import make_server
    from admin_flask import create_app
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, create_app(db=sys.argv[1], token=sys.argv[2]), threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()
    """
)


@contextlib.contextmanager
def admin_process(
    url: str, tree: Path = ROOT, env: Mapping[str, str] | None = None
) -> Iterator[tuple[int, int]]:
    """The admin of checkout ``tree`` over the store ``url`` in its own process (Werkzeug, threaded,
    token ``ADMIN_TOKEN``), with ``env`` added to its environment; yields (its pid, its port)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _ADMIN, url, ADMIN_TOKEN],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree), **(env or {})},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.pid, int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(10)


PACKAGES = (
    "openai",
    "httpx2",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "peewee",
)


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return None


def versions() -> list[str]:
    found = [f"Python {platform.python_version()}", f"SQLite {sqlite3.sqlite_version}"]
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{package} {metadata.version(package)}")
    return found


def describe_machine() -> str:
    """One line: date, CPU, cores, memory, OS, versions."""
    memory = memory_gib()
    return (
        f"{time.strftime('%Y-%m-%d')}; {cpu_model()}, {os.cpu_count()} cores"
        + (f", {memory:.0f} GiB RAM" if memory else "")
        + f"; {platform.system()} {platform.release()}; "
        + ", ".join(versions())
    )


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


_READ_WHOLE = """
import sys
for name in sys.argv[1:]:
    try:
        with open(name, "rb", buffering=0) as file:
            while file.read(1 << 20):
                pass
    except FileNotFoundError:
        pass
"""


def warm_page_cache(path: str | Path) -> str:
    """Read the SQLite file ``path`` (and its WAL) once, so that the OS page cache holds it as a
    server's holds a store in use; returns a line saying how fast it read (near memory speed: it
    was cached already). This VM's page cache gives back a file's pages within minutes (seen:
    2.2 of 2.3 GB gone in 25 minutes with 23 GB free), so a query's first pages came from the disk
    and made the p95s of a run. Read in a child process: closing a descriptor of the file in this
    one would drop the POSIX locks its SQLite connections hold on it."""
    files = [str(path), f"{path}-wal"]
    size = sum(Path(name).stat().st_size for name in files if Path(name).exists())
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _READ_WHOLE, *files], check=True)
    seconds = time.perf_counter() - started
    megabytes = size / 1e6
    rate = megabytes / seconds
    return f"page cache: the store's {megabytes:,.0f} MB read in {seconds:.1f} s ({rate:,.0f} MB/s)"


def median_ci(values: Sequence[float]) -> tuple[float, float]:
    """A distribution-free ~95% confidence interval of the median (order statistics)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan"), float("nan")
    half = 1.96 * n**0.5 / 2
    low, high = max(0, int(n / 2 - half)), min(n - 1, int(-(-(n / 2 + half) // 1)))
    return ordered[low], ordered[high]


@dataclass(frozen=True)
class Summary:
    """The median of some values, their min–max and a 95% confidence interval of the median."""

    median: float
    low: float
    high: float
    ci_low: float
    ci_high: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        values = list(values)
        if not values:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, 0)
        ci_low, ci_high = median_ci(values)
        return cls(statistics.median(values), min(values), max(values), ci_low, ci_high, len(values))

    def text(self, digits: int = 0) -> str:
        """``median [ci low..high]``."""
        return f"{self.median:.{digits}f} [{self.ci_low:.{digits}f}..{self.ci_high:.{digits}f}]"

    def spread(self, digits: int = 0) -> str:
        """``min–max``."""
        return f"{self.low:.{digits}f}–{self.high:.{digits}f}"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def ratio(ours: float, reference: float) -> str:
    if reference <= 0:
        return "n/a"
    return f"{ours / reference:.2f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one letter per column (``l`` or ``r``, default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(path: str | None, text: str) -> None:
    """Write a benchmark's fragment (``--markdown``); ``bench/run.py`` collects them."""
    if path:
        Path(path).write_text(text.rstrip() + "\n", encoding="utf-8")


# -- realistic text --------------------------------------------------------------------------------

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "gu", "fe", "zo", "bi", "ha"]
WORDS_EN = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in ("", "n", "s", "ter", "ing")})
"""~1,100 pseudo-English words: a realistic number of distinct trigrams for the full-text index."""
HANZI = (  # ~500 common characters
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
    "同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自"
    "二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日"
    "那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变"
    "条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
    "几九区强放决西被干做必战先回则任取据处理府研质"
)


def realistic_text(rng: random.Random, length: int) -> str:
    """``length`` characters of varied text: pseudo-English words, and a fifth of runs of hanzi."""
    parts: list[str] = []
    size = 0
    while size < length:
        if rng.random() < 0.2:
            part = "".join(rng.choices(HANZI, k=rng.randint(4, 12)))
        else:
            part = " ".join(rng.choices(WORDS_EN, k=rng.randint(3, 8)))
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)[:length]


def write_summary(path: str | None, summary: dict[str, Any]) -> None:
    """Write a benchmark's key figures as JSON (``--summary``); ``bench/run.py`` checks the targets."""
    if path:
        Path(path).write_text(json.dumps(summary, indent=1), encoding="utf-8")
