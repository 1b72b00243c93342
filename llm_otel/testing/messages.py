"""Reading the conversation out of a request: the messages and the text each one carries.

Chat Completions sends ``messages``; the Responses API sends ``input`` (a string, or a list of
input items) and an optional ``instructions`` string. Both are read here as one list of items,
each a mapping with an optional ``role``, so that token counting and the echo reply treat both
APIs alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def chat_items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The messages of a Chat Completions request."""
    return [message for message in body.get("messages") or () if isinstance(message, Mapping)]


def responses_items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The input of a Responses request as items; ``instructions`` becomes a leading system item."""
    items: list[Mapping[str, Any]] = []
    if body.get("instructions"):
        items.append({"role": "system", "content": body["instructions"]})
    given = body.get("input")
    if isinstance(given, str):
        items.append({"role": "user", "content": given})
    elif isinstance(given, list):
        items.extend(item for item in given if isinstance(item, Mapping))
    return items


def texts(item: Mapping[str, Any]) -> list[str]:
    """The text one item carries: its content (a string or the ``text`` of each part), a tool
    result's ``output``, and the ``arguments`` of a tool call (a Responses ``function_call`` item
    or a chat message's ``tool_calls``)."""
    found: list[str] = []
    content = item.get("content")
    if isinstance(content, str):
        found.append(content)
    elif isinstance(content, list):
        found.extend(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    for key in ("output", "arguments"):
        if isinstance(item.get(key), str):
            found.append(item[key])
    for call in item.get("tool_calls") or ():
        arguments = (call.get("function") or {}).get("arguments") if isinstance(call, Mapping) else None
        if isinstance(arguments, str):
            found.append(arguments)
    return found


def last_user_text(items: list[Mapping[str, Any]]) -> str:
    """The text of the last item with role ``user`` (``""`` when there is none)."""
    for item in reversed(items):
        if item.get("role") == "user":
            return " ".join(texts(item))
    return ""
