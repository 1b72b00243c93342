"""One logical LLM call: its span, its scheduler permit, and the moments in between.

A call starts ``queued`` (span start), is ``dispatched`` when the scheduler grants a permit, may
retry, may see a first token, and ends ``succeeded``, ``failed`` or ``cancelled``. Each moment is
a span event and a live notice (``llm_otel.lifecycle``). The permit is released when the span
ends, so a streaming call holds it until its stream ends.

Nothing here may break the app: every method that runs on the app's path catches and logs its own
errors, and ``end()`` runs at most once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from random import getrandbits
from time import perf_counter, time_ns
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from llm_otel import attributes as attr
from llm_otel import lifecycle
from llm_otel.context import current_scope
from llm_otel.instrumentation.api import (
    API,
    FIRST_OUTPUT,
    USAGE_ONLY,
    StreamAccumulator,
    given,
    request_params,
)
from llm_otel.instrumentation.messages import Redact, apply_redaction, to_json
from llm_otel.scheduler import Permit, Scheduler

logger = logging.getLogger(__name__)

_HOSTNAME = socket.gethostname()
_process = ("", 0)  # (host:pid, pid): recomputed in a forked child
_ERROR_MESSAGE_LIMIT = 4000

current_call: ContextVar[LLMCall | None] = ContextVar("llm_otel_current_call", default=None)
"""The call whose SDK request is running in this context; the retry hook finds it here."""


@dataclass
class InstrumentationConfig:
    """What the wrappers receive through their closure (they read no globals)."""

    tracer: Tracer
    scheduler: Scheduler
    capture_content: bool
    redact: Redact | None
    stream_usage: bool  # ask for usage in streams whose caller did not, and hide that chunk
    active: bool = True
    """False once uninstrumented: a wrapper the SDK still holds (it caches the bound ``create`` of
    ``with_raw_response`` and ``with_streaming_response``) then only calls through."""


def new_call_id() -> str:
    """A call's id: 32 hex characters, the first 12 its creation time in milliseconds (as a UUIDv7
    leads with it), then 80 random bits. Ids made later sort after: the store's b-trees keyed by
    the id (its calls, bodies and events) take each new call at their end instead of at random,
    which leaves a batch's writes on a few pages instead of one each (``docs/performance.md``)."""
    return f"{time_ns() // 1_000_000:012x}{getrandbits(80):020x}"


def _process_name() -> str:
    global _process
    pid = os.getpid()
    if _process[1] != pid:
        _process = (f"{_HOSTNAME}:{pid}", pid)
    return _process[0]


_server_cache: dict[int, tuple[Any, dict[str, Any]]] = {}
"""id(client) → (its base URL object, the server attributes parsed from it)."""


def _server_attributes(instance: Any) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the resource's client, parsed once per base URL."""
    client = getattr(instance, "_client", None)
    base_url = getattr(client, "base_url", None)
    cached = _server_cache.get(id(client))
    if cached is not None and cached[0] is base_url:
        return cached[1]
    host = getattr(base_url, "host", None)
    attributes: dict[str, Any] = {}
    if host:
        port = getattr(base_url, "port", None) or (443 if getattr(base_url, "scheme", "") == "https" else 80)
        attributes = {attr.SERVER_ADDRESS: host, attr.SERVER_PORT: port}
    if len(_server_cache) > 1000:  # clients come and go in some apps: keep the cache small
        _server_cache.clear()
    _server_cache[id(client)] = (base_url, attributes)
    return attributes


def _is_cancellation(exc: BaseException) -> bool:
    """The caller gave up (cancelled, interrupted, its own wait timed out): not a failed call."""
    return isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit, TimeoutError))


def _status_of(response_attributes: dict[str, Any]) -> str:
    """A complete response is a success unless it reports an error itself (Responses ``failed``)."""
    return attr.FAILED if attr.ERROR_TYPE in response_attributes else attr.SUCCEEDED


def _no_flags(chunk: Any) -> int:
    return 0


