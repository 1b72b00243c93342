"""The ``llm-otel`` command, run as a user runs it (the console script, a real SQLite file)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import openai
import pytest

from llm_otel.cli import cli

LLM_OTEL = Path(sys.executable).with_name("llm-otel")
ENV = {key: value for key, value in os.environ.items() if not key.startswith("LLM_OTEL_")}


def _run(*args: str, cwd: Path, status: int = 0, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(LLM_OTEL), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env={**ENV, **env}
    )
    assert done.returncode == status, done.stderr
    return done


def _statuses(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return dict(connection.execute("SELECT status, count(*) FROM llm_calls GROUP BY status"))


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store the demo wrote once, copied by the tests that change it."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    _run("demo", "--db", f"sqlite:///{db}", cwd=db.parent)
    return db


def _copy(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "calls.db"
    with sqlite3.connect(store) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


def test_demo_records_its_workload_and_prints_it_back_from_the_store(demo_store: Path) -> None:
    with sqlite3.connect(demo_store) as connection:
        tasks = {name for (name,) in connection.execute("SELECT name FROM llm_tasks")}
        retried = connection.execute("SELECT max(retry_count) FROM llm_calls").fetchone()[0]
    assert _statuses(demo_store) == {"succeeded": 10, "failed": 1, "cancelled": 1}
    assert tasks == {"daily-digest", "index-documents"}
    assert retried == 2


def test_demo_says_where_it_writes_and_that_it_adds_to_an_existing_store(tmp_path: Path) -> None:
    first = _run("demo", cwd=tmp_path).stdout  # the default store, in the working directory
    second = _run("demo", cwd=tmp_path).stdout

    path = tmp_path / "llm_otel_demo.db"
    assert f"Recording into {path} (a new store)." in first
    assert "12 calls recorded by this run (12 in the store)" in first
    assert f"Adding to {path}, which holds 12 calls already" in second
    assert "12 calls recorded by this run (24 in the store)" in second
    assert "no OpenAI key needed" in first
    assert "请用中文总结今天的天气预报" in first and "InternalServerError: Error code: 500" in first
    assert "first token n/a (not streamed)" in first
    assert re.search(r"first token \d+ ms", first)  # the streams
    assert first.rstrip().endswith(
        "This run: 10 succeeded, 1 failed, 1 cancelled; error rate 8.3% (1 failed of 12 ended)"
    )
    assert "{" not in first  # no raw Python dict


def test_prune_older_than_days_zero_deletes_every_ended_call(demo_store: Path, tmp_path: Path) -> None:
    db = _copy(demo_store, tmp_path)
    out = _run("prune", "--db", f"sqlite:///{db}", "--older-than-days", "0", cwd=tmp_path).stdout
    assert out.startswith("deleted ") and "older than 0 seconds" in out
    assert _statuses(db) == {}


@pytest.mark.parametrize("age", [["--older-than", "7d"], ["--older-than-days", "7"], []])
def test_prune_keeps_what_is_younger_than_asked(age: list[str], demo_store: Path, tmp_path: Path) -> None:
    db = _copy(demo_store, tmp_path)
    out = _run("prune", "--db", str(db), *age, cwd=tmp_path).stdout
    assert out == f"deleted 0 rows older than 7 days from {db}\n"
    assert sum(_statuses(db).values()) == 12


def test_prune_older_than_takes_hours_minutes_and_seconds(demo_store: Path, tmp_path: Path) -> None:
    db = _copy(demo_store, tmp_path)
    assert "older than 12 hours" in _run("prune", "--db", str(db), "--older-than", "12h", cwd=tmp_path).stdout
    assert sum(_statuses(db).values()) == 12
    assert "older than 0 seconds" in _run("prune", "--db", str(db), "--older-than", "0s", cwd=tmp_path).stdout
    assert _statuses(db) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "/nonexistent/dir/x.db"], "there is no store at '/nonexistent/dir/x.db' (no such file)"),
        (["--db", "sqlite:///missing.db"], "there is no store at 'missing.db' (no such file)"),
        (["--db", "STORE", "--older-than-days", "-1"], "'-1' is not a number of days of 0 or more"),
        (["--db", "STORE", "--older-than", "-1d"], "'-1d' is not a duration"),
        (["--db", "STORE", "--older-than", "7"], "write a number and a unit, e.g. 7d, 12h, 30m or 90s"),
        (["--db", "STORE", "--older-than", "1d", "--older-than-days", "1"], "not both"),
        (["--db", "NOT_A_STORE"], "is not an llm-otel store (it has no llm_calls table)"),
        (["--db", "TEXT_FILE"], "file is not a database"),
        (["--db", "mysql://u@host/db"], "the span store writes SQLite or PostgreSQL only"),
        ([], "Missing option '--db'"),
    ],
)
def test_prune_answers_bad_input_with_one_line_and_exit_code_2_creating_nothing(
    args: list[str], message: str, demo_store: Path, tmp_path: Path
) -> None:
    store = _copy(demo_store, tmp_path)
    not_a_store = tmp_path / "other.db"
    with sqlite3.connect(not_a_store) as connection:
        connection.execute("CREATE TABLE notes (x)")
    (tmp_path / "notes.txt").write_text("not a database")
    places = {"STORE": str(store), "NOT_A_STORE": str(not_a_store), "TEXT_FILE": str(tmp_path / "notes.txt")}
    before = sorted(tmp_path.iterdir())

    done = _run("prune", *[places.get(arg, arg) for arg in args], cwd=tmp_path, status=2)

    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: ") and message in line
    assert sorted(tmp_path.iterdir()) == before  # no file, no directory created
    assert not Path("/nonexistent").exists()
    assert sum(_statuses(store).values()) == 12  # nothing pruned


def test_prune_reads_the_store_and_days_from_the_environment(demo_store: Path, tmp_path: Path) -> None:
    db = _copy(demo_store, tmp_path)
    out = _run("prune", cwd=tmp_path, LLM_OTEL_DB=str(db), LLM_OTEL_RETENTION_DAYS="0.5").stdout
    assert out == f"deleted 0 rows older than 12 hours from {db}\n"
    bad = _run("prune", cwd=tmp_path, status=2, LLM_OTEL_DB=str(db), LLM_OTEL_RETENTION_DAYS="a week")
    assert bad.stderr.startswith("Error: LLM_OTEL_RETENTION_DAYS must be a positive number of days")


def test_an_unreachable_postgresql_store_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    done = _run("prune", "--db", f"postgresql://app:secret@127.0.0.1:{port}/calls", cwd=tmp_path, status=1)
    [line] = done.stderr.splitlines()
    assert line.startswith(f"Error: cannot reach the store postgresql://app:***@127.0.0.1:{port}/calls: ")
    assert "secret" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [[str(LLM_OTEL), "fake-openai"], [sys.executable, "-m", "llm_otel.testing"]],
    ids=["cli", "module"],
)
def test_fake_openai_prints_the_lines_to_paste_serves_until_ctrl_c_and_exits_0(command: list[str]) -> None:
    server = subprocess.Popen(
        [*command, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline() for _ in range(3)]
        assert banner[0].startswith("Fake OpenAI server on http://127.0.0.1:")
        pasted = dict(word.split("=", 1) for word in banner[2].split())
        assert sorted(pasted) == ["OPENAI_API_KEY", "OPENAI_BASE_URL"]
        assert banner[0].split()[4] == pasted["OPENAI_BASE_URL"]

        client = openai.OpenAI(base_url=pasted["OPENAI_BASE_URL"], api_key=pasted["OPENAI_API_KEY"])
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Echo: hi"
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=10)
    assert server.returncode == 0, stderr
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in stderr  # the request log
    assert "Traceback" not in stderr


def test_fake_openai_prints_what_the_quickstart_shows() -> None:
    quickstart = (Path(__file__).resolve().parents[2] / "docs" / "quickstart.md").read_text()
    shown = quickstart.split("$ llm-otel fake-openai --port 8001", 1)[1].split("```", 1)[0].splitlines()[1:]
    server = subprocess.Popen(
        [str(LLM_OTEL), "fake-openai", "--port", "0", "--quiet"], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert server.stdout is not None
        banner = [server.stdout.readline().rstrip("\n") for _ in shown]
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=10)
    port = banner[0].split(":")[2].split("/")[0]
    assert [line.replace(f":{port}/", ":8001/") for line in banner] == shown


def test_fake_openai_on_a_taken_port_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("fake-openai", "--port", str(port), cwd=tmp_path, status=2)
    [line] = done.stderr.splitlines()
    assert line.startswith(f"Error: Invalid value for '--port': cannot listen on 127.0.0.1:{port}: ")


def _commands(group: click.Group) -> list[tuple[str, click.Command]]:
    return [("", group)] + [(name, command) for name, command in group.commands.items()]


def test_every_command_and_option_has_help_without_raw_markup(tmp_path: Path) -> None:
    for name, command in _commands(cli):
        text = _run(*filter(None, [name]), "--help", cwd=tmp_path).stdout
        assert "``" not in text and "\b" not in text, text
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"llm-otel {name} {param.opts[0]} has no help"
                assert param.opts[0] in text
