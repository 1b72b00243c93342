"""What the instrumentation needs to know about one OpenAI endpoint, and helpers they share.

Each endpoint (``chat.py``, ``responses.py``, ``embeddings.py``) supplies an :class:`API`: the
operation name, the request → attributes mapping, the content it sends and receives, and a stream
accumulator. ``patch.py`` drives all of them the same way. Pure functions: no OTel, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from llm_otel import attributes as attr
from llm_otel.instrumentation.messages import Message

try:
    from openai import NotGiven, Omit

    _OMITTED: tuple[type, ...] = (NotGiven, Omit)
except ImportError:  # no SDK, nothing to instrument: llm_otel stays importable without it
    _OMITTED = ()

# Request keywords that are never recorded as parameters: content is recorded apart (when
# capture is on; a predicted output is content too) and transport settings may carry secrets
# (extra_headers) or are not request data.
_NOT_PARAMS = frozenset(
    {
        "messages",
        "input",
        "instructions",
        "prediction",
        "extra_headers",
        "extra_query",
        "extra_body",
        "timeout",
    }
)


def is_given(value: Any) -> bool:
    """The SDK marks omitted keywords with ``NOT_GIVEN`` / ``omit`` sentinels."""
    return value is not None and not isinstance(value, _OMITTED)


def given(kwargs: Mapping[str, Any], name: str) -> Any:
    value = kwargs.get(name)
    return value if is_given(value) else None


def request_params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The request's non-content parameters, as sent (model, temperature, tools, …)."""
    params = {
        key: value
        for key, value in kwargs.items()
        if value is not None and key not in _NOT_PARAMS and not isinstance(value, _OMITTED)
    }
    prompt = params.get("prompt")
    if isinstance(prompt, Mapping) and "variables" in prompt:  # a Responses prompt template's inputs
        params["prompt"] = {key: value for key, value in prompt.items() if key != "variables"}
    return params


def set_if_given(attributes: dict[str, Any], key: str, value: Any) -> None:
    if is_given(value):
        attributes[key] = value


def usage_attributes(
    input_tokens: Any, output_tokens: Any, cached_tokens: Any = None, reasoning_tokens: Any = None
) -> dict[str, int]:
    attributes: dict[str, int] = {}
    if isinstance(input_tokens, int):
        attributes[attr.USAGE_INPUT_TOKENS] = input_tokens
    if isinstance(output_tokens, int):
        attributes[attr.USAGE_OUTPUT_TOKENS] = output_tokens
    if isinstance(cached_tokens, int):
        attributes[attr.USAGE_CACHE_READ_INPUT_TOKENS] = cached_tokens
    if isinstance(reasoning_tokens, int):
        attributes[attr.USAGE_REASONING_OUTPUT_TOKENS] = reasoning_tokens
    return attributes


FIRST_OUTPUT = 1
"""``StreamAccumulator.add`` flag: the stream's first chunk with output (content, a refusal or a
tool call): its first token."""
USAGE_ONLY = 2
"""``StreamAccumulator.add`` flag: a chunk that carries only the usage (the instrumentation may
have asked for it, and then hides it)."""


class StreamAccumulator(Protocol):
    """Collects a stream's chunks into what a finished response would have said."""

    def add(self, chunk: Any) -> int:
        """Take one chunk; ``FIRST_OUTPUT`` / ``USAGE_ONLY`` flags, 0 for most chunks. Called on
        every chunk, so the stream proxy calls nothing else when it returns 0."""

    def attributes(self) -> dict[str, Any]:
        """Response attributes so far (id, model, finish reasons, usage)."""

    def output_messages(self) -> list[Message]:
        """Output so far, partial when the stream ended early."""


class API(Protocol):
    operation: str
    api_type: str | None
    supports_stream_usage: bool

    def request_attributes(self, kwargs: Mapping[str, Any]) -> dict[str, Any]: ...

    def input_content(self, kwargs: Mapping[str, Any]) -> tuple[list[dict] | None, list[Message]]:
        """(system instructions parts or None, input messages)."""

    def response_attributes(self, result: Any) -> dict[str, Any]: ...

    def output_messages(self, result: Any) -> list[Message] | None:
        """The output as messages; None when the endpoint's output is not content."""

    def new_accumulator(self) -> StreamAccumulator: ...
