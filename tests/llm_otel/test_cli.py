"""The ``llm-otel`` command, run as a user runs it (the console script, a real SQLite file)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

LLM_OTEL = Path(sys.executable).with_name("llm-otel")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(LLM_OTEL), *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done


def test_demo_records_its_workload_and_prints_it_back_from_the_store(tmp_path) -> None:
    db = tmp_path / "demo.db"
    out = _run("demo", "--db", f"sqlite:///{db}", cwd=tmp_path).stdout
    with sqlite3.connect(db) as connection:
        statuses = dict(connection.execute("SELECT status, count(*) FROM llm_calls GROUP BY status"))
        tasks = {name for (name,) in connection.execute("SELECT name FROM llm_tasks")}
        retried = connection.execute("SELECT max(retry_count) FROM llm_calls").fetchone()[0]
    assert statuses == {"succeeded": 10, "failed": 1, "cancelled": 1}
    assert tasks == {"daily-digest", "index-documents"}
    assert retried == 2
    assert "12 calls recorded" in out
    assert "请用中文总结今天的天气预报" in out
    assert "InternalServerError" in out


def test_prune_deletes_what_is_older_than_asked(tmp_path) -> None:
    db = tmp_path / "demo.db"
    _run("demo", "--db", f"sqlite:///{db}", cwd=tmp_path)
    time.sleep(0.2)
    out = _run("prune", "--db", f"sqlite:///{db}", "--older-than-days", "0.000001", cwd=tmp_path).stdout
    assert out.startswith("deleted ")
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 0
