"""Tasks and labels: what an LLM call is part of, and who asked for it.

Both live in the OpenTelemetry Context, so they travel wherever the OTel context travels: into
asyncio tasks, into threads that attach it, and to any span the call makes. The instrumentation
reads them with :func:`current_task` and :func:`current_labels` when a call starts.

Usage
-----
::

    from llm_otel import labels, task

    with task("nightly-report", customer="acme") as report:   # also: async with task(...)
        print(report.task_id)        # uuid4 hex unless task_id= is given
        client.chat.completions.create(...)   # carries llm_otel.task.id / .task.name

    @task("summarize")               # on sync and async functions: a fresh task per call
    async def summarize(document): ...

    with labels(source="billing", requested_by="alice"):
        with labels(requested_by="bob"):       # nests: overrides only the keys it sets
            client.chat.completions.create(...)  # source=billing, requested_by=bob

``task()`` starts a span ``task {name}`` (kind INTERNAL) with ``llm_otel.span.kind="task"``,
``llm_otel.task.id``, ``llm_otel.task.name`` and each extra keyword as
``llm_otel.task.attr.<key>`` (str, int, float and bool kept, anything else ``str()``'d). Calls
inside are its descendants in the trace. If the body raises, the span gets status ERROR, an
exception event and ``error.type``, and the exception propagates unchanged. The span comes from
``trace.get_tracer("llm_otel")`` at entry time, on the TracerProvider that ``setup()`` uses (the
global one unless setup() was given another); pass ``tracer_provider=`` to use another one.

Propagation into threads
------------------------
asyncio tasks (``create_task``, ``gather``) copy the context when they are created, so they carry
the task and the labels. A new thread or a thread pool worker starts with an empty context;
hand it over explicitly::

    import contextvars
    from opentelemetry import context as otel_context

    ctx = otel_context.get_current()

    def work_in_context(job):
        token = otel_context.attach(ctx)
        try:
            return work(job)
        finally:
            otel_context.detach(token)

    pool.submit(work_in_context, job)
    # or, per submission:
    pool.submit(contextvars.copy_context().run, work, job)

``opentelemetry-instrumentation-threading`` (``ThreadingInstrumentor().instrument()``) does the
same for every ``Thread`` and ``ThreadPoolExecutor`` of the app.

API
---
:func:`task` (returns a :class:`TaskScope`), :func:`labels`, :func:`current_task` →
:class:`TaskInfo` or None, :func:`current_labels` → :class:`Labels`, :func:`current_scope` → both.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import trace
from opentelemetry.context import Context, attach, create_key, detach, get_current, get_value, set_value
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from llm_otel import attributes as attr
from llm_otel._exceptions import ConfigurationError

_TASK_KEY = create_key("llm_otel.task")
_LABELS_KEY = create_key("llm_otel.labels")

Function = TypeVar("Function", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """The task a call belongs to, as the instrumentation records it."""

    task_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Labels:
    """Who asked for a call (``requested_by``) and from which part of the app (``source``)."""

    source: str | None = None
    requested_by: str | None = None


_NO_LABELS = Labels()

_setup_tracer_provider: TracerProvider | None = None


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Make task spans come from ``provider`` (``setup()`` calls this; None: the global one)."""
    global _setup_tracer_provider
    _setup_tracer_provider = provider


def current_task() -> TaskInfo | None:
    """The innermost task of the current OTel context, or None outside any task."""
    return cast("TaskInfo | None", get_value(_TASK_KEY))


def current_labels() -> Labels:
    """The labels in force in the current OTel context; both fields None outside any ``labels()``."""
    return cast("Labels | None", get_value(_LABELS_KEY)) or _NO_LABELS


def current_scope() -> tuple[Labels, TaskInfo | None]:
    """``(current_labels(), current_task())`` from one read of the context (a call's start)."""
    context = get_current()
    return context.get(_LABELS_KEY) or _NO_LABELS, context.get(_TASK_KEY)


