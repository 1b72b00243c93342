"""iter_calls (the JSONL export's read) on SQLite and PostgreSQL: order, bodies, constant memory."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from exporter import QueryError, queries
from exporter.models import db
from tests.exporter.conftest import Rows
from tests.exporter.test_queries import FILTERS, _expected

SORTS = ["newest", "duration", "first_token", "wait"]


@pytest.fixture
def mixed(any_rows: Rows) -> list[dict[str, Any]]:
    return any_rows.mixed()


@pytest.mark.parametrize("sort", SORTS)
def test_iter_calls_yields_every_call_once_in_list_order_across_chunks(
    mixed: list[dict[str, Any]], sort: str
) -> None:
    for filters in FILTERS:
        exported = [call["call_id"] for call in queries.iter_calls(**filters, sort=sort, chunk_size=7)]

        assert exported == _expected(mixed, filters, sort), filters


def test_iter_calls_round_trips_the_bodies(any_rows: Rows) -> None:
    rain = any_rows.call(
        prompt="季度销售报告：今天的天气预报说会下雨", response="记得带伞。", status="failed"
    )
    weather = any_rows.call(prompt='What is "the weather" in Paris?\n', response="Sunny, 24 degrees.")

    exported = {call["call_id"]: call for call in queries.iter_calls(chunk_size=1)}

    assert list(exported) == [weather, rain]
    for call_id, call in exported.items():
        detail = queries.get_call(call_id)
        del detail["events"], detail["task"]
        assert call == detail
    assert exported[rain]["input_messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": "季度销售报告：今天的天气预报说会下雨"}]}
    ]
    assert exported[rain]["output_messages"][0]["parts"][0]["content"] == "记得带伞。"
    assert exported[weather]["request_params"] == {"temperature": 0.2}
    assert exported[weather]["system_instructions"] == [{"type": "text", "content": "You are terse."}]
    assert exported[weather]["attributes"] == {"server.port": 443}
    assert "events" not in exported[weather]


def test_iter_calls_holds_one_chunk_at_a_time_without_offset(
    any_rows: Rows, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    created = any_rows.calls(95)
    read_sizes: list[int] = []
    calls_by_id = queries._calls_by_id

    def recording(call_ids: list[str]) -> dict[str, dict[str, Any]]:
        read_sizes.append(len(call_ids))
        return calls_by_id(call_ids)

    monkeypatch.setattr(queries, "_calls_by_id", recording)
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        calls = queries.iter_calls(sort="duration", chunk_size=10)
        assert read_sizes == []  # nothing read before the first next()
        first = next(calls)
        assert read_sizes == [10]  # one chunk read, and no transaction left open while streaming
        assert not db.obj.in_transaction()
        rest = list(calls)

    assert [first["call_id"], *(call["call_id"] for call in rest)] == created[::-1]
    assert read_sizes == [10] * 9 + [5]
    statements = [record.msg[0] for record in caplog.records if isinstance(record.msg, tuple)]
    assert statements and not [sql for sql in statements if "OFFSET" in sql.upper()]


def test_iter_calls_checks_its_arguments_at_once(any_rows: Rows) -> None:
    with pytest.raises(QueryError, match="chunk_size must be >= 1"):
        queries.iter_calls(chunk_size=0)
    with pytest.raises(QueryError, match="chunk_size must be <= 5000"):
        queries.iter_calls(chunk_size=5001)
    with pytest.raises(QueryError, match="unknown sort 'oldest'"):
        queries.iter_calls(sort="oldest")
    with pytest.raises(QueryError, match="unknown status lost"):
        queries.iter_calls(status=["lost"])
