"""What a fresh process imports: the ``llm-otel`` commands that instrument nothing never import the
OpenAI SDK (about a second of start-up), and ``import llm_otel`` then ``llm_otel.setup()`` still
records calls, its public names loading on first use."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openai
import pytest

from exporter.fixtures import load_fixture
from llm_otel.testing import FakeOpenAI

ENV = {key: value for key, value in os.environ.items() if not key.startswith(("LLM_OTEL_", "OPENAI_"))}

CONSOLE_SCRIPT = """
import atexit, json, os, sys

def report():
    with open(os.environ["IMPORTED_REPORT"], "w") as file:
        json.dump(sorted(sys.modules), file)

atexit.register(report)
from llm_otel.cli import main  # what the llm-otel console script runs
sys.exit(main())
"""
"""``llm-otel`` as its console script runs it, writing the names of the modules it imported at exit."""


def _openai_modules(report: Path) -> list[str]:
    return [name for name in json.loads(report.read_text()) if name.split(".")[0] == "openai"]


def _start(args: Sequence[str], report: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CONSOLE_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "IMPORTED_REPORT": str(report)},
    )


def _run(args: Sequence[str], report: Path) -> subprocess.CompletedProcess[str]:
    process = _start(args, report)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _until_interrupted(args: Sequence[str], report: Path, banner_ends: str) -> tuple[list[str], Any]:
    """Start a command that runs until Ctrl-C and read its banner, up to the line ``banner_ends``;
    returns the banner and a function that sends Ctrl-C and returns (exit code, stderr)."""
    process = _start(args, report)
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith(banner_ends):
        line = process.stdout.readline()
        if not line:
            process.kill()
            pytest.fail(f"llm-otel {args[0]} ended early: {process.communicate()[1]}")
        lines.append(line.rstrip("\n"))

    def interrupt() -> tuple[int, str]:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        return process.returncode, stderr

    return lines, interrupt


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "calls.db"
    load_fixture("errors", f"sqlite:///{path}")
    return path


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["--help"], 0),
        (["--version"], 0),
        (["demo", "--help"], 0),
        (["export", "--db", "{store}", "--status", "failed", "--output", "{tmp}/failed.jsonl"], 0),
        (["prune", "--db", "{copy}", "--older-than-days", "0"], 0),
        (["prune", "--db", "{tmp}/missing.db"], 2),  # bad input: the error path every command shares
    ],
    ids=["help", "version", "demo-help", "export", "prune", "bad-store"],
)
def test_the_store_commands_never_import_the_openai_sdk(
    args: list[str], status: int, store: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.db"
    with sqlite3.connect(store) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    report = tmp_path / "imported.json"
    done = _run([arg.format(store=store, copy=copy, tmp=tmp_path) for arg in args], report)

    assert done.returncode == status, done.stderr
    assert _openai_modules(report) == []
    if status == 2:
        assert done.stderr.startswith("Error: Invalid value for '--db': there is no store at")
    elif args[0] == "export":
        exported = (tmp_path / "failed.jsonl").read_text().splitlines()
        assert exported and all(json.loads(line)["status"] == "failed" for line in exported)
    elif args[0] == "prune":
        assert done.stdout.startswith("deleted ") and not done.stdout.startswith("deleted 0 ")
        with sqlite3.connect(copy) as connection:
            failed = connection.execute("SELECT count(*) FROM llm_calls WHERE status = 'failed'").fetchone()
        assert failed == (0,)
    else:
        assert done.stdout.strip()


def test_serve_answers_the_page_and_the_api_without_importing_the_openai_sdk(
    store: Path, tmp_path: Path
) -> None:
    report = tmp_path / "imported.json"
    serve = ["serve", "--db", str(store), "--port", "0", "--token", "t0ken", "--quiet"]
    lines, interrupt = _until_interrupted(serve, report, banner_ends="Ctrl-C stops")
    try:
        page = next(line for line in lines if line.startswith("llm-otel admin on")).split()[3]
        origin = page.split("/admin/", 1)[0]
        request = urllib.request.Request(
            f"{origin}/api/admin/jobs/llm/calls?page_size=5", headers={"Authorization": "Bearer t0ken"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            calls = json.loads(response.read())
        call = urllib.request.Request(
            f"{origin}/api/admin/jobs/llm/calls/{calls['items'][0]['call_id']}",
            headers={"Authorization": "Bearer t0ken"},
        )
        with urllib.request.urlopen(call, timeout=30) as response:
            detail = json.loads(response.read())
    finally:
        status, stderr = interrupt()

    assert status == 0, stderr
    assert len(calls["items"]) == 5 and detail["call_id"] == calls["items"][0]["call_id"]
    assert _openai_modules(report) == []


def test_fake_openai_serves_the_sdk_without_importing_it(tmp_path: Path) -> None:
    report = tmp_path / "imported.json"
    lines, interrupt = _until_interrupted(
        ["fake-openai", "--port", "0", "--quiet"], report, banner_ends="OPENAI_BASE_URL="
    )
    try:
        base_url = lines[-1].split()[0].split("=", 1)[1]
        with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0) as client:
            answer = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
    finally:
        status, stderr = interrupt()

    assert status == 0, stderr
    assert answer.choices[0].message.content == "Echo: hello"
    assert _openai_modules(report) == []


SETUP_SCRIPT = """
import json, sys
import llm_otel
imported_by_the_package = "openai" in sys.modules
from llm_otel import labels, setup, task
import openai

