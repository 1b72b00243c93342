"""Benchmark: the CPU the instrumentation adds to an OpenAI call, and the store's hand-off (DESIGN §9).

Usage::

    .venv/bin/python bench/bench_instrumentation.py                         # 1500 calls x 5 repeats, ~3 min
    .venv/bin/python bench/bench_instrumentation.py --calls 500 --repeats 2  # a quick look (~30 s)
    .venv/bin/python bench/bench_instrumentation.py --only overhead          # or: handoff
    .venv/bin/python bench/bench_instrumentation.py --profile llm-otel --calls 1000   # cProfile

The comparison with the official instrumentation needs it in the venv (for the bench only, not a
project dependency)::

    .venv/bin/pip install opentelemetry-instrumentation-openai-v2==2.4b0 opentelemetry-util-genai==1.1b0

(2.4b0 imports ``opentelemetry.util.genai.instruments``, which util-genai 1.2b0 renamed, and
``httpx``, which openai 3.x replaced by ``httpx2``: the bench lends it ``httpx2``.) Without it the
``openai-v2`` row is skipped with a message.

Setup. The fake OpenAI server (``llm_otel.testing.FakeOpenAI``) runs in a child process, so the
calling thread runs only the app's Python: the openai SDK (sync client, one keep-alive connection)
and the instrumentation. Each call is a non-streaming chat completion (a system and a user
message, temperature, max_tokens). Every variant gets a fresh SDK ``TracerProvider`` whose only
processor is a ``SimpleSpanProcessor`` to an exporter that discards, so only instrumentation is
compared.

1. Overhead (DESIGN: llm-otel's added CPU ≤ what openai-v2 adds, same run). Variants:

   - ``baseline``: no instrumentation;
   - ``openai-v2``: ``opentelemetry-instrumentation-openai-v2``, content on the span
     (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only``; ``true`` on its legacy
     path); metrics and log events to the global no-op providers;
   - ``llm-otel``: ``llm_otel.instrumentation.OpenAIInstrumentor``, content on, the default
     counting scheduler;
   - ``llm-otel+store``: ``llm_otel.setup(db=...)``: the same plus the SQLite span store (live
     notices and ended spans handed to its background writer thread).

   Each repeat runs ``--calls`` calls per variant in rounds of ``--chunk``: a round runs every
   variant once (instrument, 10 unmeasured calls, the chunk, uninstrument), in an order rotated
   by one per round, so slow phases of a noisy machine hit every variant alike. Each call is
   timed on the calling thread: its CPU (``time.thread_time_ns``), its CPU outside the SDK's
   HTTP request (``own``: the call's CPU less the CPU inside ``client.chat.completions._post``,
   where no instrumentation runs; the least noisy figure) and its wall time; each chunk also
   takes the process's CPU (all threads: the store's writer too). Per chunk: the median call
   (p50), the mean. "+X" = the median over rounds of (variant − baseline of the same round),
   with a distribution-free 95% confidence interval of that median; then the ratios llm-otel
   added / openai-v2 added.

2. Hand-off (DESIGN: ≤ 1 ms p99 on the app's thread, even while the database is locked). With
   ``setup(db=...)``, ``SpanStore.on_call_event`` (the lifecycle listener: ``queued``,
   ``dispatched``) and ``_StoreSpanProcessor.on_end`` get timing shims (``perf_counter_ns``,
   patched on their classes before ``setup()``) while ``--calls`` real calls run: first with
   the database free, then while another connection holds it with ``BEGIN EXCLUSIVE``. Printed
   per hook and per call (the sum of a call's hand-offs): p50, p99 and max in µs; then the
   store's counters while locked and once the lock is released and the writer has caught up.

``--profile VARIANT`` runs ``--calls`` calls of one variant under cProfile and prints the
instrumentation's functions (llm_otel, opentelemetry, exporter, wrapt) by own and total time.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

import llm_otel  # noqa: E402
from exporter import store as store_module  # noqa: E402
from llm_otel.instrumentation import CAPTURE_CONTENT_ENV  # noqa: E402
from llm_otel.instrumentation import OpenAIInstrumentor as LLMOtelInstrumentor  # noqa: E402

V2_INSTALL = (
    ".venv/bin/pip install opentelemetry-instrumentation-openai-v2==2.4b0 opentelemetry-util-genai==1.1b0"
)
"""2.4b0 imports ``opentelemetry.util.genai.instruments``, which util-genai 1.2b0 renamed."""
V2_IMPORT_ERROR = ""
try:
    import httpx  # noqa: F401
except ImportError:
    # openai 3.x sends with httpx2; openai-v2 still imports ``httpx.URL`` (only to read the
    # client's base_url for server.address / server.port). Lend it httpx2, whose URL the SDK uses,
    # so that v2 imports and does all of its work.
    import httpx2

    sys.modules["httpx"] = httpx2
try:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2Instrumentor
    from opentelemetry.util.genai.utils import is_experimental_mode
except ImportError as exc:  # the bench then skips the openai-v2 variant
    V2Instrumentor = None
    V2_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
    os.environ[CAPTURE_CONTENT_ENV] = "true"
else:
    # v2's content switch: its GenAI-utils path (what util-genai 1.1b0 always takes) records the
    # messages on the span with "span_only"; its legacy path (log events) wants "true". llm-otel
    # takes either value as "on".
    os.environ[CAPTURE_CONTENT_ENV] = "span_only" if is_experimental_mode() else "true"

CHUNK_WARMUP = 10
"""Calls made, unmeasured, after each enable(): connections, caches and the store's writer settle."""

