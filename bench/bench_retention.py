"""Benchmark: retention of one day of calls at 1M calls while the app writes (issue 10, target 10).

Usage::

    .venv/bin/python bench/bench_retention.py                  # 1M calls (built once: ~12 min of CPU)
    .venv/bin/python bench/bench_retention.py --quick          # 100k calls
    .venv/bin/python bench/bench_retention.py --tree before=/tmp/old-checkout   # + that code
    .venv/bin/python bench/bench_retention.py --store /tmp/llm_otel_bench_1000000.db \\
        --case "other process" --limit-s 1500

The store holds ``--calls`` ended calls spread evenly over the 8 days before the hour it is built,
each with ~1.5 KB of text (a system instruction, a user message, an answer, drawn from a pool of
``TEXT_POOL`` of each), its body, three events and its full-text entries, written with the
checkout's own ``exporter._sql.write_batch`` (so an older checkout gets its own schema), in
transactions of ``BUILD_BATCH`` calls; the file is built once per checkout and size, used for
``CACHE_HOURS`` and copied for every case. Retention keeps 7 days: it deletes the store's first day
and the hours since it was built. ``--store`` prunes a copy of a given store instead (e.g.
``bench_list_1m``'s, whose calls are smaller), with retention's clock set a day after its first call;
``--case`` runs one case; ``--limit-s`` stops a case whose retention has not ended by then and
reports the waits so far and how many old calls it deleted (not completed).

Cases, each in a process of its own, each on a fresh copy of the file:

- ``same process``: what ``llm_otel.setup()`` does: a ``SpanStore`` with ``retention_days=7``,
  whose maintenance thread runs retention at start, while the app ends ``--rate`` calls a second
  (real spans with ~1.5 KB of text) into the same store;
- ``other process``: an app process writes as above with a store that has nothing to prune, while
  this process runs ``exporter.prune`` on the same file (another process's retention, or the CLI);
- ``app alone``: the app of ``same process`` with nothing to prune, for ``--alone-s`` (60 s): the
  waits the machine gives a write with no retention at all, at the load of the run (the floor of
  the other two: on a loaded machine a writer thread waits for a core too).

For every write transaction of the app's writer, the **wait**: from asking for the transaction
(``StoreFile.transaction``) to holding the write lock. Printed: retention's duration and what it
deleted, whether it completed, and the writes during it: count, wait p50 / p99 / max in ms
(target: max ≤ 50 ms, bar ≤ 100 ms). For the same process case, also how long each kind of
retention's transactions held the lock (its deletes, each index's merge steps, the log's folds,
the vacuum steps): a wait is at most one of them (``exporter._fair_lock``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _common as common  # noqa: E402

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
DAYS = 8
RETENTION_DAYS = 7
FULL = {"calls": 1_000_000, "rate": 50.0}
QUICK = {"calls": 100_000, "rate": 50.0}
CASES = ("same process", "other process", "app alone")
NEVER_LOST_S = 10 * 365 * 86_400.0
"""The stores' heartbeat timeout: no call in flight is closed as lost (a given ``--store`` may hold
calls in flight of processes long gone, bench_list_1m's 40,000: closing them is not retention's
delete work, and the app's own maintenance would do it beside the other process's prune)."""
BUILD_BATCH = 20_000
"""Calls a build transaction writes (the store's own writer writes a few; a bulk load many)."""
TEXT_POOL = 4096
"""Distinct texts of each kind the built calls draw theirs from (a call's text costs the indexes
what any text of its length does; generating 3M texts in Python was half of a 1M build)."""
CACHE_HOURS = 6
"""A built store is used for this long after the hour it was built for: retention then deletes the
store's first day and up to these hours more (the calls are spread over the 8 days before it)."""


# -- the store ----------------------------------------------------------------------------------


def build(path: Path, calls: int, now_ms: int, seed: int = 5) -> None:
    """``calls`` ended calls over the ``DAYS`` days before ``now_ms``, with the checkout's writer."""
    from exporter import migrate, open_database
    from exporter._sql import statements_for, write_batch
    from exporter.mapping import CallRows, RowBatch, to_json

    try:
        from exporter._connection import transaction
    except ImportError:  # an older checkout
        from exporter._sql import transaction

    database = open_database(str(path))
    migrate(database)
    statements = statements_for(database)
    rng = random.Random(seed)
    fields = {field.name for field in dataclasses.fields(CallRows)}
    step_ms = DAYS * DAY_MS / calls
    start_ms = now_ms - DAYS * DAY_MS
    pools = [[common.realistic_text(rng, n) for _ in range(TEXT_POOL)] for n in (100, 900, 500)]
    for first in range(0, calls, BUILD_BATCH):
        batch = RowBatch()
        for i in range(first, min(calls, first + BUILD_BATCH)):
            enqueued = int(start_ms + i * step_ms)
            call_id = f"{i:032x}"
            system, user, answer = (rng.choice(pool) for pool in pools)
            call = _call_row(call_id, enqueued, user, answer, rng)
            body = {
                "call_id": call_id,
                "request_params": to_json({"temperature": 0.2}),
                "system_instructions": to_json([{"type": "text", "content": system}]),
                "input_messages": to_json([{"role": "user", "parts": [{"type": "text", "content": user}]}]),
                "output_messages": to_json(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": answer}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
                "attributes": to_json({"server.port": 443}),
            }
            events = [
                {"call_id": call_id, "kind": kind, "at": at, "data": None, "live": 0}
                for kind, at in (
                    ("queued", enqueued),
                    ("dispatched", enqueued + 5),
                    ("succeeded", call["ended_at"]),
                )
            ]
            extra = {
                "prompt_text": system + "\n" + user,
                "response_text": answer,
            }  # checkouts before migration 4
            rows = CallRows(
                call=call, body=body, events=[], **{k: v for k, v in extra.items() if k in fields}
            )
            batch.finals.append(rows)
            batch.events.extend(events)
        with transaction(database.connection(), statements.begin) as cursor:
            write_batch(cursor, batch, statements)
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()


def _call_row(call_id: str, enqueued: int, user: str, answer: str, rng: random.Random) -> dict[str, Any]:
    from exporter.models import LLMCall

    row: dict[str, Any] = dict.fromkeys(field.column_name for field in LLMCall._meta.sorted_fields)
    duration = rng.randint(200, 20_000)
    row.update(
        call_id=call_id,
        trace_id=f"{rng.getrandbits(128):032x}",
        span_id=f"{rng.getrandbits(64):016x}",
        status="succeeded",
        operation="chat",
        provider="openai",
        api_type="chat_completions",
        model=rng.choice(["gpt-4o-mini", "gpt-4o", "gpt-4.1"]),
        source=f"source-{rng.randrange(12)}",
        requested_by=f"user-{rng.randrange(300)}",
        stream=False,
        enqueued_at=enqueued,
        started_at=enqueued + 5,
        ended_at=enqueued + 5 + duration,
        wait_ms=5,
        duration_ms=duration,
        retry_count=0,
        input_tokens=rng.randint(50, 4000),
        output_tokens=rng.randint(10, 2000),
        prompt_preview=user[:200],
        response_preview=answer[:200],
        process="host-a:1",
        updated_at=enqueued + 5 + duration,
    )
    return row


# -- one case in one process --------------------------------------------------------------------


@contextlib.contextmanager
def timed_writes() -> Iterator[list[tuple[float, float]]]:
    """Every write transaction of a StoreFile: (start, wait in seconds)."""
    try:
        from exporter import _connection
    except ImportError:  # an older checkout
        from exporter import _sql as _connection

    waits: list[tuple[float, float]] = []
    original = _connection.StoreFile.transaction

    @contextlib.contextmanager
    def transaction(self: Any) -> Iterator[Any]:
        asked = time.perf_counter()
        with original(self) as cursor:
            waits.append((asked, time.perf_counter() - asked))
            yield cursor

    _connection.StoreFile.transaction = transaction  # type: ignore[method-assign]
    try:
        yield waits
    finally:
        _connection.StoreFile.transaction = original  # type: ignore[method-assign]


@contextlib.contextmanager
def timed_holds() -> Iterator[dict[str, list[float]]]:
    """How long each of retention's write transactions held the lock, in ms, by what it did (the
    step's function; a merge step's with its index): what stands behind the app's longest waits."""
    from functools import partial

    from exporter import retention

    holds: dict[str, list[float]] = {}
    original = getattr(retention, "_write", None)
    if original is None:  # an older checkout
        yield holds
        return

    def kind(work: Any) -> str:
        table = ""
        while True:
            if isinstance(work, partial):
                names = [arg for arg in work.args if isinstance(arg, str) and arg.startswith("llm_")]
                table = f" {names[0]}" if names else table
                work = work.func
                continue
            inner = [  # a batch's ``lambda: step(size)``: the step it calls
                cell.cell_contents
                for cell in getattr(work, "__closure__", None) or ()
                if isinstance(cell.cell_contents, partial)
            ]
            if getattr(work, "__name__", "") != "<lambda>" or not inner:
                break
            work = inner[0]
        return getattr(work, "__name__", "a step").lstrip("_").replace("<lambda>", "a statement") + table

    def write(database: Any, lock: Any, work: Any, **options: Any) -> Any:
        result, held_s = original(database, lock, work, **options)
        holds.setdefault(kind(work), []).append(held_s * 1000)
        return result, held_s

    retention._write = write
    try:
        yield holds
    finally:
        retention._write = original


def _holds_summary(holds: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        what: {"n": len(ms), "p99": common.percentile(ms, 99), "max": max(ms)}
        for what, ms in sorted(holds.items(), key=lambda item: -max(item[1]))
    }


def _app(store: Any, rate: float, stop: threading.Event) -> threading.Thread:
    """The app: ``rate`` calls a second, each queued, dispatched and ended (~1.5 KB of text), the
    ended span handed to the store as ``llm_otel.setup()`` does (its final row, body and index)."""
    from opentelemetry.sdk.trace import TracerProvider

    from tests.exporter.call_spans import dispatch, finish, start_call

    provider = TracerProvider()
    provider.add_span_processor(store.span_processor)
    tracer = provider.get_tracer("bench")
    rng = random.Random(9)

    def run() -> None:
        i = 0
        while not stop.is_set():
            user, answer = common.realistic_text(rng, 900), common.realistic_text(rng, 500)
            messages = [{"role": "user", "parts": [{"type": "text", "content": user}]}]
            output = [
                {"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}
            ]
            span = start_call(
                tracer,
                f"app-{os.getpid()}-{i}",
                at_ms=time.time() * 1000 - _t0_ms(),
                **{"gen_ai.input.messages": json.dumps(messages, ensure_ascii=False)},
            )
            store.on_call_event("queued", span, span.start_time, {})
            dispatch(span, at_ms=(span.start_time // 1_000_000) - _t0_ms() + 5, wait=0.005)
            finish(
                span,
                at_ms=(span.start_time // 1_000_000) - _t0_ms() + 20,
                **{"gen_ai.output.messages": json.dumps(output, ensure_ascii=False)},
            )
            i += 1
            stop.wait(1 / rate)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _t0_ms() -> int:
    from tests.exporter.call_spans import T0_MS

    return T0_MS


def _summary(waits: list[tuple[float, float]], started: float, ended: float) -> dict[str, Any]:
    during = [wait * 1000 for at, wait in waits if started <= at <= ended]
    return {
        "writes": len(during),
        "p50": statistics.median(during) if during else None,
        "p99": common.percentile(during, 99) if during else None,
        "max": max(during) if during else None,
    }


def _old_calls(path: Path, now_ms: int | None) -> int:
    """The calls enqueued before retention's cut-off (``now_ms``, else now, less 7 days)."""
    import sqlite3

    cutoff_ms = (now_ms or int(time.time() * 1000)) - RETENTION_DAYS * DAY_MS
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        old = "SELECT COUNT(*) FROM llm_calls WHERE enqueued_at < ?"
        return connection.execute(old, (cutoff_ms,)).fetchone()[0]


def _unfinished(path: Path, now_ms: int | None, old: int, limit_s: float) -> dict[str, Any]:
    left = _old_calls(path, now_ms)
    return {"error": f"did not end within {limit_s:.0f} s ({old - left:,} of {old:,} old calls deleted)"}


def case_same_process(path: Path, rate: float, now_ms: int | None, limit_s: float) -> dict[str, Any]:
    import exporter.store as store_module
    from exporter import retention

    runs: list[dict[str, Any]] = []
    original = retention.run_retention

    def run_retention(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = original(*args, **({"now_ms": now_ms} if now_ms else {}), **kwargs)
        except Exception as exc:
            runs.append(
                {"started": started, "ended": time.perf_counter(), "error": f"{type(exc).__name__}: {exc}"}
            )
            raise
        runs.append({"started": started, "ended": time.perf_counter(), "pruned": result.rows_pruned})
        return result

    store_module.run_retention = run_retention
    stop = threading.Event()
    with timed_writes() as waits, timed_holds() as holds:
        store = store_module.SpanStore(
            str(path), retention_days=RETENTION_DAYS, heartbeat_timeout_s=NEVER_LOST_S
        )
        old = _old_calls(path, now_ms)
        app = _app(store, rate, stop)
        started = time.perf_counter()
        while not runs and time.perf_counter() < started + limit_s:
            time.sleep(0.2)
        stop.set()
        app.join()
        if not runs:  # retention goes on: what the writes waited until now, then out
            ended = time.perf_counter()
            unfinished = _unfinished(path, now_ms, old, limit_s)
            return {**unfinished, "seconds": ended - started, **_summary(waits, started, ended)}
        store.flush(30)
        store.shutdown()
    run = runs[0]
    summary = _summary(waits, run["started"], run["ended"])
    return {**run, "seconds": run["ended"] - run["started"], **summary, "holds": _holds_summary(holds)}


def case_alone(path: Path, rate: float, seconds: float) -> dict[str, Any]:
    from exporter.store import SpanStore

    stop = threading.Event()
    with timed_writes() as waits:
        store = SpanStore(str(path), retention_days=3650, heartbeat_timeout_s=NEVER_LOST_S)
        store.flush(60)
        app = _app(store, rate, stop)
        started = time.perf_counter()
        time.sleep(seconds)
        ended = time.perf_counter()
        stop.set()
        app.join()
        store.flush(30)
        store.shutdown()
    return {"pruned": 0, "seconds": ended - started, **_summary(waits, started, ended)}


def case_other_process(
    path: Path, rate: float, work: Path, now_ms: int | None, limit_s: float
) -> dict[str, Any]:
    from exporter import open_database, prune

    ready, waits_file = work / "app-ready", work / "app-waits.json"
    spec = {"case": "app", "db": str(path), "rate": rate, "ready": str(ready), "waits": str(waits_file)}
    app = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path[:2])},
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        while not ready.exists():
            time.sleep(0.05)
        time.sleep(1)
        old = _old_calls(path, now_ms)
        outcome: dict[str, Any] = {}

        def run() -> None:
            database = open_database(str(path))
            try:
                outcome["pruned"] = prune(database, older_than=RETENTION_DAYS, now_ms=now_ms)
            except Exception as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"
            database.close()

        started = time.time()
        pruning = threading.Thread(target=run, daemon=True)  # left behind if it does not end in time
        pruning.start()
        pruning.join(limit_s)
        ended = time.time()
        if pruning.is_alive():
            outcome = _unfinished(path, now_ms, old, limit_s)
    finally:
        assert app.stdin is not None
        app.stdin.close()
        app.wait(120)
    waits = [(at, wait) for at, wait in json.loads(waits_file.read_text())]
    return {**outcome, "seconds": ended - started, **_summary(waits, started, ended)}


def app_child(spec: dict[str, Any]) -> None:
    """The app of ``other process``: writes until stdin closes; its waits are stamped wall-clock."""
    from exporter.store import SpanStore

    stop = threading.Event()
    with timed_writes() as waits:
        # nothing of its own to prune, nor calls in flight to close
        store = SpanStore(spec["db"], retention_days=3650, heartbeat_timeout_s=NEVER_LOST_S)
        store.flush(60)
        app = _app(store, spec["rate"], stop)
        Path(spec["ready"]).touch()
        sys.stdin.read()
        stop.set()
        app.join()
        store.flush(30)
        store.shutdown()
    offset = time.time() - time.perf_counter()
    Path(spec["waits"]).write_text(json.dumps([(at + offset, wait) for at, wait in waits]))


def child(spec: dict[str, Any]) -> dict[str, Any] | None:
    sys.path.insert(0, spec.get("tree") or str(ROOT))
    sys.path.insert(1, str(ROOT))  # tests.exporter.call_spans
    if spec["case"] == "app":
        app_child(spec)
        return None
    if spec["case"] == "build":
        build(Path(spec["db"]), spec["calls"], spec["now_ms"])
        return {"bytes": Path(spec["db"]).stat().st_size}
    path = Path(spec["db"])
    if spec["case"] == "same process":
        return case_same_process(path, spec["rate"], spec.get("now_ms"), spec["limit_s"])
    if spec["case"] == "app alone":
        return case_alone(path, spec["rate"], spec["alone_s"])
    return case_other_process(path, spec["rate"], Path(spec["work"]), spec.get("now_ms"), spec["limit_s"])


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [spec.get("tree"), str(ROOT)]))}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=7200, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{spec['case']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _first_enqueued(path: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return int(connection.execute("SELECT MIN(enqueued_at) FROM llm_calls").fetchone()[0])


def _cached(cache: Path, prefix: str, now_ms: int) -> Path:
    """The newest store built for one of the last ``CACHE_HOURS`` hours, else the path to build
    one for ``now_ms`` at (the file's name ends with the hour it was built for)."""
    for hours in range(CACHE_HOURS):
        path = cache / f"{prefix}{now_ms - hours * HOUR_MS}.db"
        if path.exists():
            return path
    return cache / f"{prefix}{now_ms}.db"


def _copy(source: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return target


def bench(
    calls: int,
    rate: float,
    trees: dict[str, str],
    cache: Path,
    work: Path,
    summary: dict[str, Any],
    cases: Sequence[str] = CASES,
    store: Path | None = None,
    limit_s: float = 3600,
    alone_s: float = 60,
) -> str:
    rows, held = [], []
    now_ms = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    retention_now_ms = None
    if store is not None:  # retention's "now": a day after the store's first call
        retention_now_ms = _first_enqueued(store) + (RETENTION_DAYS + 1) * DAY_MS
    for name, tree in {"this": None, **trees}.items():
        built = store or _cached(cache, f"llm_otel_retention_{name}_{calls}_", now_ms)
        if not built.exists():
            started = time.perf_counter()
            spec = {"case": "build", "db": str(built), "calls": calls, "now_ms": now_ms, "tree": tree}
            size = run_child(spec)["bytes"]
            seconds = time.perf_counter() - started
            print(f"  built {calls:,} calls ({size / 1e9:.1f} GB) for {name} in {seconds:.0f} s")
        for case in cases:
            copy = _copy(built, work / "retention.db")
            spec = {"case": case, "db": str(copy), "rate": rate, "tree": tree, "work": str(work)}
            spec.update(now_ms=retention_now_ms, limit_s=limit_s, alone_s=alone_s)
            loads = [f"{os.getloadavg()[0]:.1f}"]
            result = run_child(spec)
            loads.append(f"{os.getloadavg()[0]:.1f}")
            print(f"  {name} {case}: {result}", flush=True)
            done = "yes" if "error" not in result else f"**no**: {result['error']}"
            if case == "app alone":  # the floor, not a figure of target 10 (``run.py`` reads the rest)
                done = "(no retention)"
            else:
                summary[f"{name} {case}"] = {
                    "max_wait_ms": result["max"],
                    "completed": "error" not in result,
                    "calls": calls,
                }

            def ms(value: float | None) -> str:
                return "" if value is None else f"{value:.1f}"

            if result.get("holds"):
                held.append(
                    f"- {'this checkout' if tree is None else name}, {case}: "
                    + "; ".join(
                        f"`{what}` {hold['n']:,}, p99 {hold['p99']:.1f}, max {hold['max']:.1f}"
                        for what, hold in result["holds"].items()
                        if hold["max"] >= 10
                    )
                )
            rows.append(
                [
                    f"{'this checkout' if tree is None else name}, {case}",
                    "–".join(loads),
                    done,
                    f"{result.get('pruned', 0):,}",
                    f"{result['seconds']:.0f}",
                    result["writes"],
                    ms(result["p50"]),
                    ms(result["p99"]),
                    f"**{ms(result['max'])}**",
                ]
            )
    return (
        f"**retention**: one day of {calls:,} calls over {DAYS} days (~1.5 KB of text each) pruned while "
        f"the app ends {rate:.0f} calls a second; load average {common.load()} at the end (load: the "
        "1-minute average before and after each case). Wait = asking for a write transaction → holding "
        "the lock, ms.\n\n"
        + common.table(
            [
                "store, retention in",
                "load",
                "completed",
                "rows deleted",
                "seconds",
                "writes",
                "wait p50",
                "wait p99",
                "wait max",
            ],
            rows,
        )
        + (
            "\n\nRetention's write transactions of the same process case by what they did (those "
            "that held the lock 10 ms or more at least once; count, held p99 and max in ms, slowest "
            "first):\n\n" + "\n".join(held)
            if held
            else ""
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="100k calls instead of 1M")
    parser.add_argument("--calls", type=int)
    parser.add_argument("--rate", type=float, help="calls a second the app ends while retention runs")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument(
        "--case", action="append", choices=CASES, help="only this case (repeat for more; default: both)"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()), help="where built files are kept"
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="prune a copy of this store instead of one built (e.g. bench_list_1m's): retention then "
        "keeps the 7 days from a day after its first call, whatever its calls hold",
    )
    parser.add_argument(
        "--limit-s",
        type=float,
        default=3600,
        help="a case whose retention has not ended by then reports the waits so far and how far it got",
    )
    parser.add_argument(
        "--alone-s", type=float, default=60, help="how long the app writes alone (case 'app alone')"
    )
    parser.add_argument("--markdown", help="write the results as a markdown fragment to this file")
    parser.add_argument("--summary", help="write the key figures as JSON to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child))
        if result is not None:
            print(json.dumps(result), flush=True)
            os._exit(0)  # a retention left unfinished (``--limit-s``) is not waited for
        return
    settings = QUICK if args.quick else FULL
    calls, rate = args.calls or settings["calls"], args.rate or settings["rate"]
    print(common.describe_machine())
    summary: dict[str, Any] = {}
    trees = dict(item.split("=", 1) for item in args.tree)
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as directory:
        section = bench(
            calls,
            rate,
            trees,
            args.cache,
            Path(directory),
            summary,
            args.case or CASES,
            args.store,
            args.limit_s,
            args.alone_s,
        )
    print("\n" + section)
    common.write_markdown(args.markdown, section)
    common.write_summary(args.summary, summary)


if __name__ == "__main__":
    main()
