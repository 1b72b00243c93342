"""A store whose schema a newer llm-otel wrote: the app's calls go on, the process says once why
its writes may fail, and writes that no longer fit are counted as dropped, never raised."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider

import llm_otel
from exporter import migrate, open_database
from exporter.migrations import LATEST_VERSION
from llm_otel.testing import FakeOpenAI
from tests.llm_otel.spans import API_KEY


def newer_store(path: Path, *, incompatible: bool) -> None:
    database = open_database(f"sqlite:///{path}")
    migrate(database)
    database.execute_sql(
        "INSERT INTO llm_otel_schema (version, applied_at) VALUES (?, 0)", (LATEST_VERSION + 5,)
    )
    if incompatible:  # what a future migration might do: a column this version writes is renamed
        database.execute_sql('ALTER TABLE llm_calls RENAME COLUMN "source" TO "source_label"')
    database.close()


def make_calls(path: Path, server: FakeOpenAI, count: int) -> dict:
    provider = TracerProvider()
    handle = llm_otel.setup(db=f"sqlite:///{path}", tracer_provider=provider)
    try:
        with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as client:
            for i in range(count):
                reply = client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"call {i}"}]
                )
                assert reply.choices[0].message.content == f"Echo: call {i}"  # the app's result is intact
        handle.flush(1)
        return handle.store.stats()
    finally:
        llm_otel.shutdown()
        provider.shutdown()


@pytest.mark.parametrize("incompatible", [False, True], ids=["compatible", "incompatible"])
def test_a_newer_schema(
    tmp_path: Path, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, incompatible
):
    path = tmp_path / "newer.db"
    newer_store(path, incompatible=incompatible)
    with caplog.at_level(logging.WARNING, logger="exporter"):
        stats = make_calls(path, fake_openai, 5)
    warnings = [r.getMessage() for r in caplog.records if "newer than this llm-otel knows" in r.getMessage()]
    assert len(warnings) == 1 and f"version {LATEST_VERSION + 5}" in warnings[0]
    with sqlite3.connect(path) as connection:
        stored = connection.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
    if incompatible:
        assert stored == 0
        # held for retries while the queue has room, dropped past it (and at shutdown): never written
        assert stats["written"] == 0 and stats["queued"] + stats["dropped"] > 0
        assert "no column named source" in stats["last_error"]
    else:
        assert stored == 5 and stats["dropped"] == 0
