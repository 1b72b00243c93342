"""Fixtures of the admin tests: a seeded store, a real admin server on 127.0.0.1, HTTP and websocket
clients.

- ``seeded`` / ``seeded_pg`` (session): a SQLite file and a PostgreSQL database seeded through
  ``llm_otel.setup()`` (``seed.py``); ``sqlite_store`` / ``pg_store`` a private copy per test
  (tests may write to it), ``store`` the one the test's admin reads (SQLite unless overridden).
- ``serve(app)``: runs any Flask app on a real threaded Werkzeug server on a free port of
  127.0.0.1 until the test ends, and closes the admin's live feed.
- ``admin``: the standalone admin (``create_app``) over ``store_path``, with ``admin.client`` (an
  HTTP client holding the token), ``admin.anonymous`` and ``admin.ws(...)``.

The admin binds ``exporter.models.db``, one store per process: each test starts its own server and
stops it at the end, so only one admin is alive at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import subprocess
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import simple_websocket
from flask import Flask
from werkzeug.serving import make_server

from admin_flask import create_app
from admin_flask.state import EXTENSION_KEY, AdminState
from llm_otel.testing import FakeOpenAI
from tests.admin_flask.seed import Manifest, seed
from tests.children import checkout_python
from tests.exporter.conftest import (  # noqa: F401 - postgres_server: a shared fixture
    PostgresServer,
    drop_database,
    pg_admin,
    postgres_server,
)

TOKEN = "admin-test-token-3c9f1e"
API = "/api/admin/jobs"
FAST_FEED = {"LLM_OTEL_ADMIN_STATUS_INTERVAL_S": 0.5}


@dataclass
class Store:
    """A seeded store of one test: its URL, and ``rows(sql, *args)``, an independent read (plain
    sqlite3 or psycopg2, ``?`` placeholders on both) that does not go through the code under test."""

    engine: str
    url: str
    manifest: Manifest

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """The rows of ``query`` (which may also write: it is committed)."""
        if self.engine == "sqlite":
            with contextlib.closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as connection:
                rows = connection.execute(query, args).fetchall()
                connection.commit()
                return rows
        import psycopg2

        connection = psycopg2.connect(self.url)
        try:
            with connection.cursor() as cursor:
                cursor.execute(query.replace("?", "%s"), args)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.commit()
            connection.close()

    def count(self, where: str = "1=1", *args: Any) -> int:
        return self.rows(f"SELECT COUNT(*) FROM llm_calls WHERE {where}", *args)[0][0]

    def ids(self, where: str = "1=1", *args: Any) -> set[str]:
        return {row[0] for row in self.rows(f"SELECT call_id FROM llm_calls WHERE {where}", *args)}


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI) -> Store:
    """The seeded SQLite file (read it through a copy: ``store``)."""
    path = tmp_path_factory.mktemp("admin-seed") / "seeded.db"
    url = f"sqlite:///{path}"
    return Store("sqlite", url, seed(url, fake_openai_server))


@pytest.fixture(scope="session")
def seeded_pg(postgres_server: PostgresServer, fake_openai_server: FakeOpenAI) -> Store:  # noqa: F811
    """A seeded PostgreSQL database, the template of each test's copy."""
    pg_admin(postgres_server, "CREATE DATABASE admin_seed")
    url = postgres_server.url("admin_seed")
    return Store("postgresql", url, seed(url, fake_openai_server))


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    """The store of the test's admin: the SQLite copy (test modules may override it)."""
    return sqlite_store


@pytest.fixture
def sqlite_store(seeded: Store, tmp_path: Path) -> Store:
    """A copy of the seeded SQLite store for this test alone."""
    copy = tmp_path / "store.db"
    source = contextlib.closing(sqlite3.connect(seeded.url.removeprefix("sqlite:///")))
    with source as original, contextlib.closing(sqlite3.connect(copy)) as target:
        original.backup(target)
    return Store("sqlite", f"sqlite:///{copy}", seeded.manifest)


