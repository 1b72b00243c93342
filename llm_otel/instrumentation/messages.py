"""Request and response content → GenAI semantic-convention messages.

Every message becomes ``{"role": ..., "parts": [...]}`` with parts of type ``text``,
``tool_call`` (id, name, arguments), ``tool_call_response`` (id, response), ``reasoning``, ``uri``
or ``blob`` (inline data is never copied: only its size is kept). Output messages also carry
their ``finish_reason``. These are pure functions over SDK objects or plain dicts: no OTel, no I/O.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from json.encoder import c_make_encoder, encode_basestring
from typing import Any

Message = dict[str, Any]
Redact = Callable[[Message], Message]


def as_dict(value: Any) -> Any:
    """A pydantic SDK object (or anything with ``model_dump``) as plain data; others unchanged."""
    if type(value) is dict:  # what apps pass most: no failed attribute lookup
        return value
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(exclude_none=True)
    return value


def parse_arguments(arguments: Any) -> Any:
    """Tool-call arguments arrive as a JSON string; record them as data when they parse."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": parse_arguments(arguments)}


def _inline_data_part(modality: str, data: str, mime_type: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "blob", "modality": modality, "content": f"<{len(data)} bytes omitted>"}
    if mime_type:
        part["mime_type"] = mime_type
    return part


