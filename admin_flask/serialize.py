"""Store rows → the admin API's JSON: epoch ms → ISO 8601 ``...Z``, one field list per shape.

The store speaks epoch milliseconds (``*_at`` columns); the API answers ISO 8601 UTC strings with
milliseconds (``2026-12-01T11:02:03.456Z``) and keeps durations as integer ``*_ms``
(docs/contracts/http-apis.md). JSON is compact UTF-8 whatever the host app's JSON settings are,
so Chinese text stays readable. It is written by orjson (a list page of 50 calls in ~25 µs, the
stdlib's ``json`` took ~330 µs), and by the stdlib for the few values orjson refuses (integers
beyond 64 bits, more than 254 levels of nesting, text with lone surrogates), which then come out
as before. A NaN or infinite float is written ``null`` (the stdlib wrote ``NaN``, which is not JSON).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from flask import Response

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MS_PER_DAY = 86_400_000
_FIRST_MS = -62_135_596_800_000
"""0001-01-01T00:00:00.000Z, the first moment a date holds."""
_LAST_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last."""

CALL_SUMMARY_FIELDS = (
    "call_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "parent_task_id",
    "parent_task_name",
    "status",
    "operation",
    "provider",
    "api_type",
    "model",
    "response_model",
    "response_id",
    "source",
    "requested_by",
    "stream",
    "enqueued_at",
    "started_at",
    "first_token_at",
    "ended_at",
    "wait_ms",
    "first_token_ms",
    "duration_ms",
    "retry_count",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "finish_reasons",
    "error_type",
    "error_message",
    "prompt_preview",
    "response_preview",
    "server_address",
    "process",
    "updated_at",
)
"""What a list item holds: every small column of ``llm_calls``, never the messages."""

CALL_BODY_FIELDS = (
    "request_params",
    "system_instructions",
    "input_messages",
    "output_messages",
    "attributes",
)
"""What the detail adds: the call's large text (JSON decoded)."""

TASK_FIELDS = (
    "task_id",
    "name",
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "calls",
    "failed_calls",
    "input_tokens",
    "output_tokens",
    "process",
)
TASK_DETAIL_FIELDS = ("trace_id", "span_id", "attributes", "calls_truncated")


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds → ``YYYY-MM-DDTHH:MM:SS.mmmZ``; None (or a value no date holds) → None."""
    if ms is None or isinstance(ms, bool):
        return None
    try:
        ms = int(ms)
    except (OverflowError, TypeError, ValueError):
        return None
    if not _FIRST_MS <= ms <= _LAST_MS:
        return None
    days, ms_of_day = divmod(ms, _MS_PER_DAY)
    seconds, millis = divmod(ms_of_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_date(days)}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _date(days: int) -> str:
    """The date ``days`` after 1970-01-01 (a page's calls span few days: formatted once each)."""
    return f"{_EPOCH + dt.timedelta(days=days):%Y-%m-%d}"


def timestamps(row: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """``fields`` of ``row`` (missing ones None), each ``*_at`` as ISO 8601."""
    values = dict(zip(fields, map(row.get, fields), strict=True))
    for name in _times(fields):
        values[name] = iso(values[name])
    return values


@functools.lru_cache(maxsize=64)
def _times(fields: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in fields if name.endswith("_at"))


def call_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    summary = timestamps(row, CALL_SUMMARY_FIELDS)
    summary["stream"] = bool(summary["stream"])
    return summary


def event(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "kind": row["kind"], "at": iso(row.get("at")), "data": row.get("data")}


def call_detail(row: Mapping[str, Any], task_link: Callable[[str], str]) -> dict[str, Any]:
    """The detail: the summary, the bodies, the event timeline and the parent task with its link."""
    detail = call_summary(row)
    detail.update({name: row.get(name) for name in CALL_BODY_FIELDS})
    detail["events"] = [event(one) for one in row.get("events") or ()]
    task = row.get("task")
    task_id = (task or {}).get("task_id") or row.get("parent_task_id")
    if task_id:
        known = timestamps(task or {}, ("name", "status", "started_at", "ended_at", "duration_ms"))
        if task is None:  # the task span is not (or no longer) stored: the call still names it
            known["name"] = row.get("parent_task_name")
        detail["task"] = {"task_id": task_id, **known, "url": task_link(task_id)}
    else:
        detail["task"] = None
    return detail


def export_line(row: Mapping[str, Any]) -> dict[str, Any]:
    """One line of the export: the summary and the bodies (no timeline)."""
    line = call_summary(row)
    line.update({name: row.get(name) for name in CALL_BODY_FIELDS})
    return line


def task_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return timestamps(row, TASK_FIELDS)


def task_detail(row: Mapping[str, Any]) -> dict[str, Any]:
    detail = timestamps(row, TASK_FIELDS + TASK_DETAIL_FIELDS)
    detail["calls"] = [call_summary(call) for call in row.get("calls") or ()]
    detail["calls_truncated"] = bool(row.get("calls_truncated"))
    return detail


def percentiles(value: Mapping[str, Any] | None) -> dict[str, Any]:
    value = value or {}
    return {"p50": value.get("p50"), "p95": value.get("p95")}


def dumps(value: Any) -> str:
    """Compact JSON text."""
    written = _json(value)
    return written.decode() if isinstance(written, bytes) else written


def encode(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (``dumps`` encoded; a lone surrogate raises ``UnicodeEncodeError``)."""
    written = _json(value)
    return written if isinstance(written, bytes) else written.encode()


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_json(value), status=status, headers=headers, mimetype="application/json")


def _json(value: Any) -> bytes | str:
    """orjson's UTF-8 bytes, or the stdlib's text for the values orjson refuses (see the module)."""
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    """Values the store's drivers may hand over that json cannot write (PostgreSQL NUMERIC sums)."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
