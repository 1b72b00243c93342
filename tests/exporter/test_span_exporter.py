"""SQLiteSpanExporter: alone under a BatchSpanProcessor, faults, and zero-code through the entry point."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

import exporter.span_exporter
from exporter import StoreConfigurationError
from exporter.mapping import span_to_rows
from exporter.span_exporter import SQLiteSpanExporter
from tests.exporter.call_spans import full_call, task_span
from tests.sqlite_file import rows

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_under_a_batch_span_processor_calls_and_tasks_are_written(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(SQLiteSpanExporter(f"sqlite:///{path}")))
    tracer = provider.get_tracer("tests")

    task = task_span(tracer, "t1")
    call = full_call(tracer, "c1")
    task.end()
    with tracer.start_as_current_span("GET /"):
        pass
    assert provider.force_flush()
    provider.shutdown()

    expected = span_to_rows(call)
    assert expected is not None
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        row = dict(connection.execute("SELECT * FROM llm_calls").fetchone())
    assert row == expected.call | {"stream": 1}
    assert rows(path, "SELECT kind FROM llm_call_events ORDER BY id") == [
        ("queued",),
        ("dispatched",),
        ("retry",),
        ("first_token",),
        ("succeeded",),
    ]
    assert rows(path, "SELECT task_id, status FROM llm_tasks") == [("t1", "succeeded")]


def test_exporting_the_same_spans_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    span_exporter = SQLiteSpanExporter(str(path))
    spans = [full_call(TracerProvider().get_tracer("tests"), f"c{i}") for i in range(3)]

    results = [span_exporter.export(spans), span_exporter.export(spans)]

    assert results == [SpanExportResult.SUCCESS] * 2
    assert rows(path, "SELECT count(*) FROM llm_calls") == [(3,)]
    assert rows(path, "SELECT count(*) FROM llm_call_events") == [(15,)]
    assert rows(path, "SELECT count(*) FROM llm_calls_fts_docsize") == [(3,)]  # each call indexed once
    assert rows(path, "SELECT count(*) FROM llm_calls_fts WHERE llm_calls_fts MATCH '\"Par\"'") == [(3,)]
    with sqlite3.connect(path) as connection:  # the index matches the bodies it was made from
        connection.execute("INSERT INTO llm_calls_fts (llm_calls_fts) VALUES ('integrity-check')")


def test_a_failing_database_fails_the_export_without_raising_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.db"
    span_exporter = SQLiteSpanExporter(str(path))
    spans = [full_call(TracerProvider().get_tracer("tests"), "c1")]
    assert not path.exists()  # the URL is checked without touching the disk: the first export opens it
    path.mkdir()  # a directory where the file should be: SQLite cannot open it

    with caplog.at_level(logging.WARNING, logger="exporter.span_exporter"):
        failed = [span_exporter.export(spans), span_exporter.export(spans)]
    path.rmdir()
    recovered = span_exporter.export(spans)

    assert failed == [SpanExportResult.FAILURE] * 2
    assert len([message for message in caplog.messages if "not written" in message]) == 1
    assert recovered == SpanExportResult.SUCCESS
    assert rows(path, "SELECT call_id FROM llm_calls") == [("c1",)]
    span_exporter.shutdown()
    assert span_exporter.export(spans) == SpanExportResult.FAILURE


def test_the_database_comes_from_llm_otel_db_and_retention_runs_at_the_first_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("LLM_OTEL_DB", f"sqlite:///{path}")
    monkeypatch.setenv("LLM_OTEL_RETENTION_DAYS", "3")
    runs: list[float] = []
    monkeypatch.setattr(exporter.span_exporter, "run_retention", lambda database, days: runs.append(days))
    span_exporter = SQLiteSpanExporter()
    spans = [full_call(TracerProvider().get_tracer("tests"), "c1")]

    span_exporter.export(spans)
    span_exporter.export(spans)

    assert span_exporter.path == str(path)
    assert runs == [3.0]
    assert rows(path, "SELECT call_id FROM llm_calls") == [("c1",)]
    with pytest.raises(StoreConfigurationError, match="writes SQLite or PostgreSQL"):
        SQLiteSpanExporter("mysql://u:p@localhost/db")


_SCRIPT = textwrap.dedent(
    """
    import json
    from opentelemetry import trace

    tracer = trace.get_tracer("zero-code")
    attributes = {
        "llm_otel.call.id": "zero-code-1",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "llm_otel.status": "succeeded",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
    }
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attributes):
        pass
    """
)


def test_opentelemetry_instrument_with_the_llm_otel_sqlite_exporter_writes_rows(tmp_path: Path) -> None:
    path = tmp_path / "zero-code.db"
    script = tmp_path / "script.py"
    script.write_text(_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OTEL_TRACES_EXPORTER": "llm_otel_sqlite",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "LLM_OTEL_DB": f"sqlite:///{path}",
    }

    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert rows(path, "SELECT call_id, model, input_tokens, prompt_preview FROM llm_calls") == [
        ("zero-code-1", "gpt-4o-mini", 12, "hi")
    ]
