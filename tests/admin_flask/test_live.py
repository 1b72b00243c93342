"""The live feed: websocket and long poll, fed by calls another process makes, through real servers.

Timeouts here are functional ("arrives within 5 s"); the latency itself is measured in
bench/bench_live_feed.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from typing import Any

import pytest
import simple_websocket

from admin_flask import create_app
from admin_flask.feed import QUIET_AFTER_S, QUIET_PROBE_S, READ_LIMIT
from exporter import prune
from llm_otel.testing import FakeOpenAI
from tests.admin_flask.conftest import FAST_FEED, TOKEN, Admin, ChildWriter, Store
from tests.polling import until, until_equal

ARRIVES_WITHIN_S = 30.0  # a hang guard: each wait ends as soon as the message is there


def messages_until(
    ws: simple_websocket.Client, done: Any, timeout: float = ARRIVES_WITHIN_S
) -> list[dict[str, Any]]:
    """The messages received until ``done(messages)`` is true; fails after ``timeout`` seconds."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(received):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not received within {timeout} s; got {[m.get('type') for m in received]}"
        text = ws.receive(timeout=remaining)
        if text is not None:
            received.append(json.loads(text))
    return received


def call_ended(source: str) -> Any:
    def done(messages: list[dict[str, Any]]) -> bool:
        return any(
            message["type"] == "llm.call"
            and message["call"]["source"] == source
            and message["kind"] == "succeeded"
            for message in messages
        )

    return done


def calls_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message for message in messages if message["type"] == "llm.call"]


def latest_event_id(store: Store) -> int:
    return store.rows("SELECT COALESCE(MAX(id), 0) FROM llm_call_events")[0][0]


def test_a_call_made_by_another_process_reaches_the_websocket(
    admin: Admin, child: ChildWriter, store: Store
) -> None:
    ws = admin.live()
    first = messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    status = next(message for message in first if message["type"] == "llm.status")
    assert status["aggregates"]["total"] == store.manifest.total
    assert status["last_event_id"] == latest_event_id(store)
    child.call("from-child")
    messages = calls_of(messages_until(ws, call_ended("from-child")))
    assert messages, "no llm.call message"
    [call_id] = {message["call_id"] for message in messages}
    assert store.ids("source = 'from-child'") == {call_id}
    last = messages[-1]
    assert last["call"]["status"] == "succeeded" and last["call"]["requested_by"] == "child"
    kinds = [event["kind"] for message in messages for event in message["events"]]
    assert kinds == ["queued", "dispatched", "succeeded"]  # every event once, in order
    event_ids = [event["id"] for message in messages for event in message["events"]]
    assert event_ids == [
        row[0] for row in store.rows("SELECT id FROM llm_call_events WHERE call_id = ? ORDER BY id", call_id)
    ]


def test_the_feed_reads_the_store_only_after_a_commit_and_asks_less_often_while_quiet(
    serve: Any, store: Store, fake_openai: FakeOpenAI
) -> None:
    """On SQLite the reader asks whether another connection committed (``PRAGMA data_version``);
    once no read has found an event for ``QUIET_AFTER_S`` it asks every ``QUIET_PROBE_S`` (not
    every 5 ms: ~200 times a second, ~3% of a core idle), and the next call still reaches the client.

    No writer runs while the reader is watched: an app's writer commits a heartbeat every second."""
    admin = serve(
        create_app(db=store.url, token=TOKEN, config={"LLM_OTEL_ADMIN_STATUS_INTERVAL_S": 60}), Admin
    )
    ws = admin.live()
    messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    stats = admin.state.feed.stats
    deadline = time.monotonic() + 30
    while stats.unchanged < 5 and time.monotonic() < deadline:  # it settled: its last read is done
        time.sleep(0.01)
    time.sleep(QUIET_AFTER_S)  # no call: nothing for the clients
    reads, probes, started = stats.ticks, stats.unchanged, time.monotonic()
    while stats.unchanged < probes + 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stats.unchanged >= probes + 50, "the reader did not look for commits"
    rate = (stats.unchanged - probes) / (time.monotonic() - started)
    assert rate <= 1.5 / QUIET_PROBE_S, f"{rate:.0f} probes a second while quiet"
    assert stats.ticks == reads  # nothing committed: no read
    child = ChildWriter(store.url, fake_openai.base_url)
    try:
        child.call("after-the-quiet")
        messages_until(ws, call_ended("after-the-quiet"))
    finally:
        child.close()
    assert stats.ticks > reads


