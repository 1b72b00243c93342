"""Two processes writing the same store file at the same time: every call of both arrives."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from pathlib import Path

from tests.children import checkout_python

CALLS = 500

_WRITER = textwrap.dedent(
    """
    import json, sys
    from opentelemetry.sdk.trace import TracerProvider
    from exporter.store import SpanStore
    from tests.exporter.call_spans import dispatch, dispatch_attributes, finish, ns, start_call

    path, prefix, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SpanStore(path)
    provider = TracerProvider()
    provider.add_span_processor(store.span_processor)
    tracer = provider.get_tracer(prefix)
    store.flush(10)
    print("ready", flush=True)
    sys.stdin.readline()  # both start together
    for i in range(calls):
        span = start_call(tracer, f"{prefix}{i}")
        store.on_call_event("queued", span, ns(0), {})
        dispatch(span, at_ms=5, wait=0.005)
        store.on_call_event("dispatched", span, ns(5), dispatch_attributes(0.005))
        finish(span, at_ms=20)
    flushed = store.flush(30)
    print(json.dumps({"flushed": flushed, **store.stats()}), flush=True)
    store.shutdown(5)
    """
)


def test_two_processes_write_500_calls_each_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    children = [
        checkout_python(_WRITER, str(path), prefix, str(CALLS), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        for prefix in ("a-", "b-")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=60) for child in children]

    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        assert json.loads(stdout) == {
            "flushed": True,
            "queued": 0,
            "written": 3 * CALLS,
            "dropped": 0,
            "dropped_calls": 0,
            "last_error": None,
        }
        assert "locked" not in stderr
    with sqlite3.connect(path) as connection:
        counts = dict(connection.execute("SELECT substr(call_id, 1, 2), count(*) FROM llm_calls GROUP BY 1"))
        assert counts == {"a-": CALLS, "b-": CALLS}
        assert connection.execute(
            "SELECT count(*) FROM llm_calls WHERE status != 'succeeded'"
        ).fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM llm_call_events").fetchone() == (2 * CALLS * 3,)
