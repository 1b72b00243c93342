"""Benchmark: the CPU the instrumentation adds to an OpenAI call, the store's included (issue 10,
targets 1-3), and the store's hand-off on the app's thread (DESIGN §9).

Usage::

    .venv/bin/python bench/bench_instrumentation.py                 # every case, ~27 min
    .venv/bin/python bench/bench_instrumentation.py --quick         # a look, ~4 min
    .venv/bin/python bench/bench_instrumentation.py --only mock     # mock | http | stream | paced | handoff
    .venv/bin/python bench/bench_instrumentation.py --tree before=/tmp/old-checkout   # + that code
    .venv/bin/python bench/bench_instrumentation.py --profile llm-otel+store --case mock
    .venv/bin/python bench/bench_instrumentation.py --own-work --tree before=/tmp/old-checkout
    .venv/bin/python bench/bench_instrumentation.py --writer-replay --case http --tree before=/tmp/old

The official instrumentation is the reference; it is installed for the benchmark only, never as a
project dependency::

    .venv/bin/pip install opentelemetry-instrumentation-openai-v2==2.4b0 opentelemetry-util-genai==1.1b0

(2.4b0 imports ``opentelemetry.util.genai.instruments``, which util-genai 1.2b0 renamed, and
``httpx``, which openai 3.x replaced by ``httpx2``: the bench lends it ``httpx2``, so it imports and
records ``server.address`` like llm-otel.) Without it the ``openai-v2`` rows are left out, with a
message.

Cases (each an ``openai.OpenAI`` client, as an app would use it):

- ``mock`` (target 1): a non-streaming chat call (a system and a user message, ~300 characters,
  ``temperature``, ``max_tokens``) over an ``httpx2.MockTransport`` that returns prebuilt bytes: no
  socket, no server, so the process runs only the SDK and the instrumentation.
- ``http`` (target 2): the same over real HTTP to ``llm_otel.testing.FakeOpenAI`` in another
  process, with ~3 KB of text per call (a 2 KB prompt, a 1 KB answer, a fifth of it Chinese).
- ``stream`` (target 3): streamed chat calls over the mock transport, of ``SHORT`` and of ``LONG``
  content chunks; CPU per chunk = (CPU of a long stream − CPU of a short one) / (LONG − SHORT), so
  the per-call work cancels out.
- ``paced``: the ``mock`` call made ``PACE_S`` apart, as an app's calls come (not a target: what a
  call costs when it is alone in its transaction). Back to back, the store's writer takes ~20 calls
  a transaction; here each call is one transaction, and every cache is cold when it runs: the
  sleep is not CPU, so the figures stay CPU per call.

Variants: ``baseline`` (no instrumentation); ``openai-v2`` (content off, its default);
``openai-v2+content`` (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only``: the
messages on the span); ``llm-otel`` (``OpenAIInstrumentor``, content on, the default counting
scheduler, the retry hook); ``llm-otel+store`` (``llm_otel.setup(db=...)``: the same plus the SQLite
span store and its writer thread); ``--tree NAME=PATH`` adds ``NAME:llm-otel+store`` run from
another checkout (before/after a change, in the same run). Every variant's spans go to a fresh SDK
``TracerProvider`` with a ``SimpleSpanProcessor`` to an exporter that discards them.

Method. Each variant of each round runs in a **fresh process** (no state, cache or GC debt carried
over), and each round runs every variant once, in an order rotated by one per round, so that a
slow phase of the shared machine hits every variant alike. A process enables its variant, makes
``WARMUP`` unmeasured calls, waits for the store to write them, then measures ``--calls`` calls:
the **process CPU** (``time.process_time``, every thread: the store's writer counts), up to the
moment the store has written every row of those calls, and the calling thread's CPU. "added" is
the variant's value minus the baseline's of the same round; the tables give its median over the
rounds, a 95% confidence interval and min–max, and the ratio of medians to openai-v2's.

``handoff`` (DESIGN: ≤ 1 ms p99 on the app's thread, even while the database is locked): with
``setup(db=...)``, timing shims around ``SpanStore.on_call_event`` and the store's span processor's
``on_end`` while real calls run over HTTP, first with the database free, then while another
connection holds it with ``BEGIN EXCLUSIVE``; p50, p99 and max per hook and per call.

``--profile VARIANT`` runs ``--calls`` calls of one variant of ``--case`` under cProfile (every
thread's functions of llm_otel, opentelemetry, exporter, wrapt, by own time).

``--writer-replay`` (with ``--case``, ``--calls``, ``--batch`` or ``--apart``, ``--prefill``,
``--rounds``, ``--tree``) measures the store writer's own work: the records the case's calls hand
the store are captured, then replayed alone into a fresh store (``--prefill N``: one already
holding N calls) in batches of ``--batch`` calls (``--apart N``: the live records of N calls, then
their ends, as calls longer than a batch are written), their ended calls listed and indexed
``INDEX_BATCH`` at a time as the writer does, the thread CPU per call of the mapping and of each
statement (the commit included), each checkout in a process of its own, interleaved.

``--own-work`` measures each instrumentation's own work on the calling thread, per ``mock`` call
and per stream chunk, two ways the machine's load hardly moves: the Python opcodes it adds (with
``sys.settrace``, the variant's count minus the uninstrumented SDK's in the same process; C work
such as JSON encoding is not counted), and its CPU around an SDK ``create`` that returns results
parsed beforehand (warm caches, best of 9 repeats). In a real call it costs 2-4x the warm figure:
the SDK's Python between its steps leaves the caches cold.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _common as common  # noqa: E402

CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
V2_INSTALL = (
    ".venv/bin/pip install opentelemetry-instrumentation-openai-v2==2.4b0 opentelemetry-util-genai==1.1b0"
)
WARMUP = 100
"""Unmeasured calls a process makes after enabling its variant (caches, the store's first writes)."""
SHORT, LONG = 10, 210
"""Content chunks of the short and the long streams of the ``stream`` case."""
STREAM_BATCH = 20
"""Streams of one length measured in a row, alternating with the other length."""
VARIANTS = ("baseline", "openai-v2", "openai-v2+content", "llm-otel", "llm-otel+store")
REFERENCE = "openai-v2"
CASES = ("mock", "http", "stream", "paced")
FULL = {"mock": (15, 1500), "http": (12, 1000), "stream": (12, 200), "paced": (8, 200)}
"""Rounds and calls per process of each case (``--quick``: ``QUICK``)."""
QUICK = {"mock": (5, 600), "http": (4, 400), "stream": (4, 80), "paced": (3, 100)}
PACE_S = 0.03
"""Seconds between two calls of the ``paced`` case: longer than ``exporter.writer.LINGER_S``."""

WORDS_EN = (
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
    "board",
    "churn",
    "onboarding",
    "support",
    "hiring",
    "engineering",
    "plan",
    "budget",
    "risk",
    "launch",
    "metric",
)
WORDS_ZH = (
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
)


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS_ZH) if rng.random() < 0.2 else rng.choice(WORDS_EN)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