def test_the_long_poll_sees_the_other_process_too(admin: Admin, child: ChildWriter, store: Store) -> None:
    start = admin.json("/llm/events", timeout="0")
    assert start == {"events": [], "last_event_id": latest_event_id(store)}
    result: dict[str, Any] = {}
    poller = threading.Thread(
        target=lambda: result.update(
            admin.json("/llm/events", after=str(start["last_event_id"]), timeout="10")
        )
    )
    poller.start()
    child.call("long-polled")
    poller.join(ARRIVES_WITHIN_S + 10)
    assert result["events"], result
    assert {message["call"]["source"] for message in result["events"]} == {"long-polled"}
    assert result["last_event_id"] == result["events"][-1]["event_id"] > start["last_event_id"]
    again = admin.json("/llm/events", after=str(start["last_event_id"]), timeout="0")  # at once: events exist
    assert again["events"][0]["event_id"] > start["last_event_id"]
    assert admin.json("/llm/events", after=str(latest_event_id(store)), timeout="0.2")["events"] == []


@pytest.mark.parametrize("buffer", [5000, 1], ids=["from-memory", "from-the-store"])
def test_a_reconnecting_client_gets_exactly_the_events_it_missed(
    serve: Any, store: Store, child: ChildWriter, buffer: int
) -> None:
    app = create_app(db=store.url, token=TOKEN, config={**FAST_FEED, "LLM_OTEL_ADMIN_FEED_BUFFER": buffer})
    admin = serve(app, Admin)
    ws = admin.live()
    child.call("before")
    seen = calls_of(messages_until(ws, call_ended("before")))
    after = seen[-1]["event_id"]
    ws.close()
    probe = admin.live()  # another client: the feed reads on, in separate ticks
    messages_until(probe, lambda messages: any(m["type"] == "llm.status" for m in messages))
    child.call("missed-1")
    child.call("missed-2")
    messages_until(probe, call_ended("missed-2"))
    child.call("later")  # read in a later tick: with a buffer of 1, the ring no longer holds the missed
    messages_until(probe, call_ended("later"))
    missed = [row[0] for row in store.rows("SELECT id FROM llm_call_events WHERE id > ? ORDER BY id", after)]
    assert len(missed) == 9
    resumed = admin.live(f"?after={after}")
    messages = calls_of(messages_until(resumed, call_ended("later")))
    got = [event["id"] for message in messages for event in message["events"]]
    assert got == missed  # nothing missed, nothing twice, in order
    event_ids = [message["event_id"] for message in messages]
    assert event_ids == sorted(set(event_ids))
    assert {message["call"]["source"] for message in messages} == {"missed-1", "missed-2", "later"}
    from_store = admin.state.feed.stats.catch_up_reads
    assert from_store > 0 if buffer == 1 else from_store == 0


def test_fifty_clients_all_receive_the_call_and_cost_one_reader(admin: Admin, child: ChildWriter) -> None:
    reads = _EventReads()
    peewee_logger = logging.getLogger("peewee")
    previous = peewee_logger.level
    peewee_logger.addHandler(reads)
    peewee_logger.setLevel(logging.DEBUG)
    try:
        clients = [admin.live() for _ in range(50)]
        ticks_before = admin.state.feed.stats.ticks
        reads.clear()
        child.call("for-fifty")
        for ws in clients:
            messages_until(ws, call_ended("for-fifty"))
        ticks = admin.state.feed.stats.ticks - ticks_before
        threads = reads.threads()
    finally:
        peewee_logger.removeHandler(reads)
        peewee_logger.setLevel(previous)
    assert admin.state.feed.counts()["subscribers"] == 50
    assert set(threads) == {"llm-otel-admin-feed"}, threads  # no client thread reads the store
    # One read of the event table per tick, whatever the number of clients (±1 for a tick in flight).
    assert abs(threads["llm-otel-admin-feed"] - ticks) <= 1, (threads, ticks)
    assert admin.state.feed.stats.catch_up_reads == 0


