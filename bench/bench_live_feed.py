"""Benchmark: span end → websocket message, with 1 and with 50 clients, with a stuck client present,
and the admin's idle CPU.

Usage::

    .venv/bin/python bench/bench_live_feed.py                    # 200 calls, 1 and 50 clients
    .venv/bin/python bench/bench_live_feed.py --calls 500 --clients 1,10,50 --idle 20
    .venv/bin/python bench/bench_live_feed.py --stuck 1          # then again with a stuck client

Three processes, as in production: the admin (``create_app`` on a threaded Werkzeug server), an app
making LLM calls (``llm_otel.setup()``, the real openai client and the fake OpenAI server) and this
one, holding the websocket clients. The app makes one call every ``--gap`` seconds; each client
notes when the call's ``succeeded`` message arrives. Latency = arrival (wall clock) − the call's
``ended_at`` (its span end, written by the app; same machine, same clock): the app's writer (its
linger, up to 20 ms, and the write), the feed's look for a commit (every 5 ms) and read, and the
fan-out. Reported: p50 / p95 / max over every (call, client) delivery, and over the slowest client
of each call; then the same deliveries split at the commit (a watcher in this process polls the
store's ``PRAGMA data_version`` every millisecond and notes when each call's ``succeeded`` event
became visible): span end → committed is the app's writer, committed → at the client is the admin.
Then, with the clients connected and no calls, the admin process's CPU (its ``/proc`` times) over
``--idle`` s.

With ``--stuck N`` the largest case runs once more with N stuck clients present: bare sockets that
did the handshake with a 4 KB receive buffer and never read. A burst of 6 MB of events first fills
their buffers, so the admin's writes to them block (until ``--send-timeout``, the admin's
``LLM_OTEL_ADMIN_SEND_TIMEOUT_S``, cuts them off) while the healthy clients are measured. Reported
with it: the admin process's threads before any client, with every client connected, and once the
stuck ones were cut off and the healthy ones closed, and how long the cut-off took.

DESIGN §9: ≤ 250 ms p95; issue 10: ≤ 100 ms p95 with 50 clients, ≤ 2% of a core with 50 idle clients;
issue 9: a stuck client does not hold up the others, and its threads are freed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sqlite3
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
sys.path.insert(0, str(REPO / "bench"))

import _common as common  # noqa: E402
import simple_websocket  # noqa: E402

from llm_otel.testing import FakeOpenAI  # noqa: E402

TOKEN = common.ADMIN_TOKEN
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_commits(path: str, done: threading.Event) -> dict[str, float]:
    """Fills, in the background, when (wall clock ms) each call's ``succeeded`` event was committed,
    by source: ``PRAGMA data_version`` polled every millisecond (the time is an upper bound)."""
    committed: dict[str, float] = {}
    started = threading.Event()

    def watch() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        last = connection.execute("SELECT COALESCE(MAX(id), 0) FROM llm_call_events").fetchone()[0]
        version = None
        started.set()
        while not done.is_set():
            seen = connection.execute("PRAGMA data_version").fetchone()[0]
            if seen != version:
                version, now_ms = seen, time.time() * 1000
                for event_id, kind, source in connection.execute(_NEW_EVENTS, (last,)).fetchall():
                    last = event_id
                    if kind == "succeeded":
                        committed.setdefault(source or "", now_ms)
            time.sleep(0.001)
        connection.close()

    threading.Thread(target=watch, daemon=True).start()
    started.wait(10)
    return committed


_NEW_EVENTS = (
    "SELECT e.id, e.kind, c.source FROM llm_call_events e JOIN llm_calls c ON c.call_id = e.call_id "
    "WHERE e.id > ? ORDER BY e.id"
)


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
    committed = watch_commits(url.removeprefix("sqlite:///"), done)
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
    split = [(source, seen[source]) for seen in arrivals for source in seen if source in committed]
    writer = [committed[source] - ended[source] for source, _ in split]
    admin = [arrived - committed[source] for source, arrived in split]
    return {
        "deliveries": len(every),
        "missing": missing,
        "p50": statistics.median(every),
        "p95": common.percentile(every, 95),
        "max": max(every),
        "slowest client p95": common.percentile(slowest, 95),
        "writer p50": statistics.median(writer),
        "writer p95": common.percentile(writer, 95),
        "admin p50": statistics.median(admin),
        "admin p95": common.percentile(admin, 95),
    }


def print_split(result: dict[str, float]) -> None:
    print(
        f"{'':>8}   span end -> committed (the app's writer) p50 {result['writer p50']:.1f} p95 "
        f"{result['writer p95']:.1f}; committed -> at the client (the admin) p50 {result['admin p50']:.1f} "
        f"p95 {result['admin p95']:.1f}"
    )


def admin_threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError("no thread count in /proc")


def stuck_client(port: int) -> socket.socket:
    """A client that did the handshake and never reads a byte (4 KB receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/admin/jobs/llm/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def fill_stuck_clients(url: str, events: int = 2000, size: int = 3000) -> None:
    """Append ``events`` events of ``size`` bytes (6 MB): more than a stuck client's buffers hold."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        now = int(time.time() * 1000)
        connection.executemany(
            "INSERT INTO llm_call_events (call_id, kind, at, data) VALUES (?, 'retry', ?, ?)",
            [(f"burst-{number % 50}", now, json.dumps({"error": "x" * size})) for number in range(events)],
        )
    time.sleep(3)  # the feed reads the burst and writes it out until the stuck clients' buffers are full


def watch_resets(socks: list[socket.socket], since: float) -> list[float]:
    """Fills, in the background, the seconds after ``since`` at which the admin reset each socket."""
    resets: list[float] = []

    def watch() -> None:
        pending = list(socks)
        while pending:
            for sock in list(pending):
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):  # ECONNRESET, without reading
                    resets.append(time.monotonic() - since)
                    pending.remove(sock)
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    return resets


def wait_for_threads(pid: int, target: int, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout and admin_threads(pid) > target:
        time.sleep(0.1)
    return admin_threads(pid), time.monotonic() - started


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
    parser.add_argument(
        "--stuck", type=int, default=0, help="stuck clients of the last case (0: no such case)"
    )
    parser.add_argument(
        "--send-timeout", type=float, default=30.0, help="the admin's LLM_OTEL_ADMIN_SEND_TIMEOUT_S"
    )
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-live-")
    url = f"sqlite:///{directory}/store.db"
    from exporter import migrate, open_database

    migrate(open_database(url))
    send_timeout = {"LLM_OTEL_ADMIN_SEND_TIMEOUT_S": str(args.send_timeout)}
    with common.admin_process(url, REPO, send_timeout) as (admin_pid, port), FakeOpenAI() as fake:
        baseline_threads = admin_threads(admin_pid)
        print(f"span end -> websocket message, {args.calls} calls, one every {args.gap * 1000:.0f} ms (ms)")
        print(f"{'clients':>8} {'p50':>7} {'p95':>7} {'max':>7} {'slowest-client p95':>19} {'missing':>8}")
        for clients in (int(count) for count in args.clients.split(",")):
            result = run_case(port, url, fake, clients, args.calls, args.gap)
            print(
                f"{clients:>8} {result['p50']:>7.1f} {result['p95']:>7.1f} {result['max']:>7.1f} "
                f"{result['slowest client p95']:>19.1f} {result['missing']:>8}"
            )
            print_split(result)
        if args.stuck:
            clients = max(int(count) for count in args.clients.split(","))
            stuck = [stuck_client(port) for _ in range(args.stuck)]
            burst_at = time.monotonic()
            fill_stuck_clients(url)
            cut_after = watch_resets(stuck, burst_at)
            with_stuck: list[int] = []
            counter = threading.Timer(3, lambda: with_stuck.append(admin_threads(admin_pid)))
            counter.start()  # while the healthy clients are connected
            result = run_case(port, url, fake, clients, args.calls, args.gap)
            counter.join()
            label = f"{clients}+{args.stuck}"
            print(
                f"{label:>8} {result['p50']:>7.1f} {result['p95']:>7.1f} {result['max']:>7.1f} "
                f"{result['slowest client p95']:>19.1f} {result['missing']:>8}   ({args.stuck} stuck)"
            )
            left, _ = wait_for_threads(admin_pid, baseline_threads, args.send_timeout + 60)
            cut = ", ".join(f"{seconds:.1f}" for seconds in cut_after) or "none"
            print(
                f"stuck clients reset by the admin {cut} s after the burst (send timeout "
                f"{args.send_timeout:.0f} s); admin threads: {baseline_threads} before any client, "
                f"{with_stuck[0]} with {clients} healthy + {args.stuck} stuck, {left} after"
            )
            for sock in stuck:
                sock.close()
        if args.idle:
            clients = max(int(count) for count in args.clients.split(","))
            share = idle_cpu(admin_pid, port, clients, args.idle)
            print(f"admin CPU with {clients} idle clients: {share:.2f}% of a core")


if __name__ == "__main__":
    main()