@contextmanager
def labels(source: str | None = None, requested_by: str | None = None) -> Iterator[Labels]:
    """Tag every LLM call inside with ``source`` and ``requested_by``; yields the labels in force.

    Nested ``labels()`` override only the keys they set (a key left None keeps the outer value).
    """
    outer = current_labels()
    merged = Labels(
        source=outer.source if source is None else source,
        requested_by=outer.requested_by if requested_by is None else requested_by,
    )
    token = attach(set_value(_LABELS_KEY, merged))
    try:
        yield merged
    finally:
        detach(token)


def task(
    name: str,
    task_id: str | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    **attrs: Any,
) -> TaskScope:
    """A task span around a block or a function; the LLM calls inside link to it.

    Use it as ``with task(...) as t``, ``async with task(...) as t`` or ``@task(...)`` on a sync or
    async function. ``task_id`` defaults to a fresh uuid4 hex per entry (per call when decorating).
    ``tracer_provider`` overrides setup()'s (or the global) TracerProvider; ``attrs`` become
    ``llm_otel.task.attr.<key>`` span attributes.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"task() needs a non-empty name string; got {name!r}")
    span_attributes = {attr.TASK_ATTR_PREFIX + key: _attribute_value(value) for key, value in attrs.items()}
    return TaskScope(name, task_id, span_attributes, tracer_provider)


def _attribute_value(value: Any) -> AttributeValue:
    return value if isinstance(value, (str, bool, int, float)) else str(value)


class TaskScope:
    """What :func:`task` returns: a context manager (sync and async) and a decorator.

    Inside the block it exposes ``task_id``, ``name`` and ``span`` (the task span).
    """

    def __init__(
        self,
        name: str,
        task_id: str | None,
        span_attributes: dict[str, AttributeValue],
        tracer_provider: TracerProvider | None,
    ) -> None:
        self.name = name
        self.task_id: str | None = task_id
        self.span: Span | None = None
        self._given_task_id = task_id
        self._span_attributes = span_attributes
        self._tracer_provider = tracer_provider
        self._token: Token[Context] | None = None

    def __enter__(self) -> TaskScope:
        if self._token is not None:
            raise ConfigurationError(
                f"task {self.name!r} is already running; call task() again for a second, nested task"
            )
        self.task_id = self._given_task_id or uuid.uuid4().hex
        provider = self._tracer_provider or _setup_tracer_provider
        tracer = trace.get_tracer("llm_otel", tracer_provider=provider)
        self.span = tracer.start_span(
            f"task {self.name}",
            kind=SpanKind.INTERNAL,
            attributes={
                attr.TASK_KIND: attr.TASK_KIND_VALUE,
                attr.TASK_ID: self.task_id,
                attr.TASK_NAME: self.name,
                **self._span_attributes,
            },
        )
        context = set_value(
            _TASK_KEY, TaskInfo(self.task_id, self.name), trace.set_span_in_context(self.span)
        )
        self._token = attach(context)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        token, span, self._token = self._token, self.span, None
        assert token is not None and span is not None, "__exit__ without __enter__"
        detach(token)
        if exc is not None:
            span.record_exception(exc)
            span.set_attribute(attr.ERROR_TYPE, type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()

    async def __aenter__(self) -> TaskScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    def __call__(self, function: Function) -> Function:
        """Decorate ``function``: each call runs in a task of its own."""
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise ConfigurationError(
                f"task() can't decorate the generator function {function.__qualname__}: the task would "
                f"end before the first item; use `with task(...)` inside the generator instead"
            )
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async_in_task(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh_scope():
                    return await function(*args, **kwargs)

            return cast(Function, run_async_in_task)

        @functools.wraps(function)
        def run_in_task(*args: Any, **kwargs: Any) -> Any:
            with self._fresh_scope():
                return function(*args, **kwargs)

        return cast(Function, run_in_task)

    def _fresh_scope(self) -> TaskScope:
        return TaskScope(self.name, self._given_task_id, self._span_attributes, self._tracer_provider)

    def __repr__(self) -> str:
        return f"<TaskScope {self.name!r} task_id={self.task_id!r}>"