SHORT_REQUEST: dict[str, Any] = {
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
_rng = random.Random(3)
HTTP_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": _text(_rng, 200)},
        {"role": "user", "content": _text(_rng, 1800)},
    ],
    "temperature": 0.2,
    "max_tokens": 800,
}
HTTP_ANSWER = _text(_rng, 1000)
SHORT_ANSWER = (
    "Revenue rose 12% to 4.1M and churn fell to 2.3%. The new onboarding shipped in March and "
    "support tickets fell by a fifth; engineering hiring is behind plan."
)


# -- the app: a client, and one call of each case ---------------------------------------------------


def _mock_client() -> Any:
    """An ``openai.OpenAI`` client whose transport answers from prebuilt bytes."""
    import httpx2
    import openai

    from llm_otel.testing.behavior import Behavior
    from llm_otel.testing.payloads import chat_reply

    def body(request: dict[str, Any], content: str) -> bytes:
        reply = chat_reply(request, Behavior(content=content))
        if reply.events is not None:
            return b"".join(event.encode() for event in reply.events)
        return json.dumps(reply.body).encode()

    short = " ".join(f"w{i}" for i in range(SHORT))
    long = " ".join(f"w{i}" for i in range(LONG))
    streamed = {**SHORT_REQUEST, "stream": True}
    with_usage = {**streamed, "stream_options": {"include_usage": True}}
    answers = {
        (False, False, False): body(SHORT_REQUEST, SHORT_ANSWER),
        (True, False, False): body(streamed, short),
        (True, True, False): body(streamed, long),
        (True, False, True): body(with_usage, short),
        (True, True, True): body(with_usage, long),
    }

    def handler(request: Any) -> Any:
        sent = json.loads(request.content)
        stream = bool(sent.get("stream"))
        long_stream = stream and sent.get("max_tokens") == LONG
        usage = bool((sent.get("stream_options") or {}).get("include_usage"))
        kind = "text/event-stream" if stream else "application/json"
        return httpx2.Response(
            200, content=answers[stream, long_stream, usage], headers={"content-type": kind}
        )

    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(
        api_key="bench-key",
        base_url="https://api.openai.com/v1",
        http_client=httpx2.Client(transport=transport),
    )


def _calls(case: str, base_url: str | None) -> tuple[Any, dict[str, Callable[[], Any]]]:
    """The client and the calls a ``case`` makes (``stream``: a short and a long one)."""
    if case == "http":
        import openai

        client = openai.OpenAI(api_key="bench-key", base_url=base_url)
        return client, {"call": lambda: client.chat.completions.create(**HTTP_REQUEST)}
    client = _mock_client()
    if case == "mock":
        return client, {"call": lambda: client.chat.completions.create(**SHORT_REQUEST)}
    if case == "paced":
        return client, {"call": lambda: (client.chat.completions.create(**SHORT_REQUEST), time.sleep(PACE_S))}
    return client, {"short": _streamed(client, SHORT), "long": _streamed(client, LONG)}


# -- variants (in the child process) ---------------------------------------------------------------


def _streamed(client: Any, chunks: int) -> Callable[[], None]:
    """A streamed call of ``chunks`` content chunks, read to its end."""
    request = {**SHORT_REQUEST, "stream": True, "max_tokens": chunks}

    def call() -> None:
        for _ in client.chat.completions.create(**request):
            pass

    return call


def _provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Discarding(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discarding()))
    return provider


