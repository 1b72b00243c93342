"""``setup()`` as users get it wrong or leave it: a bad ``db``, a second ``setup()`` with other
settings, and an app exiting while its store is unreachable."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

import llm_otel
from exporter import StoreConfigurationError
from llm_otel.testing import FakeOpenAI

ACCEPTED = (
    "accepted forms: 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', a plain file path such "
    "as 'llm_calls.db', or 'postgresql://user:password@host:5432/dbname'"
)


@pytest.mark.parametrize(
    ("db", "wrong"),
    [
        ("mysql://x", "'mysql://x' names a mysql database: the span store writes SQLite or PostgreSQL only"),
        ("mysql:///dbname", "'mysql:///dbname' names a mysql database"),
        ("oracle://scott@db/orcl", "unknown database scheme 'oracle'"),
        ("sqlite://calls.db", "a SQLite file takes three slashes ('sqlite:///calls.db')"),
    ],
)
def test_a_url_the_store_cannot_use_is_named_with_the_accepted_forms(
    db: str, wrong: str, tmp_path: Path, tracer_provider: TracerProvider
) -> None:
    with pytest.raises(StoreConfigurationError) as refused:
        llm_otel.setup(db=db, tracer_provider=tracer_provider, instrument_openai=False)
    message = str(refused.value)
    assert wrong in message and message.endswith(ACCEPTED)
    assert "mysql:///" not in message.replace(repr(db), "")  # never suggests a form that is refused


@pytest.mark.parametrize(
    ("db", "wrong"), [(123, "not int 123"), ("", "not an empty string"), (b"x.db", "not bytes b'x.db'")]
)
def test_a_db_that_is_no_url_says_what_db_takes(
    db: object, wrong: str, tracer_provider: TracerProvider
) -> None:
    with pytest.raises(llm_otel.ConfigurationError) as refused:
        llm_otel.setup(db=db, tracer_provider=tracer_provider, instrument_openai=False)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "db must be a database URL such as 'sqlite:///llm_calls.db', a file path or "
        "'postgresql://user:password@host:5432/dbname'; None (LLM_OTEL_DB, else sqlite:///llm_calls.db) "
        f"or False (no store); {wrong}"
    )


def test_a_bad_llm_otel_db_names_the_variable(monkeypatch: pytest.MonkeyPatch, tracer_provider) -> None:
    monkeypatch.setenv("LLM_OTEL_DB", "mysql://x")
    with pytest.raises(
        StoreConfigurationError, match=re.escape("LLM_OTEL_DB='mysql://x': 'mysql://x' names")
    ):
        llm_otel.setup(tracer_provider=tracer_provider, instrument_openai=False)


def test_a_path_object_is_a_file_path(tmp_path: Path, tracer_provider: TracerProvider) -> None:
    handle = llm_otel.setup(
        db=tmp_path / "calls.db", tracer_provider=tracer_provider, instrument_openai=False
    )
    try:
        assert handle.store.path == str(tmp_path / "calls.db")
    finally:
        handle.shutdown()


@pytest.fixture
def running(tmp_path: Path, tracer_provider: TracerProvider):
    """``setup(db="a.db")`` done, with a scheduler; shut down after the test."""
    handle = llm_otel.setup(
        db=f"sqlite:///{tmp_path / 'a.db'}",
        tracer_provider=tracer_provider,
        scheduler=llm_otel.Scheduler(max_concurrency=2),
        instrument_openai=False,
    )
    yield handle
    llm_otel.shutdown()


def test_a_second_setup_asking_for_another_store_warns_and_creates_nothing(running, tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning) as caught:
        again = llm_otel.setup(db=f"sqlite:///{tmp_path / 'b.db'}", capture_content=False)
    assert again is running
    [warning] = caught
    assert warning.filename == __file__  # points at the second setup() call
    assert str(warning.message) == (
        "llm_otel.setup() is already active, so this call changes nothing; it asked for "
        f"db='sqlite:///{tmp_path / 'b.db'}' (running: 'sqlite:///{tmp_path / 'a.db'}'), "
        "capture_content=False (running: True). "
        "Call llm_otel.shutdown() first to set it up with other settings."
    )
    assert not (tmp_path / "b.db").exists()


def test_a_second_setup_asking_for_what_runs_is_silent(running, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert llm_otel.setup() is running  # asks for nothing in particular
        assert llm_otel.setup(db=str(tmp_path / "a.db"), scheduler=running.scheduler) is running
        assert llm_otel.setup(db=tmp_path / "a.db", tracer_provider=running.tracer_provider) is running


def test_a_second_setup_with_another_scheduler_or_no_store_names_it(running) -> None:
    other = llm_otel.Scheduler(name="other")
    with pytest.warns(
        RuntimeWarning, match=re.escape(f"scheduler={other!r} (running: {running.scheduler!r})")
    ):
        llm_otel.setup(scheduler=other)
    with pytest.warns(RuntimeWarning, match=r"db=False \(running: 'sqlite:///"):
        llm_otel.setup(db=False)
    with pytest.warns(RuntimeWarning, match=r"retention_days=1 \(running: 7\.0\)"):
        llm_otel.setup(retention_days=1)


def test_after_shutdown_setup_takes_the_new_settings(running, tmp_path: Path) -> None:
    running.shutdown()
    handle = llm_otel.setup(db=str(tmp_path / "b.db"), tracer_provider=running.tracer_provider)
    assert handle is not running and handle.store.path == str(tmp_path / "b.db")


EXITING_APP = """
import sys, time
import openai
import exporter.store
import llm_otel