class LLMCall:
    """A call in flight. Created by ``LLMCall.start``; ended exactly once."""

    __slots__ = (
        "_accumulator",
        "_dispatched_at",
        "_time_to_first_chunk",
        "api",
        "call_id",
        "config",
        "ended",
        "hide_usage_chunk",
        "permit",
        "retries",
        "source",
        "span",
        "stream",
    )

    def __init__(self, config: InstrumentationConfig, api: API, kwargs: Mapping[str, Any], instance: Any):
        self.config = config
        self.api = api
        self.call_id = call_id = new_call_id()
        params = request_params(kwargs)
        self.stream = stream = bool(params.get("stream"))
        self.hide_usage_chunk = False
        self.ended = False
        self.retries = 0
        self.permit: Permit | None = None
        self._dispatched_at: float | None = None  # perf_counter
        self._time_to_first_chunk: float | None = None
        self._accumulator: StreamAccumulator | None = None

        labels, task = current_scope()
        self.source = labels.source
        model = params.get("model") or "unknown"
        attributes: dict[str, Any] = {
            attr.OPERATION_NAME: api.operation,
            attr.PROVIDER_NAME: "openai",
            attr.REQUEST_MODEL: model,
            attr.REQUEST_STREAM: stream,
            attr.CALL_ID: call_id,
            attr.PROCESS: _process_name(),
        }
        if api.api_type:
            attributes[attr.OPENAI_API_TYPE] = api.api_type
        if labels.source is not None:
            attributes[attr.SOURCE] = labels.source
        if labels.requested_by is not None:
            attributes[attr.REQUESTED_BY] = labels.requested_by
        if task is not None:
            attributes[attr.TASK_ID] = task.task_id
            attributes[attr.TASK_NAME] = task.name
        attributes.update(_server_attributes(instance))
        attributes.update(api.request_attributes(params))
        attributes[attr.REQUEST_PARAMS] = to_json(params)
        if config.capture_content:
            system, messages = api.input_content(kwargs)
            redact = config.redact
            if system:
                redacted = apply_redaction([{"role": "system", "parts": system}], redact)
                attributes[attr.SYSTEM_INSTRUCTIONS] = to_json(redacted[0].get("parts", []))
            if redact is not None:
                messages = apply_redaction(messages, redact)
            attributes[attr.INPUT_MESSAGES] = to_json(messages)

        now = time_ns()
        self.span = span = config.tracer.start_span(
            f"{api.operation} {model}", kind=SpanKind.CLIENT, attributes=attributes, start_time=now
        )
        lifecycle.emit(lifecycle.QUEUED, span, now, attributes)

    @classmethod
    def start(
        cls, config: InstrumentationConfig, api: API, kwargs: Mapping[str, Any], instance: Any
    ) -> LLMCall | None:
        """A new call, or None (logged) if the instrumentation itself failed: the SDK call goes on."""
        try:
            return cls(config, api, kwargs, instance)
        except Exception:
            logger.exception("llm_otel could not start a span for an OpenAI call; the call goes on")
            return None

    def request_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The kwargs to send: a stream that did not ask for usage asks for it (then hides it)."""
        if not (self.stream and self.config.stream_usage and self.api.supports_stream_usage):
            return kwargs
        options = given(kwargs, "stream_options")
        if isinstance(options, Mapping) and options.get("include_usage"):
            return kwargs
        self.hide_usage_chunk = True
        return {**kwargs, "stream_options": {**(options or {}), "include_usage": True}}

    # -- scheduling -------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Wait for a permit on this thread; a refusal ends the call and is raised to the caller."""
        try:
            permit = self.config.scheduler.acquire(self.call_id, self.source)
        except BaseException as exc:
            self.fail(exc)
            raise
        self._dispatched(permit)

    async def acquire_async(self) -> None:
        try:
            permit = await self.config.scheduler.acquire_async(self.call_id, self.source)
        except BaseException as exc:
            self.fail(exc)
            raise
        self._dispatched(permit)

    def _dispatched(self, permit: Permit) -> None:
        self.permit = permit
        self._dispatched_at = perf_counter()
        try:
            now = time_ns()
            event = {attr.QUEUE_WAIT: permit.wait}
            self.span.add_event(attr.EVENT_DISPATCHED, event, timestamp=now)
            lifecycle.emit(lifecycle.DISPATCHED, self.span, now, event)
        except Exception:
            logger.exception("llm_otel failed to record a dispatch")

    # -- progress ---------------------------------------------------------------------------------

    def record_retry(self, cause: BaseException | None, backoff: float) -> None:
        """The SDK decided to retry: ``cause`` is the error it is handling (a status error or not)."""
        try:
            self.retries += 1
            event: dict[str, Any] = {attr.RETRY_ATTEMPT: self.retries, attr.RETRY_BACKOFF: float(backoff)}
            status_code = getattr(getattr(cause, "response", None), "status_code", None)
            if isinstance(status_code, int):
                event[attr.RETRY_STATUS_CODE] = status_code
            elif cause is not None:
                event[attr.RETRY_ERROR] = type(cause).__qualname__
            now = time_ns()
            self.span.add_event(attr.EVENT_RETRY, event, timestamp=now)
            lifecycle.emit(lifecycle.RETRY, self.span, now, event)
        except Exception:
            logger.exception("llm_otel failed to record a retry")

    def chunk_reader(self) -> Callable[[Any], int]:
        """What the stream proxy hands every chunk to, asked for at the first one (a stream never
        read records no output): the accumulator's ``add``, which returns ``FIRST_OUTPUT`` /
        ``USAGE_ONLY`` flags (then the proxy calls :meth:`on_flagged_chunk`)."""
        try:
            if self._accumulator is None:
                self._accumulator = self.api.new_accumulator()
            return self._accumulator.add
        except Exception:
            logger.exception("llm_otel cannot read this stream's chunks")
            return _no_flags

    def on_flagged_chunk(self, flags: int) -> bool:
        """A chunk the accumulator flagged; True when it is the usage chunk we asked for and hide."""
        try:
            if flags & FIRST_OUTPUT:
                self._first_token()
            return bool(flags & USAGE_ONLY) and self.hide_usage_chunk
        except Exception:
            logger.exception("llm_otel failed to read a stream chunk")
            return False

    def _first_token(self) -> None:
        started = self._dispatched_at if self._dispatched_at is not None else perf_counter()
        self._time_to_first_chunk = ttft = perf_counter() - started  # a span attribute at the end
        now = time_ns()
        event = {attr.RESPONSE_TIME_TO_FIRST_CHUNK: ttft}
        self.span.add_event(attr.EVENT_FIRST_TOKEN, event, timestamp=now)
        lifecycle.emit(lifecycle.FIRST_TOKEN, self.span, now, event)

    # -- ending -----------------------------------------------------------------------------------

    def succeed(self, result: Any) -> None:
        """A complete (non-streaming) response; None when the response is not ours to read."""
        if self.ended:
            return
        if result is None:
            self._end(attr.SUCCEEDED, {}, None)
            return
        try:
            attributes = self.api.response_attributes(result)
            outputs = self.api.output_messages(result) if self.config.capture_content else None
        except Exception:
            logger.exception("llm_otel failed to read an OpenAI response")
            attributes, outputs = {}, None
        self._end(_status_of(attributes), attributes, outputs)

    def stream_exhausted(self) -> None:
        self._end_stream(attr.SUCCEEDED)  # unless the stream's last event reports a failure

    def stream_closed(self) -> None:
        """Closed (or left by ``with``) before the end: cancelled, partial output kept."""
        self._end_stream(attr.CANCELLED)

    def stream_failed(self, exc: BaseException) -> None:
        if _is_cancellation(exc):
            self._end_stream(attr.CANCELLED)
        else:
            self._end_stream(attr.FAILED, exc)

    def _end_stream(self, status: str, error: BaseException | None = None) -> None:
        if self.ended:
            return
        attributes: dict[str, Any] = {}
        if self._time_to_first_chunk is not None:
            attributes[attr.RESPONSE_TIME_TO_FIRST_CHUNK] = self._time_to_first_chunk
        outputs = None
        if self._accumulator is not None:
            try:
                attributes.update(self._accumulator.attributes())
                if self.config.capture_content:
                    outputs = self._accumulator.output_messages()
            except Exception:
                logger.exception("llm_otel failed to summarise a stream")
        if status == attr.SUCCEEDED:
            status = _status_of(attributes)
        self._end(status, attributes, outputs, error)

    def fail(self, exc: BaseException) -> None:
        """The call raised before any result: failed, or cancelled if it was cancelled."""
        self._end(attr.CANCELLED if _is_cancellation(exc) else attr.FAILED, {}, None, exc)

    def _end(
        self,
        status: str,
        attributes: dict[str, Any],
        outputs: list[dict] | None,
        error: BaseException | None = None,
    ) -> None:
        """End once: record the outcome, end the span (even if recording failed), free the permit."""
        if self.ended:
            return
        self.ended = True
        span = self.span
        try:
            if outputs is not None:
                attributes[attr.OUTPUT_MESSAGES] = to_json(apply_redaction(outputs, self.config.redact))
            attributes[attr.STATUS] = status
            attributes[attr.HTTP_RESEND_COUNT] = self.retries
            if self.permit is not None:
                attributes[attr.QUEUE_WAIT] = self.permit.wait
            if error is not None:
                attributes[attr.ERROR_TYPE] = type(error).__qualname__
                attributes[attr.ERROR_MESSAGE] = str(error)[:_ERROR_MESSAGE_LIMIT]
                status_code = getattr(error, "status_code", None)
                if isinstance(status_code, int):
                    attributes["http.response.status_code"] = status_code
                span.record_exception(error)
            span.set_attributes(attributes)
            if status == attr.FAILED:
                span.set_status(Status(StatusCode.ERROR, str(attributes.get(attr.ERROR_TYPE, ""))))
        except Exception:
            logger.exception("llm_otel failed to record the end of a call")
        try:
            span.end()
        except Exception:
            logger.exception("llm_otel failed to end a span")
        finally:
            if self.permit is not None:
                self.permit.release()
