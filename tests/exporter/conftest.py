"""Fixtures of the store tests: ``store`` (a migrated SQLite file), ``rows`` (a row factory),
``postgres_url`` / ``pg_store`` / ``pg_rows`` (the same over a real PostgreSQL server) and
``any_rows`` (``rows`` on each engine in turn: a test using it runs once per engine).

``rows`` writes what the writer would, directly with peewee, so read-side and retention tests (and
write-side tests that need existing rows) do not depend on the span pipeline::

    def test_something(rows):
        call_id = rows.call(status="failed", source="billing", prompt="今天的天气预报说会下雨")
        rows.calls(120, model="gpt-4o")            # newest last, one second apart
        rows.each([{"status": "queued"}, {"status": "failed", "source": "billing"}])
        rows.task(task_id="t1")
        rows.snapshot(process="host:1", heartbeat_at=rows.now_ms)

PostgreSQL: one throwaway cluster per test session (``initdb`` into a temporary directory, run as
the ``postgres`` user when the tests run as root, on a free port of 127.0.0.1), a fresh database per
test, dropped at its end. It needs Debian's ``postgresql`` package (``make test`` installs it) and
psycopg2 (the ``test`` extra); without them the PostgreSQL tests fail, saying what to install.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import peewee
import pytest

from exporter import migrate, open_database, queries
from exporter._sql import SQLITE, index
from exporter.database import is_sqlite
from exporter.migrations import CJK_TABLE, FTS_INDEX_SQL, TEXT_VIEW
from exporter.models import LLMCall, LLMCallBody, LLMCallEvent, LLMTask, SchedulerSnapshot, db

_FTS_COPY_INSERT = (
    "INSERT INTO llm_calls_fts (rowid, call_id, prompt, response) "
    "SELECT rowid, call_id, ?, ? FROM llm_calls WHERE call_id = ?"
)
"""How migrations 1-3 filled the full-text table (with its own copy of the text)."""

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
"""The fixed "now" of the row factory: calls are enqueued one second apart, ending at this time."""

_ENDED = ("succeeded", "failed", "cancelled")
STATUSES = ["queued", "running", *_ENDED]


def _bound_store(url: str) -> Iterator[peewee.Database]:
    """A migrated store at ``url``, bound to ``exporter.models.db`` until the test ends."""
    database = open_database(url)
    migrate(database)
    db.initialize(database)
    yield database
    database.close()


@pytest.fixture
def store(tmp_path) -> Iterator[peewee.Database]:
    """A migrated SQLite store file under ``tmp_path``, bound to ``exporter.models.db``."""
    yield from _bound_store(f"sqlite:///{tmp_path / 'store.db'}")


@pytest.fixture
def rows(store: peewee.Database) -> Rows:
    return Rows(store)


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway PostgreSQL cluster: ``url(name)`` is a database URL on it."""

    port: int
    bin_dir: str
    restart: Callable[[], None]
    """Stop the server (``-m fast``: clients are disconnected) and start it again on the same port."""

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


