"""Benchmark: one list page plus its exact total at 1M calls, for each filter (DESIGN §9: ≤ 50 ms p95).

Usage::

    .venv/bin/python bench/bench_list_1m.py --rows 1000000            # build (once) and measure
    .venv/bin/python bench/bench_list_1m.py --rows 200000 --db /tmp/b.db --repeat 30

The database is built with ``executemany`` (about 1 minute per million rows, plus the FTS index)
and kept, so a second run with the same ``--db`` and ``--rows`` only measures. Rows are realistic:
statuses 85% succeeded / 8% failed / 3% cancelled / 2% running / 2% queued, 12 sources, 300
requesters, 6 models, a third of the calls inside tasks of ~10 calls, English and Chinese previews
of ~150 characters (also the bodies' text, which the full-text index reads), spread over 7 days.
``--no-fts`` skips the bodies and the full-text index (faster build, no ``q`` cases).

Each case runs ``exporter.queries.list_calls`` ``--repeat`` times (pages 1 and 5 alternate; 3 times
when one run takes over a second) and prints the median and p95 in milliseconds and the total;
then ``status_aggregates`` over 1 hour, 24 hours and 7 days.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter import migrate, open_database, queries
from exporter.migrations import FTS_INDEX_SQL
from exporter.models import LLMCall, db

DAY_MS = 86_400_000
STATUSES = ["succeeded"] * 85 + ["failed"] * 8 + ["cancelled"] * 3 + ["running"] * 2 + ["queued"] * 2
SOURCES = [f"source-{i}" for i in range(12)]
USERS = [f"user-{i}@example.com" for i in range(300)]
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "text-embedding-3-small"]
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "da", "gu", "fe", "zo", "bi", "ha"]
WORDS_EN = sorted({a + b + c for a in SYLLABLES for b in SYLLABLES for c in ("", "n", "s", "ter", "ing")})
HANZI = (  # ~500 common characters
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动"
    "同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自"
    "二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日"
    "那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变"
    "条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
    "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指"
    "几九区强放决西被干做必战先回则任取据处理府研质"
)
NEEDLES = [  # (text, share of calls whose prompt contains it)
    ("今天的天气预报说会下雨", 0.005),
    ("customer asked about the refund policy", 0.02),
]
COMMON = "Please answer the question below."  # in half of the prompts: the worst case of a search


def _text(rng: random.Random, length: int) -> str:
    """Varied text: pseudo-English words (~1,100 distinct) and random common hanzi, as in real traffic."""
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


def _prompt(rng: random.Random) -> str:
    text = _text(rng, 150)
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
        prompt, response = _prompt(rng), _text(rng, 150) if ended else ""
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
            "error_type": "RateLimitError" if status == "failed" else None,
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
            bodies.append(
                (
                    values["call_id"],
                    json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": prompt}]}], ensure_ascii=False
                    ),
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
                    database.execute_sql(FTS_INDEX_SQL, (json.dumps([body[0] for body in bodies]),))
            batch.clear()
            bodies.clear()
    database.execute_sql("PRAGMA analysis_limit = 1000")
    database.execute_sql("ANALYZE")
    database.close()


CASES: dict[str, dict[str, object]] = {
    "no filter": {},
    "status=failed": {"status": ["failed"]},
    "status=succeeded,failed": {"status": ["succeeded", "failed"]},
    "status=queued,running": {"status": ["queued", "running"]},
    "source": {"source": "source-3"},
    "requested_by": {"requested_by": "user-42@example.com"},
    "model": {"model": "gpt-4o"},
    "parent_task_id": {"parent_task_id": None},  # filled with a real task id at run time
    "last 24h": {"since_ms": None},  # filled at run time
    "status=failed & source": {"status": ["failed"], "source": "source-3"},
    "model & requested_by & 24h": {"model": "gpt-4o", "requested_by": "user-42@example.com"},
    "q=天气预报 (0.5% of calls)": {"q": "天气预报"},
    "q=refund policy (2%)": {"q": "refund policy"},
    "q=refund policy & status=failed": {"q": "refund policy", "status": ["failed"]},
    "q=the question (50%)": {"q": "the question"},
    "q=下雨 (2 chars, a scan)": {"q": "下雨"},
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


def measure(database_path: str, repeat: int, *, fts: bool) -> None:
    database = open_database(database_path)
    db.initialize(database)
    newest = database.execute_sql("SELECT MAX(enqueued_at) FROM llm_calls").fetchone()[0]
    task = database.execute_sql(
        "SELECT parent_task_id FROM llm_calls WHERE parent_task_id IS NOT NULL LIMIT 1"
    ).fetchone()[0]
    print(f"{'list page + exact total':36} {'median ms':>10} {'p95 ms':>8} {'total':>9}", flush=True)
    for name, filters in CASES.items():
        filters = dict(filters)
        if name == "parent_task_id":
            filters["parent_task_id"] = task
        if "24h" in name:
            filters["since_ms"] = newest - DAY_MS
        if "q" in filters and not fts:
            continue
        pages = iter(range(10_000))

        def one_page(filters: dict[str, object] = filters, pages: Iterator[int] = pages) -> dict:
            return queries.list_calls(**filters, page=1 if next(pages) % 2 == 0 else 5, page_size=50)

        median, p95, result = _timed(one_page, repeat)
        print(f"{name:36} {median:10.2f} {p95:8.2f} {result['total']:9d}", flush=True)
    print(f"\n{'status_aggregates':36} {'median ms':>10} {'p95 ms':>8} {'calls':>9}", flush=True)
    for name, window_ms in (("window 1h", 3_600_000), ("window 24h", DAY_MS), ("window 7d", 7 * DAY_MS)):
        median, p95, stats = _timed(lambda w=window_ms: queries.status_aggregates(w, now_ms=newest), repeat)
        print(f"{name:36} {median:10.2f} {p95:8.2f} {stats['total']:9d}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="database file (default /tmp/llm_otel_bench_<rows>.db)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-fts", action="store_true", help="skip the full-text rows and the q cases")
    args = parser.parse_args()
    path = args.db or f"/tmp/llm_otel_bench_{args.rows}.db"
    fts = not args.no_fts
    existing = Path(path).exists()
    if existing:
        database = open_database(path)
        count = database.execute_sql("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
        database.close()
        if count != args.rows:
            sys.exit(f"{path} holds {count} calls, not {args.rows}: remove it or pass another --db")
    else:
        started = time.perf_counter()
        build(path, args.rows, fts=fts)
        size = Path(path).stat().st_size / 1e6
        print(f"built {args.rows} calls in {time.perf_counter() - started:.1f} s ({size:.0f} MB)", flush=True)
    measure(path, args.repeat, fts=fts)


if __name__ == "__main__":
    main()
