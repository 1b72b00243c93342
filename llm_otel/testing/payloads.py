"""The bodies the fake server sends, shaped like the real OpenAI API's (pure: no I/O, no timing).

Each ``*_reply(body, behavior)`` turns a parsed request into a ``Reply``: a JSON body, or for a
streaming request the list of server-sent events. Events that carry generated output (text or
tool-call arguments) are marked ``content``: the server times them (``first_chunk_delay``,
``chunk_delay``) and counts them (``drop_after_chunks``).

Shapes, as the API sends them:

- chat stream: a role chunk per choice (``content: ""``, or ``null`` when the reply is only tool
  calls), one chunk per word, tool-call chunks (the first with ``id``/``type``/``name`` and empty
  ``arguments``, then argument fragments, each with its ``index``), a finish chunk per choice
  (empty delta), with ``stream_options.include_usage`` a last chunk with ``choices: []`` and the
  usage (every other chunk then has ``"usage": null``; without it there is no ``usage`` key),
  then ``data: [DONE]``;
- Responses stream: ``event:`` + ``data:`` pairs with a ``sequence_number``: response.created,
  response.in_progress, then per output item output_item.added … output_item.done (text:
  content_part.added, output_text.delta…, output_text.done, content_part.done; tool call:
  function_call_arguments.delta…, function_call_arguments.done), then response.completed (or
  response.incomplete); no ``[DONE]``;
- embeddings: float lists, or base64 of little-endian float32 when ``encoding_format`` is
  ``base64`` (the SDK asks for base64 unless told otherwise and decodes it); the vectors are
  unit-length, derived from the input text, ``dimensions`` long (default 8);
- errors: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .behavior import Behavior
from .messages import chat_items, last_user_text, responses_items
from .tokens import TokenCounts, embeddings_usage, prompt_words, words

SYSTEM_FINGERPRINT = "fp_fake0openai"
DEFAULT_DIMENSIONS = 8
MODELS = ("gpt-4o-mini", "gpt-4o", "o4-mini", "text-embedding-3-small")
_MODELS_CREATED = 1_700_000_000
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_ARGUMENT_FRAGMENT = 6
# Chat finish reasons that end a Responses API response as "incomplete", with its reason.
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request was invalid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Access denied."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    409: ("invalid_request_error", None, "Conflict: the request could not be completed."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class InvalidRequest(Exception):
    """A request the real API refuses with 400 before doing anything."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.body = _error(message, "invalid_request_error", param, code)


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event; ``content`` marks generated output (text or tool-call arguments)."""

    data: Mapping[str, Any] | str
    event: str | None = None
    content: bool = False

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else json.dumps(self.data, separators=(",", ":"))
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {data}\n\n".encode()


@dataclass(frozen=True)
class Reply:
    """What to send for a successful request; ``usage`` exactly as it is sent (or ``None``)."""

    response_id: str | None
    usage: dict[str, Any] | None
    body: dict[str, Any] | None = None
    events: list[StreamEvent] | None = None


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The OpenAI error body for ``status``, with a realistic type, code and message."""
    kind, code, default_message = _ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
    )
    return _error(message or default_message, kind, None, code)


def not_found_body(method: str, path: str) -> dict[str, Any]:
    """The body of the API's 404 for a path it does not serve."""
    return _error(f"Invalid URL ({method} {path})", "invalid_request_error", None, None)


