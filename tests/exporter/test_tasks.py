"""The task view's reads (list_tasks, get_task) on SQLite and PostgreSQL (``any_rows``)."""

from __future__ import annotations

from typing import Any

import pytest

from exporter import QueryError, queries
from tests.exporter.conftest import NOW_MS, Rows


@pytest.fixture
def tasks(any_rows: Rows) -> dict[str, str]:
    """Five tasks (oldest first) and the calls inside three of them."""
    ids = {
        "digest": any_rows.task(task_id="task-digest", name="nightly-digest", started_at=NOW_MS - 50_000),
        "embed": any_rows.task(
            task_id="task-embed", name="embed-docs", status="running", started_at=NOW_MS - 40_000
        ),
        "retry": any_rows.task(
            task_id="task-retry", name="nightly-digest", status="failed", started_at=NOW_MS - 30_000
        ),
        "percent": any_rows.task(task_id="task-100%_off", name="promo 100%_off", started_at=NOW_MS - 30_000),
        "empty": any_rows.task(task_id="task-empty", name="Cleanup", started_at=NOW_MS - 10_000),
    }
    any_rows.each(
        [
            {"parent_task_id": "task-digest", "status": "succeeded", "input_tokens": 10, "output_tokens": 5},
            {"parent_task_id": "task-digest", "status": "failed", "input_tokens": 20, "output_tokens": None},
            {"parent_task_id": "task-digest", "status": "succeeded", "input_tokens": 30, "output_tokens": 7},
            {"parent_task_id": "task-embed", "status": "running", "input_tokens": 40, "output_tokens": None},
            {"parent_task_id": "task-retry", "status": "failed", "input_tokens": None, "output_tokens": None},
            {"parent_task_id": "task-retry", "status": "failed", "input_tokens": 1, "output_tokens": 2},
            {"parent_task_id": None},
        ]
    )
    return ids


def _ids(result: dict[str, Any]) -> list[str]:
    return [item["task_id"] for item in result["items"]]


def test_list_tasks_newest_first_with_their_calls_figures(tasks: dict[str, str]) -> None:
    result = queries.list_tasks()

    # task-retry and task-100%_off started at the same millisecond: task_id descending
    assert _ids(result) == ["task-empty", "task-retry", "task-100%_off", "task-embed", "task-digest"]
    assert result["total"] == 5
    by_id = {item["task_id"]: item for item in result["items"]}
    assert by_id["task-digest"] == {
        "task_id": "task-digest",
        "name": "nightly-digest",
        "status": "succeeded",
        "started_at": NOW_MS - 50_000,
        "ended_at": NOW_MS - 45_000,
        "duration_ms": 5000,
        "process": "host-a:100",
        "calls": 3,
        "failed_calls": 1,
        "input_tokens": 60,
        "output_tokens": 12,
    }
    figures = ("calls", "failed_calls", "input_tokens", "output_tokens")
    assert [by_id["task-retry"][key] for key in figures] == [2, 2, 1, 2]
    assert [by_id["task-embed"][key] for key in figures] == [1, 0, 40, 0]
    assert [by_id["task-empty"][key] for key in figures] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": ["failed", "running"]}, ["task-retry", "task-embed"]),
        ({"status": ["succeeded"], "name": "nightly-digest"}, ["task-digest"]),
        ({"name": "nightly-digest"}, ["task-retry", "task-digest"]),
        ({"q": "DIGEST"}, ["task-retry", "task-digest"]),  # name, any case
        ({"q": "embed"}, ["task-embed"]),
        ({"q": "task-emp"}, ["task-empty"]),  # id
        ({"q": "%_"}, ["task-100%_off"]),  # wildcards are plain characters
        ({"q": "_"}, ["task-100%_off"]),
        ({"q": "'; DROP TABLE llm_tasks; --"}, []),
        ({"since_ms": NOW_MS - 30_000}, ["task-empty", "task-retry", "task-100%_off"]),
        ({"until_ms": NOW_MS - 30_000}, ["task-embed", "task-digest"]),
        (
            {"since_ms": NOW_MS - 40_000, "until_ms": NOW_MS - 10_000, "q": "o"},
            ["task-100%_off", "task-embed"],
        ),
        ({"name": "nowhere"}, []),
    ],
)
def test_list_tasks_filters(tasks: dict[str, str], filters: dict[str, Any], expected: list[str]) -> None:
    result = queries.list_tasks(**filters)

    assert _ids(result) == expected
    assert result["total"] == len(expected)


def test_list_tasks_pages(tasks: dict[str, str]) -> None:
    pages = [queries.list_tasks(page=page, page_size=2) for page in (1, 2, 3, 4)]

    assert [_ids(page) for page in pages] == [
        ["task-empty", "task-retry"],
        ["task-100%_off", "task-embed"],
        ["task-digest"],
        [],
    ]
    assert {page["total"] for page in pages} == {5}
    assert [(page["page"], page["page_size"]) for page in pages] == [(1, 2), (2, 2), (3, 2), (4, 2)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"status": "running"}, "status must be a list"),
        ({"status": ["queued"]}, "unknown status queued; expected any of running, succeeded, failed"),
        ({"name": 5}, "name must be a string"),
        ({"q": 5}, "q must be a string"),
        ({"q": "x" * 501}, "q must be at most 500 characters"),
        ({"page": 0}, "page must be >= 1"),
        ({"page_size": 201}, "page_size must be <= 200"),
        ({"since_ms": "today"}, "since_ms must be an integer"),
        ({"since_ms": 10, "until_ms": 1}, r"since_ms \(10\) is after until_ms \(1\)"),
    ],
)
def test_list_tasks_rejects_bad_arguments(any_rows: Rows, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        queries.list_tasks(**arguments)


def test_get_task_has_its_figures_and_calls_oldest_first(tasks: dict[str, str]) -> None:
    task = queries.get_task("task-digest")

    assert task["name"] == "nightly-digest"
    assert task["attributes"] == {"team": "data"}
    assert task["calls_truncated"] is False
    assert [task[key] for key in ("failed_calls", "input_tokens", "output_tokens")] == [1, 60, 12]
    calls = task["calls"]
    assert [call["status"] for call in calls] == ["succeeded", "failed", "succeeded"]
    assert [call["enqueued_at"] for call in calls] == sorted(call["enqueued_at"] for call in calls)
    assert all(call["parent_task_id"] == "task-digest" for call in calls)
    assert "input_messages" not in calls[0]  # summaries
    assert queries.get_task("task-empty")["calls"] == []
    assert queries.get_task("nope") is None


def test_get_task_caps_its_calls(any_rows: Rows, monkeypatch: pytest.MonkeyPatch) -> None:
    any_rows.task(task_id="big")
    created = any_rows.calls(5, parent_task_id="big")
    monkeypatch.setattr(queries, "MAX_TASK_CALLS", 3)

    task = queries.get_task("big")

    assert [call["call_id"] for call in task["calls"]] == created[:3]
    assert task["calls_truncated"] is True
    assert task["failed_calls"] == 0
