"""The runnable examples in examples/ work as their docstrings say, against the fake server.

The zero-code example is run as its docstring writes it in tests/test_zero_code.py.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from llm_otel.testing import FakeOpenAI

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(command: list[str], tmp_path: Path, base_url: str, **env: str) -> str:
    inherited = {key: value for key, value in os.environ.items() if key != "LLM_OTEL_DB"}
    environment = {**inherited, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-example", **env}
    done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _calls(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT status, source, requested_by, parent_task_name FROM llm_calls ORDER BY enqueued_at"
        ).fetchall()


def test_manual_setup_example(tmp_path) -> None:
    with FakeOpenAI() as server:
        out = _run([sys.executable, str(EXAMPLES / "manual_setup.py")], tmp_path, server.base_url)
    assert out.splitlines() == [
        "Echo: Summarise: The meeting moved to Friday.",
        "Echo: Summarise: Invoice 42 is overdue.",
    ]
    assert _calls(tmp_path / "llm_calls.db") == [("succeeded", "inbox", "alice", "summarise-inbox")] * 2