def _import_v2() -> Any:
    try:
        import httpx  # noqa: F401
    except ImportError:
        # openai-v2 2.4b0 imports ``httpx.URL`` to read the client's base_url; openai 3.x sends with
        # httpx2, whose URL the SDK uses: lend it httpx2, so that v2 imports and does all its work.
        import httpx2

        sys.modules["httpx"] = httpx2
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    return OpenAIInstrumentor


def v2_available() -> str | None:
    """None when openai-v2 imports, else why not."""
    try:
        _import_v2()
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def enable(variant: str, db_path: str) -> Callable[[], bool]:
    """Turn ``variant`` on in this process; returns its flush (True once the store wrote all)."""
    name = variant.split(":")[-1]
    if name == "baseline":
        return lambda: True
    if name.startswith("openai-v2"):
        if name == "openai-v2+content":
            os.environ[CONTENT_ENV] = "span_only"
        else:
            os.environ.pop(CONTENT_ENV, None)
        _import_v2()().instrument(tracer_provider=_provider())
        return lambda: True
    os.environ.pop(CONTENT_ENV, None)  # llm-otel records content unless told not to
    if name == "llm-otel":
        from llm_otel.instrumentation import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=_provider(), capture_content=True)
        return lambda: True
    if name == "llm-otel+store":
        import llm_otel

        handle = llm_otel.setup(db=f"sqlite:///{db_path}", tracer_provider=_provider())
        return lambda: handle.flush(60)
    raise SystemExit(f"unknown variant {variant!r}")


# -- one process of one variant ---------------------------------------------------------------------


def _measured(calls: int, call: Callable[[], Any], flush: Callable[[], bool]) -> tuple[float, float]:
    """µs per call of process CPU (until the store wrote everything) and of the calling thread."""
    gc.collect()
    process0, thread0 = time.process_time_ns(), time.thread_time_ns()
    for _ in range(calls):
        call()
    thread1 = time.thread_time_ns()
    if not flush():
        raise SystemExit("the store did not write every call within 60 s")
    process1 = time.process_time_ns()
    return (process1 - process0) / calls / 1000, (thread1 - thread0) / calls / 1000


