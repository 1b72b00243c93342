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

from opentelemetry import trace

from llm_otel.instrumentation.api import API
from llm_otel.instrumentation.call import InstrumentationConfig, LLMCall, current_call
from llm_otel.instrumentation.streams import AsyncStreamProxy, StreamProxy

logger = logging.getLogger(__name__)

Wrapper = Callable[[Callable[..., Any], Any, tuple, dict], Any]


def _is_raw_response(result: Any) -> bool:
    """``with_raw_response`` returns a LegacyAPIResponse whose ``parse()`` gives the real result."""
    return type(result).__name__ == "LegacyAPIResponse"


def _is_unread_response(result: Any) -> bool:
    """``with_streaming_response`` returns the HTTP response with its body still to be read."""
    return type(result).__name__ in ("APIResponse", "AsyncAPIResponse")


def _deliver(call: LLMCall, result: Any, stream_proxy: type) -> Any:
    """Hand the SDK's result back to the caller, ending the call or wrapping its stream."""
    try:
        if _is_unread_response(result):
            call.succeed(None)  # the body is the caller's to read: the call ends at its headers
        elif _is_raw_response(result):
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
            with trace.use_span(call.span, record_exception=False, set_status_on_exception=False):
                result = wrapped(*args, **kwargs)
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
            with trace.use_span(call.span, record_exception=False, set_status_on_exception=False):
                result = await wrapped(*args, **kwargs)
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
