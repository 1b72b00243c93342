"""An app that exits without ``llm_otel.shutdown()`` (the usual case: nobody calls it) still writes
every call it made, with its final status: the store flushes at interpreter exit."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from llm_otel.testing import FakeOpenAI

APP = textwrap.dedent(
    """
    import sys
    import openai
    import llm_otel

    llm_otel.setup(db=sys.argv[2])
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-exit-test", max_retries=0)
    for i in range(200):
        with llm_otel.labels(source="exit-test"):
            messages = [{"role": "user", "content": f"n{i}"}]
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "last"}], stream=True
    )
    for _ in stream:
        pass
    # no flush, no shutdown: the interpreter just ends
    """
)


def test_an_app_that_exits_without_shutdown_keeps_every_call(tmp_path: Path) -> None:
    db_path = tmp_path / "exit.db"
    with FakeOpenAI() as server:
        done = subprocess.run(
            [sys.executable, "-c", APP, server.base_url, f"sqlite:///{db_path}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT status, count(*) FROM llm_calls GROUP BY status").fetchall()
        ended_events = connection.execute(
            "SELECT count(*) FROM llm_call_events WHERE kind = 'succeeded'"
        ).fetchone()[0]
        bodies = connection.execute("SELECT count(*) FROM llm_call_bodies").fetchone()[0]
    assert rows == [("succeeded", 201)]
    assert ended_events == 201 and bodies == 201