def _error(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def new_id(prefix: str, length: int = 24) -> str:
    """A fresh id in the API's style, e.g. ``chatcmpl-…``, ``resp_…``, ``call_…``."""
    return prefix + secrets.token_hex(length)[:length]


def response_model(model: str) -> str:
    """The model name a response reports: the requested one plus a date, as the API does."""
    return model if _DATED.search(model) else f"{model}-2024-07-18"


def split_words(text: str) -> list[str]:
    """Stream pieces of ``text``: each word with the whitespace before it; they join to ``text``."""
    return re.findall(r"\s*\S+|\s+", text)


def _reply_text(behavior: Behavior, items: list[Mapping[str, Any]]) -> str | None:
    if behavior.content is not None:
        return behavior.content
    if behavior.tool_calls:
        return None
    return f"Echo: {last_user_text(items)}".strip()


def _fragments(arguments: str) -> list[str]:
    return [arguments[i : i + _ARGUMENT_FRAGMENT] for i in range(0, len(arguments), _ARGUMENT_FRAGMENT)]


def _output_words(behavior: Behavior, text: str | None) -> int:
    return words(text) + sum(words(call["arguments"]) for call in behavior.tool_calls)


# ---------------------------------------------------------------------------------------------
# Chat Completions


def validate_chat(body: Mapping[str, Any]) -> None:
    """Refuse what the API refuses: no ``messages``; ``stream_options`` without ``stream``."""
    if not body.get("messages"):
        raise InvalidRequest(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if body.get("stream_options") is not None and not body.get("stream"):
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )


def chat_reply(body: Mapping[str, Any], behavior: Behavior) -> Reply:
    """A ``chat.completion``, or its ``chat.completion.chunk`` stream when ``stream`` is true."""
    items = chat_items(body)
    choices = max(int(body.get("n") or 1), 1)
    text = _reply_text(behavior, items)
    calls = [[{"id": new_id("call_"), **call} for call in behavior.tool_calls] for _ in range(choices)]
    counts = TokenCounts.compute(behavior, prompt_words(items), choices * _output_words(behavior, text))
    finish = behavior.finish_reason or ("tool_calls" if behavior.tool_calls else "stop")
    head = {
        "id": new_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": response_model(body["model"]),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage = counts.chat_usage() if include_usage else None
        events = _chat_chunks(head, text, calls, finish, usage)
        return Reply(head["id"], usage, events=events)
    message_choices = [
        {
            "index": index,
            "message": {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": [],
                **({"tool_calls": [_chat_tool_call(call) for call in calls[index]]} if calls[index] else {}),
            },
            "logprobs": None,
            "finish_reason": finish,
        }
        for index in range(choices)
    ]
    usage = counts.chat_usage()
    return Reply(head["id"], usage, body={**head, "choices": message_choices, "usage": usage})


def _chat_tool_call(call: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": call["arguments"]},
    }


def _chat_chunks(
    head: Mapping[str, Any],
    text: str | None,
    calls: list[list[dict[str, str]]],
    finish: str,
    usage: dict[str, Any] | None,
) -> list[StreamEvent]:
    """The chunks; with ``usage`` (``include_usage``) every chunk has a ``usage`` key."""

    def chunk(choices: list[dict[str, Any]], content: bool = False, **extra: Any) -> StreamEvent:
        data = {**head, "object": "chat.completion.chunk", "choices": choices}
        if usage is not None:
            data["usage"] = None
        data.update(extra)
        return StreamEvent(data, content=content)

    def choice(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    indexes = range(len(calls))
    # As recorded: a text reply opens with content "" and refusal null, a tool-call-only one
    # with content null alone.
    if text is None:
        role_delta: dict[str, Any] = {"role": "assistant", "content": None}
    else:
        role_delta = {"role": "assistant", "content": "", "refusal": None}
    events = [chunk(choice(i, role_delta)) for i in indexes]
    events += [
        chunk(choice(i, {"content": piece}), True) for piece in split_words(text or "") for i in indexes
    ]
    for i in indexes:
        for position, call in enumerate(calls[i]):
            function = {"name": call["name"], "arguments": ""}
            opening = {"index": position, "id": call["id"], "type": "function", "function": function}
            events.append(chunk(choice(i, {"tool_calls": [opening]}), True))
            for fragment in _fragments(call["arguments"]):
                piece = {"index": position, "function": {"arguments": fragment}}
                events.append(chunk(choice(i, {"tool_calls": [piece]}), True))
    events += [chunk(choice(i, {}, finish)) for i in indexes]
    if usage is not None:
        events.append(chunk([], usage=usage))
    events.append(StreamEvent("[DONE]"))
    return events


# ---------------------------------------------------------------------------------------------
# Responses API


def responses_reply(body: Mapping[str, Any], behavior: Behavior) -> Reply:
    """A ``response`` object, or its event stream when ``stream`` is true."""
    items = responses_items(body)
    text = _reply_text(behavior, items)
    output: list[dict[str, Any]] = []
    if behavior.reasoning_tokens:
        output.append({"id": new_id("rs_", 50), "type": "reasoning", "summary": []})
    if text is not None:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        output.append(
            {
                "id": new_id("msg_", 50),
                "type": "message",
                "status": "completed",
                "content": [part],
                "role": "assistant",
            }
        )
    output += [
        {
            "id": new_id("fc_", 50),
            "type": "function_call",
            "status": "completed",
            "arguments": call["arguments"],
            "call_id": new_id("call_"),
            "name": call["name"],
        }
        for call in behavior.tool_calls
    ]
    counts = TokenCounts.compute(behavior, prompt_words(items), _output_words(behavior, text))
    usage = counts.responses_usage()
    incomplete = _INCOMPLETE_REASONS.get(behavior.finish_reason or "")
    failed = behavior.finish_reason == "error"
    created = int(time.time())
    final = _response_object(body, new_id("resp_", 50), created)
    final.update(
        status="failed" if failed else "incomplete" if incomplete else "completed",
        completed_at=None if incomplete or failed else created,
        incomplete_details={"reason": incomplete} if incomplete else None,
        error={"code": "server_error", "message": "The model failed to generate a response."}
        if failed
        else None,
        output=output,
        usage=usage,
    )
    if body.get("stream"):
        return Reply(final["id"], usage, events=_response_events(final))
    return Reply(final["id"], usage, body=final)


def _response_object(body: Mapping[str, Any], response_id: str, created: int) -> dict[str, Any]:
    """An ``in_progress`` response echoing the request's settings, as in ``response.created``."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "frequency_penalty": 0.0,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": response_model(body["model"]),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "presence_penalty": 0.0,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": "in_memory",
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _response_events(final: dict[str, Any]) -> list[StreamEvent]:
    events: list[StreamEvent] = []

    def emit(kind: str, content: bool = False, **fields: Any) -> None:
        data = {"type": kind, **fields, "sequence_number": len(events)}
        events.append(StreamEvent(data, event=kind, content=content))

    started = {**final, "status": "in_progress", "completed_at": None, "incomplete_details": None}
    started.update(output=[], usage=None)
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    for index, item in enumerate(final["output"]):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit(
                "response.output_item.added",
                item={**item, "status": "in_progress", "content": []},
                output_index=index,
            )
            empty = {**item["content"][0], "text": ""}
            emit("response.content_part.added", content_index=0, **at, part=empty)
            for piece in split_words(text):
                emit("response.output_text.delta", True, content_index=0, delta=piece, **at, logprobs=[])
            emit("response.output_text.done", content_index=0, **at, logprobs=[], text=text)
            emit("response.content_part.done", content_index=0, **at, part=item["content"][0])
        elif item["type"] == "function_call":
            emit(
                "response.output_item.added",
                item={**item, "status": "in_progress", "arguments": ""},
                output_index=index,
            )
            for fragment in _fragments(item["arguments"]):
                emit("response.function_call_arguments.delta", True, delta=fragment, **at)
            emit("response.function_call_arguments.done", arguments=item["arguments"], **at)
        else:
            emit("response.output_item.added", item=item, output_index=index)
        emit("response.output_item.done", item=item, output_index=index)
    emit(f"response.{final['status']}", response=final)
    return events


# ---------------------------------------------------------------------------------------------
# Embeddings and models


def validate_embeddings(body: Mapping[str, Any]) -> None:
    """Refuse a request without ``input``."""
    if body.get("input") in (None, "", []):
        raise InvalidRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter")


def embeddings_reply(body: Mapping[str, Any], behavior: Behavior) -> Reply:
    """A ``list`` of ``embedding`` objects; the model is echoed as requested (undated)."""
    given = body["input"]
    inputs: list[str | list[int]] = [given] if isinstance(given, str) or _is_token_ids(given) else list(given)
    dimensions = int(body.get("dimensions") or DEFAULT_DIMENSIONS)
    encode: Callable[[list[float]], Any] = _base64 if body.get("encoding_format") == "base64" else list
    data = [
        {"object": "embedding", "index": index, "embedding": encode(_vector(item, dimensions))}
        for index, item in enumerate(inputs)
    ]
    usage = embeddings_usage(behavior, inputs)
    return Reply(None, usage, body={"object": "list", "data": data, "model": body["model"], "usage": usage})


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, int) for item in value)


def _vector(item: str | list[int], dimensions: int) -> list[float]:
    """A unit vector from the input; float32-exact so the float and base64 forms agree."""
    key = item if isinstance(item, str) else json.dumps(item)
    digest = hashlib.shake_256(key.encode()).digest(2 * dimensions)
    raw = [value / 32767.5 - 1.0 for (value,) in struct.iter_unpack("<H", digest)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(value / norm for value in raw))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def models_list() -> dict[str, Any]:
    """The ``GET /v1/models`` list."""
    data = [
        {"id": model, "object": "model", "created": _MODELS_CREATED, "owned_by": "system"} for model in MODELS
    ]
    return {"object": "list", "data": data}
