"""Call and task spans made by hand with the span contract's attributes, events and fixed times.

They are real SDK spans (``TracerProvider().get_tracer(...).start_span``), so the store sees what it
sees from the instrumentation. ``T0`` (a recent whole second) is the start of every call unless told
otherwise::

    span = start_call(tracer, "c1")                 # queued at T0
    dispatch(span, at_ms=250, wait=0.25)            # llm_otel.dispatched at T0 + 250 ms
    retry(span, at_ms=300, attempt=1, status_code=429, backoff=0.5)
    first_token(span, at_ms=600, ttft=0.35)
    finish(span, at_ms=1000)                        # succeeded, with output and usage
"""

from __future__ import annotations

import json
import time
from typing import Any

from opentelemetry.sdk.trace import Span, Tracer
from opentelemetry.trace import SpanKind, Status, StatusCode

T0 = time.time_ns() // 1_000_000_000 * 1_000_000_000
"""A whole second shortly before the tests run (recent, so that retention keeps these calls)."""
T0_MS = T0 // 1_000_000
SYSTEM = [{"type": "text", "content": "You are terse."}]
MESSAGES = [
    {"role": "user", "parts": [{"type": "text", "content": "What is the weather   in Paris?"}]},
    {"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}]},
    {"role": "user", "parts": [{"type": "text", "content": "And  tomorrow,\nin 北京?"}]},
]
OUTPUT = [
    {"role": "assistant", "parts": [{"type": "text", "content": "Rain   expected."}], "finish_reason": "stop"}
]


def ns(at_ms: float) -> int:
    """``at_ms`` milliseconds after ``T0``, in ns."""
    return T0 + round(at_ms * 1_000_000)


def call_attributes(call_id: str, **extra: Any) -> dict[str, Any]:
    """What the instrumentation sets when a call is queued (with content capture on)."""
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "openai.api.type": "chat_completions",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.stream": True,
        "gen_ai.request.temperature": 0.2,
        "llm_otel.call.id": call_id,
        "llm_otel.process": "host-a:100",
        "llm_otel.source": "billing",
        "llm_otel.requested_by": "alice",
        "llm_otel.task.id": "task-1",
        "llm_otel.task.name": "nightly-digest",
        "server.address": "api.openai.com",
        "server.port": 443,
        "llm_otel.request.params": json.dumps({"temperature": 0.2, "stream": True}),
        "gen_ai.system_instructions": json.dumps(SYSTEM),
        "gen_ai.input.messages": json.dumps(MESSAGES, ensure_ascii=False),
        **extra,
    }


def start_call(tracer: Tracer, call_id: str, *, at_ms: float = 0, **extra: Any) -> Span:
    span = tracer.start_span(
        "chat gpt-4o-mini",
        kind=SpanKind.CLIENT,
        attributes=call_attributes(call_id, **extra),
        start_time=ns(at_ms),
    )
    assert isinstance(span, Span)
    return span


def dispatch_attributes(wait: float) -> dict[str, Any]:
    return {"llm_otel.queue.wait": wait}


def first_token_attributes(ttft: float) -> dict[str, Any]:
    return {"gen_ai.response.time_to_first_chunk": ttft}


def retry_attributes(attempt: int, *, status_code: int | None = None, backoff: float = 0.5) -> dict[str, Any]:
    attributes: dict[str, Any] = {"llm_otel.retry.attempt": attempt, "llm_otel.retry.backoff": backoff}
    if status_code is not None:
        attributes["http.response.status_code"] = status_code
    else:
        attributes["error.type"] = "APIConnectionError"
    return attributes


def dispatch(span: Span, *, at_ms: float, wait: float) -> dict[str, Any]:
    span.set_attribute("llm_otel.queue.wait", wait)
    span.add_event("llm_otel.dispatched", dispatch_attributes(wait), timestamp=ns(at_ms))
    return dispatch_attributes(wait)


def retry(
    span: Span, *, at_ms: float, attempt: int, status_code: int | None = None, backoff: float = 0.5
) -> None:
    span.add_event(
        "llm_otel.retry",
        retry_attributes(attempt, status_code=status_code, backoff=backoff),
        timestamp=ns(at_ms),
    )


def first_token(span: Span, *, at_ms: float, ttft: float) -> None:
    span.set_attribute("gen_ai.response.time_to_first_chunk", ttft)
    span.add_event("llm_otel.first_token", first_token_attributes(ttft), timestamp=ns(at_ms))


def finish(
    span: Span, *, at_ms: float, status: str = "succeeded", retries: int | None = None, **extra: Any
) -> None:
    """End the call as the instrumentation does: response attributes, status, then ``end``."""
    attributes: dict[str, Any] = {"llm_otel.status": status}
    if retries is not None:
        attributes["http.request.resend_count"] = retries
    if status == "succeeded":
        attributes.update(
            {
                "gen_ai.response.id": "chatcmpl-1",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 40,
                "gen_ai.usage.cache_read.input_tokens": 64,
                "gen_ai.usage.reasoning.output_tokens": 16,
                "gen_ai.output.messages": json.dumps(OUTPUT),
                "openai.response.service_tier": "default",
            }
        )
    attributes.update(extra)
    span.set_attributes(attributes)
    if status == "failed":
        span.set_status(Status(StatusCode.ERROR, str(attributes.get("error.type", "Error"))))
    span.end(end_time=ns(at_ms))


def full_call(tracer: Tracer, call_id: str = "call-1") -> Span:
    """An ended streaming call with every timing, a retry, tokens and messages."""
    span = start_call(tracer, call_id)
    dispatch(span, at_ms=250, wait=0.25)
    retry(span, at_ms=300, attempt=1, status_code=429, backoff=0.5)
    first_token(span, at_ms=900, ttft=0.65)
    finish(span, at_ms=1500, retries=1)
    return span


def task_span(tracer: Tracer, task_id: str = "task-1", *, at_ms: float = 0, **attrs: Any) -> Span:
    attributes = {
        "llm_otel.span.kind": "task",
        "llm_otel.task.id": task_id,
        "llm_otel.task.name": "nightly-digest",
        **{f"llm_otel.task.attr.{key}": value for key, value in attrs.items()},
    }
    span = tracer.start_span("task nightly-digest", attributes=attributes, start_time=ns(at_ms))
    assert isinstance(span, Span)
    return span
