"""Spans → store rows: pure functions, no I/O.

A call span (it carries ``llm_otel.call.id``) maps to one ``llm_calls`` row, one
``llm_call_bodies`` row (whose text full-text search reads) and its ``llm_call_events`` rows; a task
span (``llm_otel.span.kind == "task"``) maps to one ``llm_tasks`` row. Only the span's attributes,
events, ids and times are read, so a span from any process, or replayed, maps the same way.

Usage::

    rows = span_to_rows(readable_span)        # CallRows, or None for a span that is not a call
    task = span_to_task_row(readable_span)    # dict, or None for a span that is not a task

The live notices of a call still in flight map with ``queued_rows`` (the row as it stands when the
call is queued) and ``call_update`` (what a dispatch, a first token or a retry changes).

How columns are derived (``docs/contracts/db.md`` is the reference):

- times are epoch milliseconds: ``enqueued_at`` = span start, ``started_at`` = the
  ``llm_otel.dispatched`` event, ``first_token_at`` = the ``llm_otel.first_token`` event,
  ``ended_at`` = span end; ``duration_ms = ended_at - started_at`` (``- enqueued_at`` for a call
  never dispatched); ``wait_ms`` and ``first_token_ms`` come from ``llm_otel.queue.wait`` and
  ``gen_ai.response.time_to_first_chunk`` (seconds);
- ``retry_count`` = ``http.request.resend_count``, else the number of retry events;
- ``status`` = ``llm_otel.status``, else ``failed`` for an ERROR span status, else ``succeeded``;
- ``prompt_preview`` = the text of the last user message, ``response_preview`` = the text of the
  first output message, else its tool calls as ``name()``; both whitespace-collapsed, at most
  ``PREVIEW_CHARS`` characters;
- the body keeps the JSON attributes as recorded (written again with its characters as they are
  when the recorder escaped them as ``\\uXXXX``) and ``attributes``, a JSON object of every
  attribute that has no column of its own;
- events: ``queued`` at the span start, then ``dispatched``, ``retry`` and ``first_token`` from
  the span events, then the final status at the span end; their ``data`` is a JSON object with
  integer milliseconds (``wait_ms``, ``first_token_ms``, ``backoff_ms``, ``duration_ms``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, StatusCode

from exporter import _names as n
from exporter.records import CallNotice, EndedSpan, QueuedCall, Record, TaskStarted

PREVIEW_CHARS = 200
"""Longest ``prompt_preview`` / ``response_preview``, in characters (an ellipsis marks a cut)."""

_PREVIEW_HEADS = (PREVIEW_CHARS + PREVIEW_CHARS // 4, PREVIEW_CHARS * 4)
"""Lengths of the heads ``preview`` flattens, in turn, before the whole text."""

LIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = (n.SUCCEEDED, n.FAILED, n.CANCELLED)

_EVENT_KINDS = {
    n.EVENT_DISPATCHED: n.DISPATCHED,
    n.EVENT_FIRST_TOKEN: n.FIRST_TOKEN,
    n.EVENT_RETRY: n.RETRY,
}

# Attributes that have a column or a body field of their own; the rest go to the body's
# ``attributes`` object.
_MAPPED_ATTRIBUTES = frozenset(
    {
        n.CALL_ID,
        n.OPERATION_NAME,
        n.PROVIDER_NAME,
        n.OPENAI_API_TYPE,
        n.REQUEST_MODEL,
        n.REQUEST_STREAM,
        n.RESPONSE_ID,
        n.RESPONSE_MODEL,
        n.RESPONSE_FINISH_REASONS,
        n.RESPONSE_TIME_TO_FIRST_CHUNK,
        n.USAGE_INPUT_TOKENS,
        n.USAGE_OUTPUT_TOKENS,
        n.USAGE_CACHE_READ_INPUT_TOKENS,
        n.USAGE_REASONING_OUTPUT_TOKENS,
        n.INPUT_MESSAGES,
        n.OUTPUT_MESSAGES,
        n.SYSTEM_INSTRUCTIONS,
        n.REQUEST_PARAMS,
        n.SERVER_ADDRESS,
        n.ERROR_TYPE,
        n.ERROR_MESSAGE,
        n.HTTP_RESEND_COUNT,
        n.SOURCE,
        n.REQUESTED_BY,
        n.TASK_ID,
        n.TASK_NAME,
        n.QUEUE_WAIT,
        n.STATUS,
        n.PROCESS,
    }
)


@dataclass(frozen=True, slots=True)
class CallRows:
    """Everything one call span writes, keyed by column name."""

    call: dict[str, Any]
    """The ``llm_calls`` row (every column)."""
    body: dict[str, Any]
    """The ``llm_call_bodies`` row (its text is what full-text search reads, see ``exporter.migrations``)."""
    events: list[dict[str, Any]]
    """``llm_call_events`` rows (``call_id``, ``kind``, ``at``, ``data``) in time order."""


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """What one live notice (dispatched, first_token, retry) changes in a call's row."""

    kind: str
    row: dict[str, Any]
    """Columns to advance: ``call_id``, ``enqueued_at``, ``updated_at`` and the kind's own."""
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class KnownPrompt:
    """The prompt preview a call's queued row computed from its start attributes, kept until its
    end is mapped (``RowBatch.prompts``): the end's attributes hold the same values, and parsing
    the input messages again for it is a large part of mapping a call with a long prompt."""

    system_instructions: Any
    input_messages: Any
    prompt_preview: str | None


