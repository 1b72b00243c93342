"""``llm_otel.setup()`` in a fresh interpreter: the global TracerProvider can be set once per process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import llm_otel
from llm_otel.testing import FakeOpenAI

APP_WITH_ITS_OWN_PROVIDER = """
import json, sys
import openai
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import llm_otel
from openai.resources.chat.completions import Completions

original_create = Completions.create
app_exporter = InMemorySpanExporter()            # stands for the app's OTLP exporter
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(app_exporter))
trace.set_tracer_provider(provider)

handle = llm_otel.setup(db=sys.argv[2])
assert llm_otel.setup(db=sys.argv[2]) is handle  # idempotent
assert handle.tracer_provider is provider
client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-x")
with llm_otel.task("report", task_id="job-7"):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
handle.flush()
llm_otel.shutdown()
print(json.dumps({
    "spans": [
        {"name": s.name, "call_id": s.attributes.get("llm_otel.call.id"),
         "task": s.attributes.get("llm_otel.task.id")}
        for s in app_exporter.get_finished_spans()
    ],
    "restored": Completions.create is original_create,
}))
"""


def _run(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_apps_own_provider_receives_the_same_spans_as_the_store(tmp_path) -> None:
    db_path = tmp_path / "calls.db"
    with FakeOpenAI() as server:
        result = _run(APP_WITH_ITS_OWN_PROVIDER, server.base_url, f"sqlite:///{db_path}")
    names = sorted(span["name"] for span in result["spans"])
    assert names == ["chat gpt-4o-mini", "task report"]
    [call] = [span for span in result["spans"] if span["call_id"]]
    assert call["task"] == "job-7"
    assert result["restored"] is True
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT call_id, status, parent_task_id FROM llm_calls").fetchall()
    assert rows == [(call["call_id"], "succeeded", "job-7")]


def test_bad_configuration_is_refused_clearly() -> None:
    with pytest.raises(llm_otel.ConfigurationError, match="redact must be a callable"):
        llm_otel.setup(db=False, redact="not callable")
    with pytest.raises(llm_otel.ConfigurationError, match="scheduler must be"):
        llm_otel.setup(db=False, scheduler=object())


ZERO_CODE_APP = """
import sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-x")
for _chunk in client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "zero code"}], stream=True
):
    pass
"""


def test_opentelemetry_instrument_records_calls_with_no_code(tmp_path) -> None:
    """The ``llm_otel_openai`` instrumentor and ``llm_otel_sqlite`` exporter entry points together."""
    db_path = tmp_path / "zero.db"
    script = tmp_path / "app.py"
    script.write_text(ZERO_CODE_APP)
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "llm_otel_sqlite",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        # Only ours, should another OpenAI instrumentation be installed beside it.
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai-v2,openai",
        "LLM_OTEL_DB": f"sqlite:///{db_path}",
    }
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    with FakeOpenAI() as server:
        done = subprocess.run(
            [str(instrument), sys.executable, str(script), server.base_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        usage = server.calls[-1].usage
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute(
            "SELECT status, model, stream, input_tokens, output_tokens, prompt_preview FROM llm_calls"
        ).fetchall()
    assert rows == [
        ("succeeded", "gpt-4o-mini", 1, usage["prompt_tokens"], usage["completion_tokens"], "zero code")
    ]


def test_setup_after_zero_code_instrumentation_keeps_it_and_says_so(tracer_provider, caplog) -> None:
    from llm_otel.instrumentation import OpenAIInstrumentor

    zero_code = OpenAIInstrumentor()
    zero_code.instrument(tracer_provider=tracer_provider)
    try:
        handle = llm_otel.setup(db=False, tracer_provider=tracer_provider)
        assert "already instrumented" in caplog.text
        handle.shutdown()
        assert zero_code.is_instrumented_by_opentelemetry  # setup's shutdown left it alone
    finally:
        zero_code.uninstrument()
