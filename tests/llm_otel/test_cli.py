"""The ``llm-otel`` command, run as a user runs it (the console script, a real SQLite file)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
import openai
import pytest

from llm_otel.cli import cli
from llm_otel.testing import FakeOpenAI

LLM_OTEL = Path(sys.executable).with_name("llm-otel")
ENV = {key: value for key, value in os.environ.items() if not key.startswith(("LLM_OTEL_", "OPENAI_"))}


def _run(*args: str, cwd: Path, status: int = 0, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(LLM_OTEL), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env={**ENV, **env}
    )
    assert done.returncode == status, done.stderr
    return done


def _statuses(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return dict(connection.execute("SELECT status, count(*) FROM llm_calls GROUP BY status"))


def _count(db: Path) -> int:
    return sum(_statuses(db).values())


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store the demo wrote for a few seconds, copied by the tests that change it."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    _run("demo", "--db", f"sqlite:///{db}", "--duration", "4s", "--port", "0", "--seed", "1", cwd=db.parent)
    assert _count(db) > 5
    return db


def _copy(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "calls.db"
    with sqlite3.connect(store) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    return copy


def test_demo_says_where_it_writes_and_that_it_adds_to_an_existing_store(tmp_path: Path) -> None:
    demo = ("demo", "--duration", "3s", "--port", "0", "--seed", "2")
    # The default store, in the working directory; an OpenAI key in the environment changes nothing.
    first = _run(*demo, cwd=tmp_path, OPENAI_API_KEY="sk-of-the-user").stdout
    path = tmp_path / "llm_otel_demo.db"
    after_first = _count(path)
    second = _run(*demo, cwd=tmp_path).stdout

    assert first.startswith(f"Recording into {path} (a new store).\n")
    assert f"\n{after_first} calls recorded by this run ({after_first} in the store)" in first
    assert second.startswith(f"Adding to {path}, which holds {after_first} calls already.\n")
    assert f"calls recorded by this run ({_count(path)} in the store)" in second
    assert "the fake OpenAI server (no OpenAI key needed)" in first
    assert "first token n/a (not streamed)" in first
    assert re.search(r"\nThis run: \d+ succeeded.*; error rate \d+\.\d% \(\d+ failed of \d+ ended\)", first)
    assert "{" not in first  # no raw Python dict


def test_demo_runs_until_ctrl_c_then_stops_cleanly_and_reports(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    demo = subprocess.Popen(
        [str(LLM_OTEL), "demo", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    assert demo.stdout is not None
    lines = []
    while not lines or lines[-1] != "Ctrl-C stops.\n":
        lines.append(demo.stdout.readline())
        assert lines[-1], "the demo ended early"
    deadline = time.monotonic() + 30
    while (not db.exists() or _count(db) < 5) and time.monotonic() < deadline:  # calls keep coming
        time.sleep(0.2)
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert "stopping after the calls in flight" in err and "Traceback" not in err
    assert re.search(r"\n\d+ calls recorded by this run", out)
    assert _statuses(db).keys() <= {"succeeded", "failed", "cancelled"}  # nothing left running


def test_demo_sends_its_workload_to_another_server_with_base_url_and_api_key(tmp_path: Path) -> None:
    db = tmp_path / "real.db"
    with FakeOpenAI() as other:  # stands for a real OpenAI-compatible server
        out = _run(
            "demo", "--db", str(db), "--duration", "4s", "--port", "0", "--base-url", other.base_url,
            "--api-key", "sk-real-key", "--model", "my-model", cwd=tmp_path,
        ).stdout  # fmt: skip
        requests = other.calls
    assert f"Calls go to {other.base_url}" in out
    assert requests and {call.headers["authorization"] for call in requests} == {"Bearer sk-real-key"}
    with sqlite3.connect(db) as connection:
        models = {model for (model,) in connection.execute("SELECT DISTINCT model FROM llm_calls")}
        keys = connection.execute(
            "SELECT count(*) FROM llm_call_bodies WHERE request_params LIKE '%sk-real%'"
        )
        assert keys.fetchone() == (0,)
    assert models <= {"my-model", "text-embedding-3-small"} and "my-model" in models


def test_demo_with_an_unreachable_store_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _run("demo", "--db", f"postgresql://a:b@127.0.0.1:{port}/c", "--port", "0", cwd=tmp_path, status=1)
    [line] = done.stderr.splitlines()
    assert line.startswith("Error: the store cannot be reached: ") and "Connection refused" in line


def test_demo_refuses_an_api_key_without_a_base_url(tmp_path: Path) -> None:
    done = _run("demo", "--api-key", "sk-x", "--port", "0", cwd=tmp_path, status=2)
    assert done.stderr.startswith("Error: --api-key goes with --base-url")
    assert list(tmp_path.iterdir()) == []


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
    assert _count(db) == _count(demo_store)


def test_prune_older_than_takes_hours_minutes_and_seconds(demo_store: Path, tmp_path: Path) -> None:
    db = _copy(demo_store, tmp_path)
    assert "older than 12 hours" in _run("prune", "--db", str(db), "--older-than", "12h", cwd=tmp_path).stdout
    assert _count(db) == _count(demo_store)
    assert "older than 0 seconds" in _run("prune", "--db", str(db), "--older-than", "0s", cwd=tmp_path).stdout
    assert _statuses(db) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "/nonexistent/dir/x.db"], "there is no store at '/nonexistent/dir/x.db' (no such file)"),
        (["--db", "sqlite:///missing.db"], "there is no store at 'missing.db' (no such file)"),
        (["--db", "STORE", "--older-than-days", "-1"], "'-1' is not a number of days of 0 or more"),
        (["--db", "STORE", "--older-than", "-1d"], "'-1d' is not a duration"),
        (["--db", "STORE", "--older-than", "7"], "write a number and a unit, e.g. 7d, 12h"),
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
    assert _count(store) == _count(demo_store)  # nothing pruned


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
