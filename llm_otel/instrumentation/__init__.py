"""OpenTelemetry instrumentation of the OpenAI Python SDK.

Usage::

    from llm_otel.instrumentation import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)   # or llm_otel.setup()
    ...
    OpenAIInstrumentor().uninstrument()                          # the SDK is exactly as before

Wrapped: ``chat.completions.create``, ``responses.create`` and ``embeddings.create``, sync and
async, streaming or not, also through ``with_raw_response``. One CLIENT span per logical call
(all SDK retries inside it), with the attributes and events of ``docs/contracts/spans.md``.

Configuration (keywords of ``instrument()``):

- ``tracer_provider``: default the global one.
- ``scheduler``: an ``llm_otel.Scheduler`` every call waits on; default one that only counts.
- ``capture_content`` (default True): record messages. The environment variable
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=no_content`` (or ``false``) turns it off.
- ``redact``: ``callable(message) -> message`` applied to every message before it is recorded.
- ``stream_usage`` (default True): ask streams for their token usage when the caller did not,
  and hide that extra chunk from the caller.

Zero-code: the ``opentelemetry_instrumentor`` entry point ``llm_otel_openai`` makes
``opentelemetry-instrument python app.py`` apply this instrumentor.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from llm_otel.instrumentation import patch
from llm_otel.instrumentation.api import API
from llm_otel.instrumentation.call import InstrumentationConfig
from llm_otel.instrumentation.chat import ChatCompletionsAPI
from llm_otel.instrumentation.embeddings import EmbeddingsAPI
from llm_otel.instrumentation.package import _instruments
from llm_otel.instrumentation.responses import ResponsesAPI
from llm_otel.scheduler import Scheduler

__all__ = ["OpenAIInstrumentor", "content_capture_enabled"]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_OFF = frozenset({"no_content", "false", "0", "none", "off"})

# (module, class, method, endpoint, is_async)
_CREATE_METHODS: tuple[tuple[str, str, str, API, bool], ...] = (
    ("openai.resources.chat.completions", "Completions", "create", ChatCompletionsAPI(), False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", ChatCompletionsAPI(), True),
    ("openai.resources.responses", "Responses", "create", ResponsesAPI(), False),
    ("openai.resources.responses", "AsyncResponses", "create", ResponsesAPI(), True),
    ("openai.resources.embeddings", "Embeddings", "create", EmbeddingsAPI(), False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", EmbeddingsAPI(), True),
)
_RETRY_HOOK = ("openai._base_client", "BaseClient", "_calculate_retry_timeout")


def content_capture_enabled(capture_content: bool = True) -> bool:
    """Content is captured when asked for and the environment does not turn it off."""
    env = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower()
    return capture_content and env not in _CAPTURE_OFF


def _owner(module: str, name: str) -> Any:
    return getattr(__import__(module, fromlist=[name]), name)


class OpenAIInstrumentor(BaseInstrumentor):
    """Turns every OpenAI SDK call into a span (see the module docstring)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        config = InstrumentationConfig(
            tracer=trace.get_tracer("llm_otel", tracer_provider=provider),
            scheduler=kwargs.get("scheduler") or Scheduler(max_concurrency=None, max_queue=None),
            capture_content=content_capture_enabled(kwargs.get("capture_content", True)),
            redact=kwargs.get("redact"),
            stream_usage=kwargs.get("stream_usage", True),
        )
        self.scheduler = config.scheduler
        # BaseInstrumentor is a singleton whose __init__ may run again: keep state made here.
        self._originals: list[tuple[Any, str, Any]] = []
        for module, class_name, method, api, is_async in _CREATE_METHODS:
            factory = patch.async_create if is_async else patch.create
            self._wrap(_owner(module, class_name), method, factory(config, api))
        module, class_name, method = _RETRY_HOOK
        self._wrap(_owner(module, class_name), method, patch.retry_timeout)

    def _wrap(self, owner: Any, method: str, wrapper: Any) -> None:
        self._originals.append((owner, method, owner.__dict__[method]))
        wrapt.wrap_function_wrapper(owner, method, wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        while self._originals:
            owner, method, original = self._originals.pop()
            setattr(owner, method, original)
