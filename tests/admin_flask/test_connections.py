"""The admin's SQLite connections outlive their request (a new one parses the schema and starts with a
cold page cache), and are closed once unused: through a real server, on a real file.

What the reuse saves is measured in bench/bench_admin.py.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import admin_flask.database
from admin_flask import create_app
from tests.admin_flask.conftest import TOKEN, Admin, Store


def test_requests_one_after_another_read_through_one_connection(
    serve: Callable[..., Any], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_flask.database, "IDLE_S", 60.0)  # none is closed for being unused here
    admin: Admin = serve(create_app(db=store.url, token=TOKEN), Admin)
    database = admin.state.database
    opened: list[sqlite3.Connection] = []
    connect = database._connect
    monkeypatch.setattr(database, "_connect", lambda: opened.append(connect()) or opened[-1])
    paths = ["/llm/calls", "/llm/calls?status=failed", "/tasks", "/llm/facets", "/llm/status"]
    answers = [admin.get(path) for path in paths * 2]  # each request on a thread of its own
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    assert len(opened) == 1, opened
    totals = {admin.json("/llm/calls")["total"] for _ in range(3)}
    assert totals == {store.count()}


def test_a_connection_unused_for_a_while_is_closed(
    serve: Callable[..., Any], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open connection, even idle, keeps out a tool that wants the file to itself."""
    monkeypatch.setattr(admin_flask.database, "IDLE_S", 0.2)
    admin: Admin = serve(create_app(db=store.url, token=TOKEN), Admin)
    assert admin.get("/llm/calls").status_code == 200
    holder = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None, timeout=10)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")  # waits until the admin closed its kept connection
        holder.execute("COMMIT")
    finally:
        holder.close()
    assert admin.get("/llm/calls").status_code == 200


def test_a_long_poll_held_open_leaves_the_kept_connection_to_other_requests(
    serve: Callable[..., Any], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_flask.database, "IDLE_S", 60.0)
    admin: Admin = serve(create_app(db=store.url, token=TOKEN), Admin)
    database = admin.state.database
    opened: list[sqlite3.Connection] = []
    connect = database._connect
    monkeypatch.setattr(database, "_connect", lambda: opened.append(connect()) or opened[-1])
    latest = admin.json("/llm/events", timeout="0")["last_event_id"]
    assert admin.get("/llm/calls").status_code == 200  # the connection kept from now on
    poll = threading.Thread(target=admin.get, args=("/llm/events",), kwargs={"after": latest, "timeout": 3})
    poll.start()
    time.sleep(0.5)  # the long poll waits for an event
    before = len(opened)

    assert admin.get("/llm/calls").status_code == 200

    assert len(opened) == before, "the request opened a connection: the long poll held the kept one"
    poll.join()