handle = setup(db=sys.argv[1])
with openai.OpenAI(base_url=sys.argv[2], api_key="sk-test") as client:
    with task("nightly-report", task_id="job-42"), labels(source="reports"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
llm_otel.shutdown()
try:
    llm_otel.not_a_name
except AttributeError as exc:
    unknown = str(exc)
print(json.dumps({
    "imported_by_the_package": imported_by_the_package,
    "handle": type(handle).__name__,
    "dir": sorted(set(llm_otel.__all__) - set(dir(llm_otel))),
    "unknown": unknown,
}))
"""


def test_import_llm_otel_then_setup_records_calls_in_a_fresh_process(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "calls.db"
    done = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT, f"sqlite:///{db}", fake_openai.base_url],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)

    assert outcome == {
        "imported_by_the_package": False,
        "handle": "LLMOtel",
        "dir": [],  # dir() lists the names not loaded yet too
        "unknown": "module 'llm_otel' has no attribute 'not_a_name'",
    }
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT status, source, parent_task_id FROM llm_calls").fetchall()
    assert rows == [("succeeded", "reports", "job-42")]


ENTRY_POINTS_SCRIPT = """
import json
from importlib.metadata import entry_points

loaded = {}
for group in ("opentelemetry_instrumentor", "opentelemetry_distro", "opentelemetry_configurator",
              "opentelemetry_traces_exporter"):
    for entry in entry_points(group=group):
        if entry.dist is not None and entry.dist.name == "llm-otel":
            value = entry.load()
            loaded[f"{group}:{entry.name}"] = f"{value.__module__}.{value.__qualname__}"
print(json.dumps(loaded))
"""


def test_the_opentelemetry_entry_points_load_in_a_fresh_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ENTRY_POINTS_SCRIPT], capture_output=True, text=True, timeout=120, env=ENV
    )
    assert done.returncode == 0, done.stderr

    assert json.loads(done.stdout) == {
        "opentelemetry_instrumentor:llm_otel_openai": (
            "llm_otel.instrumentation.instrumentor.OpenAIInstrumentor"
        ),
        "opentelemetry_distro:llm_otel": "llm_otel.distro.LLMOtelDistro",
        "opentelemetry_configurator:llm_otel": "llm_otel.distro.LLMOtelConfigurator",
        "opentelemetry_traces_exporter:llm_otel_sqlite": "exporter.span_exporter.SQLiteSpanExporter",
    }
