"""Benchmark: one list page plus its exact total at 1M calls, for each filter (DESIGN §9: ≤ 50 ms p95).

Usage::

    .venv/bin/python bench/bench_list_1m.py --rows 1000000            # build (once) and measure
    .venv/bin/python bench/bench_list_1m.py --rows 200000 --db /tmp/b.db --repeat 30

The database is built with ``executemany`` (about 1 minute per million rows, plus the FTS index)
and kept, so a second run with the same ``--db`` and ``--rows`` only measures. Rows are realistic:
statuses 85% succeeded / 8% failed / 3% cancelled / 2% running / 2% queued, 12 sources, 300
requesters, 6 models, a third of the calls inside tasks of ~10 calls, English and Chinese previews
of ~150 characters, uniform timings (wait 0-3 s, first token 0.1-2 s, duration 0.2-20 s), three
error types (6:3:1) on the failed calls, spread over 7 days; the previews are also the bodies'
text, which the full-text index reads. ``--no-fts`` skips the bodies and the full-text index
(faster build, no ``q`` cases).

An existing database is migrated first (the time is printed when a migration ran). Before each
section the store's file is read once, in a child process (``common.warm_page_cache``, its rate
printed): this VM's page cache gives a file's pages back within minutes, so a query's first pages
came from the disk, where a server in use holds its store in memory. Each case runs
``exporter.queries.list_calls`` ``--repeat`` times (pages 1 and 5 alternate; 3 times when one run
takes over a second) and prints the median and p95 in milliseconds and the total: every filter,
then the timing minimums alone and with a status or label filter, then the slowest-first sorts
alone and with each filter. Then ``call_facets`` for a few filters, ``status_aggregates`` and
``status_series`` over 1 hour, 24 hours and 7 days, ``store_summary`` and the rate of
``iter_calls`` (this store's bodies hold only the previews' text: an upper bound). ``--only TEXT``
measures the cases whose name holds it. A list case with ``q`` starts with nothing kept of what the
term matched (``exporter.search_matches.forget``): the median and p95 are of queries that follow
another of the same term (pages 1 and 5 alternating, the store unchanged); the line "cold" under it,
of first queries (nothing kept before each, in the process or the store: ``llm_calls_search_kept``
emptied, so this measure writes to the store), and the next line of a process's first queries of a
term another query found before (kept in the store, migration 11). The same for a
``call_facets`` case with ``q``. A ``call_facets`` case whose summary is kept for the next one of
its filters (``exporter.kept_summaries``) prints a "cold" line too: its first summaries, nothing
kept before each (in the process or the store, ``llm_calls_summary_kept`` emptied: a ``q``'s
matches are read from the store), and the next lines of a process's first summaries of a filter
another one counted before (kept in the store, migration 15): nothing kept in this process, then
each the first summary of a new process (SQLite's page cache empty; its start and connection not
timed). ``--sections
retention`` (never by default: it deletes calls) times the first query of some ``q`` cases after
each of a few retention passes of the oldest hour (retention's deletes), in the process that kept
the term and in a new one, and the deletes: run it on a copy of the store (the deleted calls are
gone; the count of ``--rows`` is then not checked).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common

from exporter import migrate, open_database, queries, search_matches

try:
    from exporter import kept_summaries
except ImportError:  # a checkout from before kept summaries (run beside this one to compare)
    kept_summaries = None
from exporter._sql import index, unindex
from exporter.migrations import schema_version
from exporter.models import LLMCall, LLMCallBody, LLMCallEvent, db

DAY_MS = 86_400_000
STATUSES = ["succeeded"] * 85 + ["failed"] * 8 + ["cancelled"] * 3 + ["running"] * 2 + ["queued"] * 2
SOURCES = [f"source-{i}" for i in range(12)]
USERS = [f"user-{i}@example.com" for i in range(300)]
ERROR_TYPES = ["RateLimitError"] * 6 + ["APITimeoutError"] * 3 + ["InternalServerError"]
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "text-embedding-3-small"]
NEEDLES = [  # (text, share of calls whose prompt contains it)
    ("今天的天气预报说会下雨", 0.005),
    ("customer asked about the refund policy", 0.02),
]
COMMON = "Please answer the question below."  # in half of the prompts: the worst case of a search


def _prompt(rng: random.Random) -> str:
    text = common.realistic_text(rng, 150)
    for needle, share in NEEDLES:
        if rng.random() < share:
            text = needle + " " + text[: 150 - len(needle)]
    if rng.random() < 0.5:
        text = COMMON + " " + text[: 150 - len(COMMON)]
    return text


def build(database_path: str, rows: int, *, fts: bool, seed: int = 7) -> None:
    """Create and fill the benchmark database with ``rows`` calls (executemany, 20k per batch)."""
    database = open_database(database_path)
    migrate(database)
    rng = random.Random(seed)
    columns = [field.column_name for field in LLMCall._meta.sorted_fields]
    insert = f"INSERT INTO llm_calls ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    start_ms = 1_700_000_000_000
    step_ms = 7 * DAY_MS / rows
    task_id = None
    batch: list[tuple[object, ...]] = []
    bodies: list[tuple[str, str, str | None]] = []
    for i in range(rows):
        if task_id is None or rng.random() < 0.1:
            task_id = f"task-{i:08d}" if rng.random() < 0.33 else None
        status = rng.choice(STATUSES)
        ended = status in ("succeeded", "failed", "cancelled")
        enqueued = int(start_ms + i * step_ms)
        wait = rng.randint(0, 3000)
        duration = rng.randint(200, 20000) if ended else None
        prompt, response = _prompt(rng), common.realistic_text(rng, 150) if ended else ""
        values = {
            "call_id": f"{rng.getrandbits(128):032x}",
            "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}",
            "parent_span_id": None,
            "parent_task_id": task_id,
            "parent_task_name": "nightly-digest" if task_id else None,
            "status": status,
            "operation": "chat",
            "provider": "openai",
            "api_type": "chat_completions",
            "model": rng.choice(MODELS),
            "response_model": None,
            "response_id": None,
            "source": rng.choice(SOURCES),
            "requested_by": rng.choice(USERS),
            "stream": rng.random() < 0.5,
            "enqueued_at": enqueued,
            "started_at": enqueued + wait if status != "queued" else None,
            "first_token_at": None,
            "ended_at": enqueued + wait + duration if ended else None,
            "wait_ms": wait if status != "queued" else None,
            "first_token_ms": rng.randint(100, 2000) if ended else None,
            "duration_ms": duration,
            "retry_count": 1 if rng.random() < 0.05 else 0,
            "input_tokens": rng.randint(50, 4000),
            "output_tokens": rng.randint(10, 2000) if ended else None,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "finish_reasons": '["stop"]' if ended else None,
            "error_type": rng.choice(ERROR_TYPES) if status == "failed" else None,
            "error_message": "429 Too Many Requests" if status == "failed" else None,
            "prompt_preview": prompt,
            "response_preview": response or None,
            "server_address": "api.openai.com",
            "process": f"host-{i % 4}:{1000 + i % 4}",
            "updated_at": enqueued + wait + (duration or 0),
        }
        batch.append(tuple(values[column] for column in columns))
        if fts:  # the body holds the text the full-text index reads (exporter.migrations)
            output = [{"role": "assistant", "parts": [{"type": "text", "content": response}]}]
            user = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
            bodies.append(
                (
                    values["call_id"],
                    json.dumps(user, ensure_ascii=False),
                    json.dumps(output, ensure_ascii=False) if response else None,
                )
            )
        if len(batch) == 20_000 or i == rows - 1:
            with database.atomic("IMMEDIATE"):
                database.cursor().executemany(insert, batch)
                if bodies:
                    body_sql = "INSERT INTO llm_call_bodies (rowid, call_id, input_messages, output_messages)"
                    rowid = "(SELECT rowid FROM llm_calls WHERE call_id = ?1)"  # a body's rowid is its call's
                    database.cursor().executemany(f"{body_sql} VALUES ({rowid}, ?1, ?2, ?3)", bodies)
                    index(database.cursor(), json.dumps([body[0] for body in bodies]))
            batch.clear()
            bodies.clear()
    database.execute_sql("PRAGMA analysis_limit = 1000")
    database.execute_sql("ANALYZE")
    database.close()


TASK = "<a task id>"
DAY = "<the last 24 hours>"
WEEK = "<the last 7 days>"
DAYS_FROM = "<the start of the day 3 days before the newest call's>"
DAYS_UNTIL = "<the start of the newest call's day>"
LIST_CASES: dict[str, dict[str, object]] = {
    "no filter": {},
    "status=failed": {"status": ["failed"]},
    "status=succeeded,failed": {"status": ["succeeded", "failed"]},
    "status=queued,running": {"status": ["queued", "running"]},
    "source": {"source": "source-3"},
    "requested_by": {"requested_by": "user-42@example.com"},
    "model": {"model": "gpt-4o"},
    "parent_task_id": {"parent_task_id": TASK},
    "error_type": {"error_type": "APITimeoutError"},
    "last 24h": {"since_ms": DAY},
    "status=failed & source": {"status": ["failed"], "source": "source-3"},
    "model & requested_by & 24h": {"model": "gpt-4o", "requested_by": "user-42@example.com", "since_ms": DAY},
    "q=天气预报 (0.5% of calls)": {"q": "天气预报"},
    "q=refund policy (2%)": {"q": "refund policy"},
    "q=refund policy & status=failed": {"q": "refund policy", "status": ["failed"]},
    "q=the question (50%)": {"q": "the question"},
    "q=下雨 (2 CJK chars, 0.5%)": {"q": "下雨"},
    "q=雨 (1 CJK char, 0.5%)": {"q": "雨"},
    "q=的 (1 CJK char, 3%)": {"q": "的"},
    "q=天气 & status=failed": {"q": "天气", "status": ["failed"]},
    "q=的 & status=failed": {"q": "的", "status": ["failed"]},
    "q=的 & source": {"q": "的", "source": "source-3"},
    "q=ab (2 chars, not CJK)": {"q": "ab"},
    "q=y (1 char, not CJK, 2%)": {"q": "y"},
    "q=w (1 char, not CJK, 50%)": {"q": "w"},
}
LATENCY_CASES: dict[str, dict[str, object]] = {
    "min_duration 15 s (25%)": {"min_duration_ms": 15_000},
    "min_duration 19.9 s (0.5%)": {"min_duration_ms": 19_900},
    "min_wait 2.5 s (17%)": {"min_wait_ms": 2500},
    "min_first_token 1.9 s (5%)": {"min_first_token_ms": 1900},
    "min_duration & status=failed": {"min_duration_ms": 15_000, "status": ["failed"]},
    "min_duration & status=succeeded,failed": {"min_duration_ms": 15_000, "status": ["succeeded", "failed"]},
    "min_duration & source": {"min_duration_ms": 15_000, "source": "source-3"},
    "min_duration & requested_by": {"min_duration_ms": 15_000, "requested_by": "user-42@example.com"},
    "min_duration & model": {"min_duration_ms": 15_000, "model": "gpt-4o"},
    "min_wait & error_type": {"min_wait_ms": 2500, "error_type": "APITimeoutError"},
    "min_duration & 24h": {"min_duration_ms": 15_000, "since_ms": DAY},
    "min_first_token & q=refund policy": {"min_first_token_ms": 1900, "q": "refund policy"},
}
SORT_CASES: dict[str, dict[str, object]] = {
    "sort=duration": {"sort": "duration"},
    "sort=first_token": {"sort": "first_token"},
    "sort=wait": {"sort": "wait"},
    "sort=duration & status=failed": {"sort": "duration", "status": ["failed"]},
    "sort=duration & status=queued,running": {"sort": "duration", "status": ["queued", "running"]},
    "sort=duration & source": {"sort": "duration", "source": "source-3"},
    "sort=duration & requested_by": {"sort": "duration", "requested_by": "user-42@example.com"},
    "sort=duration & model": {"sort": "duration", "model": "gpt-4o"},
    "sort=duration & parent_task_id": {"sort": "duration", "parent_task_id": TASK},
    "sort=wait & error_type": {"sort": "wait", "error_type": "APITimeoutError"},
    "sort=duration & 24h": {"sort": "duration", "since_ms": DAY},
    "sort=duration & min_duration": {"sort": "duration", "min_duration_ms": 15_000},
    "sort=first_token & status=failed & source": {
        "sort": "first_token",
        "status": ["failed"],
        "source": "source-3",
    },
    "sort=duration & q=refund policy": {"sort": "duration", "q": "refund policy"},
    "sort=duration & q=the question": {"sort": "duration", "q": "the question"},
}
FACET_CASES: dict[str, dict[str, object]] = {
    "no filter": {},
    "status=failed": {"status": ["failed"]},
    "status=succeeded": {"status": ["succeeded"]},
    "last 24h": {"since_ms": DAY},
    "last 7d": {"since_ms": WEEK},
    "status=failed & last 7d": {"status": ["failed"], "since_ms": WEEK},
    "source": {"source": "source-3"},
    "requested_by": {"requested_by": "user-42@example.com"},
    "model": {"model": "gpt-4o"},
    "error_type": {"error_type": "APITimeoutError"},
    "source & status=failed": {"source": "source-3", "status": ["failed"]},
    "model & 3 whole days": {"model": "gpt-4o", "since_ms": DAYS_FROM, "until_ms": DAYS_UNTIL},
    "model & source (two labels)": {"model": "gpt-4o", "source": "source-3"},
    "model & requested_by": {"model": "gpt-4o", "requested_by": "user-42@example.com"},
    "source & min_duration 15 s": {"source": "source-3", "min_duration_ms": 15_000},
    "parent_task_id": {"parent_task_id": TASK},
    "min_duration 15 s": {"min_duration_ms": 15_000},
    "q=refund policy": {"q": "refund policy"},
    "q=天气预报 & status=failed": {"q": "天气预报", "status": ["failed"]},
    "q=the question (50%)": {"q": "the question"},
}


def _timed(call: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median and p95 in ms of ``repeat`` calls (3 when one call takes over a second), last result."""
    timings: list[float] = []
    result: object = None
    while len(timings) < (repeat if not timings or timings[0] < 1000 else 3):
        started = time.perf_counter()
        result = call()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[min(len(timings) - 1, int(len(timings) * 0.95))], result