def child(spec: dict[str, Any]) -> dict[str, float]:
    """Run one variant of one case in this (fresh) process; the values are µs."""
    if spec.get("tree"):
        sys.path.insert(0, spec["tree"])
    else:
        sys.path.insert(0, str(ROOT))
    if spec.get("own"):
        return opcodes_child(spec) if spec["own"] == "opcodes" else warm_child(spec)
    if spec.get("replay"):
        return replay_child(spec)
    case, calls = spec["case"], spec["calls"]
    _client, make = _calls(case, spec.get("base_url"))  # the calls hold the client
    flush = enable(spec["variant"], spec["db"])
    for call in make.values():
        for _ in range(WARMUP if case != "stream" else WARMUP // 5):
            call()
    flush()
    time.sleep(0.3)  # the store's first maintenance (retention) runs on its own thread: let it end
    if case != "stream":
        process, thread = _measured(calls, make["call"], flush)
        return {"process": process, "thread": thread}
    short: list[float] = []
    long: list[float] = []
    for _ in range(max(1, calls // STREAM_BATCH)):
        short.append(_measured(STREAM_BATCH, make["short"], flush)[0])
        long.append(_measured(STREAM_BATCH, make["long"], flush)[0])
    per_chunk = (statistics.median(long) - statistics.median(short)) / (LONG - SHORT)
    return {"process": statistics.median(short), "long": statistics.median(long), "chunk": per_chunk}


def _opcodes_of(call: Callable[[], Any]) -> int:
    """Python opcodes executed by one ``call()`` on this thread."""
    count = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return trace

    call()  # caches warm, lazy imports done
    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


def opcodes_child(spec: dict[str, Any]) -> dict[str, float]:
    """Opcodes a variant adds per mock call and per stream chunk (this process: SDK alone, then on)."""
    _client, calls = _calls("mock", None)  # the calls hold their clients
    _stream_client, streams = _calls("stream", None)
    measured = {"call": calls["call"], "short": streams["short"], "long": streams["long"]}
    before = {name: _opcodes_of(call) for name, call in measured.items()}
    enable(spec["variant"], spec["db"])
    after = {name: _opcodes_of(call) for name, call in measured.items()}
    added = {name: after[name] - before[name] for name in measured}
    return {"call": added["call"], "chunk": (added["long"] - added["short"]) / (LONG - SHORT)}


def warm_child(spec: dict[str, Any]) -> dict[str, float]:
    """µs a variant costs per call and per chunk around an SDK ``create`` that returns results
    parsed beforehand (best of 9 repeats): the instrumentation's own CPU with warm caches."""
    import timeit

    from openai.resources.chat.completions import Completions

    client, _ = _calls("stream", None)
    completion = client.chat.completions.create(**SHORT_REQUEST)
    chunks: dict[tuple[int, bool], list[Any]] = {}
    for length in (SHORT, LONG):
        for usage in (False, True):
            request: dict[str, Any] = {**SHORT_REQUEST, "stream": True, "max_tokens": length}
            if usage:
                request["stream_options"] = {"include_usage": True}
            chunks[length, usage] = list(client.chat.completions.create(**request))

    class Parsed:
        """A stream of chunks parsed beforehand."""

        def __init__(self, items: list[Any]) -> None:
            self._items = iter(items)
            self.response = None

        def __iter__(self) -> Any:
            return self

        def __next__(self) -> Any:
            return next(self._items)

        def close(self) -> None:
            pass

    def parsed(self: Any, **kwargs: Any) -> Any:
        if not kwargs.get("stream"):
            return completion
        usage = bool((kwargs.get("stream_options") or {}).get("include_usage"))
        return Parsed(chunks[kwargs["max_tokens"], usage])

    def best(call: Callable[[], Any], number: int) -> float:
        return min(timeit.repeat(call, number=number, repeat=9, timer=time.thread_time)) / number * 1e6

    def costs() -> dict[str, float]:
        short, long = best(_streamed(client, SHORT), 200), best(_streamed(client, LONG), 50)
        call = best(lambda: client.chat.completions.create(**SHORT_REQUEST), 2000)
        return {"call": call, "chunk": (long - short) / (LONG - SHORT)}

    Completions.create = parsed  # type: ignore[method-assign]  # before the variant wraps it
    alone = costs()
    enable(spec["variant"], spec["db"])
    return {name: value - alone[name] for name, value in costs().items()}


def own_work_markdown(variants: Sequence[str], trees: dict[str, str], work: str) -> str:
    rows = []
    for variant in variants:
        tree = trees.get(variant.split(":")[0]) if ":" in variant else None
        spec = {"case": "own", "variant": variant, "db": os.path.join(work, "own.db"), "tree": tree}
        opcodes = run_child({**spec, "own": "opcodes"})
        warm = run_child({**spec, "own": "warm"})
        rows.append(
            [
                variant,
                f"{opcodes['call']:,.0f}",
                f"{opcodes['chunk']:,.0f}",
                f"{warm['call']:.1f}",
                f"{warm['chunk']:.2f}",
            ]
        )
    header = ["variant", "opcodes per call", "opcodes per chunk", "warm µs per call", "warm µs per chunk"]
    return (
        "**own work** on the calling thread: Python opcodes added to a mock call and to a stream "
        "chunk (`sys.settrace`: the load does not move them; C work not counted), and CPU around an "
        "SDK `create` returning results parsed beforehand (warm caches, best of 9).\n\n"
        + common.table(header, rows, "lrrrr")
    )


def run_child(spec: dict[str, Any]) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{spec['variant']} ({spec['case']}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- rounds, statistics, tables ---------------------------------------------------------------------


@dataclass
class CaseResult:
    case: str
    rounds: int
    calls: int
    values: dict[str, list[dict[str, float]]]  # variant -> one dict per round
    load_before: str
    load_after: str
    seconds: float

    def added(self, variant: str, stat: str) -> list[float]:
        return [
            mine[stat] - base[stat]
            for mine, base in zip(self.values[variant], self.values["baseline"], strict=True)
        ]


def run_case(
    case: str,
    variants: Sequence[str],
    trees: dict[str, str],
    rounds: int,
    calls: int,
    work: str,
    base_url: str | None,
) -> CaseResult:
    values: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    before, started = common.load(), time.perf_counter()
    for round_ in range(rounds):
        shift = round_ % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            db = os.path.join(work, f"{case}-{round_}-{variant.replace(':', '-')}.db")
            tree = trees.get(variant.split(":")[0]) if ":" in variant else None
            spec = {
                "case": case,
                "variant": variant,
                "calls": calls,
                "db": db,
                "base_url": base_url,
                "tree": tree,
            }
            values[variant].append(run_child(spec))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(db + suffix)
        print(f"  {case}: round {round_ + 1}/{rounds} (load {common.load()})", flush=True)
    return CaseResult(case, rounds, calls, values, before, common.load(), time.perf_counter() - started)


def case_markdown(result: CaseResult) -> str:
    stat = "chunk" if result.case == "stream" else "process"
    unit = "µs per chunk" if result.case == "stream" else "µs per call"
    base = common.Summary.of(row[stat] for row in result.values["baseline"])
    added = {
        variant: common.Summary.of(result.added(variant, stat))
        for variant in result.values
        if variant != "baseline"
    }
    rows: list[list[object]] = [
        [
            "baseline",
            f"{base.median:.1f}" if result.case == "stream" else f"{base.median:.0f}",
            "",
            "",
            "",
            "",
        ]
    ]
    digits = 2 if result.case == "stream" else 0
    reference = added.get(REFERENCE)
    content = added.get(f"{REFERENCE}+content")
    for variant, summary in added.items():
        level = statistics.median(row[stat] for row in result.values[variant])
        rows.append(
            [
                variant,
                f"{level:.{digits}f}",
                summary.text(digits),
                summary.spread(digits),
                common.ratio(summary.median, reference.median) if reference else "n/a",
                common.ratio(summary.median, content.median) if content else "n/a",
            ]
        )
    what = {
        "mock": "non-streaming chat over `httpx2.MockTransport` (~300 characters of text)",
        "http": "non-streaming chat over real HTTP to the fake server (~3 KB of text per call)",
        "paced": f"the mock call made {PACE_S * 1000:.0f} ms apart (each call its own store transaction)",
        "stream": (
            f"streamed chat over `httpx2.MockTransport`, per content chunk ((CPU of a {LONG}-chunk "
            f"stream − a {SHORT}-chunk one) / {LONG - SHORT})"
        ),
    }[result.case]
    header = [
        "variant",
        f"process CPU, {unit}",
        "added [95% CI]",
        "added min–max",
        "added / openai-v2",
        "added / openai-v2+content",
    ]
    text = (
        f"**{result.case}**: {what}. {result.rounds} rounds × {result.calls} "
        f"{'streams' if result.case == 'stream' else 'calls'} per variant, each variant a fresh process; "
        f"{result.seconds:.0f} s; load average {result.load_before} before, {result.load_after} after.\n\n"
        + common.table(header, rows)
    )
    if result.case != "stream":
        thread_rows = []
        for variant in added:
            summary = common.Summary.of(result.added(variant, "thread"))
            thread_rows.append([variant, summary.text(), summary.spread()])
        text += "\n\nCalling thread's CPU only (added, µs per call):\n\n" + common.table(
            ["variant", "added [95% CI]", "min–max"], thread_rows
        )
    return text


def case_summary(result: CaseResult) -> dict[str, float]:
    """Median added CPU of each variant (µs per call, or per chunk for ``stream``)."""
    stat = "chunk" if result.case == "stream" else "process"
    return {
        variant: statistics.median(result.added(variant, stat))
        for variant in result.values
        if variant != "baseline"
    }


# -- the fake server (http and handoff cases) -------------------------------------------------------

SERVER_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from llm_otel.testing import FakeOpenAI
server = FakeOpenAI().start()
print(server.port, flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
server.stop()
"""


@contextlib.contextmanager
def fake_server_process(answer: str | None = None) -> Iterator[str]:
    """Run ``FakeOpenAI`` in a child process (its default answer ``answer``); yields its base URL."""
    import urllib.request

    child_process = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child_process.stdout is not None and child_process.stdin is not None
        port = int(child_process.stdout.readline())
        base_url = f"http://127.0.0.1:{port}/v1"
        if answer is not None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/_fake/default",
                data=json.dumps({"behavior": {"content": answer}}).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        yield base_url
    finally:
        with contextlib.suppress(OSError):
            child_process.stdin.close()  # type: ignore[union-attr]
        try:
            child_process.wait(5)
        except subprocess.TimeoutExpired:
            child_process.kill()
            child_process.wait()


# -- hand-off ---------------------------------------------------------------------------------------


def bench_handoff(calls: int, work: str) -> str:
    import sqlite3

    import openai

    import llm_otel
    from exporter import store as store_module

    by_hook: dict[str, list[int]] = {}
    current = [0]
    on_call_event = store_module.SpanStore.on_call_event
    on_end = store_module._StoreSpanProcessor.on_end

    def record(hook: str, duration_ns: int) -> None:
        by_hook.setdefault(hook, []).append(duration_ns)
        current[0] += duration_ns

    def timed_on_call_event(self: Any, kind: str, *args: Any) -> None:
        start = time.perf_counter_ns()
        on_call_event(self, kind, *args)
        record(f"on_call_event({kind})", time.perf_counter_ns() - start)

    def timed_on_end(self: Any, span: Any) -> None:
        start = time.perf_counter_ns()
        on_end(self, span)
        record("span_processor.on_end", time.perf_counter_ns() - start)

    def measure(client: Any, count: int) -> dict[str, list[int]]:
        by_hook.clear()
        per_call = []
        for _ in range(count):
            current[0] = 0
            client.chat.completions.create(**SHORT_REQUEST)
            per_call.append(current[0])
        return {**{hook: list(values) for hook, values in by_hook.items()}, "per call (sum)": per_call}

    store_module.SpanStore.on_call_event = timed_on_call_event  # type: ignore[method-assign]
    store_module._StoreSpanProcessor.on_end = timed_on_end  # type: ignore[method-assign]
    try:
        with fake_server_process() as base_url:
            client = openai.OpenAI(api_key="bench-key", base_url=base_url)
            handle = llm_otel.setup(db=f"sqlite:///{work}/handoff.db", tracer_provider=_provider())
            try:
                store = handle.store
                measure(client, min(calls, 200))
                store.flush(30)
                free = measure(client, calls)
                store.flush(30)
                locker = sqlite3.connect(store.path, timeout=30, isolation_level=None)
                locker.execute("BEGIN EXCLUSIVE")
                try:
                    locked = measure(client, calls)
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
                client.close()
    finally:
        store_module.SpanStore.on_call_event = on_call_event  # type: ignore[method-assign]
        store_module._StoreSpanProcessor.on_end = on_end  # type: ignore[method-assign]
    rows = []
    for phase, samples in (("free", free), ("locked", locked)):
        for hook, values in samples.items():
            p50, p99, top = (common.percentile(values, q) / 1000 for q in (50, 99, 100))
            name = f"**{hook}**" if hook == "per call (sum)" else f"`{hook}`"
            rows.append([phase, name, len(values), f"{p50:.1f}", f"{p99:.1f}", f"{top:.0f}"])
    worst = common.percentile(locked["per call (sum)"], 99) / 1000
    return (
        f"**handoff**: {calls} calls per phase over HTTP; wall time inside the hooks, µs.\n\n"
        + common.table(["phase", "hook", "count", "p50", "p99", "max"], rows, "llrrrr")
        + f"\n\nPer-call hand-off p99 while locked: **{worst:.1f} µs** (bar ≤ 1000 µs). While locked "
        f"the writer held {during['queued']} records (dropped {during['dropped']}; last error: "
        f"{during['last_error']}); after the release it {'caught up' if caught_up else 'had NOT caught up'} "
        f"in {catch_up_s:.2f} s (written {after['written']}, dropped {after['dropped']})."
    )


# -- profile ----------------------------------------------------------------------------------------


def profile(variant: str, case: str, calls: int, work: str) -> None:
    import cProfile
    import pstats

    sys.path.insert(0, str(ROOT))
    with contextlib.ExitStack() as stack:
        base_url = stack.enter_context(fake_server_process(HTTP_ANSWER)) if case == "http" else None
        _, make = _calls(case, base_url)
        call = make.get("call") or make["long"]
        flush = enable(variant, os.path.join(work, "profile.db"))
        for _ in range(WARMUP):
            call()
        flush()
        profiler = cProfile.Profile(time.thread_time)  # the calling thread only, its CPU
        profiler.enable()
        for _ in range(calls):
            call()
        flush()
        profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(r"llm_otel|opentelemetry|exporter|wrapt", 40)


def _statement_names(tree_sql: Any) -> dict[str, str]:
    """The write statements of a checkout's ``exporter._sql``, by their SQL: the replay's row names."""
    import dataclasses

    names = {"BEGIN IMMEDIATE": "begin", "COMMIT": "commit"}
    for field in dataclasses.fields(tree_sql.SQLITE):
        value = getattr(tree_sql.SQLITE, field.name)
        if isinstance(value, str) and value:
            names.setdefault(value, f"{field.name}")
        elif isinstance(value, dict):
            names.update({sql: f"update ({kind})" for kind, sql in value.items()})
    from exporter import migrations

    for module, constant in (
        *((tree_sql, name) for name in ("EVENT_STATE_SQL", "TEXT_TO_INDEX_SQL", "FTS_ROW_SQL")),
        *((tree_sql, name) for name in ("DEFER_INDEX_SQL", "DEFERRED_CALLS_SQL")),
        (tree_sql, "CJK_ROW_SQL"),
        *((migrations, name) for name in ("FTS_INDEXED_SQL", "CJK_INDEXED_SQL", "FTS_UNINDEX_SQL")),
    ):
        if hasattr(module, constant):
            names[getattr(module, constant)] = constant.removesuffix("_SQL").lower()
    return names


def _call_id_maker() -> Callable[[], str]:
    """The checkout's way of making a call id (``new_call_id``; before it, 128 random bits)."""
    from random import getrandbits

    from llm_otel.instrumentation import call

    return getattr(call, "new_call_id", None) or (lambda: f"{getrandbits(128):032x}")


def _prefill(store: Any, template: list[Any], calls: int) -> None:
    """Write ``calls`` ended calls (copies of the ``template`` ends' rows, each with an id made as
    the checkout makes them) before the replay, so that it writes into b-trees of a store's size."""
    from exporter.mapping import CallRows, RowBatch, span_to_rows

    rows = [r for r in (span_to_rows(record.span) for record in template) if r is not None]
    new_id = _call_id_maker()
    for start in range(0, calls, 500):
        batch = RowBatch()
        for i in range(start, min(calls, start + 500)):
            source, call_id = rows[i % len(rows)], new_id()
            copied = CallRows(
                {**source.call, "call_id": call_id},
                {**source.body, "call_id": call_id},
                [{**event, "call_id": call_id, "live": 0} for event in source.events],
            )
            batch.finals.append(copied)
            batch.events.extend(copied.events)
        store.write(batch)


def replay_child(spec: dict[str, Any]) -> dict[str, float]:
    """The writer's work on the records ``spec["calls"]`` calls of ``spec["case"]`` hand the store,
    replayed alone in batches of ``spec["batch"]`` calls (``spec["apart"]``: the live records of
    that many calls first, then their ends), into a store holding ``spec["prefill"]`` calls: thread
    CPU µs per call of each step. With ``spec["instructions"]`` (run under callgrind, collecting
    inside ``functools.reduce`` only) the loop runs inside one ``reduce`` and nothing is timed."""
    import functools
    import threading
    from contextlib import contextmanager

    from exporter import _connection, _sql, writer
    from exporter.database import open_database
    from exporter.migrations import migrate
    from exporter.records import EndedSpan

    captured: list[Any] = []
    writer.StoreWriter.put = lambda self, record: captured.append(record) or True  # type: ignore[method-assign]
    database = open_database(os.path.join(spec["work"], "replayed.db"))
    migrate(database)
    with contextlib.ExitStack() as stack:
        base_url = stack.enter_context(fake_server_process(HTTP_ANSWER)) if spec["case"] == "http" else None
        _client, make = _calls(spec["case"], base_url)
        enable("llm-otel+store", os.path.join(spec["work"], "captured.db"))
        if spec.get("prefill"):  # before the replayed calls are made: their ids are made later
            for _ in range(20):
                make["call"]()
            template = [record for record in captured if type(record) is EndedSpan]
            _prefill(_connection.StoreFile(lambda: database), template, spec["prefill"])
            captured.clear()
        for _ in range(spec["calls"]):
            make["call"]()
    records = list(captured)
    names = _statement_names(_sql)
    costs: dict[str, int] = {}
    timed = not spec.get("instructions")

    class TimedCursor:
        def __init__(self, cursor: Any) -> None:
            self.cursor, self.connection = cursor, cursor.connection

        def _timed(self, sql: str, run: Callable[..., Any], *args: Any) -> Any:
            start = time.thread_time_ns()
            try:
                return run(sql, *args)
            finally:
                name = names.get(sql, sql[:40])
                costs[name] = costs.get(name, 0) + time.thread_time_ns() - start

        def execute(self, sql: str, *args: Any) -> Any:
            return self._timed(sql, self.cursor.execute, *args)

        def executemany(self, sql: str, rows: Any) -> Any:
            return self._timed(sql, self.cursor.executemany, rows)

        def fetchone(self) -> Any:
            return self.cursor.fetchone()

        def fetchall(self) -> list[Any]:
            return self.cursor.fetchall()

        def close(self) -> None:
            self.cursor.close()

    @contextmanager
    def timed_transaction(connection: Any, begin: str = "BEGIN IMMEDIATE", **_: Any) -> Iterator[Any]:
        cursor = TimedCursor(connection.cursor())
        cursor.execute(begin)
        yield cursor
        cursor.execute("COMMIT")

    if timed:
        _connection.transaction = timed_transaction  # type: ignore[assignment]
    store = _connection.StoreFile(lambda: database)
    mapper = writer.StoreWriter.__new__(writer.StoreWriter)  # its _map alone: no thread
    mapper._lock, mapper.process, mapper._dropped = threading.Lock(), "bench:0", 0
    mapper._prompts = {}  # the prompts its queued rows computed (a checkout before them ignores it)
    ends = [record for record in records if type(record) is EndedSpan]
    live = [record for record in records if type(record) is not EndedSpan]
    batches, per_call = [], spec["batch"]
    if spec.get("apart"):
        per_call = spec["apart"]
        lives_per_call = len(live) // len(ends)
        for start in range(0, len(ends) - per_call + 1, per_call):
            batches.append(live[start * lives_per_call : (start + per_call) * lives_per_call])
            batches.append(ends[start : start + per_call])
    else:
        first = 0
        for last in range(per_call - 1, len(ends), per_call):
            end_at = records.index(ends[last], first)
            batches.append(records[first : end_at + 1])
            first = end_at + 1
    calls = len(batches) * per_call // (2 if spec.get("apart") else 1)
    index_batch = getattr(writer, "INDEX_BATCH", None)  # a checkout before it indexes every batch
    listed = 0

    def rows_of(batch: list[Any]) -> Any:
        """The batch's rows, its ended calls listed to be indexed later, or indexed with those
        listed once ``INDEX_BATCH`` are, as the writer does."""
        nonlocal listed
        rows = writer.StoreWriter._map(mapper, batch)
        if index_batch is not None:
            rows.index_deferred = listed >= index_batch
            rows.defer_index = not rows.index_deferred
            listed = listed + len(rows.finals) if rows.defer_index else 0
        return rows

    if not timed:
        replay = lambda _, batch: store.write(rows_of(list(batch)))  # noqa: E731
        functools.reduce(replay, batches, None)
        return {"calls": calls}
    mapped = 0
    for batch in batches:
        start = time.thread_time_ns()
        rows = rows_of(list(batch))
        mapped += time.thread_time_ns() - start
        store.write(rows)
    result = {name: cost / calls / 1000 for name, cost in costs.items()}
    result["mapping"] = mapped / calls / 1000
    return result


def instructions_child(spec: dict[str, Any]) -> dict[str, float]:
    """``replay_child`` under callgrind: instructions per call of the replay loop, in all and in
    SQLite's ``sqlite3_step`` (the statements' own work; the rest is Python: mapping, binding)."""
    out = os.path.join(spec["work"], "callgrind.out")
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=functools_reduce",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps(spec),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"replay under callgrind failed:\n{done.stderr[-3000:]}")
    calls = json.loads(done.stdout.strip().splitlines()[-1])["calls"]
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = step = 0
    for line in annotated.splitlines():
        words = line.split()
        if not words:
            continue
        count = words[0].replace(",", "")
        if line.rstrip().endswith("PROGRAM TOTALS") and count.isdigit():
            total = int(count)
        elif count.isdigit() and not step and any(word.endswith(":sqlite3_step") for word in words):
            step = int(count)
    return {"instructions": total / calls, "sqlite3_step": step / calls}


def replay_markdown(
    case: str,
    batch: int,
    apart: int,
    prefill: int,
    results: dict[str, list[dict[str, float]]],
    instructions: bool = False,
) -> str:
    """The replay's table: µs (or instructions) per call of each step (median over the runs), one
    column per tree."""
    steps = sorted(
        {step for runs in results.values() for run in runs for step in run},
        key=lambda step: -statistics.median(run.get(step, 0.0) for run in next(iter(results.values()))),
    )
    columns = list(results)

    def median(column: str, step: str | None) -> float:
        return statistics.median(
            sum(run.values()) if step is None else run.get(step, 0.0) for run in results[column]
        )

    how = f"the live records of {apart} calls, then their ends" if apart else f"batches of {batch} calls"
    if prefill:
        how += f", into a store of {prefill:,} calls"
    runs = len(next(iter(results.values())))
    if instructions:
        rows = [
            [label, *(f"{median(c, step) / 1e6:.3f} M" for c in columns)]
            for label, step in (("whole loop", "instructions"), ("of which `sqlite3_step`", "sqlite3_step"))
        ]
        what = "instructions per call (callgrind, inside the replay loop only)"
    else:
        rows = [[f"`{step}`", *(f"{median(c, step):.1f}" for c in columns)] for step in steps]
        rows.append(["**whole batch**", *(f"**{median(c, None):.0f}**" for c in columns)])
        what = "thread CPU µs per call of each step"
    return (
        f"**writer replay, {case}**: the records of the case's calls replayed alone ({how}), {what}, "
        f"median of {runs} runs per checkout (interleaved); load {common.load()}.\n\n"
        + common.table(["step", *columns], rows, "l" + "r" * len(columns))
    )


# -- main -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls (~2 min)")
    parser.add_argument("--only", choices=(*CASES, "handoff"), action="append", help="run these cases only")
    parser.add_argument("--rounds", type=int, help="rounds per case (default: 15/12/12; --quick 5/4/4)")
    parser.add_argument("--calls", type=int, help="calls (streams) per process")
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also run llm-otel+store from another checkout, as NAME:llm-otel+store",
    )
    parser.add_argument("--variants", help="comma-separated variants to run (default: all)")
    parser.add_argument("--markdown", help="write the results as a markdown fragment to this file")
    parser.add_argument("--summary", help="write the key figures as JSON to this file")
    parser.add_argument("--profile", metavar="VARIANT", help="cProfile --calls calls of one variant")
    parser.add_argument("--case", choices=CASES, default="mock", help="the case --profile runs")
    parser.add_argument(
        "--own-work",
        action="store_true",
        help="each variant's own work per call and chunk",
    )
    parser.add_argument(
        "--writer-replay",
        action="store_true",
        help="the store writer's CPU per call of each statement, its records replayed alone (--case)",
    )
    parser.add_argument("--batch", type=int, default=20, help="--writer-replay: calls per batch")
    parser.add_argument(
        "--apart", type=int, default=0, help="--writer-replay: live records of N calls, then their ends"
    )
    parser.add_argument(
        "--prefill", type=int, default=0, help="--writer-replay: into a store already holding N calls"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="--writer-replay: count instructions per call under callgrind (the load does not move them)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-instrumentation-") as work:
        if args.profile:
            profile(args.profile, args.case, args.calls or 1000, work)
            return
        trees = dict(item.split("=", 1) for item in args.tree)
        if args.writer_replay:
            checkouts = {"this checkout": "", **trees}
            replays: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
            for _ in range(args.rounds or 3):
                for name, tree in checkouts.items():
                    spec = {
                        "replay": True,
                        "case": args.case,
                        "variant": "replay",
                        "calls": args.calls or 1000,
                        "batch": args.batch,
                        "apart": args.apart,
                        "prefill": args.prefill,
                        "instructions": args.instructions,
                        "tree": tree,
                        "work": tempfile.mkdtemp(dir=work),
                    }
                    replays[name].append(instructions_child(spec) if args.instructions else run_child(spec))
            how = (args.case, args.batch, args.apart, args.prefill)
            print(replay_markdown(*how, replays, args.instructions))
            return
        variants = list(args.variants.split(",") if args.variants else VARIANTS)
        missing = v2_available()
        if missing:
            print(
                f"openai-v2 left out: not importable ({missing}); install it with {V2_INSTALL}",
                file=sys.stderr,
            )
            variants = [variant for variant in variants if not variant.startswith("openai-v2")]
        if "baseline" not in variants:
            variants.insert(0, "baseline")
        if args.own_work:
            shown = [variant for variant in variants if variant != "baseline"]
            print(own_work_markdown([*shown, *(f"{name}:llm-otel" for name in trees)], trees, work))
            return
        variants += [f"{name}:llm-otel+store" for name in trees]
        print(common.describe_machine())
        print(f"load average at start: {common.load()}", flush=True)
        sections = []
        summary: dict[str, Any] = {}
        for case in args.only or (*CASES, "handoff"):
            if case == "handoff":
                sections.append(bench_handoff(args.calls or (500 if args.quick else 1500), work))
                print(sections[-1], flush=True)
                continue
            rounds, calls = (QUICK if args.quick else FULL)[case]
            rounds, calls = args.rounds or rounds, args.calls or calls
            with contextlib.ExitStack() as stack:
                base_url = stack.enter_context(fake_server_process(HTTP_ANSWER)) if case == "http" else None
                result = run_case(case, variants, trees, rounds, calls, work, base_url)
            sections.append(case_markdown(result))
            summary[case] = case_summary(result)
            print("\n" + sections[-1] + "\n", flush=True)
    common.write_markdown(args.markdown, "\n\n".join(sections))
    common.write_summary(args.summary, summary)


if __name__ == "__main__":
    main()
