"""How the fake server answers a request: the ``Behavior`` value and the playbook that picks one.

A ``Behavior`` describes one answer (status, timing, content, token counts); every field is
optional and the default is a quick, successful echo. The ``Playbook`` holds what the tests asked
for and picks the behaviour of each request by its ``model``:

1. the oldest one-shot behaviour scripted for that model, else
2. the oldest one-shot behaviour scripted for any model (``model=None``), else
3. the default set for that model, else
4. the default set for any model, else
5. ``Behavior()``.

Behaviours also arrive as JSON (``POST /_fake/script``); ``Behavior.from_dict`` reads that form
and ``Behavior.to_dict`` writes it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Behavior:
    """One answer of the fake server. Times are in seconds.

    - ``status``: 200, or an error status (400-599) answered with the OpenAI error body.
    - ``retry_after_ms``: sent as the ``retry-after-ms`` header (the SDK waits that long before
      retrying a 408/409/429/5xx).
    - ``error_message``: the error body's ``message`` (a realistic default per status otherwise).
    - ``hang``: wait this long before sending anything (to exceed a client timeout); stopping the
      server ends the wait at once.
    - ``first_chunk_delay``: streaming: wait this long before the first content chunk (the role
      chunk and the Responses ``response.created`` events go out at once); not streaming: delay
      the whole response.
    - ``chunk_delay``: streaming: wait this long before each later content chunk.
    - ``drop_after_chunks``: streaming: send this many content chunks, then close the connection
      in the middle of the body (no finish chunk, no usage, no ``[DONE]``).
    - ``content``: the reply text, streamed word by word; default ``"Echo: <last user text>"``,
      or no text at all when ``tool_calls`` are given.
    - ``tool_calls``: ``[{"name": ..., "arguments": ...}]`` (arguments a JSON string, or a value
      that is serialised); answered as tool calls (finish reason ``tool_calls``).
    - ``cached_tokens`` / ``reasoning_tokens``: reported in the usage details.
    - ``prompt_tokens`` / ``completion_tokens``: replace the computed counts.
    - ``finish_reason``: replaces ``stop`` / ``tool_calls``; in the Responses API ``length`` and
      ``content_filter`` make an ``incomplete`` response, and ``error`` a ``failed`` one (HTTP 200,
      ``error.code`` ``server_error``; streams end with ``response.failed``).
    """

    status: int = 200
    retry_after_ms: float | None = None
    error_message: str | None = None
    hang: float = 0.0
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    drop_after_chunks: int | None = None
    content: str | None = None
    tool_calls: Sequence[Mapping[str, Any]] = ()
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if not (self.status == 200 or 400 <= self.status <= 599):
            raise ValueError(f"Behavior.status must be 200 or an error status 400-599, not {self.status!r}")
        for name in ("hang", "first_chunk_delay", "chunk_delay", "cached_tokens", "reasoning_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"Behavior.{name} must be >= 0, not {getattr(self, name)!r}")
        for name in ("retry_after_ms", "drop_after_chunks", "prompt_tokens", "completion_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Behavior.{name} must be >= 0 or None, not {value!r}")
        object.__setattr__(self, "tool_calls", tuple(_tool_call(call) for call in self.tool_calls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behavior:
        """Read the JSON form (the field names as keys); unknown keys are an error."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Behavior field(s) {unknown}; the fields are {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field, tool calls as a list."""
        data = dataclasses.asdict(self)
        data["tool_calls"] = [dict(call) for call in self.tool_calls]
        return data


def _tool_call(call: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
        raise ValueError(f'each tool call must be a mapping {{"name": str, "arguments": ...}}, not {call!r}')
    arguments = call.get("arguments", "{}")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {"name": call["name"], "arguments": arguments}


class Playbook:
    """Thread-safe store of scripted (one-shot, FIFO) and default behaviours, keyed by model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str | None, deque[Behavior]] = {}
        self._defaults: dict[str | None, Behavior] = {}

    def script(self, behaviors: Iterable[Behavior], model: str | None = None) -> None:
        """Queue one-shot behaviours for requests for ``model`` (``None``: any model)."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(behaviors)

    def set_default(self, behavior: Behavior, model: str | None = None) -> None:
        """Answer requests for ``model`` (``None``: any model) this way when nothing is scripted."""
        with self._lock:
            self._defaults[model] = behavior

    def next_for(self, model: str) -> Behavior:
        """The behaviour of the next request for ``model``; consumes a scripted one."""
        with self._lock:
            for key in (model, None):
                queue = self._scripts.get(key)
                if queue:
                    return queue.popleft()
            for key in (model, None):
                if key in self._defaults:
                    return self._defaults[key]
        return Behavior()

    def reset(self) -> None:
        """Forget every script and default."""
        with self._lock:
            self._scripts.clear()
            self._defaults.clear()