SERVER_SCRIPT = """
import sys
from llm_otel.testing import FakeOpenAI
server = FakeOpenAI().start()
print(server.port, flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
server.stop()
"""

REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a concise assistant. Answer in one short paragraph."},
        {
            "role": "user",
            "content": (
                "Summarise the quarterly report for the board: revenue grew 12% to 4.1M, churn fell "
                "to 2.3%, the new onboarding flow shipped in March and support tickets dropped by "
                "a fifth; hiring is behind plan in engineering. Keep it under eighty words."
            ),
        },
    ],
    "temperature": 0.2,
    "max_tokens": 200,
}


# -- plumbing ---------------------------------------------------------------------------------------


class DiscardingSpanExporter(SpanExporter):
    """Takes every span and keeps none: exporting costs next to nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def fresh_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DiscardingSpanExporter()))
    return provider


@contextlib.contextmanager
def fake_server_process() -> Iterator[str]:
    """Run ``FakeOpenAI`` in a child process; yields its ``base_url``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        with contextlib.suppress(OSError):
            child.stdin.close()  # type: ignore[union-attr]
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def reset_server(base_url: str) -> None:
    """Forget the calls the server recorded (it keeps every request in memory)."""
    url = base_url.removesuffix("/v1") + "/_fake/reset"
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- variants ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One chunk of calls of one variant; µs per call."""

    repeat: int
    cpu_p50: float  # the calling thread's CPU, median call
    own_p50: float  # the same, less the CPU spent inside the SDK's HTTP request: median call
    cpu_mean: float  # the calling thread's CPU, all calls (GC pauses and preemption included)
    process: float  # every thread of this process (the store's writer too), all calls
    wall_p50: float  # wall time, median call


STATS = ("cpu_p50", "own_p50", "cpu_mean", "process", "wall_p50")


@dataclass
class Variant:
    """One way of running the SDK: ``enable`` before a chunk of calls, ``disable`` after it."""

    name: str
    enable: Callable[[str], None]
    disable: Callable[[], None]
    chunks: list[Chunk] = field(default_factory=list)  # the i-th of every variant ran in round i


def _nothing(*_: Any) -> None:
    pass


def _v2_enable(_: str) -> None:
    V2Instrumentor().instrument(tracer_provider=fresh_provider())


def _v2_disable() -> None:
    V2Instrumentor().uninstrument()


def _llm_otel_enable(_: str) -> None:
    LLMOtelInstrumentor().instrument(tracer_provider=fresh_provider(), capture_content=True)


def _llm_otel_disable() -> None:
    LLMOtelInstrumentor().uninstrument()


def _store_enable(db_url: str) -> None:
    llm_otel.setup(db=db_url, tracer_provider=fresh_provider())


def _store_disable() -> None:
    llm_otel.shutdown()


def variants() -> list[Variant]:
    found = [Variant("baseline", _nothing, _nothing)]
    if V2Instrumentor is None:
        print(
            f"openai-v2 skipped: it is not importable ({V2_IMPORT_ERROR}). Install it with {V2_INSTALL}",
            file=sys.stderr,
        )
    else:
        found.append(Variant("openai-v2", _v2_enable, _v2_disable))
    found.append(Variant("llm-otel", _llm_otel_enable, _llm_otel_disable))
    found.append(Variant("llm-otel+store", _store_enable, _store_disable))
    return found


# -- 1. overhead ------------------------------------------------------------------------------------


class Caller:
    """The app: an OpenAI client on the fake server, and the CPU its requests spend in the SDK.

    ``inside_ns`` counts the calling thread's CPU inside ``client.chat.completions._post``: the
    SDK sending the request and parsing the answer, where no instrumentation runs. A call's CPU
    less that is the wrapper's own work plus the SDK's argument handling (the same in every
    variant): a far less noisy view of what the instrumentation adds.
    """

    def __init__(self, base_url: str) -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key="bench-key")
        self.inside_ns = 0
        completions = self.client.chat.completions  # cached by the SDK: one object per client
        post = completions._post

        def timed_post(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time_ns()
            try:
                return post(*args, **kwargs)
            finally:
                self.inside_ns += time.thread_time_ns() - start

        completions._post = timed_post

    def call(self) -> Any:
        return self.client.chat.completions.create(**REQUEST)


def run_chunk(caller: Caller, calls: int, repeat: int = -1) -> Chunk:
    """``calls`` chat calls, each timed on the calling thread (CPU and wall)."""
    thread_time, perf_counter = time.thread_time_ns, time.perf_counter_ns
    thread_ns: list[int] = []
    own_ns: list[int] = []
    wall_ns: list[int] = []
    gc.collect()
    process0 = time.process_time_ns()
    for _ in range(calls):
        inside0 = caller.inside_ns
        cpu0, wall0 = thread_time(), perf_counter()
        caller.call()
        wall1, cpu1 = perf_counter(), thread_time()
        thread_ns.append(cpu1 - cpu0)
        own_ns.append(cpu1 - cpu0 - (caller.inside_ns - inside0))
        wall_ns.append(wall1 - wall0)
    process_ns = time.process_time_ns() - process0
    return Chunk(
        repeat=repeat,
        cpu_p50=statistics.median(thread_ns) / 1000,
        own_p50=statistics.median(own_ns) / 1000,
        cpu_mean=sum(thread_ns) / calls / 1000,
        process=process_ns / calls / 1000,
        wall_p50=statistics.median(wall_ns) / 1000,
    )


def run_enabled(variant: Variant, caller: Caller, db_url: str, calls: int, repeat: int = -1) -> Chunk:
    variant.enable(db_url)
    try:
        run_chunk(caller, CHUNK_WARMUP)  # the first calls after enable() are not measured
        return run_chunk(caller, calls, repeat)
    finally:
        variant.disable()


def bench_overhead(caller: Caller, base_url: str, db_url: str, calls: int, repeats: int, chunk: int) -> None:
    runs = variants()
    for variant in runs:
        run_enabled(variant, caller, db_url, min(calls, 200))
    rounds = -(-calls // chunk)
    for repeat in range(repeats):
        reset_server(base_url)
        for round_ in range(rounds):
            size = min(chunk, calls - round_ * chunk)
            shift = (repeat * rounds + round_) % len(runs)
            for variant in runs[shift:] + runs[:shift]:
                variant.chunks.append(run_enabled(variant, caller, db_url, size, repeat))
        added = "  ".join(
            f"{variant.name} {statistics.median(_added(variant, runs[0], 'cpu_p50', repeat)):+.0f}"
            for variant in runs[1:]
        )
        load = os.getloadavg()[0]
        print(f"  repeat {repeat + 1}/{repeats}: +CPU p50 µs  {added}  (load average {load:.2f})", flush=True)
    print_overhead(runs, calls, repeats, chunk)


def _added(variant: Variant, baseline: Variant, stat: str, repeat: int | None = None) -> list[float]:
    """Variant − baseline of the same round, µs per call, one value per round (of ``repeat``)."""
    return [
        getattr(mine, stat) - getattr(base, stat)
        for mine, base in zip(variant.chunks, baseline.chunks, strict=True)
        if repeat is None or mine.repeat == repeat
    ]


def median_ci(values: Sequence[float]) -> tuple[float, float]:
    """A distribution-free ~95% confidence interval of the median (order statistics)."""
    ordered = sorted(values)
    n = len(ordered)
    half = 1.96 * n**0.5 / 2
    low, high = max(0, int(n / 2 - half)), min(n - 1, int(-(-(n / 2 + half) // 1)))
    return ordered[low], ordered[high]


RATIO_STATS = (("cpu_p50", "CPU p50"), ("own_p50", "own p50"), ("cpu_mean", "CPU mean"))


def print_overhead(runs: list[Variant], calls: int, repeats: int, chunk: int) -> None:
    baseline = runs[0]
    rounds = len(baseline.chunks)
    print(
        f"\n1. Non-streaming chat call: {calls} calls x {repeats} repeats per variant, in {rounds} "
        f"round-robin rounds of {chunk}. µs per call.\n   CPU = the calling thread's; own = CPU outside "
        "the SDK's HTTP request; process = all threads.\n   +X = added over baseline: median over rounds "
        "of (variant − baseline of the same round), [95% CI]"
    )
    header = (
        f"{'variant':<15}{'CPU p50':>8}{'+CPU p50':>22}{'own p50':>9}{'+own p50':>20}"
        f"{'+CPU mean':>10}{'+process':>10}{'wall p50':>9}{'+wall':>7}"
    )
    print(header)
    print("-" * len(header))
    added: dict[str, dict[str, float]] = {}
    for variant in runs:
        level = {stat: statistics.median(getattr(c, stat) for c in variant.chunks) for stat in STATS}
        if variant is baseline:
            print(
                f"{variant.name:<15}{level['cpu_p50']:>8.0f}{'':>22}{level['own_p50']:>9.0f}{'':>20}"
                f"{'':>10}{'':>10}{level['wall_p50']:>9.0f}"
            )
            continue
        plus = {stat: _added(variant, baseline, stat) for stat in STATS}
        mine = added[variant.name] = {stat: statistics.median(plus[stat]) for stat in STATS}

        def with_ci(
            stat: str, values: dict[str, list[float]] = plus, medians: dict[str, float] = mine
        ) -> str:
            low, high = median_ci(values[stat])
            return f"{medians[stat]:.0f} [{low:.0f}..{high:.0f}]"

        print(
            f"{variant.name:<15}{level['cpu_p50']:>8.0f}{with_ci('cpu_p50'):>22}{level['own_p50']:>9.0f}"
            f"{with_ci('own_p50'):>20}{mine['cpu_mean']:>10.0f}{mine['process']:>10.0f}"
            f"{level['wall_p50']:>9.0f}{mine['wall_p50']:>7.0f}"
        )
    if "openai-v2" not in added:
        return
    print("\nllm-otel added / openai-v2 added (the bar: ≤ 1.00x):")
    reference = added["openai-v2"]
    for ours in ("llm-otel", "llm-otel+store"):
        ratios = []
        for stat, label in RATIO_STATS:
            ratio = added[ours][stat] / reference[stat] if reference[stat] > 0 else float("inf")
            ratios.append(f"{label} {ratio:.2f}x{'' if ratio <= 1.0 else ' (above)'}")
        print(f"  {ours:<15} {'   '.join(ratios)}")


# -- 2. hand-off ------------------------------------------------------------------------------------


class HandoffTimer:
    """Timing shims around the store's two hand-off hooks (patched on their classes)."""

    def __init__(self) -> None:
        self.by_hook: dict[str, list[int]] = {}
        self.current_call = 0  # ns spent in hand-offs since the last take_call()
        self._originals: list[tuple[type, str, Any]] = []

    def install(self) -> None:
        timer = self
        on_call_event = store_module.SpanStore.on_call_event
        on_end = store_module._StoreSpanProcessor.on_end

        def timed_on_call_event(self: Any, kind: str, *args: Any) -> None:
            start = time.perf_counter_ns()
            on_call_event(self, kind, *args)
            timer.record(f"on_call_event({kind})", time.perf_counter_ns() - start)

        def timed_on_end(self: Any, span: ReadableSpan) -> None:
            start = time.perf_counter_ns()
            on_end(self, span)
            timer.record("span_processor.on_end", time.perf_counter_ns() - start)

        self._originals = [
            (store_module.SpanStore, "on_call_event", on_call_event),
            (store_module._StoreSpanProcessor, "on_end", on_end),
        ]
        store_module.SpanStore.on_call_event = timed_on_call_event  # type: ignore[method-assign]
        store_module._StoreSpanProcessor.on_end = timed_on_end  # type: ignore[method-assign]

    def uninstall(self) -> None:
        for owner, name, original in self._originals:
            setattr(owner, name, original)
        self._originals = []

    def record(self, hook: str, duration_ns: int) -> None:
        self.by_hook.setdefault(hook, []).append(duration_ns)
        self.current_call += duration_ns

    def take_call(self) -> int:
        spent, self.current_call = self.current_call, 0
        return spent

    def reset(self) -> None:
        self.by_hook = {}
        self.current_call = 0


