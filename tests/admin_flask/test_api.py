"""The admin API over a real seeded store, on SQLite and on PostgreSQL, through a real server.

Every expectation is counted with the test's own SQL over the store (``Store.rows``), never taken
from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.admin_flask.conftest import API, Admin, Store
from tests.admin_flask.seed import CHINESE_Q, CHINESE_REPORT, RARE_WORD, SHORT_CHINESE_Q


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each test of this module runs on a copy of the seeded SQLite file and of the seeded database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_store")
    return request.getfixturevalue("pg_store")


def all_ids(admin: Admin, **params: Any) -> list[str]:
    """Every call id the list returns for ``params``, page after page (page_size 200)."""
    ids: list[str] = []
    page = 1
    while True:
        body = admin.json("/llm/calls", page=page, page_size=200, **params)
        ids += [item["call_id"] for item in body["items"]]
        if page * 200 >= body["total"]:
            assert len(ids) == body["total"]
            return ids
        page += 1


def iso_of(ms: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def middle_enqueued_at(store: Store) -> tuple[int, int]:
    """Two enqueue times a third and two thirds into the seeded calls."""
    times = [row[0] for row in store.rows("SELECT enqueued_at FROM llm_calls ORDER BY enqueued_at")]
    return times[len(times) // 3], times[2 * len(times) // 3]


FILTERS: list[tuple[str, dict[str, str], str, tuple[Any, ...]]] = [
    ("status", {"status": "failed"}, "status = 'failed'", ()),
    ("statuses", {"status": "failed,cancelled"}, "status IN ('failed', 'cancelled')", ()),
    ("source", {"source": "billing"}, "source = ?", ("billing",)),
    ("requested_by", {"requested_by": "alice"}, "requested_by = ?", ("alice",)),
    ("model", {"model": "gpt-4o"}, "model = ?", ("gpt-4o",)),
    ("task", {"parent_task_id": "batch-1"}, "parent_task_id = ?", ("batch-1",)),
    ("error_type", {"error_type": "InternalServerError"}, "error_type = ?", ("InternalServerError",)),
    ("min_duration", {"min_duration_ms": "150"}, "duration_ms >= 150", ()),
    ("min_wait", {"min_wait_ms": "50"}, "wait_ms >= 50", ()),
    ("min_first_token", {"min_first_token_ms": "100"}, "first_token_ms >= 100", ()),
    (
        "combined labels",
        {"source": "billing", "model": "gpt-4o", "status": "succeeded"},
        "source = ? AND model = ? AND status = 'succeeded'",
        ("billing", "gpt-4o"),
    ),
    (
        "task and user",
        {"parent_task_id": "batch-1", "requested_by": "bob"},
        "parent_task_id = ? AND requested_by = ?",
        ("batch-1", "bob"),
    ),
    (
        "latency and model",
        {"min_duration_ms": "50", "model": "gpt-4o"},
        "duration_ms >= 50 AND model = ?",
        ("gpt-4o",),
    ),
]


@pytest.mark.parametrize(("name", "params", "where", "args"), FILTERS, ids=[filter[0] for filter in FILTERS])
def test_each_filter_selects_what_sql_counts(
    admin: Admin, store: Store, name: str, params: dict[str, str], where: str, args: tuple[Any, ...]
) -> None:
    expected = store.ids(where, *args)
    assert expected, f"the seed has no call for {name}: the test would prove nothing"
    assert admin.json("/llm/calls", **params)["total"] == len(expected)
    assert set(all_ids(admin, **params)) == expected


def test_time_range_in_iso_and_epoch_ms(admin: Admin, store: Store) -> None:
    since, until = middle_enqueued_at(store)
    expected = store.ids("enqueued_at >= ? AND enqueued_at < ?", since, until)
    assert 0 < len(expected) < store.count()
    assert set(all_ids(admin, **{"from": str(since), "to": str(until)})) == expected
    assert set(all_ids(admin, **{"from": iso_of(since), "to": iso_of(until)})) == expected
    with_source = store.ids("enqueued_at >= ? AND source = ?", since, "search")
    assert set(all_ids(admin, **{"from": iso_of(since), "source": "search"})) == with_source


@pytest.mark.parametrize("sort", ["newest", "duration", "first_token", "wait"])
def test_pages_of_37_hold_every_call_once(admin: Admin, store: Store, sort: str) -> None:
    first = admin.json("/llm/calls", page_size=37, sort=sort)
    total = first["total"]
    assert total == store.count() > 37 * 2
    seen: list[str] = []
    for page in range(1, total // 37 + 2):
        body = admin.json("/llm/calls", page=page, page_size=37, sort=sort)
        assert body["total"] == total and body["page"] == page and body["page_size"] == 37
        seen += [item["call_id"] for item in body["items"]]
    assert len(seen) == len(set(seen)) == total
    assert set(seen) == store.ids()
    column = {
        "newest": "enqueued_at",
        "duration": "duration_ms",
        "first_token": "first_token_ms",
        "wait": "wait_ms",
    }
    values = dict(store.rows(f"SELECT call_id, {column[sort]} FROM llm_calls"))
    known = [values[call_id] for call_id in seen if values[call_id] is not None]
    assert known == sorted(known, reverse=True)  # newest / slowest first
    assert all(values[call_id] is None for call_id in seen[len(known) :])  # calls without the value last


def test_items_carry_previews_and_figures_never_messages(admin: Admin, store: Store) -> None:
    call_id = store.manifest.calls["multi_turn"]
    [item] = [item for item in admin.json("/llm/calls", source="seed-multi_turn")["items"]]
    assert item["call_id"] == call_id
    assert "input_messages" not in item and "output_messages" not in item
    assert item["prompt_preview"] == "Revenue was 4.2M; summarise in one line."  # the last user turn
    [row] = store.rows(
        "SELECT input_tokens, output_tokens, cached_tokens, reasoning_tokens, duration_ms, wait_ms, "
        "retry_count FROM llm_calls WHERE call_id = ?",
        call_id,
    )
    names = (
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "duration_ms",
        "wait_ms",
        "retry_count",
    )
    assert tuple(item[name] for name in names) == row
    assert item["enqueued_at"].endswith("Z") and item["ended_at"].endswith("Z")


def test_full_text_search_in_chinese_and_english(admin: Admin, store: Store) -> None:
    calls = store.manifest.calls
    assert all_ids(admin, q=CHINESE_Q) == [calls["multi_turn"]]
    assert all_ids(admin, q=RARE_WORD) == [calls["rare_word"]]
    assert all_ids(admin, q=RARE_WORD.upper()) == [calls["rare_word"]]  # case-insensitive
    two_characters = set(all_ids(admin, q=SHORT_CHINESE_Q))
    assert two_characters == {calls["weather_zh"], calls["weather_zh_2"]}
    assert all_ids(admin, q=RARE_WORD, status="failed") == []


@pytest.mark.parametrize(
    "q",
    ['" OR 1=1 --', "NEAR(call bulk)", "bulk*", "%", "%_%", "'; DROP TABLE llm_calls; --", "a\\b", "call:x"],
)
def test_sql_and_fts_metacharacters_are_plain_text(admin: Admin, store: Store, q: str) -> None:
    body = admin.json("/llm/calls", q=q, source="billing")
    assert body["total"] == 0
    assert admin.json("/llm/calls", source=q)["total"] == 0
    assert store.count() == store.manifest.total  # nothing was dropped


def test_detail_has_the_conversation_tokens_task_and_link(admin: Admin, store: Store) -> None:
    call = admin.json(f"/llm/calls/{store.manifest.calls['multi_turn']}")
    roles = [message["role"] for message in call["input_messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # Chat Completions keep the system turn
    assert call["input_messages"][0]["parts"] == [{"type": "text", "content": "You are a terse analyst."}]
    assert call["input_messages"][1]["parts"][0]["content"] == CHINESE_REPORT
    assert call["output_messages"][0]["parts"][0]["content"] == "The third quarter grew 12%."
    assert call["request_params"]["temperature"] == 0.2
    assert (call["cached_tokens"], call["reasoning_tokens"]) == (8, 5)
    assert call["model"] == "o3-mini" and call["status"] == "succeeded"
    assert [event["kind"] for event in call["events"]] == ["queued", "dispatched", "succeeded"]
    [task_row] = store.rows("SELECT name, status, started_at FROM llm_tasks WHERE task_id = 'job-42'")
    assert call["task"]["task_id"] == "job-42"
    assert (call["task"]["name"], call["task"]["status"]) == task_row[:2]
    assert call["task"]["started_at"] == iso_of(task_row[2])
    link = urlsplit(call["task"]["url"])
    assert link.path == "/admin/jobs/" and parse_qs(link.query) == {"tab": ["tasks"], "task": ["job-42"]}


def test_detail_of_a_tool_call(admin: Admin, store: Store) -> None:
    call = admin.json(f"/llm/calls/{store.manifest.calls['tool_call']}")
    [message] = call["output_messages"]
    [tool_call] = [part for part in message["parts"] if part["type"] == "tool_call"]
    assert tool_call["name"] == "get_weather"
    assert tool_call["arguments"] == {"city": "Paris"}
    assert call["finish_reasons"] == ["tool_calls"]


def test_detail_of_retries_and_failure(admin: Admin, store: Store) -> None:
    retried = admin.json(f"/llm/calls/{store.manifest.calls['retried']}")
    assert retried["status"] == "succeeded" and retried["retry_count"] == 2
    retries = [event for event in retried["events"] if event["kind"] == "retry"]
    assert len(retries) == 2
    assert [event["data"]["status_code"] for event in retries] == [429, 429]
    failed = admin.json(f"/llm/calls/{store.manifest.calls['failed']}")
    assert (failed["status"], failed["error_type"]) == ("failed", "InternalServerError")
    assert "upstream exploded" in failed["error_message"]
    assert failed["retry_count"] == 2 and failed["events"][-1]["kind"] == "failed"
    [row] = store.rows("SELECT duration_ms, ended_at FROM llm_calls WHERE call_id = ?", failed["call_id"])
    assert (failed["duration_ms"], failed["ended_at"]) == (row[0], iso_of(row[1]))
    stream = admin.json(f"/llm/calls/{store.manifest.calls['stream']}")
    assert stream["stream"] is True and stream["first_token_ms"] >= 150
    assert "first_token" in [event["kind"] for event in stream["events"]]
    cancelled = admin.json(f"/llm/calls/{store.manifest.calls['cancelled']}")
    assert cancelled["status"] == "cancelled" and cancelled["events"][-1]["kind"] == "cancelled"


def test_unknown_call_and_task_are_404(admin: Admin) -> None:
    # a newline in the path once fell through to the host app's HTML 404 (found by schemathesis)
    unknown = ("/llm/calls/0123456789abcdef0123456789abcdef", "/tasks/no-such-task", "/llm/calls/%00")
    for path in (*unknown, "/tasks/0%0A", "/tasks/a%0Ab/c", "/llm/nothing%0Ahere"):
        response = admin.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_export_round_trips_the_calls(admin: Admin, store: Store) -> None:
    response = admin.get("/llm/calls/export", status="succeeded", model="gpt-4o")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="llm-calls-') and disposition.endswith('.jsonl"')
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["call_id"] for line in lines] == all_ids(admin, status="succeeded", model="gpt-4o")
    assert {line["call_id"] for line in lines} == store.ids("status = 'succeeded' AND model = 'gpt-4o'")
    tool_line = next(line for line in lines if line["call_id"] == store.manifest.calls["tool_call"])
    detail = admin.json(f"/llm/calls/{tool_line['call_id']}")
    assert {key: value for key, value in detail.items() if key not in ("events", "task")} == tool_line
    everything = admin.get("/llm/calls/export").text.splitlines()
    assert len(everything) == store.count()


def test_facets_count_the_selected_calls(admin: Admin, store: Store) -> None:
    facets = admin.json("/llm/facets", model="gpt-4o")
    assert facets["total"] == store.count("model = 'gpt-4o'")
    assert facets["statuses"] == {
        status: store.count("model = 'gpt-4o' AND status = ?", status)
        for status in ("queued", "running", "succeeded", "failed", "cancelled")
    }
    sources = store.rows("SELECT source, COUNT(*) FROM llm_calls WHERE model = 'gpt-4o' GROUP BY source")
    assert sorted((entry["value"] or "", entry["count"]) for entry in facets["sources"]) == sorted(
        (value or "", count) for value, count in sources
    )
    error_types = store.rows(
        "SELECT error_type, COUNT(*) FROM llm_calls WHERE model = 'gpt-4o' GROUP BY error_type"
    )
    assert {(entry["value"], entry["count"]) for entry in facets["error_types"]} == set(error_types)
    assert ("InternalServerError", 1) in error_types and ("BadRequestError", 1) in error_types
    rows = store.rows("SELECT duration_ms FROM llm_calls WHERE model = 'gpt-4o' AND duration_ms IS NOT NULL")
    durations = sorted(row[0] for row in rows)
    assert facets["duration_ms"] == {"p50": nearest_rank(durations, 50), "p95": nearest_rank(durations, 95)}
    ended = store.count("model = 'gpt-4o' AND status IN ('succeeded', 'failed', 'cancelled')")
    assert facets["error_rate"] == pytest.approx(
        store.count("model = 'gpt-4o' AND status = 'failed'") / ended
    )
    assert (
        admin.json("/llm/facets", window="1h", model="gpt-4o")["total"] == facets["total"]
    )  # seeded just now


def test_tasks_and_a_tasks_calls(admin: Admin, store: Store) -> None:
    body = admin.json("/tasks")
    assert body["total"] == store.rows("SELECT COUNT(*) FROM llm_tasks")[0][0] == 4
    batch = next(item for item in body["items"] if item["task_id"] == "batch-1")
    assert batch["calls"] == store.count("parent_task_id = 'batch-1'") == 30
    [(input_tokens,)] = store.rows("SELECT SUM(input_tokens) FROM llm_calls WHERE parent_task_id = 'batch-1'")
    assert batch["input_tokens"] == input_tokens
    assert [item["task_id"] for item in admin.json("/tasks", q="job")["items"]] == ["job-43", "job-42"]
    job = admin.json("/tasks/job-43")
    assert job["failed_calls"] == 1
    assert {call["call_id"] for call in job["calls"]} == store.ids("parent_task_id = 'job-43'")
    enqueued = [call["enqueued_at"] for call in job["calls"]]
    assert enqueued == sorted(enqueued)  # oldest first


def test_a_task_id_with_slashes_has_its_detail(admin: Admin, store: Store) -> None:
    task_id = "nightly/2026-12-01/eu"  # an app's own id scheme (a path, a queue name ...)
    store.rows(
        "INSERT INTO llm_tasks (task_id, name, status, started_at) VALUES (?, 'nightly', 'running', 1)",
        task_id,
    )
    response = admin.client.get(f"{API}/tasks/{task_id.replace('/', '%2F')}")
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] == task_id
    assert admin.get("/tasks/nightly%2Fnone").status_code == 404


def test_task_filters_and_paging(admin: Admin, store: Store) -> None:
    tasks = store.rows(
        "SELECT task_id, name, status, started_at FROM llm_tasks ORDER BY started_at DESC, task_id DESC"
    )
    named = [row[0] for row in tasks if row[1] == "bulk-batch"]
    assert [item["task_id"] for item in admin.json("/tasks", name="bulk-batch")["items"]] == named
    succeeded = [row[0] for row in tasks if row[2] == "succeeded"]
    assert admin.json("/tasks", status="succeeded,failed")["total"] == len(succeeded) == 4
    assert admin.json("/tasks", status="running")["total"] == 0
    since = tasks[1][3]  # the second newest: it and the newest
    assert [item["task_id"] for item in admin.json("/tasks", **{"from": str(since)})["items"]] == [
        tasks[0][0],
        tasks[1][0],
    ]
    pages = [admin.json("/tasks", page=page, page_size=1)["items"] for page in range(1, 6)]
    assert [item["task_id"] for page in pages for item in page] == [row[0] for row in tasks]


def test_status_of_the_seeded_window(admin: Admin, store: Store) -> None:
    status = admin.json("/llm/status", window="24h")
    rows = store.rows(
        "SELECT status, wait_ms, first_token_ms, duration_ms, retry_count, input_tokens, output_tokens, "
        "cached_tokens, reasoning_tokens FROM llm_calls"
    )
    aggregates = status["aggregates"]
    assert aggregates["total"] == len(rows) == store.manifest.total
    for name in ("succeeded", "failed", "cancelled"):
        assert aggregates["counts"][name] == sum(row[0] == name for row in rows)
    assert aggregates["retries"] == sum(row[4] for row in rows)
    assert aggregates["tokens"] == {
        name: sum(row[index] or 0 for row in rows)
        for name, index in (("input", 5), ("output", 6), ("cached", 7), ("reasoning", 8))
    }
    waits = sorted(row[1] for row in rows if row[1] is not None)
    assert aggregates["wait_ms"] == {"p50": nearest_rank(waits, 50), "p95": nearest_rank(waits, 95)}
    durations = sorted(row[3] for row in rows if row[3] is not None)
    assert aggregates["duration_ms"]["p95"] == nearest_rank(durations, 95)
    assert sum(bucket["calls"] for bucket in aggregates["series"]) == len(rows)
    assert status["store"]["calls"] == len(rows)
    assert status["store"]["engine"] == store.engine


SNAPSHOT_COLUMNS = (
    "process, scheduler, queue_depth, in_flight, max_concurrency, min_interval, max_queue, dispatched_total, "
    "last_dispatch_at, oldest_wait_ms, waiting, store_dropped, store_last_error, heartbeat_at"
)


def test_status_lists_every_process_live_or_stale(admin: Admin, store: Store) -> None:
    now = int(time.time() * 1000)
    insert = f"INSERT INTO llm_scheduler_snapshots ({SNAPSHOT_COLUMNS}) VALUES ({', '.join('?' * 14)})"
    waiting = json.dumps([{"call_id": "c-waiting", "source": "billing", "since": now - 1800}])
    second_row = (
        "host-b:200",
        "default",
        3,
        1,
        2,
        0.25,
        1000,
        40,
        now - 900,
        1800,
        waiting,
        5,
        "locked",
        now - 2000,
    )
    store.rows(insert, *second_row)
    store.rows(
        insert,
        "host-c:300",
        "default",
        0,
        0,
        1,
        0.0,
        None,
        7,
        now - 600_000,
        None,
        "[]",
        0,
        None,
        now - 120_000,
    )
    status = admin.json("/llm/status")
    by_process = {row["process"]: row for row in status["schedulers"]}
    second, stale = by_process["host-b:200"], by_process["host-c:300"]
    assert second["live"] is True and stale["live"] is False  # stale after 30 s by default
    assert 2000 <= second["heartbeat_age_ms"] < 2000 + 60_000
    assert 120_000 <= stale["heartbeat_age_ms"] < 120_000 + 60_000
    figures = ("queue_depth", "in_flight", "max_concurrency", "min_interval_ms", "max_queue", "dispatched")
    assert [second[name] for name in figures] == [3, 1, 2, 250, 1000, 40]
    assert (second["oldest_wait_ms"], second["store_dropped"], second["store_last_error"]) == (
        1800,
        5,
        "locked",
    )
    assert second["waiting"] == [{"call_id": "c-waiting", "source": "billing", "since": iso_of(now - 1800)}]
    assert second["last_dispatch_at"] == iso_of(now - 900) and stale["max_queue"] is None
    beats = [row["heartbeat_at"] for row in status["schedulers"]]
    assert beats == sorted(beats, reverse=True)  # newest heartbeat first
    writers = {writer["process"]: writer for writer in status["store"]["writers"]}
    assert writers["host-b:200"] == {
        "process": "host-b:200",
        "dropped": 5,
        "last_error": "locked",
        "live": True,
    }
    assert writers["host-c:300"]["live"] is False
    assert status["store"]["retention_days"] == 7


def nearest_rank(values: list[int], percent: int) -> int:
    return values[-(-len(values) * percent // 100) - 1]


BAD_PARAMETERS = [
    ("/llm/status", {"window": "2h"}, "window"),
    ("/llm/calls", {"status": "done"}, "status"),
    ("/llm/calls", {"from": "2026-13-45"}, "from"),
    ("/llm/calls", {"to": "yesterday"}, "to"),
    ("/tasks", {"to": "92910224120073366274048"}, "to"),  # past the largest epoch ms
    ("/tasks", {"from": "2026-12-01T10"}, "from"),  # an hour without minutes
    ("/llm/calls", {"from": "2026-12-02", "to": "2026-12-01"}, "from"),
    ("/llm/calls", {"page": "0"}, "page"),
    ("/llm/calls", {"page_size": str(10**9)}, "page_size"),
    ("/llm/calls", {"page_size": "ten"}, "page_size"),
    ("/llm/calls", {"min_duration_ms": "-5"}, "min_duration_ms"),
    ("/llm/calls", {"min_wait_ms": "1e3"}, "min_wait_ms"),
    ("/llm/calls", {"q": "x" * 501}, "q"),
    ("/llm/calls", {"sort": "oldest"}, "sort"),
    ("/llm/calls", {"source": "a\x00b"}, "source"),
    ("/llm/calls", {"stauts": "failed"}, "stauts"),
    ("/llm/facets", {"window": "1y"}, "window"),
    ("/llm/calls/export", {"format": "csv"}, "format"),
    ("/tasks", {"status": "queued"}, "status"),
    ("/llm/events", {"timeout": "31"}, "timeout"),
    ("/llm/events", {"after": "-1"}, "after"),
]


@pytest.mark.parametrize(("path", "params", "parameter"), BAD_PARAMETERS)
def test_bad_parameters_are_400_naming_the_parameter(
    admin: Admin, path: str, params: dict[str, str], parameter: str
) -> None:
    response = admin.get(path, **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_parameter" and error["parameter"] == parameter
    assert parameter in error["message"]


def test_unknown_routes_and_wrong_methods_answer_json(admin: Admin) -> None:
    response = admin.get("/llm/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = admin.client.post(API + "/llm/calls")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]
    response = admin.client.delete(API + "/tasks/job-42")
    assert response.status_code == 405
    response = admin.get("/llm/ws")  # a websocket URL fetched as a page
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_parameter"


def test_every_response_carries_the_security_headers(admin: Admin, store: Store) -> None:
    responses = [
        admin.get("/llm/calls"),
        admin.get("/llm/calls", page="0"),
        admin.get("/nowhere"),
        admin.anonymous.get(API + "/llm/calls"),
        admin.get(f"/llm/calls/{store.manifest.calls['failed']}"),
        admin.get("/llm/calls/export", model="nothing"),
        admin.get("/llm/openapi.json"),
    ]
    for response in responses:
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = response.headers["content-security-policy"]
        assert (
            "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'self'" in policy
        )
        assert response.headers["content-type"].split(";")[0] in ("application/json", "application/x-ndjson")


def test_json_keeps_chinese_text_as_is(admin: Admin, store: Store) -> None:
    response = admin.get(f"/llm/calls/{store.manifest.calls['multi_turn']}")
    assert CHINESE_REPORT.encode() in response.content  # UTF-8, not \\u escapes
