"""``llm_otel.setup()``: the one line that turns everything on, and ``shutdown()``.

setup() finds the TracerProvider (the one given, else the app's global SDK provider, else a new
one made global), attaches the span store to it, instruments the OpenAI SDK with the scheduler and
content settings, and returns a handle. Calling it again while set up returns the same handle; when
that call asks for settings other than the running ones it warns (``RuntimeWarning``) and names
them, as OpenTelemetry does for a second ``set_tracer_provider()`` or ``instrument()``: raising
would break apps in which several modules each call ``setup()``, and changing what runs under
calls in flight is what ``shutdown()`` then ``setup()`` is for.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
import warnings
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
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.scheduler = scheduler
        self.store = store
        self._instrumentor = instrumentor
        self._settings = settings or {}
        """The ``setup()`` arguments it runs with, for telling a later call what differs."""

    def flush(self, timeout: float = 5.0) -> bool:
        """Export every ended span and write every queued store record; True if all made it."""
        flushed = self.tracer_provider.force_flush(int(timeout * 1000))
        if self.store is not None:
            flushed = self.store.flush(timeout) and flushed
        return flushed

    def shutdown(self, timeout: float = 5.0) -> None:
        """Restore the OpenAI SDK, write what the store holds and stop it, flush the provider's other
        exporters; all within ``timeout`` (a store whose database fails is given up at once)."""
        global _active
        deadline = time.monotonic() + timeout
        with _lock:
            if self._instrumentor is not None:
                self._instrumentor.uninstrument()
                self._instrumentor = None
            if self.store is not None:  # first: every ended call is already in its queue
                lifecycle.remove_listener(self.store.on_call_event)
                self.store.shutdown(timeout)
            self.tracer_provider.force_flush(max(0, int((deadline - time.monotonic()) * 1000)))
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


def _open_store(db: str | None, retention_days: float | None) -> Any:
    from exporter import SpanStore, StoreConfigurationError

    if db is not None:
        return SpanStore(db, retention_days=retention_days)
    url = os.environ.get(DB_ENV, "").strip() or DEFAULT_DB
    try:
        return SpanStore(url, retention_days=retention_days)
    except StoreConfigurationError as exc:
        if url == DEFAULT_DB:
            raise
        raise StoreConfigurationError(f"{DB_ENV}={url!r}: {exc}") from exc


def _check_db(db: object) -> str | bool | None:
    """``db`` as setup() uses it (a path object becomes its string); refuses what cannot be a store."""
    if isinstance(db, os.PathLike):
        db = os.fspath(db)
    if db is None or isinstance(db, bool) or (isinstance(db, str) and db.strip()):
        return None if db is True else db
    what = "an empty string" if isinstance(db, str) else f"{type(db).__name__} {db!r}"
    raise ConfigurationError(
        f"db must be a database URL such as 'sqlite:///llm_calls.db', a file path or "
        f"'postgresql://user:password@host:5432/dbname'; None ({DB_ENV}, else {DEFAULT_DB}) or False "
        f"(no store); not {what}"
    )


def _differences(active: LLMOtel, asked: dict[str, Any]) -> list[str]:
    """The settings ``asked`` of a later setup() that are not what ``active`` runs with."""
    store = active.store
    running = {
        **active._settings,
        "db": store.url if store is not None else False,
        "retention_days": store.retention_days if store is not None else None,
        "tracer_provider": active.tracer_provider,
        "scheduler": active.scheduler,
    }
    differ = []
    for name, value in asked.items():
        if value is _DEFAULTS[name]:
            continue  # not asked for: left at its default
        if name == "db":
            same = _same_store(store, value)
        elif name in ("tracer_provider", "scheduler", "redact"):
            same = value is running[name]
        else:
            same = value == running[name]
        if not same:
            differ.append(f"{name}={value!r} (running: {running[name]!r})")
    return differ


def _same_store(store: Any | None, db: str | bool) -> bool:
    if db is False or store is None:
        return db is False and store is None
    if db.strip() == store.url:
        return True
    from exporter import StoreError
    from exporter.database import check_url

    try:  # the same SQLite file under another spelling; touches no file
        _, path = check_url(db)
    except StoreError:
        return False
    return store.path is not None and path == store.path


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
    asked = {
        "db": db,
        "tracer_provider": tracer_provider,
        "scheduler": scheduler,
        "capture_content": capture_content,
        "redact": redact,
        "retention_days": retention_days,
        "instrument_openai": instrument_openai,
        "stream_usage": stream_usage,
    }
    db = _check_db(db)
    asked["db"] = db
    if redact is not None and not callable(redact):
        raise ConfigurationError(f"redact must be a callable taking and returning a message, not {redact!r}")
    if scheduler is not None and not isinstance(scheduler, Scheduler):
        raise ConfigurationError(f"scheduler must be an llm_otel.Scheduler, not {type(scheduler).__name__}")
    with _lock:
        if _active is not None:
            differ = _differences(_active, asked)
            if differ:
                warnings.warn(
                    "llm_otel.setup() is already active, so this call changes nothing; it asked for "
                    f"{', '.join(differ)}. Call llm_otel.shutdown() first to set it up with other settings.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return _active
        provider = _resolve_provider(tracer_provider)
        scheduler = scheduler or Scheduler(max_concurrency=None, min_interval=0.0, max_queue=None)
        store = None
        if db is not False:
            store = _open_store(db, retention_days)
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
        _active = LLMOtel(provider, scheduler, store, instrumentor, asked)
        return _active


_DEFAULTS = {name: parameter.default for name, parameter in inspect.signature(setup).parameters.items()}


def shutdown(timeout: float = 5.0) -> None:
    """Flush and stop what ``setup()`` turned on; un-instruments the SDK. A no-op if not set up."""
    active = _active
    if active is not None:
        active.shutdown(timeout)