@dataclass
class RowBatch:
    """The rows of one transaction, mapped from records (``exporter.records``) in arrival order.

    ``exporter._sql.write_batch`` writes it. ``snapshots`` holds scheduler snapshot rows.

    A dispatch notice of a call queued in the same batch (the usual case: a call is dispatched
    milliseconds after it is queued, and ends seconds later, in another batch) is merged into the
    call's queued row (``running``, its start and wait filled in), which the queued upsert writes
    as the dispatch's upsert after it would have: one row written instead of two.
    """

    queued: list[CallRows] = field(default_factory=list)
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    finals: list[CallRows] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    """Event rows in arrival order, each with ``live`` (1 for a live notice's, 0 for an ended span's)."""
    task_starts: list[dict[str, Any]] = field(default_factory=list)
    task_ends: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    closings: list[dict[str, Any]] = field(default_factory=list)
    """``closing_row``s of calls whose ended span the writer had to drop."""
    losses: list[dict[str, Any]] = field(default_factory=list)
    """``llm_store_losses`` rows: what the writer lost, upserted by (process, kind, started_at)."""
    prompts: dict[str, KnownPrompt] = field(default_factory=dict, repr=False, compare=False)
    """The prompt previews of the calls queued and not ended yet, by call id: the writer passes the
    same dict to each batch, so that a call's end reuses what its queued row computed."""
    defer_index: bool = False
    """SQLite: the calls ended here are listed in ``llm_calls_unindexed`` rather than indexed for
    full-text search in this transaction (``exporter.writer`` indexes them in batches)."""
    index_deferred: bool = False
    """SQLite: also index the ended calls that ``llm_calls_unindexed`` lists, and empty it (the
    writer then indexes the calls ended here at once: ``defer_index`` off)."""
    first_written: set[str] = field(default_factory=set)
    """Calls queued in this batch whose end is in it too (``exporter.writer``: their live records
    are left out): no row of theirs was stored before, so their final rows are not looked up to
    be written as an end alone (``exporter._sql.ended_apart``)."""
    _queued_calls: dict[str, CallRows] = field(default_factory=dict, repr=False, compare=False)
    """The rows of ``queued`` by call id, for the dispatch notices merged into them."""

    def add(self, record: Record) -> None:
        """Map ``record`` into rows; raises when it cannot be mapped (the writer drops it alone)."""
        match record:
            case EndedSpan(span=span, call_id=call_id, process=process):
                self._add_ended_span(span, call_id, process)
            case QueuedCall(span=span, attributes=attributes):
                rows = queued_rows(span, attributes)
                if rows is not None:
                    self.queued.append(rows)
                    self._queued_calls[rows.call["call_id"]] = rows
                    self.prompts[rows.call["call_id"]] = KnownPrompt(
                        attributes.get(n.SYSTEM_INSTRUCTIONS),
                        attributes.get(n.INPUT_MESSAGES),
                        rows.call["prompt_preview"],
                    )
                    self.events.extend(_flagged(rows.events, 1))
            case CallNotice():
                update = call_update(
                    record.kind, record.call_id, record.start_time_ns, record.timestamp_ns, record.attributes
                )
                queued = self._queued_calls.get(record.call_id) if record.kind == n.DISPATCHED else None
                if queued is not None:
                    _merge_dispatch(queued.call, update.row)
                else:
                    self.updates.setdefault(record.kind, []).append(update.row)
                update.event["live"] = 1
                self.events.append(update.event)
            case TaskStarted(span=span, attributes=attributes, process=process):
                row = task_start_row(span, attributes)
                if row is not None:
                    row["process"] = row["process"] or process
                    self.task_starts.append(row)
            case _:
                raise TypeError(f"not a store record: {record!r}")

    def _add_ended_span(self, span: ReadableSpan, call_id: str | None, process: str | None) -> None:
        """A call's final rows, a task's final row, or nothing for other spans."""
        if call_id is None:
            task = span_to_task_row(span)
            if task is not None:
                task["process"] = task["process"] or process
                self.task_ends.append(task)
                return
        rows = span_to_rows(span, self.prompts.pop(call_id, None) if call_id else None)
        if rows is not None:
            self.finals.append(rows)
            self.events.extend(_flagged(rows.events, 0))

    def __bool__(self) -> bool:
        return bool(
            self.queued
            or self.updates
            or self.finals
            or self.task_starts
            or self.task_ends
            or self.snapshots
            or self.closings
        )


