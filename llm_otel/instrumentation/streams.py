"""Proxies around the SDK's ``Stream`` / ``AsyncStream`` that end the call's span.

The proxy behaves as the stream it wraps (``isinstance`` included) and ends the span once: when
the stream is exhausted (succeeded), on an error mid-stream (failed, partial output kept), on
``close()`` or ``with``/``async with`` exit before the end (cancelled), and when garbage-collected
unconsumed (cancelled; a sync stream's connection is closed then too). It hides the
usage-only chunk that the instrumentation asked for.

The SDK's ``stream()`` helpers (``ChatCompletionStream``, ``ResponseStream``) close a stream by
closing its ``response`` directly, so ``response`` is proxied too: closing it ends the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import wrapt

from llm_otel.instrumentation.call import LLMCall

logger = logging.getLogger(__name__)


class _ResponseProxy(wrapt.ObjectProxy):
    """The stream's HTTP response: ``close()`` / ``aclose()`` end the call (cancelled if early)."""

    def __init__(self, response: Any, call: LLMCall) -> None:
        super().__init__(response)
        self._self_call = call

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.stream_closed()

    async def aclose(self) -> None:
        try:
            await self.__wrapped__.aclose()
        finally:
            self._self_call.stream_closed()


class _CallStreamProxy(wrapt.ObjectProxy):
    """What both proxies share: the call they end, its chunk reader and the proxied ``response``."""

    def __init__(self, stream: Any, call: LLMCall) -> None:
        super().__init__(stream)
        self._self_call = call
        self._self_read: Callable[[Any], int] | None = None  # the call's chunk reader, from the first

    @property
    def response(self) -> Any:
        return _ResponseProxy(self.__wrapped__.response, self._self_call)

    def _shown(self, chunk: Any) -> bool:
        """Reads ``chunk`` into the call; False for a chunk to hide (the usage chunk asked for).

        Runs for every chunk: one call into the accumulator, which flags the rare chunks that need
        more (the first output, the usage chunk)."""
        read = self._self_read
        if read is None:  # the first chunk: a stream never read keeps no output
            read = self._self_read = self._self_call.chunk_reader()
        try:
            flags = read(chunk)
        except Exception as exc:
            flags = _unreadable(exc)
        return not flags or not self._self_call.on_flagged_chunk(flags)


def _unreadable(exc: Exception) -> int:
    logger.error("llm_otel failed to read a stream chunk", exc_info=exc)
    return 0


class StreamProxy(_CallStreamProxy):
    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                chunk = self.__wrapped__.__next__()
            except StopIteration:
                self._self_call.stream_exhausted()
                raise
            except BaseException as exc:
                self._self_call.stream_failed(exc)
                raise
            if self._shown(chunk):
                return chunk

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.stream_closed()

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, traceback)
        finally:
            self._self_call.stream_closed()

    def __del__(self) -> None:
        # The SDK's stream sits in a reference cycle (its generator refers back to it), so its
        # connection would wait for the cyclic GC: give it back to the pool now.
        try:
            self.__wrapped__.close()
        finally:
            self._self_call.stream_closed()


class AsyncStreamProxy(_CallStreamProxy):
    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_call.stream_exhausted()
                raise
            except BaseException as exc:
                self._self_call.stream_failed(exc)
                raise
            if self._shown(chunk):
                return chunk

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_call.stream_closed()

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, traceback: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, traceback)
        finally:
            self._self_call.stream_closed()

    def __del__(self) -> None:
        self._self_call.stream_closed()