_NEW_PROCESS = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from exporter import open_database, queries
from exporter.models import db
database = open_database(sys.argv[2])
db.initialize(database)
database.execute_sql("SELECT 1")  # connected, pragmas set: the summary alone is timed
started = time.perf_counter()
queries.call_facets(**json.loads(sys.argv[3]))
print((time.perf_counter() - started) * 1000)
"""


def _in_new_processes(database_path: str, filters: dict[str, object], runs: int) -> tuple[float, float]:
    """Median and p95 in ms of a summary that is the first of a new process (``runs`` processes, one
    after the other): what the store keeps read, SQLite's page cache empty (the OS's warm)."""
    tree = str(Path(__file__).resolve().parent.parent)
    timings = []
    for _ in range(runs):
        run = subprocess.run(
            [sys.executable, "-c", _NEW_PROCESS, tree, database_path, json.dumps(filters)],
            capture_output=True,
            text=True,
            check=True,
        )
        timings.append(float(run.stdout.split()[-1]))
    timings.sort()
    return statistics.median(timings), timings[min(len(timings) - 1, int(len(timings) * 0.95))]


def _resolved(filters: dict[str, object], task: str, newest: int) -> dict[str, object]:
    """``filters`` with the run-time values (a real task id, the last 24 hours) filled in."""
    day = newest // DAY_MS * DAY_MS
    values = {TASK: task, DAY: newest - DAY_MS, WEEK: newest - 7 * DAY_MS, DAYS_FROM: day - 3 * DAY_MS}
    values[DAYS_UNTIL] = day
    return {
        name: values.get(value, value) if isinstance(value, str) else value for name, value in filters.items()
    }


def _forget_summaries(database: peewee.Database | None = None) -> None:
    """Drop the summaries this process keeps (``exporter.kept_summaries``; none before it existed),
    and given ``database``, those its store keeps (migration 15; none before it)."""
    if kept_summaries is None:
        return
    if database is not None and _summaries_in_store():
        kept_summaries.forget(database)
    else:
        kept_summaries.forget()


def _summaries_in_store() -> bool:
    """Whether this checkout keeps summaries in the store (``kept_summaries.read``, migration 15)."""
    return kept_summaries is not None and hasattr(kept_summaries, "read")


def _kept_summaries() -> int:
    return kept_summaries.count() if kept_summaries is not None else 0


def _print_header(title: str, what: str, store: str | None = None) -> None:
    """A section's header; given the ``store``'s path, read it into the page cache first
    (``common.warm_page_cache``), as a server in use holds it."""
    if store is not None:
        print(f"\n{common.warm_page_cache(store)}", flush=True)
    print(f"\n{title:44} {'median ms':>10} {'p95 ms':>8} {what:>9}", flush=True)


SECTIONS = ("list", "latency", "sort", "facets", "status", "series", "other")
WRITING_SECTIONS = ("retention",)
"""Sections that delete calls (never run unless named: the store then holds fewer than ``--rows``)."""
RETENTION_CASES: dict[str, dict[str, object]] = {
    name: filters
    for name, filters in {**LIST_CASES, **LATENCY_CASES, **SORT_CASES}.items()
    if "q" in filters
    and name.split(" (")[0]
    in {
        "q=the question",
        "q=refund policy",
        "q=refund policy & status=failed",
        "q=天气预报",
        "q=ab",
        "q=的 & status=failed",
        "q=y",
        "sort=duration & q=the question",
        "sort=duration & q=refund policy",
    }
}
"""The ``q`` cases measured after retention (``--sections retention``)."""
HOUR_MS = 3_600_000


def measure(
    database_path: str, repeat: int, *, fts: bool, only: str = "", sections: tuple[str, ...] = SECTIONS
) -> None:
    database = open_database(database_path)
    started = time.perf_counter()
    before, after = schema_version(database), migrate(database)
    if after != before:
        print(
            f"migrated from version {before} to {after} in {time.perf_counter() - started:.1f} s", flush=True
        )
    db.initialize(database)
    newest = database.execute_sql("SELECT MAX(enqueued_at) FROM llm_calls").fetchone()[0]
    task = database.execute_sql(
        "SELECT parent_task_id FROM llm_calls WHERE parent_task_id IS NOT NULL LIMIT 1"
    ).fetchone()[0]

    def wanted(name: str, filters: dict[str, object]) -> bool:
        return only in name and (fts or "q" not in filters)

    for section, title, cases in (
        ("list", "list page + exact total", LIST_CASES),
        ("latency", "latency filters: page + exact total", LATENCY_CASES),
        ("sort", "slowest first: page + exact total", SORT_CASES),
    ):
        if section not in sections:
            continue
        _print_header(title, "total", database_path)
        for name, filters in cases.items():
            if not wanted(name, filters):
                continue
            resolved = _resolved(filters, task, newest)
            pages = iter(range(10_000))

            def one_page(filters: dict[str, object] = resolved, pages: Iterator[int] = pages) -> dict:
                return queries.list_calls(**filters, page=1 if next(pages) % 2 == 0 else 5, page_size=50)

            firsts = []
            if "q" in filters:  # what the term matched is kept between queries: first queries apart

                def first_query(one_page: Callable[[], dict] = one_page, store: bool = False) -> dict:
                    search_matches.forget(database if store else None)
                    return one_page()  # which saves what it found in the store

                for title, store in (
                    ("  cold (the term's first: nothing kept)", True),
                    ("  a process's first (kept in the store)", False),
                ):
                    cold, cold_p95, _ = _timed(
                        lambda store=store: first_query(store=store), max(3, repeat // 4)
                    )
                    firsts.append(f"{title:44} {f'{cold:.2f} ms median, {cold_p95:.2f} p95':>26}")
            median, p95, result = _timed(one_page, repeat)  # after a first query of the term
            print(f"{name:44} {median:10.2f} {p95:8.2f} {result['total']:9d}", flush=True)
            for line in firsts:
                print(line, flush=True)

    if "facets" in sections:
        _print_header("call_facets (the filter's summary)", "total", database_path)
    for name, filters in FACET_CASES.items() if "facets" in sections else ():
        if wanted(name, filters):
            resolved = _resolved(filters, task, newest)
            cold_text = ""

            def first_summary(f: dict[str, object] = resolved, store: bool = True) -> dict:
                _forget_summaries(database if store else None)
                if "q" in f:  # as the list's: the term's matches too (the store keeps its row)
                    search_matches.forget()
                return queries.call_facets(**f)

            cold, cold_p95, _ = _timed(first_summary, max(3, repeat // 4))
            if "q" in filters or _kept_summaries():  # the first summary of the filter apart
                cold_text = f"{cold:.2f} ms median, {cold_p95:.2f} p95"
            stored_text = spawned_text = ""
            if cold_text and _summaries_in_store():  # a new process's: the store's counts read
                stored, stored_p95, _ = _timed(lambda: first_summary(store=False), max(3, repeat // 4))
                stored_text = f"{stored:.2f} ms median, {stored_p95:.2f} p95"
                spawned, spawned_p95 = _in_new_processes(database_path, resolved, max(3, repeat // 4))
                spawned_text = f"{spawned:.2f} ms median, {spawned_p95:.2f} p95"
            median, p95, facets = _timed(lambda f=resolved: queries.call_facets(**f), repeat)
            print(f"{name:44} {median:10.2f} {p95:8.2f} {facets['total']:9d}", flush=True)
            if cold_text:
                print(f"{'  cold (nothing kept: a first query)':44} {cold_text:>26}", flush=True)
            if stored_text:
                label = "  a process's first (kept in the store)"
                print(f"{label:44} {stored_text:>26}", flush=True)
                print(f"{'  the same, each in a new process':44} {spawned_text:>26}", flush=True)

    windows = (("window 1h", 3_600_000), ("window 24h", DAY_MS), ("window 7d", 7 * DAY_MS))
    if "status" in sections:
        _print_header("status_aggregates", "calls", database_path)
    for name, window_ms in windows if "status" in sections else ():
        if wanted(name, {}):
            median, p95, stats = _timed(
                lambda w=window_ms: queries.status_aggregates(w, now_ms=newest), repeat
            )
            print(f"{name:44} {median:10.2f} {p95:8.2f} {stats['total']:9d}", flush=True)
    if "series" in sections:
        _print_header("status_series (24 buckets)", "calls", database_path)
    for name, window_ms in windows if "series" in sections else ():
        if wanted(name, {}):
            median, p95, series = _timed(lambda w=window_ms: queries.status_series(w, now_ms=newest), repeat)
            print(f"{name:44} {median:10.2f} {p95:8.2f} {sum(b['calls'] for b in series):9d}", flush=True)
    if "retention" in sections:
        _after_retention(database, repeat, task, newest, only)
    if "other" not in sections:
        return
    _print_header("other reads", "calls", database_path)
    if wanted("store_summary", {}):
        median, p95, summary = _timed(queries.store_summary, repeat)
        print(f"{'store_summary':44} {median:10.2f} {p95:8.2f} {summary['calls']:9d}", flush=True)
    if wanted("iter_calls", {}):
        count = 50_000
        started = time.perf_counter()
        exported = sum(1 for _ in itertools.islice(queries.iter_calls(status=["succeeded"]), count))
        seconds = time.perf_counter() - started
        print(f"{'iter_calls (short bodies here)':44} {exported / seconds:10.0f} calls/s", flush=True)
        rate, with_json = _export_rate()
        print(f"{'iter_calls, 20k calls with 4.5 KB bodies':44} {rate:10.0f} calls/s", flush=True)
        print(f"{'  and json.dumps of each (a JSONL line)':44} {with_json:10.0f} calls/s", flush=True)
        db.initialize(database)


def _after_retention(database: peewee.Database, repeat: int, task: str, newest: int, only: str) -> None:
    """The first query of each kept ``q`` after the deletes of a retention pass of the oldest hour
    of calls (``_delete_before``), in the process that kept the term and in a new one (nothing in
    memory: the store's row read). Each round deletes another hour: this section writes to the
    store, and changes the totals of the cases measured after it."""
    cases = {
        name: _resolved(filters, task, newest) for name, filters in RETENTION_CASES.items() if only in name
    }
    if not cases:
        return
    rounds = max(2, repeat // 5)
    ended = "status IN ('succeeded', 'failed', 'cancelled')"  # what retention deletes
    oldest = database.execute_sql(f"SELECT MIN(enqueued_at) FROM llm_calls WHERE {ended}").fetchone()[0]
    timings: dict[str, list[float]] = {name: [] for name in cases}
    fresh: dict[str, list[float]] = {name: [] for name in cases}
    prunes, deleted = [], 0
    for round_ in range(2 * rounds):
        for filters in cases.values():  # each term kept, brought up to date
            queries.list_calls(**filters, page_size=50)
        started = time.perf_counter()
        deleted += _delete_before(database, oldest + (round_ + 1) * HOUR_MS)
        prunes.append((time.perf_counter() - started) * 1000)
        new_process = round_ >= rounds
        if new_process:
            search_matches.forget()
        for name, filters in cases.items():
            started = time.perf_counter()
            queries.list_calls(**filters, page_size=50)
            (fresh if new_process else timings)[name].append((time.perf_counter() - started) * 1000)
    title = f"first query after retention of 1 h ({deleted // (2 * rounds)} calls)"
    _print_header(title, "")
    for name in cases:
        for label, values in (("", timings[name]), ("  in a new process", fresh[name])):
            values.sort()
            p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
            print(f"{label or name:44} {statistics.median(values):10.2f} {p95:8.2f}", flush=True)
    prunes.sort()
    print(f"{'  the deletes (1 h, one transaction)':44} {statistics.median(prunes):10.2f} {prunes[-1]:8.2f}")


def _delete_before(database: peewee.Database, cutoff_ms: int) -> int:
    """Delete the ended calls enqueued before ``cutoff_ms`` as retention does (``exporter.retention``:
    index entries, events, bodies, rows), in one transaction, without its pauses, merges and space
    given back (minutes a pass here): what a search sees after a pass."""
    ended = LLMCall.status.in_(["succeeded", "failed", "cancelled"])
    ids = [
        row[0]
        for row in LLMCall.select(LLMCall.call_id).where(LLMCall.enqueued_at < cutoff_ms, ended).tuples()
    ]
    with database.atomic("IMMEDIATE"):
        unindex(database.cursor(), json.dumps(ids))
        for model in (LLMCallEvent, LLMCallBody):
            model.delete().where(model.call_id.in_(ids)).execute()
        LLMCall.delete().where(LLMCall.call_id.in_(ids)).execute()
    return len(ids)


def _export_rate(calls: int = 20_000) -> tuple[float, float]:
    """Calls per second of ``iter_calls`` over a store of ``calls`` calls holding ~3 KB of prompt
    and ~1.5 KB of response each (a temporary file), without and with ``json.dumps`` per call."""
    with tempfile.TemporaryDirectory() as directory:
        database = open_database(str(Path(directory) / "export.db"))
        migrate(database)
        db.initialize(database)
        write_bodies_store(database, calls)
        rates = []
        for encode in (False, True):
            started = time.perf_counter()
            for call in queries.iter_calls():
                if encode:
                    json.dumps(call, ensure_ascii=False)
            rates.append(calls / (time.perf_counter() - started))
        database.close()
    return rates[0], rates[1]


def write_bodies_store(database: peewee.Database, calls: int) -> None:
    """``calls`` succeeded calls with ~3 KB of prompt and ~1.5 KB of response each, into a migrated
    store: what an export reads (realistic JSONL lines). Also ``bench_admin``'s export store."""
    rng = random.Random(11)
    columns = [field.column_name for field in LLMCall._meta.sorted_fields]
    insert = f"INSERT INTO llm_calls ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    rows, bodies = [], []
    for i in range(calls):
        prompt, response = common.realistic_text(rng, 3000), common.realistic_text(rng, 1500)
        row = dict.fromkeys(columns)
        row.update(call_id=f"{i:032x}", status="succeeded", stream=0, enqueued_at=1_700_000_000_000 + i)
        row.update(retry_count=0, updated_at=row["enqueued_at"], prompt_preview=prompt[:200], model="gpt-4o")
        rows.append(tuple(row[column] for column in columns))
        messages = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
        output = [
            {"role": "assistant", "parts": [{"type": "text", "content": response}], "finish_reason": "stop"}
        ]
        bodies.append(
            (
                row["call_id"],
                json.dumps({"temperature": 0.2}),
                json.dumps([{"type": "text", "content": "You are terse."}]),
                json.dumps(messages, ensure_ascii=False),
                json.dumps(output, ensure_ascii=False),
                json.dumps({"server.port": 443}),
            )
        )
    body_sql = "INSERT INTO llm_call_bodies (call_id, request_params, system_instructions, input_messages, "
    body_sql += "output_messages, attributes) VALUES (?, ?, ?, ?, ?, ?)"
    with database.atomic("IMMEDIATE"):
        database.cursor().executemany(insert, rows)
        database.cursor().executemany(body_sql, bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="database file (default /tmp/llm_otel_bench_<rows>.db)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-fts", action="store_true", help="skip the full-text rows and the q cases")
    parser.add_argument("--only", default="", help="measure only the cases whose name contains this")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of {', '.join(SECTIONS + WRITING_SECTIONS)} (default all but "
        f"{', '.join(WRITING_SECTIONS)}, which deletes calls)",
    )
    args = parser.parse_args()
    path = args.db or f"/tmp/llm_otel_bench_{args.rows}.db"
    fts = not args.no_fts
    sections = tuple(section.strip() for section in args.sections.split(","))
    existing = Path(path).exists()
    if existing:
        database = open_database(path)
        count = database.execute_sql("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
        database.close()
        if count != args.rows and not set(WRITING_SECTIONS) & set(sections):
            sys.exit(f"{path} holds {count} calls, not {args.rows}: remove it or pass another --db")
    else:
        started = time.perf_counter()
        build(path, args.rows, fts=fts)
        size = Path(path).stat().st_size / 1e6
        print(f"built {args.rows} calls in {time.perf_counter() - started:.1f} s ({size:.0f} MB)", flush=True)
    unknown = set(sections) - set(SECTIONS + WRITING_SECTIONS)
    if unknown:
        expected = ", ".join(SECTIONS + WRITING_SECTIONS)
        sys.exit(f"unknown --sections {', '.join(sorted(unknown))}; expected some of {expected}")
    measure(path, args.repeat, fts=fts, only=args.only, sections=sections)


if __name__ == "__main__":
    main()