def _flagged(events: list[dict[str, Any]], live: int) -> list[dict[str, Any]]:
    """``events`` (rows just mapped, this batch's own) with ``live`` set: 1 for a live notice's."""
    for event in events:
        event["live"] = live
    return events


def _merge_dispatch(call: dict[str, Any], dispatch: Mapping[str, Any]) -> None:
    """Make a queued row what the dispatch's upsert (``exporter._sql``) would make of it: ``running``,
    the empty columns filled, ``updated_at`` advanced."""
    call["status"] = "running"
    for column in ("started_at", "wait_ms"):
        if call[column] is None:
            call[column] = dispatch[column]
    call["updated_at"] = max(call["updated_at"], dispatch["updated_at"])


def span_to_rows(span: ReadableSpan, known: KnownPrompt | None = None) -> CallRows | None:
    """The rows of an ended call span; None when ``span`` is not a call (no ``llm_otel.call.id``).

    ``known``: the prompt preview its queued row computed, used when the span's system
    instructions and input messages are those it was computed from."""
    attributes = attribute_dict(span)
    call_id = attributes.get(n.CALL_ID)
    if not isinstance(call_id, str) or not call_id or span.start_time is None:
        return None
    enqueued_at = _ms(span.start_time)
    ended_at = _ms(span.end_time) if span.end_time is not None else None
    status = _final_status(attributes.get(n.STATUS), span.status.status_code)

    events: list[dict[str, Any]] = [_event(call_id, n.QUEUED, enqueued_at, None)]
    started_at = first_token_at = None
    wait_ms = _seconds_to_ms(attributes.get(n.QUEUE_WAIT))
    first_token_ms = _seconds_to_ms(attributes.get(n.RESPONSE_TIME_TO_FIRST_CHUNK))
    retry_events = 0
    for span_event in span.events:
        kind = _EVENT_KINDS.get(span_event.name)
        if kind is None:
            continue
        event_attributes = span_event.attributes or {}
        event = notice_event(call_id, kind, span_event.timestamp, event_attributes)
        events.append(event)
        if kind == n.DISPATCHED and started_at is None:
            started_at = event["at"]
            wait_ms = wait_ms if wait_ms is not None else _seconds_to_ms(event_attributes.get(n.QUEUE_WAIT))
        elif kind == n.FIRST_TOKEN and first_token_at is None:
            first_token_at = event["at"]
            if first_token_ms is None:
                first_token_ms = _seconds_to_ms(event_attributes.get(n.RESPONSE_TIME_TO_FIRST_CHUNK))
        elif kind == n.RETRY:
            retry_events += 1

    error_type = _str(attributes.get(n.ERROR_TYPE))
    error_message = _str(attributes.get(n.ERROR_MESSAGE))
    if status == n.FAILED and (error_type is None or error_message is None):
        exc_type, exc_message = _exception_details(span.events)
        error_type = error_type or exc_type
        error_message = error_message or exc_message or _str(span.status.description)
    duration_ms = None
    if ended_at is not None:
        duration_ms = ended_at - (started_at if started_at is not None else enqueued_at)
    resend_count = _int(attributes.get(n.HTTP_RESEND_COUNT))

    rows = _call_rows(span, attributes, call_id, status, enqueued_at, known)
    rows.call.update(
        started_at=started_at,
        first_token_at=first_token_at,
        ended_at=ended_at,
        wait_ms=wait_ms,
        first_token_ms=first_token_ms,
        duration_ms=duration_ms,
        retry_count=resend_count if resend_count is not None else retry_events,
        error_type=error_type,
        error_message=error_message,
        updated_at=ended_at if ended_at is not None else enqueued_at,
    )
    final_data = {"duration_ms": duration_ms, "error_type": error_type, "error_message": error_message}
    events.append(_event(call_id, status, rows.call["updated_at"], final_data))
    rows.events.extend(events)
    return rows