class _EventReads(logging.Handler):
    """Counts, per thread, the statements peewee sends that read the event table."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        statement = record.msg[0] if isinstance(record.msg, tuple) else str(record.msg)
        if 'FROM "llm_call_events"' in statement and "MAX(" not in statement:
            with self._lock:
                self._counts[record.threadName] = self._counts.get(record.threadName, 0) + 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def threads(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def insert_events(
    store: Store, events: list[tuple[str, str]], data: dict[str, Any] | None = None
) -> list[int]:
    """Append events ``(call_id, kind)`` (with ``data``) in one transaction, as a writer would; their ids."""
    with contextlib.closing(sqlite3.connect(store.url.removeprefix("sqlite:///"))) as connection, connection:
        now = int(time.time() * 1000)
        ids = []
        for call_id, kind in events:
            cursor = connection.execute(
                "INSERT INTO llm_call_events (call_id, kind, at, data) VALUES (?, ?, ?, ?)",
                (call_id, kind, now, json.dumps(data or {"attempt": 1})),
            )
            ids.append(cursor.lastrowid)
    return ids


def test_a_burst_of_one_call_is_one_message(admin: Admin, store: Store) -> None:
    ws = admin.live()
    messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    call_id = store.manifest.calls["retried"]
    ids = insert_events(store, [(call_id, "retry"), (call_id, "retry"), (call_id, "first_token")])
    [message] = calls_of(messages_until(ws, lambda messages: bool(calls_of(messages))))
    assert (message["event_id"], message["kind"], message["call_id"]) == (ids[-1], "first_token", call_id)
    assert [event["id"] for event in message["events"]] == ids
    assert message["call"]["call_id"] == call_id


def test_a_burst_larger_than_one_read_arrives_whole_without_another_commit(serve: Any, store: Store) -> None:
    admin = serve(
        create_app(db=store.url, token=TOKEN, config={"LLM_OTEL_ADMIN_STATUS_INTERVAL_S": 60}), Admin
    )
    ws = admin.live()
    messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    calls = sorted(store.ids())
    burst = [(calls[number % len(calls)], "retry") for number in range(3 * READ_LIMIT + 7)]
    ids = insert_events(store, burst)  # one commit, then none: the reader must go on by itself
    received = calls_of(messages_until(ws, lambda ms: any(m["event_id"] == ids[-1] for m in calls_of(ms))))
    assert sorted(event["id"] for message in received for event in message["events"]) == ids  # each once


def test_a_client_that_falls_behind_is_told_to_reload(serve: Any, store: Store) -> None:
    app = create_app(db=store.url, token=TOKEN, config={**FAST_FEED, "LLM_OTEL_ADMIN_CLIENT_QUEUE": 3})
    admin = serve(app, Admin)
    ws = admin.live()
    messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    calls = sorted(store.ids())[:10]
    ids = insert_events(store, [(call_id, "retry") for call_id in calls])  # 10 messages in one tick
    [reset] = [
        m
        for m in messages_until(ws, lambda ms: any(m["type"] == "llm.reset" for m in ms))
        if m["type"] == "llm.reset"
    ]
    assert reset == {"type": "llm.reset", "reason": "behind", "last_event_id": ids[-1]}
    with pytest.raises(simple_websocket.ConnectionClosed):
        for _ in range(10):
            ws.receive(timeout=ARRIVES_WITHIN_S)
    assert ws.close_reason == 1008
    assert admin.state.feed.counts()["subscribers"] == 0
    again = admin.live(f"?after={reset['last_event_id']}")  # the client reconnects where it was told
    messages_until(again, lambda messages: any(m["type"] == "llm.status" for m in messages))


@pytest.mark.parametrize("buffer", [5000, 1], ids=["from-the-ring", "from-the-store"])
def test_a_client_away_for_more_than_its_queue_holds_catches_up_without_a_reset(
    serve: Any, store: Store, buffer: int
) -> None:
    config = {**FAST_FEED, "LLM_OTEL_ADMIN_CLIENT_QUEUE": 3, "LLM_OTEL_ADMIN_FEED_BUFFER": buffer}
    admin = serve(create_app(db=store.url, token=TOKEN, config=config), Admin)
    ws = admin.live()
    messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    after = latest_event_id(store)
    ws.close()  # away: the feed reads on (it lingers after its last client)
    calls = iter(sorted(store.ids()))
    missed: list[int] = []
    for size in (2, 5, 1, 7, 3):  # commits of that many calls: ticks that fit the queue of 3 and not
        missed += insert_events(store, [(next(calls), "retry") for _ in range(size)])
        until_equal(lambda: admin.state.feed.position, missed[-1])
    resumed = admin.live(f"?after={after}")
    received = messages_until(resumed, lambda ms: any(m.get("event_id") == missed[-1] for m in ms))
    assert [m for m in received if m["type"] == "llm.reset"] == []
    assert [event["id"] for message in calls_of(received) for event in message["events"]] == missed
    until_equal(lambda: admin.state.feed.counts()["catching_up"], 0)
    live = insert_events(store, [(next(calls), "retry") for _ in range(2)])  # it is live now
    later = calls_of(messages_until(resumed, lambda ms: any(m["event_id"] == live[-1] for m in calls_of(ms))))
    assert [event["id"] for message in later for event in message["events"]] == live
    assert admin.state.feed.counts() == {**admin.state.feed.counts(), "subscribers": 1, "catching_up": 0}


def test_the_handshake_checks_after(admin: Admin) -> None:
    for query in ("?after=-1", "?after=soon", "?after=1&after=2", "?since=3"):
        with pytest.raises(simple_websocket.ConnectionError) as refused:
            admin.live(query)
        assert refused.value.status_code == 400, query


def test_status_messages_repeat(admin: Admin) -> None:
    ws = admin.live()
    statuses = messages_until(ws, lambda ms: sum(m["type"] == "llm.status" for m in ms) >= 3)
    assert all("aggregates" in m and "schedulers" in m for m in statuses if m["type"] == "llm.status")


def test_without_after_only_new_events_come(admin: Admin, child: ChildWriter, store: Store) -> None:
    before = latest_event_id(store)
    ws = admin.live()
    child.call("new-one")
    messages = calls_of(messages_until(ws, call_ended("new-one")))
    assert all(event["id"] > before for message in messages for event in message["events"])


def test_after_zero_replays_the_whole_feed(admin: Admin, store: Store) -> None:
    every = [row[0] for row in store.rows("SELECT id FROM llm_call_events ORDER BY id")]
    ws = admin.live("?after=0")
    messages = calls_of(
        messages_until(ws, lambda ms: any(m.get("event_id") == every[-1] for m in ms), timeout=10)
    )
    got = [event["id"] for message in messages for event in message["events"]]
    assert sorted(got) == every and len(set(got)) == len(got)  # each event once, folded per call
    assert [message["event_id"] for message in messages] == sorted(
        message["event_id"] for message in messages
    )


def test_concurrent_writers_on_postgresql_leave_no_gap_in_the_feed(
    serve: Any, pg_store: Store, fake_openai: Any
) -> None:
    """Three processes write at once; a websocket client sees every event of every call exactly once."""
    admin = serve(create_app(db=pg_store.url, token=TOKEN, config=FAST_FEED), Admin)
    ws = admin.live()
    messages_until(ws, lambda messages: any(m["type"] == "llm.status" for m in messages))
    start = latest_event_id(pg_store)
    writers = [ChildWriter(pg_store.url, fake_openai.base_url) for _ in range(3)]
    try:
        threads = [
            threading.Thread(target=lambda w=writer, n=number: [w.call(f"writer-{n}") for _ in range(15)])
            for number, writer in enumerate(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for writer in writers:
            writer.close()
    expected = [
        row[0] for row in pg_store.rows("SELECT id FROM llm_call_events WHERE id > ? ORDER BY id", start)
    ]
    assert len(expected) == 3 * 15 * 3
    got: list[int] = []

    def complete(messages: list[dict[str, Any]]) -> bool:
        got[:] = [event["id"] for message in calls_of(messages) for event in message["events"]]
        return len(got) >= len(expected)

    messages_until(ws, complete, timeout=15)
    assert sorted(got) == expected and len(set(got)) == len(got)


def _status(ws: simple_websocket.Client) -> dict[str, Any]:
    """The next ``llm.status`` message the client receives (no reset before it)."""
    messages = messages_until(ws, lambda ms: any(m["type"] == "llm.status" for m in ms))
    assert [m for m in messages if m["type"] == "llm.reset"] == []
    return next(m for m in messages if m["type"] == "llm.status")


def _emptied_by_retention(store: Store) -> int:
    """Prune every call of the store, as retention does once it was idle longer than it keeps
    calls; returns the event id the store had reached (its last event's, deleted)."""
    reached = latest_event_id(store)
    prune(store.url, older_than=0)
    assert store.rows("SELECT count(*) FROM llm_call_events") == [(0,)] and reached > 0
    return reached


def test_on_postgresql_a_store_emptied_by_retention_resets_no_connected_client(
    serve: Any, pg_store: Store, fake_openai: FakeOpenAI
) -> None:
    admin = serve(create_app(db=pg_store.url, token=TOKEN, config=FAST_FEED), Admin)
    ws = admin.live()
    assert _status(ws)["last_event_id"] == latest_event_id(pg_store)
    reached = _emptied_by_retention(pg_store)
    stats = admin.state.feed.stats
    refreshed = stats.status_reads
    until(lambda: stats.status_reads >= refreshed + 2, "the feed read no status after the prune")
    assert stats.resets == 0
    reconnected = admin.live(f"?after={reached}")
    assert _status(reconnected)["last_event_id"] == reached
    assert _status(admin.live())["last_event_id"] == reached  # a page loaded now

    child = ChildWriter(pg_store.url, fake_openai.base_url)
    try:
        child.call("after-retention")
    finally:
        child.close()
    for client in (ws, reconnected):
        messages = messages_until(client, call_ended("after-retention"))
        assert [m for m in messages if m["type"] == "llm.reset"] == []
        ids = [event["id"] for message in calls_of(messages) for event in message["events"]]
        assert ids == [row[0] for row in pg_store.rows("SELECT id FROM llm_call_events ORDER BY id")]
        assert min(ids) > reached


def test_on_postgresql_an_admin_started_on_a_store_emptied_by_retention_starts_where_it_was(
    serve: Any, pg_store: Store, fake_openai: FakeOpenAI
) -> None:
    """The feed of an admin that starts (or wakes up: the feed sleeps without clients) after
    retention emptied the store: "now" is where the store was, so a client that comes back with
    the last id it saw is not taken for one ahead of the store, and gets the next event."""
    reached = _emptied_by_retention(pg_store)
    admin = serve(create_app(db=pg_store.url, token=TOKEN, config=FAST_FEED), Admin)
    assert admin.json("/llm/events", timeout="0") == {"events": [], "last_event_id": reached}
    ws = admin.live(f"?after={reached}")
    assert _status(ws)["last_event_id"] == reached
    child = ChildWriter(pg_store.url, fake_openai.base_url)
    try:
        child.call("after-restart")
    finally:
        child.close()
    messages = messages_until(ws, call_ended("after-restart"))
    assert [m for m in messages if m["type"] == "llm.reset"] == []
    assert min(event["id"] for message in calls_of(messages) for event in message["events"]) > reached
    assert admin.state.feed.stats.resets == 0
