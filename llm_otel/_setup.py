"""``llm_otel.setup()``: the one line that turns everything on, and ``shutdown()``.

setup() finds the TracerProvider (the one given, else the app's global SDK provider, else a new
one made global), attaches the span store to it, instruments the OpenAI SDK with the scheduler and
content settings, and returns a handle. Calling it again while set up returns the same handle.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from llm_otel import context, lifecycle
from llm_otel._exceptions import ConfigurationError
from llm_otel.instrumentation import OpenAIInstrumentor
from llm_otel.instrumentation.messages import Redact
from llm_otel.scheduler import Scheduler

logger = logging.getLogger(__name__)

DB_ENV = "LLM_OTEL_DB"
DEFAULT_DB = "sqlite:///llm_calls.db"

_lock = threading.Lock()
_active: LLMOtel | None = None


class LLMOtel:
    """What ``setup()`` turned on; ``shutdown()`` turns it off again."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        scheduler: Scheduler,
        store: Any | None,
        instrumentor: OpenAIInstrumentor | None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.scheduler = scheduler
        self.store = store
        self._instrumentor = instrumentor

    def flush(self, timeout: float = 5.0) -> bool:
        """Export every ended span and write every queued store record; True if all made it."""
        flushed = self.tracer_provider.force_flush(int(timeout * 1000))
        if self.store is not None:
            flushed = self.store.flush(timeout) and flushed
        return flushed

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush, stop the store's writer and restore the OpenAI SDK."""
        global _active
        with _lock:
            if self._instrumentor is not None:
                self._instrumentor.uninstrument()
                self._instrumentor = None
            self.tracer_provider.force_flush(int(timeout * 1000))
            if self.store is not None:
                lifecycle.remove_listener(self.store.on_call_event)
                self.store.shutdown(timeout)
            if _active is self:
                context.use_tracer_provider(None)
                _active = None


def _resolve_provider(tracer_provider: TracerProvider | None) -> TracerProvider:
    if tracer_provider is not None:
        return tracer_provider
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(resource=Resource.create())
    _add_otlp_exporter_from_env(provider)
    trace.set_tracer_provider(provider)
    return provider


def _add_otlp_exporter_from_env(provider: TracerProvider) -> None:
    """A provider we make still honours the standard OTLP endpoint settings."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but llm-otel[otlp] is not installed")
        return
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))


def _open_store(db: str, retention_days: float | None) -> Any:
    from exporter import SpanStore

    return SpanStore(db, retention_days=retention_days)


def setup(
    db: str | bool | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    scheduler: Scheduler | None = None,
    capture_content: bool = True,
    redact: Redact | None = None,
    retention_days: float | None = None,
    instrument_openai: bool = True,
    stream_usage: bool = True,
) -> LLMOtel:
    """Turn llm-otel on; see the package docstring. Idempotent: a second call returns the handle.

    ``db``: a peewee database URL for the span store (``sqlite:///llm_calls.db``); None takes
    ``LLM_OTEL_DB`` or that default; False keeps no store (spans still reach the provider's other
    exporters). ``retention_days`` defaults to ``LLM_OTEL_RETENTION_DAYS`` or 7.
    """
    global _active
    if redact is not None and not callable(redact):
        raise ConfigurationError(f"redact must be a callable taking and returning a message, not {redact!r}")
    if scheduler is not None and not isinstance(scheduler, Scheduler):
        raise ConfigurationError(f"scheduler must be an llm_otel.Scheduler, not {type(scheduler).__name__}")
    if db is True:
        db = None
    with _lock:
        if _active is not None:
            return _active
        provider = _resolve_provider(tracer_provider)
        scheduler = scheduler or Scheduler(max_concurrency=None, min_interval=0.0, max_queue=None)
        store = None
        if db is not False:
            store = _open_store(db or os.environ.get(DB_ENV) or DEFAULT_DB, retention_days)
            provider.add_span_processor(store.span_processor)
            lifecycle.add_listener(store.on_call_event)
            store.add_status_source(scheduler.status)
        instrumentor = None
        if instrument_openai:
            instrumentor = OpenAIInstrumentor()
            if instrumentor.is_instrumented_by_opentelemetry:
                # Zero-code (opentelemetry-instrument) got there first: its instrumentation stays,
                # and shutdown() must not undo what setup() did not do.
                logger.warning(
                    "the OpenAI SDK is already instrumented (opentelemetry-instrument?); setup() keeps "
                    "that instrumentation, so its scheduler, capture_content, redact and stream_usage "
                    "settings do not apply"
                )
                instrumentor = None
            else:
                instrumentor.instrument(
                    tracer_provider=provider,
                    scheduler=scheduler,
                    capture_content=capture_content,
                    redact=redact,
                    stream_usage=stream_usage,
                )
        context.use_tracer_provider(provider)
        _active = LLMOtel(provider, scheduler, store, instrumentor)
        return _active


def shutdown(timeout: float = 5.0) -> None:
    """Flush and stop what ``setup()`` turned on; un-instruments the SDK. A no-op if not set up."""
    active = _active
    if active is not None:
        active.shutdown(timeout)