def queued_rows(span: ReadableSpan, attributes: Mapping[str, Any]) -> CallRows | None:
    """The rows of a call just queued: ``attributes`` is a copy of the live span's attributes."""
    call_id = attributes.get(n.CALL_ID)
    if not isinstance(call_id, str) or not call_id or span.start_time is None:
        return None
    enqueued_at = _ms(span.start_time)
    rows = _call_rows(span, attributes, call_id, "queued", enqueued_at)
    rows.events.append(_event(call_id, n.QUEUED, enqueued_at, None))
    return rows


def call_update(
    kind: str, call_id: str, start_time_ns: int, timestamp_ns: int, attributes: Mapping[str, Any]
) -> CallUpdate:
    """What a live notice of ``kind`` (dispatched, first_token, retry) changes in the call's row.

    ``attributes`` are the notice's (the same as its span event's); ``start_time_ns`` is the
    span's start, so that the row can be created if the notice overtakes the queued one.
    """
    event = notice_event(call_id, kind, timestamp_ns, attributes)
    row: dict[str, Any] = {"call_id": call_id, "enqueued_at": _ms(start_time_ns), "updated_at": event["at"]}
    if kind == n.DISPATCHED:
        row.update(started_at=event["at"], wait_ms=_seconds_to_ms(attributes.get(n.QUEUE_WAIT)))
    elif kind == n.FIRST_TOKEN:
        row.update(
            first_token_at=event["at"],
            first_token_ms=_seconds_to_ms(attributes.get(n.RESPONSE_TIME_TO_FIRST_CHUNK)),
        )
    elif kind == n.RETRY:
        row.update(attempt=_int(attributes.get(n.RETRY_ATTEMPT)))
    else:
        raise ValueError(f"unknown live notice kind {kind!r}; expected dispatched, first_token or retry")
    return CallUpdate(kind, row, event)