def _uri_or_blob(modality: str, url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        mime_type = url[5:].split(";", 1)[0] or None
        return _inline_data_part(modality, url, mime_type)
    return {"type": "uri", "modality": modality, "uri": url}


def content_parts(content: Any) -> list[dict[str, Any]]:
    """Chat Completions and Responses content (a string or a list of typed parts) → parts."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if content is None:
        return []
    parts = []
    for raw in content:
        part = as_dict(raw)
        if isinstance(part, str):
            parts.append(text_part(part))
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            parts.append(text_part(part.get("text", "")))
        elif kind == "refusal":
            parts.append(text_part(part.get("refusal", "")))
        elif kind == "image_url":
            image = part.get("image_url") or {}
            parts.append(_uri_or_blob("image", image.get("url", "") if isinstance(image, Mapping) else ""))
        elif kind == "input_image":
            parts.append(_uri_or_blob("image", part.get("image_url") or part.get("file_id") or ""))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append(_inline_data_part("audio", audio.get("data", ""), audio.get("format")))
        elif kind in ("file", "input_file"):
            parts.append({"type": "file", "modality": "file"})
        else:
            parts.append({"type": kind or "unknown"})
    return parts


_TEXT_ROLES = frozenset({"system", "developer", "user", "assistant"})


def chat_input_messages(messages: Iterable[Any]) -> list[Message]:
    """The ``messages`` of a Chat Completions request, system and developer messages included."""
    converted = []
    for raw in messages:
        message = raw if type(raw) is dict else as_dict(raw)
        role = message.get("role")
        content = message.get("content")
        if len(message) == 2 and type(content) is str and role in _TEXT_ROLES:
            # Most messages are {"role", "content": str}: the same result as below, sooner.
            converted.append({"role": role, "parts": [{"type": "text", "content": content}]})
            continue
        if role is None:
            role = message.get("role", "user")  # a role given as None stays None
        if role in ("tool", "function"):
            response_part: dict[str, Any] = {
                "type": "tool_call_response",
                "id": message.get("tool_call_id"),
                "response": content,
            }
            if role == "function":
                response_part["name"] = message.get("name")
            converted.append({"role": "tool", "parts": [response_part]})
            continue
        parts = content_parts(content)
        for tool_call in message.get("tool_calls") or ():
            function = tool_call.get("function") or {}
            parts.append(tool_call_part(tool_call.get("id"), function.get("name"), function.get("arguments")))
        function_call = message.get("function_call")
        if function_call:
            parts.append(tool_call_part(None, function_call.get("name"), function_call.get("arguments")))
        entry: Message = {"role": role, "parts": parts}
        if message.get("name"):
            entry["name"] = message["name"]
        converted.append(entry)
    return converted


def chat_output_message(message: Any, finish_reason: str | None) -> Message:
    """One choice of a chat completion (the SDK's message object, or a dict) → an output message."""
    read = _reader(message)
    parts = []
    content = read("content", None)
    if content:
        parts.append({"type": "text", "content": content})
    refusal = read("refusal", None)
    if refusal:
        parts.append({"type": "text", "content": refusal})
    for tool_call in read("tool_calls", None) or ():
        call = _reader(tool_call)
        function = _reader(call("function", None))
        parts.append(tool_call_part(call("id", None), function("name", None), function("arguments", None)))
    return {"role": read("role", None) or "assistant", "parts": parts, "finish_reason": finish_reason}


def _reader(value: Any) -> Callable[[str, None], Any]:
    """``read(name, None)``: a dict's item or an object's attribute, None when absent. The SDK's
    objects (pydantic models) are read as they are, never dumped to a dict first."""
    if value is None:
        return _EMPTY.get
    if type(value) is dict or isinstance(value, Mapping):
        return value.get
    return functools.partial(getattr, value)


_EMPTY: dict[str, Any] = {}


def responses_input_messages(input_value: Any) -> list[Message]:
    """The ``input`` of a Responses API request: a string or a list of input items."""
    if input_value is None:
        return []
    if isinstance(input_value, str):
        return [{"role": "user", "parts": [text_part(input_value)]}]
    converted = []
    for raw in input_value:
        item = as_dict(raw)
        kind = item.get("type", "message")
        if kind == "message":
            converted.append({"role": item.get("role", "user"), "parts": content_parts(item.get("content"))})
        elif kind == "function_call":
            part = tool_call_part(item.get("call_id"), item.get("name"), item.get("arguments"))
            converted.append({"role": "assistant", "parts": [part]})
        elif kind == "function_call_output":
            part = {"type": "tool_call_response", "id": item.get("call_id"), "response": item.get("output")}
            converted.append({"role": "tool", "parts": [part]})
        else:
            converted.append({"role": item.get("role", "user"), "parts": [{"type": kind}]})
    return converted


def responses_output_messages(output: Iterable[Any], finish_reason: str) -> list[Message]:
    """The ``output`` items of a Response → one assistant message holding every part."""
    parts = []
    for raw in output or ():
        item = as_dict(raw)
        kind = item.get("type")
        if kind == "message":
            parts.extend(content_parts(item.get("content")))
        elif kind == "function_call":
            parts.append(tool_call_part(item.get("call_id"), item.get("name"), item.get("arguments")))
        elif kind == "reasoning":
            summary = " ".join(s.get("text", "") for s in item.get("summary") or ())
            if summary:  # reasoning items usually come with no visible summary
                parts.append({"type": "reasoning", "content": summary})
        elif kind:
            parts.append({"type": kind})
    return [{"role": "assistant", "parts": parts, "finish_reason": finish_reason}]


def apply_redaction(messages: list[Message], redact: Redact | None) -> list[Message]:
    """Let the user's ``redact`` hook see and change every message; a failing hook hides the message."""
    if redact is None:
        return messages
    redacted = []
    for message in messages:
        try:
            redacted.append(redact(message))
        except Exception:
            redacted.append({"role": message.get("role"), "parts": [text_part("[redaction failed]")]})
    return redacted


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
# What ``json.dumps`` with these options builds on every call (an encoder, then its C encoder: most
# of the cost of encoding a call's parameters), built once: the same text. Without a circular
# check: a message that contains itself raises RecursionError, which the call's start logs.
_C_ENCODE = (
    c_make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)
    if c_make_encoder
    else None
)


def to_json(value: Any) -> str:
    """Compact JSON for span attributes; anything not JSON-native is recorded as its string."""
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(value, 0))
    return _ENCODER.encode(value)