@pytest.fixture
def pg_store(seeded_pg: Store, postgres_server: PostgresServer) -> Iterator[Store]:  # noqa: F811
    """A copy of the seeded PostgreSQL database for this test alone."""
    name = f"admin_copy_{next(_PG_COPIES)}"
    pg_admin(postgres_server, f"CREATE DATABASE {name} TEMPLATE admin_seed")
    yield Store("postgresql", postgres_server.url(name), seeded_pg.manifest)
    drop_database(postgres_server, name)


_PG_COPIES = itertools.count(1)


@dataclass
class Running:
    """A Flask app served on 127.0.0.1."""

    app: Flask
    url: str
    clients: list[Any] = field(default_factory=list)

    @property
    def state(self) -> AdminState:
        return self.app.extensions[EXTENSION_KEY]

    def http(self, headers: dict[str, str] | None = None, **options: Any) -> httpx2.Client:
        client = httpx2.Client(base_url=self.url, headers=headers or {}, timeout=30, **options)
        self.clients.append(client)
        return client

    def ws(self, path: str, headers: dict[str, str] | None = None) -> simple_websocket.Client:
        client = simple_websocket.Client.connect(self.url.replace("http://", "ws://") + path, headers=headers)
        self.clients.append(client)
        return client


@dataclass
class Admin(Running):
    """The standalone admin: ``client`` holds the token, ``anonymous`` does not."""

    client: httpx2.Client = field(init=False)
    anonymous: httpx2.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.http({"Authorization": f"Bearer {TOKEN}"})
        self.anonymous = self.http()

    def get(self, path: str, **params: Any) -> httpx2.Response:
        return self.client.get(API + path, params=params)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def live(self, query: str = "") -> simple_websocket.Client:
        return self.ws(f"{API}/llm/ws{query}", {"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    """``serve(app)`` → a ``Running`` server for the rest of the test."""
    servers: list[tuple[Any, threading.Thread, Running]] = []

    def start(app: Flask, kind: type[Running] = Running) -> Running:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running = kind(app, f"http://127.0.0.1:{server.server_port}")
        servers.append((server, thread, running))
        return running

    yield start
    for server, thread, running in servers:
        for client in running.clients:
            with contextlib.suppress(Exception):
                client.close()
        state = running.app.extensions.get(EXTENSION_KEY)
        if state is not None:
            state.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def admin_app(store: Store) -> Flask:
    return create_app(db=store.url, token=TOKEN, config=FAST_FEED)


@pytest.fixture
def admin(admin_app: Flask, serve: Callable[..., Running]) -> Admin:
    return serve(admin_app, Admin)  # type: ignore[return-value]


_CHILD = textwrap.dedent(
    """
    import json, sys
    import openai
    import llm_otel

    url, base_url = sys.argv[1], sys.argv[2]
    handle = llm_otel.setup(db=url, scheduler=llm_otel.Scheduler(max_concurrency=1, name="child"))
    client = openai.OpenAI(base_url=base_url, api_key="sk-child-0123456789", max_retries=0)
    captured = []

    print("ready", flush=True)
    for line in sys.stdin:
        order = json.loads(line)
        with llm_otel.labels(source=order["source"], requested_by="child"):
            response = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": order.get("prompt", "hi")}]
            )
        handle.flush(10)
        print(json.dumps({"response_id": response.id}), flush=True)
    llm_otel.shutdown()
    """
)


class ChildWriter:
    """Another process that makes LLM calls into the store on demand (``call(source)``)."""

    def __init__(self, url: str, base_url: str) -> None:
        self.process = checkout_python(_CHILD, url, base_url, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready", (
            self.process.stderr.read() if self.process.stderr else ""
        )

    def call(self, source: str, prompt: str = "hi") -> None:
        """Make one call labelled ``source``; returns once the child's store wrote it."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"source": source, "prompt": prompt}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, self.process.stderr.read() if self.process.stderr else "the child died"

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def child(store: Store, fake_openai: FakeOpenAI) -> Iterator[ChildWriter]:
    """Another process writing calls into the test's store."""
    writer = ChildWriter(store.url, fake_openai.base_url)
    yield writer
    writer.close()