def notice_event(call_id: str, kind: str, timestamp_ns: int, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The ``llm_call_events`` row of a dispatch, first token or retry (live or from a span event)."""
    data: dict[str, Any] | None = None
    if kind == n.DISPATCHED:
        data = {"wait_ms": _seconds_to_ms(attributes.get(n.QUEUE_WAIT))}
    elif kind == n.FIRST_TOKEN:
        data = {"first_token_ms": _seconds_to_ms(attributes.get(n.RESPONSE_TIME_TO_FIRST_CHUNK))}
    elif kind == n.RETRY:
        data = {
            "attempt": _int(attributes.get(n.RETRY_ATTEMPT)),
            "status_code": _int(attributes.get(n.RETRY_STATUS_CODE)),
            "error": _str(attributes.get(n.RETRY_ERROR)),
            "backoff_ms": _seconds_to_ms(attributes.get(n.RETRY_BACKOFF)),
        }
    return _event(call_id, kind, _ms(timestamp_ns), data)


def closing_row(span: ReadableSpan) -> dict[str, Any] | None:
    """What is kept of an ended call whose record had to be dropped: enough to end its row.

    Only cheap attribute reads (it runs on the app's thread, when the writer's queue is full). The
    row ends the call's live row, or is the call's row if none was written; its details are lost.
    """
    attributes = span.attributes or {}
    call_id = attributes.get(n.CALL_ID)
    if not isinstance(call_id, str) or not call_id or span.start_time is None or span.end_time is None:
        return None
    return {
        "call_id": call_id,
        "status": _final_status(attributes.get(n.STATUS), span.status.status_code),
        "enqueued_at": _ms(span.start_time),
        "ended_at": _ms(span.end_time),
        "error_type": _str(attributes.get(n.ERROR_TYPE)),
        "model": _str(attributes.get(n.REQUEST_MODEL)),
        "source": _str(attributes.get(n.SOURCE)),
        "requested_by": _str(attributes.get(n.REQUESTED_BY)),
        "process": _str(attributes.get(n.PROCESS)),
        "data": to_json({"record_dropped": True}),
    }


def is_task(attributes: Mapping[str, Any]) -> bool:
    """True for the attributes of a task span made by ``llm_otel.task()``."""
    return attributes.get(n.TASK_KIND) == n.TASK_KIND_VALUE and bool(attributes.get(n.TASK_ID))


def task_start_row(span: ReadableSpan, attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``llm_tasks`` row of a task span that just started (``running``)."""
    if not is_task(attributes) or span.start_time is None:
        return None
    return _task_row(span, attributes, "running", None)


def span_to_task_row(span: ReadableSpan) -> dict[str, Any] | None:
    """The ``llm_tasks`` row of an ended task span; None when ``span`` is not a task."""
    attributes = attribute_dict(span)
    if not is_task(attributes) or span.start_time is None:
        return None
    status = attributes.get(n.STATUS)
    if status not in (n.SUCCEEDED, n.FAILED):
        status = n.FAILED if span.status.status_code is StatusCode.ERROR else n.SUCCEEDED
    return _task_row(span, attributes, status, span.end_time)


def attribute_dict(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes as a plain dict: the SDK's read-only mapping is slow to query and to
    copy key by key, but its ``copy()`` copies the dict underneath at C speed."""
    attributes = span.attributes
    if not attributes:
        return {}
    copied = attributes.copy() if hasattr(attributes, "copy") else None
    return copied if isinstance(copied, dict) else dict(attributes)


def preview(text: str | None) -> str | None:
    """``text`` with runs of whitespace made one space, cut to ``PREVIEW_CHARS`` (None if empty)."""
    if not text:
        return None
    # A head of the text flattens to a prefix of the whole text flattened: once it is longer than
    # the preview, the preview is known (a prompt of 2 KB is not split whole for 200 characters).
    for size in _PREVIEW_HEADS:
        head = text[:size]
        flat = " ".join(head.split())
        if len(flat) > PREVIEW_CHARS or len(head) == len(text):
            break
    else:
        flat = " ".join(text.split())  # mostly whitespace
    if not flat:
        return None
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def message_text(message: Mapping[str, Any]) -> str:
    """The text parts of one semconv message, one a line."""
    return _parts_text(message.get("parts"))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_SORTED_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str, sort_keys=True)


def _c_encoder(sort_keys: bool) -> Any:
    """The C encoder that ``JSONEncoder.encode`` builds anew on every call (two thirds of the cost
    of a small value), built once: the same text. No circular check: what is encoded is rows."""
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return None
    return c_make_encoder(None, str, encode_basestring, None, ":", ",", sort_keys, False, True)


_C_ENCODE = _c_encoder(sort_keys=False)
_C_ENCODE_SORTED = _c_encoder(sort_keys=True)
_DECODER = json.JSONDecoder()


def to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is (half the bytes for Chinese text)."""
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(value, 0))
    return _ENCODER.encode(value)


def _sorted_json(value: Mapping[str, Any]) -> str:
    """``to_json`` with the keys sorted."""
    if _C_ENCODE_SORTED is not None:
        return "".join(_C_ENCODE_SORTED(value, 0))
    return _SORTED_ENCODER.encode(value)


# -- helpers ---------------------------------------------------------------------------------------


def _call_rows(
    span: ReadableSpan,
    attributes: Mapping[str, Any],
    call_id: str,
    status: str,
    enqueued_at: int,
    known: KnownPrompt | None = None,
) -> CallRows:
    system_instructions = attributes.get(n.SYSTEM_INSTRUCTIONS)
    input_messages = attributes.get(n.INPUT_MESSAGES)
    output_messages = attributes.get(n.OUTPUT_MESSAGES)
    if (
        known is not None
        and known.input_messages == input_messages
        and known.system_instructions == system_instructions
    ):
        prompt_preview = known.prompt_preview
    else:
        inputs = _messages(input_messages)
        prompt_preview = preview(_prompt_preview_text(inputs) or _parts_text(_json_list(system_instructions)))
    outputs = _messages(output_messages)
    context: SpanContext | None = span.context
    finish_reasons = attributes.get(n.RESPONSE_FINISH_REASONS)
    if isinstance(finish_reasons, str):
        finish_reasons = (finish_reasons,)
    call = {
        "call_id": call_id,
        "trace_id": format(context.trace_id, "032x") if context is not None else None,
        "span_id": format(context.span_id, "016x") if context is not None else None,
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent is not None else None,
        "parent_task_id": _str(attributes.get(n.TASK_ID)),
        "parent_task_name": _str(attributes.get(n.TASK_NAME)),
        "status": status,
        "operation": _str(attributes.get(n.OPERATION_NAME)),
        "provider": _str(attributes.get(n.PROVIDER_NAME)),
        "api_type": _str(attributes.get(n.OPENAI_API_TYPE)),
        "model": _str(attributes.get(n.REQUEST_MODEL)),
        "response_model": _str(attributes.get(n.RESPONSE_MODEL)),
        "response_id": _str(attributes.get(n.RESPONSE_ID)),
        "source": _str(attributes.get(n.SOURCE)),
        "requested_by": _str(attributes.get(n.REQUESTED_BY)),
        "stream": attributes.get(n.REQUEST_STREAM) is True,
        "enqueued_at": enqueued_at,
        "started_at": None,
        "first_token_at": None,
        "ended_at": None,
        "wait_ms": None,
        "first_token_ms": None,
        "duration_ms": None,
        "retry_count": 0,
        "input_tokens": _int(attributes.get(n.USAGE_INPUT_TOKENS)),
        "output_tokens": _int(attributes.get(n.USAGE_OUTPUT_TOKENS)),
        "cached_tokens": _int(attributes.get(n.USAGE_CACHE_READ_INPUT_TOKENS)),
        "reasoning_tokens": _int(attributes.get(n.USAGE_REASONING_OUTPUT_TOKENS)),
        "finish_reasons": to_json(list(finish_reasons)) if finish_reasons else None,
        "error_type": None,
        "error_message": None,
        "prompt_preview": prompt_preview,
        "response_preview": preview(_response_preview_text(outputs)),
        "server_address": _str(attributes.get(n.SERVER_ADDRESS)),
        "process": _str(attributes.get(n.PROCESS)),
        "updated_at": enqueued_at,
    }
    # The few attributes without a column, found by a set difference in C (sorted when encoded).
    others = {key: _plain(attributes[key]) for key in attributes.keys() - _MAPPED_ATTRIBUTES}
    body = {
        "call_id": call_id,
        "request_params": _json_text(attributes.get(n.REQUEST_PARAMS)),
        "system_instructions": _json_text(system_instructions),
        "input_messages": _json_text(input_messages),
        "output_messages": _json_text(output_messages),
        "attributes": _sorted_json(others) if others else None,
    }
    return CallRows(call, body, [])


def _task_row(
    span: ReadableSpan, attributes: Mapping[str, Any], status: str, end_time: int | None
) -> dict[str, Any]:
    started_at = _ms(span.start_time)
    ended_at = _ms(end_time) if end_time is not None else None
    context = span.context
    own = {
        key[len(n.TASK_ATTR_PREFIX) :]: _plain(value)
        for key, value in attributes.items()
        if key.startswith(n.TASK_ATTR_PREFIX)
    }
    return {
        "task_id": str(attributes[n.TASK_ID]),
        "name": _str(attributes.get(n.TASK_NAME)) or span.name,
        "trace_id": format(context.trace_id, "032x") if context is not None else None,
        "span_id": format(context.span_id, "016x") if context is not None else None,
        "status": status,
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_ms": ended_at - started_at if ended_at is not None else None,
        "attributes": _sorted_json(own) if own else None,
        "process": _str(attributes.get(n.PROCESS)),
    }


def _event(call_id: str, kind: str, at: int, data: Mapping[str, Any] | None) -> dict[str, Any]:
    kept = {key: value for key, value in data.items() if value is not None} if data else None
    return {"call_id": call_id, "kind": kind, "at": at, "data": to_json(kept) if kept else None}


def _final_status(value: Any, status_code: StatusCode) -> str:
    if value in FINAL_STATUSES:
        return value
    return n.FAILED if status_code is StatusCode.ERROR else n.SUCCEEDED


def _exception_details(events: Sequence[Event]) -> tuple[str | None, str | None]:
    for event in reversed(events):
        if event.name == n.EXCEPTION_EVENT:
            attributes = event.attributes or {}
            return _str(attributes.get(n.EXCEPTION_TYPE)), _str(attributes.get(n.EXCEPTION_MESSAGE))
    return None, None


def _prompt_preview_text(messages: list[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and (text := message_text(message)):
            return text
    for message in reversed(messages):
        if text := message_text(message):
            return text
    return ""


def _response_preview_text(messages: list[Mapping[str, Any]]) -> str:
    for message in messages:
        if text := message_text(message):
            return text
    names = [
        f"{part.get('name')}()"
        for message in messages
        for part in _dicts(message.get("parts"))
        if part.get("type") == "tool_call" and part.get("name")
    ]
    return ", ".join(names)


def _parts_text(parts: Any) -> str:
    return "\n".join(
        [
            content
            for part in _dicts(parts)
            if part.get("type") == "text" and isinstance(content := part.get("content"), str) and content
        ]
    )


def _messages(value: Any) -> list[Mapping[str, Any]]:
    return _dicts(_json_list(value))


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = _loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def _loads(text: str) -> Any:
    """``json.loads`` without its scans for surrounding whitespace, which recorded JSON has none of."""
    try:
        value, end = _DECODER.raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or the error json.loads gives
    return value if end == len(text) else json.loads(text)


def _dicts(values: Any) -> list[Mapping[str, Any]]:
    """The mappings of a JSON list (decoded JSON holds dicts: checked first, ``Mapping`` is an ABC)."""
    if isinstance(values, list):
        return [value for value in values if value.__class__ is dict or isinstance(value, Mapping)]
    return []


def _json_text(value: Any) -> str | None:
    """JSON text as recorded; re-encoded with its characters as they are (``to_json``) when the
    recorder escaped them (``\\uXXXX``), so that searching the JSON text finds them."""
    if value is None:
        return None
    if not isinstance(value, str):
        return to_json(_plain(value))
    if "\\" in value and "\\u" in value:  # the first test is 30x faster on non-ASCII text
        try:
            return to_json(_loads(value))
        except ValueError:
            return value
    return value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _ms(ns: int) -> int:
    return ns // 1_000_000


def _seconds_to_ms(value: Any) -> int | None:
    if value.__class__ is float or value.__class__ is int:  # the usual case, first (bool is neither)
        return round(value * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return round(value * 1000)


def _int(value: Any) -> int | None:
    if value.__class__ is int:  # the usual case, first (bool is not int here)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _str(value: Any) -> str | None:
    if value.__class__ is str:  # the usual case, first
        return value or None
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
