"""Wrapper factories for the OpenAI SDK methods (applied with ``wrapt`` by the instrumentor).

Each factory receives everything through its arguments and reads no globals. ``create`` and
``async_create`` drive any endpoint described by an :class:`~llm_otel.instrumentation.api.API`;
``retry_timeout`` sees every retry the SDK decides on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from opentelemetry.context import attach, detach
from opentelemetry.trace import set_span_in_context

from llm_otel.instrumentation.api import API
from llm_otel.instrumentation.call import InstrumentationConfig, LLMCall, current_call
from llm_otel.instrumentation.streams import AsyncStreamProxy, StreamProxy

logger = logging.getLogger(__name__)

Wrapper = Callable[[Callable[..., Any], Any, tuple, dict], Any]


_UNREAD_RESPONSES = frozenset({"APIResponse", "AsyncAPIResponse"})
"""What ``with_streaming_response`` returns: the HTTP response with its body still to be read."""
_RAW_RESPONSE = "LegacyAPIResponse"
"""What ``with_raw_response`` returns: its ``parse()`` gives the real result."""


def _deliver(call: LLMCall, result: Any, stream_proxy: type) -> Any:
    """Hand the SDK's result back to the caller, ending the call or wrapping its stream."""
    try:
        kind = type(result).__name__
        if kind in _UNREAD_RESPONSES:
            call.succeed(None)  # the body is the caller's to read: the call ends at its headers
        elif kind == _RAW_RESPONSE:
            parsed = result.parse()  # parsed once and cached by the SDK
            if call.stream:
                # The caller's parse() returns the cached object: cache our proxy in its place.
                result._parsed_by_type[result._cast_to] = stream_proxy(parsed, call)
            else:
                call.succeed(parsed)
        elif call.stream:
            return stream_proxy(result, call)
        else:
            call.succeed(result)
    except Exception:
        logger.exception("llm_otel failed to read an OpenAI result")
        call.succeed(None)
    return result


def create(config: InstrumentationConfig, api: API) -> Wrapper:
    """Wrap a synchronous ``create`` of the endpoint ``api``."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        call = LLMCall.start(config, api, kwargs, instance) if config.active else None
        if call is None:
            return wrapped(*args, **kwargs)
        kwargs = call.request_kwargs(kwargs)
        call.acquire()
        token = current_call.set(call)
        try:
            span_token = attach(set_span_in_context(call.span))  # current while the SDK sends
            try:
                result = wrapped(*args, **kwargs)
            finally:
                detach(span_token)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            current_call.reset(token)
        return _deliver(call, result, StreamProxy)

    return wrapper


def async_create(config: InstrumentationConfig, api: API) -> Wrapper:
    """Wrap an asynchronous ``create`` of the endpoint ``api``."""

    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        call = LLMCall.start(config, api, kwargs, instance) if config.active else None
        if call is None:
            return await wrapped(*args, **kwargs)
        kwargs = call.request_kwargs(kwargs)
        await call.acquire_async()
        token = current_call.set(call)
        try:
            span_token = attach(set_span_in_context(call.span))  # current while the SDK sends
            try:
                result = await wrapped(*args, **kwargs)
            finally:
                detach(span_token)
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            current_call.reset(token)
        return _deliver(call, result, AsyncStreamProxy)

    return wrapper


def retry_timeout(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    """Wrap ``BaseClient._calculate_retry_timeout``: the SDK calls it once per retry, from inside
    the ``except`` block that handles the failed attempt, so ``sys.exc_info()`` names the cause.
    """
    backoff = wrapped(*args, **kwargs)
    call = current_call.get()
    if call is not None:
        call.record_retry(sys.exc_info()[1], backoff)
    return backoff
