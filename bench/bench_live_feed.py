"""Benchmark: span end → websocket message, with 1 and with 50 clients, and the admin's idle CPU.

Usage::

    .venv/bin/python bench/bench_live_feed.py                    # 200 calls, 1 and 50 clients
    .venv/bin/python bench/bench_live_feed.py --calls 500 --clients 1,10,50 --idle 20

Three processes, as in production: the admin (``create_app`` on a threaded Werkzeug server, its live
feed polling every 50 ms), an app making LLM calls (``llm_otel.setup()``, the real openai client and
the fake OpenAI server) and this one, holding the websocket clients. The app makes one call every
``--gap`` seconds; each client notes when the call's ``succeeded`` message arrives. Latency =
arrival (wall clock) − the call's ``ended_at`` (its span end, written by the app; same machine, same
clock): the writer's linger (~20 ms), the feed's poll (≤ 50 ms) and the fan-out. Reported: p50 /
p95 / max over every (call, client) delivery, and over the slowest client of each call. Then, with
the clients connected and no calls, the admin process's CPU (its ``/proc`` times) over ``--idle`` s.

DESIGN §9: ≤ 250 ms p95; issue 10: ≤ 100 ms p95 with 50 clients, ≤ 2% of a core with 50 idle clients.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import simple_websocket  # noqa: E402

from llm_otel.testing import FakeOpenAI  # noqa: E402

TOKEN = "bench-token"
ADMIN = textwrap.dedent(
    """
    import logging, sys
    from werkzeug.serving import make_server
    from admin_flask import create_app
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, create_app(db=sys.argv[1], token=sys.argv[2]), threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()
    """
)
APP = textwrap.dedent(
    """
    import sys, time
    import openai, llm_otel
    url, base_url, calls, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    handle = llm_otel.setup(db=url)
    client = openai.OpenAI(base_url=base_url, api_key="sk-bench-0123456789")
    print("ready", flush=True)
    sys.stdin.readline()
    for number in range(calls):
        with llm_otel.labels(source=f"bench-{number}"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        time.sleep(gap)
    handle.flush(10)
    llm_otel.shutdown()
    """
)


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * percent // 100) - 1)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_case(port: int, url: str, fake: FakeOpenAI, clients: int, calls: int, gap: float) -> dict[str, float]:
    sockets = [
        simple_websocket.Client.connect(
            f"ws://127.0.0.1:{port}/api/admin/jobs/llm/ws", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        for _ in range(clients)
    ]
    arrivals: list[dict[str, float]] = [{} for _ in sockets]
    ended: dict[str, int] = {}
    done = threading.Event()

    def listen(index: int) -> None:
        ws = sockets[index]
        while not done.is_set():
            text = ws.receive(timeout=0.5)
            if text is None:
                continue
            now_ms = time.time() * 1000
            message = json.loads(text)
            if message["type"] == "llm.call" and message["kind"] == "succeeded" and message["call"]:
                source = message["call"]["source"] or ""
                arrivals[index].setdefault(source, now_ms)
                ended.setdefault(source, _epoch_ms(message["call"]["ended_at"]))

    listeners = [threading.Thread(target=listen, args=(index,), daemon=True) for index in range(clients)]
    for listener in listeners:
        listener.start()
    app = subprocess.Popen(
        [sys.executable, "-c", APP, url, fake.base_url, str(calls), str(gap)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert app.stdout is not None and app.stdout.readline().strip() == "ready"
    assert app.stdin is not None
    app.stdin.write("go\n")
    app.stdin.flush()
    app.wait(calls * (gap + 1) + 60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(len(seen) < calls for seen in arrivals):
        time.sleep(0.05)
    done.set()
    for listener in listeners:
        listener.join(2)
    for ws in sockets:
        ws.close()
    every = [seen[source] - ended[source] for seen in arrivals for source in seen]
    slowest = [max(seen[source] for seen in arrivals if source in seen) - ended[source] for source in ended]
    missing = calls * clients - len(every)
    return {
        "deliveries": len(every),
        "missing": missing,
        "p50": statistics.median(every),
        "p95": percentile(every, 95),
        "max": max(every),
        "slowest client p95": percentile(slowest, 95),
    }


def _epoch_ms(iso: str) -> int:
    import datetime as dt

    moment = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def idle_cpu(admin_pid: int, port: int, clients: int, seconds: float) -> float:
    sockets = [
        simple_websocket.Client.connect(
            f"ws://127.0.0.1:{port}/api/admin/jobs/llm/ws", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        for _ in range(clients)
    ]
    time.sleep(2)  # the connections settle
    before, started = cpu_seconds(admin_pid), time.monotonic()
    time.sleep(seconds)
    used = cpu_seconds(admin_pid) - before
    elapsed = time.monotonic() - started
    for ws in sockets:
        ws.close()
    return 100 * used / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--clients", default="1,50", help="comma list of client counts, one case each")
    parser.add_argument("--gap", type=float, default=0.03, help="seconds between two calls")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle CPU measure (0: skip)")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-live-")
    url = f"sqlite:///{directory}/store.db"
    from exporter import migrate, open_database

    migrate(open_database(url))
    admin = subprocess.Popen(
        [sys.executable, "-c", ADMIN, url, TOKEN],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert admin.stdout is not None
    port = int(admin.stdout.readline())
    try:
        with FakeOpenAI() as fake:
            print(
                f"span end -> websocket message, {args.calls} calls, one every {args.gap * 1000:.0f} ms (ms)"
            )
            print(
                f"{'clients':>8} {'p50':>7} {'p95':>7} {'max':>7} {'slowest-client p95':>19} {'missing':>8}"
            )
            for clients in (int(count) for count in args.clients.split(",")):
                result = run_case(port, url, fake, clients, args.calls, args.gap)
                print(
                    f"{clients:>8} {result['p50']:>7.1f} {result['p95']:>7.1f} {result['max']:>7.1f} "
                    f"{result['slowest client p95']:>19.1f} {result['missing']:>8}"
                )
            if args.idle:
                clients = max(int(count) for count in args.clients.split(","))
                share = idle_cpu(admin.pid, port, clients, args.idle)
                print(f"admin CPU with {clients} idle clients: {share:.2f}% of a core")
    finally:
        admin.terminate()
        admin.wait(10)


if __name__ == "__main__":
    main()