exporter.store.EXIT_FLUSH_S = 3600  # and shutdown(3600): an exit that waits on a failing store hangs
handle = llm_otel.setup(db=sys.argv[2])
client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-x")
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
deadline = time.monotonic() + 30
while sys.argv[4] == "unreachable" and handle.store.stats()["last_error"] is None:
    if time.monotonic() > deadline:
        sys.exit("the store's writer never tried the database")
    time.sleep(0.01)  # until the writer has tried the database, and failed
print("done", flush=True)
if sys.argv[3] == "shutdown":
    llm_otel.shutdown(3600)
"""
EXITS_WITHIN_S = 60
"""A hang guard: the app is given an hour to flush, so an exit that waits for the store never ends."""


def _run_until_exit(base_url: str, db: str, how: str, store: str) -> subprocess.CompletedProcess:
    """The app above, to its exit; fails if it does not exit by itself."""
    app = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(EXITING_APP), base_url, db, how, store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={key: value for key, value in os.environ.items() if not key.startswith(("LLM_OTEL_", "OTEL_"))},
    )
    try:
        out, err = app.communicate(timeout=EXITS_WITHIN_S)
    except subprocess.TimeoutExpired:
        app.kill()
        out, err = app.communicate()
        pytest.fail(f"the app did not exit: it waits for its store\n{err}")
    assert out == "done\n", err
    return subprocess.CompletedProcess(app.args, app.returncode, out, err)


@pytest.mark.parametrize("how", ["exit", "shutdown"])
def test_an_unreachable_postgresql_store_does_not_hold_the_apps_exit(
    how: str, fake_openai: FakeOpenAI
) -> None:
    """It took ~7 s (a 2 s flush at exit, then 5 s more in the provider's shutdown; 10 s with
    ``llm_otel.shutdown()``): the writer waited for a database that was failing. Given an hour to
    flush, the app still exits by itself (how fast: issue 7's figures, 0.15-0.18 s)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    db = f"postgresql://app:secret@127.0.0.1:{port}/calls"
    app = _run_until_exit(fake_openai.base_url, db, how, "unreachable")
    assert app.returncode == 0, app.stderr
    assert "Connection refused" in app.stderr
    assert re.search(r"llm-otel store: stopped with [1-9]\d* records unwritten", app.stderr), app.stderr
    assert "secret" not in app.stderr


@pytest.mark.parametrize("how", ["exit", "shutdown"])
def test_a_short_script_still_writes_its_calls_when_it_exits(
    how: str, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "calls.db"
    app = _run_until_exit(fake_openai.base_url, f"sqlite:///{db}", how, "reachable")
    assert app.returncode == 0, app.stderr
    assert app.stderr == ""
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status, prompt_preview FROM llm_calls").fetchall() == [
            ("succeeded", "hi")
        ]