def _measure_handoff(caller: Caller, timer: HandoffTimer, calls: int) -> dict[str, list[int]]:
    timer.reset()
    per_call: list[int] = []
    for _ in range(calls):
        timer.take_call()
        caller.call()
        per_call.append(timer.take_call())
    return {**timer.by_hook, "per call (sum)": per_call}


def bench_handoff(caller: Caller, db_dir: str, calls: int) -> None:
    timer = HandoffTimer()
    timer.install()  # before setup(): it binds store.on_call_event as the lifecycle listener
    try:
        handle = llm_otel.setup(db=f"sqlite:///{db_dir}/handoff.db", tracer_provider=fresh_provider())
        try:
            store = handle.store
            _measure_handoff(caller, timer, min(calls, 200))  # warm up; the file is created
            if not store.flush(30):
                print("warning: the store did not flush before the locked phase", file=sys.stderr)
            free = _measure_handoff(caller, timer, calls)
            store.flush(30)
            locker = sqlite3.connect(store.path, timeout=30, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            before = store.stats()
            try:
                locked = _measure_handoff(caller, timer, calls)
                during = store.stats()
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            released = time.perf_counter()
            caught_up = store.flush(60)
            catch_up_s = time.perf_counter() - released
            after = store.stats()
        finally:
            llm_otel.shutdown()
    finally:
        timer.uninstall()
    print(f"\n2. Store hand-off on the calling thread: {calls} calls per phase (µs)")
    header = f"{'phase':<8}{'hook':<30}{'count':>7}{'p50':>9}{'p99':>9}{'max':>10}"
    print(header)
    print("-" * len(header))
    for phase, samples in (("free", free), ("locked", locked)):
        for hook, values in samples.items():
            p50, p99, top = (percentile(values, q) / 1000 for q in (50, 99, 100))
            print(f"{phase:<8}{hook:<30}{len(values):>7}{p50:>9.1f}{p99:>9.1f}{top:>10.1f}")
    worst = percentile(locked["per call (sum)"], 99) / 1000
    verdict = "meets the bar" if worst <= 1000 else "ABOVE the bar"
    print(f"\nper-call hand-off p99 while locked: {worst:.1f} µs ({verdict}: ≤ 1000 µs)")
    print(
        f"store while locked: queued {during['queued']} (from {before['queued']}), "
        f"dropped {during['dropped'] - before['dropped']}, last error: {during['last_error']}"
    )
    print(
        f"after release: {'caught up' if caught_up else 'NOT caught up'} in {catch_up_s:.2f} s; "
        f"written {after['written']}, dropped {after['dropped']}, queued {after['queued']}"
    )


# -- profile ----------------------------------------------------------------------------------------

PROFILED = r"llm_otel|opentelemetry|exporter|wrapt"
"""The modules ``--profile`` lists (the SDK's own functions are left out)."""


def profile(caller: Caller, db_url: str, name: str, calls: int) -> None:
    """cProfile ``calls`` calls of one variant: the instrumentation's functions, by own and total time."""
    import cProfile
    import pstats

    chosen = {variant.name: variant for variant in variants()}.get(name)
    if chosen is None:
        raise SystemExit(
            f"--profile: no variant {name!r}; one of baseline, openai-v2, llm-otel, llm-otel+store"
        )
    chosen.enable(db_url)
    try:
        run_chunk(caller, min(calls, 200))
        profiler = cProfile.Profile()
        profiler.runcall(run_chunk, caller, calls)
    finally:
        chosen.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(PROFILED, 30)
    stats.sort_stats("cumulative").print_stats(PROFILED, 30)


# -- main -------------------------------------------------------------------------------------------


def describe_machine() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("openai", "opentelemetry-sdk", "opentelemetry-instrumentation-openai-v2"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
    return (
        f"{time.strftime('%Y-%m-%d')}; {model}, {os.cpu_count()} cores; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; {', '.join(versions)}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1500, help="calls per variant and repeat (default 1500)")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin repeats (default 5)")
    parser.add_argument(
        "--chunk", type=int, default=100, help="calls per variant between switches (default 100)"
    )
    parser.add_argument("--only", choices=("overhead", "handoff"), help="run one benchmark only")
    parser.add_argument(
        "--profile", metavar="VARIANT", help="cProfile --calls calls of one variant, then exit"
    )
    args = parser.parse_args(argv)
    if args.calls < 1 or args.repeats < 1 or args.chunk < 1:
        parser.error("--calls, --repeats and --chunk must be at least 1")
    print(describe_machine())
    print(f"load average at start: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-llm-otel-") as db_dir, fake_server_process() as base_url:
        db_url = f"sqlite:///{db_dir}/overhead.db"
        caller = Caller(base_url)
        try:
            if args.profile:
                profile(caller, db_url, args.profile, args.calls)
                return
            if args.only != "handoff":
                bench_overhead(caller, base_url, db_url, args.calls, args.repeats, args.chunk)
            if args.only != "overhead":
                bench_handoff(caller, db_dir, args.calls)
        finally:
            caller.client.close()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nran {time.perf_counter() - started:.0f} s; load average at the end: {load}")


if __name__ == "__main__":
    main()
