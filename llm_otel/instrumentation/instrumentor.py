"""The ``OpenAIInstrumentor``: applies and removes the wrappers of ``patch`` (see the package doc)."""

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

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_OFF = frozenset({"no_content", "false", "0", "none", "off"})

# (module, class, method, endpoint, is_async)
_CREATE_METHODS: tuple[tuple[str, str, str, API, bool], ...] = (
    ("openai.resources.chat.completions", "Completions", "create", ChatCompletionsAPI(), False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", ChatCompletionsAPI(), True),
    ("openai.resources.chat.completions", "Completions", "parse", ChatCompletionsAPI(), False),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", ChatCompletionsAPI(), True),
    ("openai.resources.responses", "Responses", "create", ResponsesAPI(), False),
    ("openai.resources.responses", "AsyncResponses", "create", ResponsesAPI(), True),
    ("openai.resources.responses", "Responses", "parse", ResponsesAPI(), False),
    ("openai.resources.responses", "AsyncResponses", "parse", ResponsesAPI(), True),
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
        self._config = config
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
        self._config.active = False
        while self._originals:
            owner, method, original = self._originals.pop()
            setattr(owner, method, original)
