"""The Chat Completions endpoint (``client.chat.completions.create``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_otel import attributes as attr
from llm_otel.instrumentation.api import FIRST_OUTPUT, USAGE_ONLY, given, usage_attributes
from llm_otel.instrumentation.messages import (
    Message,
    chat_input_messages,
    chat_output_message,
    text_part,
    tool_call_part,
)


def _usage(usage: Any) -> dict[str, int]:
    """The token counts of a completion's (or a stream's last chunk's) ``usage``."""
    if usage is None:
        return {}
    return usage_attributes(
        usage.prompt_tokens,
        usage.completion_tokens,
        getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None),
        getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None),
    )


def _response_header_attributes(response: Any) -> dict[str, Any]:
    """Id, model and service tier of a completion or of a stream's first chunk (SDK objects)."""
    attributes: dict[str, Any] = {}
    value = getattr(response, "id", None)
    if value is not None:
        attributes[attr.RESPONSE_ID] = value
    value = getattr(response, "model", None)
    if value is not None:
        attributes[attr.RESPONSE_MODEL] = value
    value = getattr(response, "service_tier", None)
    if value is not None:
        attributes[attr.OPENAI_SERVICE_TIER] = value
    return attributes


_REQUEST_NUMBERS = {
    "temperature": attr.REQUEST_TEMPERATURE,
    "top_p": attr.REQUEST_TOP_P,
    "seed": attr.REQUEST_SEED,
    "frequency_penalty": attr.REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": attr.REQUEST_PRESENCE_PENALTY,
}
"""Request keywords recorded as they are, by the attribute they go to."""
_REQUEST_OTHERS = frozenset({"max_completion_tokens", "stop", "n", "response_format"})
"""Request keywords that ``_other_request_attributes`` maps (with ``max_tokens``)."""


def _other_request_attributes(params: Mapping[str, Any], attributes: dict[str, Any]) -> None:
    get = params.get
    max_tokens = get("max_completion_tokens") or get("max_tokens")
    if max_tokens is not None:
        attributes[attr.REQUEST_MAX_TOKENS] = max_tokens
    else:
        attributes.pop(attr.REQUEST_MAX_TOKENS, None)
    stop = get("stop")
    if stop:
        attributes[attr.REQUEST_STOP_SEQUENCES] = [stop] if isinstance(stop, str) else list(stop)
    choices = get("n")
    if choices and choices != 1:
        attributes[attr.REQUEST_CHOICE_COUNT] = choices
    response_format = get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type"):
        attributes[attr.OUTPUT_TYPE] = "json" if "json" in response_format["type"] else "text"


class ChatCompletionsAPI:
    operation = "chat"
    api_type = "chat_completions"
    supports_stream_usage = True

    def request_attributes(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # One pass over the few keywords given, not one lookup per keyword that could be.
        attributes: dict[str, Any] = {}
        others = False
        for name, value in params.items():
            key = _REQUEST_NUMBERS.get(name)
            if key is not None:
                attributes[key] = value
            elif name == "max_tokens":
                attributes[attr.REQUEST_MAX_TOKENS] = value  # unless max_completion_tokens, below
            elif name in _REQUEST_OTHERS:
                others = True
        if others:
            _other_request_attributes(params, attributes)
        return attributes

    def input_content(self, kwargs: Mapping[str, Any]) -> tuple[list[dict] | None, list[Message]]:
        return None, chat_input_messages(given(kwargs, "messages") or ())

    def response_attributes(self, result: Any) -> dict[str, Any]:
        attributes = _response_header_attributes(result)
        attributes[attr.RESPONSE_FINISH_REASONS] = [
            choice.finish_reason or "unknown" for choice in result.choices or ()
        ]
        attributes.update(_usage(getattr(result, "usage", None)))
        return attributes

    def output_messages(self, result: Any) -> list[Message]:
        return [chat_output_message(choice.message, choice.finish_reason) for choice in result.choices or ()]

    def new_accumulator(self) -> ChatStreamAccumulator:
        return ChatStreamAccumulator()


class _ChoiceBuffer:
    __slots__ = ("finish_reason", "role", "text", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: list[str] = []
        self.tool_calls: dict[int, list[Any]] = {}  # index → [id, name, argument pieces]
        self.finish_reason: str | None = None


class ChatStreamAccumulator:
    """Rebuilds the completion from ``chat.completion.chunk`` objects."""

    def __init__(self) -> None:
        self._header: Any = None
        self._usage: Any = None
        self._choices: dict[int, _ChoiceBuffer] = {}
        self._output_seen = False

    def add(self, chunk: Any) -> int:
        # Every chunk comes here: plain attribute reads (openai >= 1.60 chunks have every field,
        # None when absent), and one branch per field for a chunk that carries only text.
        if self._header is None:
            self._header = chunk
        usage = chunk.usage
        if usage is not None:
            self._usage = usage
        choices = chunk.choices
        if not choices:
            return USAGE_ONLY if usage is not None else 0
        has_output = False
        for choice in choices:
            buffer = self._choices.get(choice.index)
            if buffer is None:  # not setdefault: it would build a buffer for every chunk
                buffer = self._choices[choice.index] = _ChoiceBuffer()
            delta = choice.delta
            if delta is not None:
                if delta.role:
                    buffer.role = delta.role
                if delta.content:
                    buffer.text.append(delta.content)
                    has_output = True
                if delta.refusal:
                    buffer.text.append(delta.refusal)
                    has_output = True
                if delta.tool_calls:
                    has_output = True
                    self._add_tool_calls(buffer, delta.tool_calls)
            if choice.finish_reason:
                buffer.finish_reason = choice.finish_reason
        if has_output and not self._output_seen:
            self._output_seen = True
            return FIRST_OUTPUT
        return 0

    @staticmethod
    def _add_tool_calls(buffer: _ChoiceBuffer, tool_calls: Any) -> None:
        for tool_call in tool_calls:
            entry = buffer.tool_calls.setdefault(tool_call.index, [None, None, []])
            if tool_call.id:
                entry[0] = tool_call.id
            function = tool_call.function
            if function is not None:
                if function.name:
                    entry[1] = function.name
                if function.arguments:
                    entry[2].append(function.arguments)

    def attributes(self) -> dict[str, Any]:
        attributes = _response_header_attributes(self._header) if self._header is not None else {}
        finish_reasons = [self._choices[i].finish_reason for i in sorted(self._choices)]
        if any(finish_reasons):
            attributes[attr.RESPONSE_FINISH_REASONS] = [reason or "unknown" for reason in finish_reasons]
        attributes.update(_usage(self._usage))
        return attributes

    def output_messages(self) -> list[Message]:
        messages = []
        for index in sorted(self._choices):
            buffer = self._choices[index]
            parts = [text_part("".join(buffer.text))] if buffer.text else []
            for call_index in sorted(buffer.tool_calls):
                call_id, name, pieces = buffer.tool_calls[call_index]
                parts.append(tool_call_part(call_id, name, "".join(pieces)))
            messages.append({"role": buffer.role, "parts": parts, "finish_reason": buffer.finish_reason})
        return messages
