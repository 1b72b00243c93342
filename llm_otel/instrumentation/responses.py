"""The Responses API (``client.responses.create``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_otel import attributes as attr
from llm_otel.instrumentation.api import FIRST_OUTPUT, given, set_if_given, usage_attributes
from llm_otel.instrumentation.messages import (
    Message,
    as_dict,
    responses_input_messages,
    responses_output_messages,
    text_part,
    tool_call_part,
)

# Stream events whose arrival means the model has started to answer.
_OUTPUT_DELTAS = frozenset(
    {"response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta"}
)
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def finish_reason(response: Any) -> str:
    """The Responses API has no finish reason; derive the Chat Completions one from the status."""
    status = getattr(response, "status", None)
    if status == "incomplete":
        reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
        return "length" if reason == "max_output_tokens" else (reason or "incomplete")
    if status == "failed":
        return "error"
    if any(
        getattr(item, "type", None) == "function_call" for item in getattr(response, "output", None) or ()
    ):
        return "tool_calls"
    return "stop"


def _response_attributes(response: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    set_if_given(attributes, attr.RESPONSE_ID, getattr(response, "id", None))
    set_if_given(attributes, attr.RESPONSE_MODEL, getattr(response, "model", None))
    set_if_given(attributes, attr.OPENAI_SERVICE_TIER, getattr(response, "service_tier", None))
    attributes[attr.RESPONSE_FINISH_REASONS] = [finish_reason(response)]
    if getattr(response, "status", None) == "failed":
        # The model run failed although the HTTP request succeeded: a failed call.
        error = getattr(response, "error", None)
        attributes[attr.ERROR_TYPE] = str(getattr(error, "code", None) or "response_failed")
        attributes[attr.ERROR_MESSAGE] = str(getattr(error, "message", None) or "the response failed")
    usage = getattr(response, "usage", None)
    if usage is not None:
        attributes.update(
            usage_attributes(
                usage.input_tokens,
                usage.output_tokens,
                getattr(getattr(usage, "input_tokens_details", None), "cached_tokens", None),
                getattr(getattr(usage, "output_tokens_details", None), "reasoning_tokens", None),
            )
        )
    return attributes


class ResponsesAPI:
    operation = "chat"
    api_type = "responses"
    supports_stream_usage = False  # usage always arrives with response.completed

    def request_attributes(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        set_if_given(attributes, attr.REQUEST_TEMPERATURE, given(kwargs, "temperature"))
        set_if_given(attributes, attr.REQUEST_TOP_P, given(kwargs, "top_p"))
        set_if_given(attributes, attr.REQUEST_MAX_TOKENS, given(kwargs, "max_output_tokens"))
        text = given(kwargs, "text")
        text_format = text.get("format") if isinstance(text, Mapping) else None
        if isinstance(text_format, Mapping) and text_format.get("type"):
            attributes[attr.OUTPUT_TYPE] = "json" if "json" in text_format["type"] else "text"
        return attributes

    def input_content(self, kwargs: Mapping[str, Any]) -> tuple[list[dict] | None, list[Message]]:
        instructions = given(kwargs, "instructions")
        system = [text_part(instructions)] if isinstance(instructions, str) and instructions else None
        return system, responses_input_messages(given(kwargs, "input"))

    def response_attributes(self, result: Any) -> dict[str, Any]:
        return _response_attributes(result)

    def output_messages(self, result: Any) -> list[Message]:
        return responses_output_messages(getattr(result, "output", None), finish_reason(result))

    def new_accumulator(self) -> ResponsesStreamAccumulator:
        return ResponsesStreamAccumulator()


class ResponsesStreamAccumulator:
    """Follows Responses streaming events; the final event carries the whole response."""

    def __init__(self) -> None:
        self._response: Any = None  # from response.created, replaced by the final event
        self._final = False
        self._text: dict[int, list[str]] = {}
        self._calls: dict[int, dict[str, Any]] = {}
        self._output_seen = False

    def add(self, event: Any) -> int:
        kind = getattr(event, "type", None)
        if kind in _FINAL_EVENTS or kind == "response.created":
            self._response = event.response
            self._final = kind in _FINAL_EVENTS
            return 0
        has_output = kind in _OUTPUT_DELTAS
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            self._text.setdefault(event.output_index, []).append(event.delta)
        elif kind == "response.output_item.added" and getattr(event.item, "type", None) == "function_call":
            self._calls[event.output_index] = as_dict(event.item)
            has_output = True
        elif kind == "response.function_call_arguments.delta":
            call = self._calls.setdefault(event.output_index, {})
            call["arguments"] = call.get("arguments", "") + event.delta
        if has_output and not self._output_seen:
            self._output_seen = True
            return FIRST_OUTPUT
        return 0

    def attributes(self) -> dict[str, Any]:
        if self._response is None:
            return {}
        attributes = _response_attributes(self._response)
        if not self._final:
            attributes.pop(attr.RESPONSE_FINISH_REASONS, None)
        return attributes

    def output_messages(self) -> list[Message]:
        if self._final:
            return responses_output_messages(self._response.output, finish_reason(self._response))
        parts = []
        for index in sorted({*self._text, *self._calls}):
            if index in self._text:
                parts.append(text_part("".join(self._text[index])))
            if index in self._calls:
                call = self._calls[index]
                parts.append(tool_call_part(call.get("call_id"), call.get("name"), call.get("arguments", "")))
        return [{"role": "assistant", "parts": parts, "finish_reason": None}] if parts else []