_PG_INSTALL = (
    "the PostgreSQL tests need a PostgreSQL server's binaries (initdb, pg_ctl): run `make test`, "
    "which installs them, or `apt-get install -y postgresql` (Debian/Ubuntu)"
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the whole session, in a temporary directory, stopped at the end."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version) or [
        path for path in [shutil.which("initdb")] if path
    ]
    if not initdb:
        pytest.fail(_PG_INSTALL, pytrace=False)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.fail("the PostgreSQL tests need psycopg2: pip install -e '.[test]'", pytrace=False)
    bin_dir = os.path.dirname(initdb[-1])
    root = tempfile.mkdtemp(prefix="llm-otel-pg-")  # not under tmp_path: the postgres user must reach it
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    port = _free_port()

    def run(*command: str) -> None:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=60)
        if result.returncode:
            pytest.fail(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}", pytrace=False)

    run(f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = (f"{bin_dir}/pg_ctl", "start", "-w", "-D", data, "-l", f"{root}/server.log", "-o", options)
    run(*start)

    def restart() -> None:
        run(f"{bin_dir}/pg_ctl", "stop", "-D", data, "-m", "fast", "-w")
        run(*start)

    try:
        yield PostgresServer(port=port, bin_dir=bin_dir, restart=restart)
    finally:
        run(f"{bin_dir}/pg_ctl", "stop", "-D", data, "-m", "immediate", "-w")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL server, dropped after the test."""
    name = f"t{next(_PG_DATABASES)}"
    pg_admin(postgres_server, f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    drop_database(postgres_server, name)


def pg_admin(server: PostgresServer, statement: str) -> None:
    """Run ``statement`` on the server's ``postgres`` database (outside a transaction)."""
    import psycopg2

    connection = psycopg2.connect(server.url("postgres"))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def drop_database(server: PostgresServer, name: str) -> None:
    """Drop a test's database (its connections cut): kept, a session's databases grew the cluster
    to ~1 GB in 25,000 files, whose removal at the end outlasted the last test's timeout."""
    pg_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[peewee.Database]:
    """A migrated PostgreSQL store, bound to ``exporter.models.db``."""
    yield from _bound_store(postgres_url)


@pytest.fixture
def pg_rows(pg_store: peewee.Database) -> Rows:
    return Rows(pg_store)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_rows(request: pytest.FixtureRequest) -> Rows:
    """``rows`` on a SQLite file, then (a second run of the test) on PostgreSQL: one test, both engines."""
    return Rows(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


_PG_DATABASES = itertools.count(1)


def _version(initdb: str) -> tuple[int, ...]:
    """The major version in ``/usr/lib/postgresql/<version>/bin/initdb``, for picking the newest."""
    version = initdb.split("/")[-3]
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Rows:
    """Inserts calls (row, body, events, FTS row), tasks and snapshots as the writer would.

    Each new call is enqueued one second after the previous one unless ``enqueued_at`` is given, so
    the newest-first order is the reverse of creation order. Columns not given get plausible values
    derived from ``status``.
    """

    def __init__(self, database: peewee.Database, *, start_ms: int = NOW_MS - 86_400_000) -> None:
        self.database = database
        self.now_ms = NOW_MS
        self._clock = start_ms
        self._ids = itertools.count(1)

    def call(self, **columns: Any) -> str:
        """Insert one call; ``prompt`` / ``response`` set its messages, previews and FTS text."""
        return self.calls(1, **columns)[0]

    def calls(self, count: int, **columns: Any) -> list[str]:
        """Insert ``count`` calls sharing ``columns`` (one transaction); returns their call ids."""
        return self.each([columns] * count)

    def mixed(self, count: int = 150, seed: int = 3) -> list[dict[str, Any]]:
        """``count`` calls with random statuses, labels, models, tasks, error types, timings and
        times (a few sharing a millisecond, for the call_id tie-break; timings drawn from a few
        values, so the slowest-first sorts have ties too; a timing is None where the call has not
        reached it); returns their columns, each with its ``call_id``.
        """
        rng = random.Random(seed)
        written = []
        for _ in range(count):
            status = rng.choice(STATUSES)
            ended = status in _ENDED
            written.append(
                {
                    "status": status,
                    "source": rng.choice(["app", "billing", "search"]),
                    "requested_by": rng.choice(["alice", "bob", None]),
                    "model": rng.choice(["gpt-4o", "gpt-4o-mini"]),
                    "parent_task_id": rng.choice(["task-1", "task-2", None, None]),
                    "enqueued_at": NOW_MS - rng.randrange(0, 100) * 60_000,
                    "error_type": rng.choice(["RateLimitError", "APITimeoutError"])
                    if status == "failed"
                    else None,
                    "wait_ms": rng.choice([0, 50, 200, 1500]) if status != "queued" else None,
                    "first_token_ms": rng.choice([None, 120, 300, 900]) if ended else None,
                    "duration_ms": rng.choice([400, 1000, 2500, 8000]) if ended else None,
                }
            )
        for columns, call_id in zip(written, self.each(written), strict=True):
            columns["call_id"] = call_id
        return written

    def each(self, calls: list[dict[str, Any]]) -> list[str]:
        """Insert one call per dict of columns (one transaction); returns their call ids."""
        call_rows, bodies, events, texts = [], [], [], []
        for given in calls:
            columns = dict(given)
            prompt = columns.pop("prompt", "Summarise the quarterly report")
            response = columns.pop("response", "Revenue grew 12% over the quarter.")
            with_events = columns.pop("events", True)
            row = self._call_row(prompt, response, columns)
            call_rows.append(row)
            bodies.append(_body(row["call_id"], prompt, response, row["status"]))
            if with_events:
                events += _events(row)
            texts.append((prompt, response if row["status"] in _ENDED else "", row["call_id"]))
        with self.database.atomic():
            for chunk in peewee.chunked(call_rows, 500):
                LLMCall.insert_many(chunk).execute()
            if is_sqlite(self.database):  # a body's rowid is its call's (exporter.migrations)
                self.database.cursor().executemany(SQLITE.final_body, bodies)
            else:
                for chunk in peewee.chunked(bodies, 2000):
                    LLMCallBody.insert_many(chunk).execute()
            for chunk in peewee.chunked(events, 2000):
                LLMCallEvent.insert_many(chunk).execute()
            if is_sqlite(self.database):  # PostgreSQL has no full-text table
                self._index(texts)
        return [row["call_id"] for row in call_rows]

    def _index(self, texts: list[tuple[str, str, str]]) -> None:
        """Make every call searchable, queued and running ones too, as the store's schema takes it."""
        names = {name for (name,) in self.database.execute_sql("SELECT name FROM sqlite_master").fetchall()}
        call_ids = json.dumps([call_id for _, _, call_id in texts])
        if CJK_TABLE in names:  # both indexes, as the writers index
            index(self.database.cursor(), call_ids)
        elif TEXT_VIEW in names:  # a store from before the short-query index: the trigram index alone
            self.database.execute_sql(FTS_INDEX_SQL, (call_ids,))
        else:  # an older schema (a migration test): the FTS table holds its own copy of the text
            self.database.cursor().executemany(_FTS_COPY_INSERT, texts)

    def task(self, **columns: Any) -> str:
        row = {
            "task_id": f"task-{next(self._ids):06d}",
            "name": "nightly-digest",
            "trace_id": "0" * 32,
            "span_id": "0" * 16,
            "status": "succeeded",
            "started_at": self._tick(),
            "ended_at": None,
            "duration_ms": None,
            "attributes": json.dumps({"team": "data"}),
            "process": "host-a:100",
        } | columns
        if row["ended_at"] is None and row["status"] != "running":
            row["ended_at"] = row["started_at"] + 5000
            row["duration_ms"] = 5000
        LLMTask.insert(row).execute()
        return row["task_id"]

    def snapshot(self, **columns: Any) -> None:
        row = {
            "process": "host-a:100",
            "scheduler": "default",
            "queue_depth": 0,
            "in_flight": 0,
            "max_concurrency": 1,
            "min_interval": 0.0,
            "max_queue": 1000,
            "dispatched_total": 0,
            "waiting": json.dumps([]),
            "heartbeat_at": self.now_ms,
        } | columns
        SchedulerSnapshot.insert(row).execute()

    def _tick(self) -> int:
        self._clock += 1000
        return self._clock

    def _call_row(self, prompt: str, response: str, columns: dict[str, Any]) -> dict[str, Any]:
        number = next(self._ids)
        status = columns.get("status", "succeeded")
        enqueued = columns["enqueued_at"] if "enqueued_at" in columns else self._tick()
        started = enqueued + 100 if status != "queued" else None
        ended = enqueued + 1100 if status in _ENDED else None
        row = {
            "call_id": f"call-{number:08d}",
            "trace_id": f"{number:032x}",
            "span_id": f"{number:016x}",
            "parent_span_id": None,
            "parent_task_id": None,
            "parent_task_name": None,
            "status": status,
            "operation": "chat",
            "provider": "openai",
            "api_type": "chat_completions",
            "model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18" if ended else None,
            "response_id": f"chatcmpl-{number}" if ended else None,
            "source": "app",
            "requested_by": "alice",
            "stream": False,
            "enqueued_at": enqueued,
            "started_at": started,
            "first_token_at": enqueued + 400 if ended else None,
            "ended_at": ended,
            "wait_ms": 100 if started else None,
            "first_token_ms": 300 if ended else None,
            "duration_ms": 1000 if ended else None,
            "retry_count": 0,
            "input_tokens": 20,
            "output_tokens": 10 if ended else None,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "finish_reasons": json.dumps(["stop"]) if status == "succeeded" else None,
            "error_type": "RateLimitError" if status == "failed" else None,
            "error_message": "429 Too Many Requests" if status == "failed" else None,
            "prompt_preview": prompt[:200],
            "response_preview": response[:200] if ended else None,
            "server_address": "127.0.0.1",
            "process": "host-a:100",
            "updated_at": ended or started or enqueued,
        }
        row.update(columns)
        return row


def _body(call_id: str, prompt: str, response: str, status: str) -> dict[str, Any]:
    output = [
        {"role": "assistant", "parts": [{"type": "text", "content": response}], "finish_reason": "stop"}
    ]
    return {
        "call_id": call_id,
        "request_params": json.dumps({"temperature": 0.2}),
        "system_instructions": json.dumps([{"type": "text", "content": "You are terse."}]),
        "input_messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": prompt}]}], ensure_ascii=False
        ),
        "output_messages": json.dumps(output, ensure_ascii=False) if status in _ENDED else None,
        "attributes": json.dumps({"server.port": 443}),
    }


def _events(row: dict[str, Any]) -> list[dict[str, Any]]:
    events = [{"call_id": row["call_id"], "kind": "queued", "at": row["enqueued_at"], "data": None}]
    if row["started_at"] is not None:
        events.append(
            {"call_id": row["call_id"], "kind": "dispatched", "at": row["started_at"], "data": None}
        )
    if row["ended_at"] is not None:
        data = json.dumps({"error_type": row["error_type"]}) if row["error_type"] else None
        events.append({"call_id": row["call_id"], "kind": row["status"], "at": row["ended_at"], "data": data})
    return events


def list_pages(q: str, page_size: int, **filters: Any) -> tuple[list[str], set[int]]:
    """Every call id over all pages of ``queries.list_calls``, and the totals the pages reported."""
    ids: list[str] = []
    totals = set()
    page = 1
    while True:
        result = queries.list_calls(q=q, **filters, page=page, page_size=page_size)
        totals.add(result["total"])
        if not result["items"]:
            return ids, totals
        ids += [item["call_id"] for item in result["items"]]
        page += 1
