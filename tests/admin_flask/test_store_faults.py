"""A store that cannot be read gives a JSON 503 saying so, never a 500, and the admin recovers by
itself once the store is back: a file that is not a database, a lock held past the busy timeout, a
PostgreSQL server restarting, a database that does not exist yet."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from admin_flask import create_app
from tests.admin_flask.conftest import FAST_FEED, TOKEN, Admin, PostgresServer, Store
from tests.admin_flask.test_file_faults import damage
from tests.admin_flask.test_live import ARRIVES_WITHIN_S, messages_until
from tests.exporter.conftest import drop_database, pg_admin

READS = ("/llm/calls", "/llm/status", "/tasks", "/llm/facets", "/llm/calls/export", "/llm/events?timeout=0")


def assert_unavailable(admin: Admin, store: Store) -> None:
    for path in (*READS, f"/llm/calls/{store.manifest.calls['failed']}"):
        response = admin.client.get(f"/api/admin/jobs{path}")
        assert response.status_code == 503, (path, response.status_code, response.text[:300])
        error = response.json()["error"]
        assert error["code"] == "store_unavailable" and "cannot be read" in error["message"]


def wait_until_readable(admin: Admin, store: Store) -> None:
    """Every read answers 200 again within a few seconds (the live feed retries once a second)."""
    deadline = time.monotonic() + ARRIVES_WITHIN_S
    for path in READS:
        while (response := admin.client.get(f"/api/admin/jobs{path}")).status_code != 200:
            assert response.status_code == 503, response.text  # only ever 503 meanwhile, never a 500
            assert time.monotonic() < deadline, f"{path} did not recover by itself"
            time.sleep(0.05)
    assert admin.json("/llm/calls")["total"] == store.manifest.total


def statuses(ws: Any, done: Callable[[dict[str, Any]], bool]) -> None:
    messages_until(ws, lambda messages: any(m["type"] == "llm.status" and done(m) for m in messages))


@pytest.fixture
def switch(store: Store) -> Iterator[Any]:
    """``break_()`` puts a file that is not a database in the store's place; ``mend()`` puts it back."""
    path = store.url.removeprefix("sqlite:///")
    moved = path + ".away"

    class Switch:
        def break_(self) -> None:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(path + suffix, moved + suffix)
            with open(path, "wb") as garbage:
                garbage.write(b"this is not an SQLite database" * 100)

        def mend(self) -> None:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(moved + suffix, path + suffix)

    yield Switch()


def test_a_file_that_is_not_a_database(admin: Admin, switch: Any, store: Store) -> None:
    assert admin.get("/llm/calls").status_code == 200
    ws = admin.live()
    statuses(ws, lambda message: "aggregates" in message)
    switch.break_()
    try:
        statuses(ws, lambda message: message.get("error", {}).get("code") == "store_unavailable")
        assert_unavailable(admin, store)  # the long poll too, once the feed's reader found out
    finally:
        switch.mend()
    wait_until_readable(admin, store)
    statuses(ws, lambda message: "aggregates" in message)  # the live feed reads again too


def test_a_lock_held_past_the_busy_timeout(serve: Any, store: Store) -> None:
    admin = serve(
        create_app(db=store.url, token=TOKEN, config={"LLM_OTEL_ADMIN_BUSY_TIMEOUT_MS": 200}), Admin
    )
    assert admin.get("/llm/calls").status_code == 200
    holder = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None)
    try:  # an exclusive lock that even WAL readers must wait for (a backup tool, a careless script)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute(
            "UPDATE llm_calls SET updated_at = updated_at WHERE call_id = ?",
            (store.manifest.calls["failed"],),
        )
        holder.execute("COMMIT")
        response = admin.get("/llm/calls")
        assert response.status_code == 503 and "locked" in response.json()["error"]["message"]
    finally:
        holder.close()
    wait_until_readable(admin, store)


def test_postgresql_restarting(serve: Any, pg_store: Store, postgres_server: PostgresServer) -> None:
    admin = serve(create_app(db=pg_store.url, token=TOKEN, config=FAST_FEED), Admin)
    ws = admin.live()
    statuses(ws, lambda message: "aggregates" in message)
    postgres_server.restart()  # every connection of the admin (requests, the feed's reader) is cut
    wait_until_readable(admin, pg_store)
    before = time.time()
    statuses(ws, lambda message: "aggregates" in message and _after(message["now"], before))


def test_a_postgresql_database_that_does_not_exist_yet(
    serve: Any, seeded_pg: Store, postgres_server: PostgresServer
) -> None:
    name = f"admin_late_{os.getpid()}_{time.monotonic_ns()}"
    late = Store("postgresql", postgres_server.url(name), seeded_pg.manifest)
    admin = serve(create_app(db=late.url, token=TOKEN), Admin)  # starts although it cannot connect
    assert_unavailable(admin, late)
    assert "does not exist" in json.dumps(admin.get("/llm/calls").json())
    pg_admin(postgres_server, f"CREATE DATABASE {name} TEMPLATE admin_seed")
    try:
        wait_until_readable(admin, late)
    finally:
        drop_database(postgres_server, name)


def _after(iso: str, moment: float) -> bool:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() >= moment


def _copies(path: str, copies: int, prompt_bytes: int) -> int:
    """Add ``copies`` copies of every call (ids ``<id>-<n>``), each with a prompt of ``prompt_bytes``:
    an export far larger than the sockets between the admin and its client hold. Returns the calls."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        for table, text_column in (("llm_calls", None), ("llm_call_bodies", "input_messages")):
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            prompt = json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "x" * prompt_bytes}]}]
            )
            chosen = {"call_id": "call_id || '-' || n", text_column: "?"}
            values = ", ".join(chosen.get(column, column) for column in columns)
            connection.execute(
                f"WITH RECURSIVE copy(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM copy WHERE n < {copies}) "
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM {table}, copy",
                (prompt,) if text_column else (),
            )
        connection.commit()
        return connection.execute("SELECT count(*) FROM llm_calls").fetchone()[0]


def test_an_export_cut_by_a_damaged_file_ends_with_the_store_unavailable_error(
    serve: Any, store: Store
) -> None:
    """The body has begun (200): its last line is the 503's error, reason and what to do included."""
    path = store.url.removeprefix("sqlite:///")
    total = _copies(path, copies=40, prompt_bytes=4000)  # ~20 MB of lines
    admin = serve(create_app(db=store.url, token=TOKEN, config=FAST_FEED), Admin)
    with admin.client.stream("GET", "/api/admin/jobs/llm/calls/export") as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert json.loads(next(lines))["call_id"]
        damage(Path(path), "garbage over its pages")  # while the admin waits for the client to read
        rest = [json.loads(line) for line in lines]

    assert 0 < len(rest) < total - 1 and all("call_id" in line for line in rest[:-1])
    error = rest[-1]["error"]
    assert (error["code"], error["reason"]) == ("store_unavailable", "damaged"), error
    assert f"its file {path} is damaged" in error["message"]
    assert "move the file aside" in error["message"] and "docs/operations.md" in error["message"]
