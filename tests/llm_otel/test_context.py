"""Tasks and labels in the OTel context: spans, nesting, threads, asyncio, decorators."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llm_otel import attributes as attr
from llm_otel._exceptions import ConfigurationError
from llm_otel.context import Labels, TaskInfo, current_labels, current_task, labels, task

Result = TypeVar("Result")


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def one_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = spans_named(exporter, name)
    return span


def run_in_thread(function: Callable[..., Result], *args: Any) -> Result:
    """Run ``function`` in a new thread, as a plain Thread does: without the caller's context."""
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(function(*args)))
    thread.start()
    thread.join(5)
    return results[0]


def test_task_span_carries_the_contract_attributes(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    with task(
        "report",
        customer="acme",
        pages=3,
        ratio=0.5,
        urgent=True,
        tags=["a"],
        tracer_provider=tracer_provider,
    ) as report:
        assert current_task() == TaskInfo(report.task_id, "report")
        assert report.name == "report"
        assert report.span is not None and report.span.is_recording()
    assert current_task() is None

    span = one_span(span_exporter, "task report")
    assert span.kind is SpanKind.INTERNAL
    assert span.instrumentation_scope.name == "llm_otel"
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes) == {
        attr.TASK_KIND: attr.TASK_KIND_VALUE,
        attr.TASK_ID: report.task_id,
        attr.TASK_NAME: "report",
        "llm_otel.task.attr.customer": "acme",
        "llm_otel.task.attr.pages": 3,
        "llm_otel.task.attr.ratio": 0.5,
        "llm_otel.task.attr.urgent": True,
        "llm_otel.task.attr.tags": "['a']",
    }
    assert len(report.task_id) == 32 and int(report.task_id, 16) >= 0


def test_given_task_id_is_kept_and_tasks_nest(tracer_provider: TracerProvider) -> None:
    with task("outer", task_id="job-42", tracer_provider=tracer_provider):
        assert current_task() == TaskInfo("job-42", "outer")
        with task("inner", tracer_provider=tracer_provider) as inner:
            assert current_task() == TaskInfo(inner.task_id, "inner")
        assert current_task() == TaskInfo("job-42", "outer")


def test_task_span_is_the_parent_of_spans_started_inside(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    tracer = tracer_provider.get_tracer("test")
    with task("report", tracer_provider=tracer_provider), tracer.start_as_current_span("chat gpt-4o-mini"):
        pass

    task_span = one_span(span_exporter, "task report")
    call_span = one_span(span_exporter, "chat gpt-4o-mini")
    assert call_span.parent is not None
    assert call_span.parent.span_id == task_span.context.span_id
    assert call_span.context.trace_id == task_span.context.trace_id


def test_task_uses_the_global_tracer_provider_at_entry(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: tracer_provider)
    with task("report"):
        pass
    assert one_span(span_exporter, "task report")


def test_thread_with_the_otel_context_attached_sees_the_task_and_one_without_does_not(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    tracer = tracer_provider.get_tracer("test")

    def call(name: str) -> TaskInfo | None:
        with tracer.start_as_current_span(name):
            return current_task()

    def call_in_context(ctx: otel_context.Context, name: str) -> TaskInfo | None:
        token = otel_context.attach(ctx)
        try:
            return call(name)
        finally:
            otel_context.detach(token)

    with task("report", tracer_provider=tracer_provider) as report:
        expected = TaskInfo(report.task_id, "report")
        ctx = otel_context.get_current()
        assert run_in_thread(call_in_context, ctx, "attached") == expected
        assert run_in_thread(call, "not propagated") is None
        with ThreadPoolExecutor(max_workers=2) as pool:
            assert pool.submit(call_in_context, ctx, "pool attached").result() == expected
            assert pool.submit(contextvars.copy_context().run, call, "pool copied").result() == expected
            assert pool.submit(call, "pool not propagated").result() is None

    task_span_id = one_span(span_exporter, "task report").context.span_id
    for name in ("attached", "pool attached", "pool copied"):
        assert one_span(span_exporter, name).parent.span_id == task_span_id
    for name in ("not propagated", "pool not propagated"):
        assert one_span(span_exporter, name).parent is None


async def test_asyncio_tasks_see_the_task_and_are_children_of_its_span(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    tracer = tracer_provider.get_tracer("test")

    async def call(index: int) -> TaskInfo | None:
        await asyncio.sleep(0)
        with tracer.start_as_current_span(f"call {index}"):
            await asyncio.sleep(0.001)
            return current_task()

    async with task("fan-out", tracer_provider=tracer_provider) as fan_out:
        seen = await asyncio.gather(*(call(index) for index in range(3)))

    assert seen == [TaskInfo(fan_out.task_id, "fan-out")] * 3
    task_span = one_span(span_exporter, "task fan-out")
    for index in range(3):
        assert one_span(span_exporter, f"call {index}").parent.span_id == task_span.context.span_id


def test_decorated_function_runs_each_call_in_a_fresh_task(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    @task("job", tracer_provider=tracer_provider, queue="nightly")
    def job(value: int) -> tuple[int, TaskInfo | None]:
        """Doubles."""
        return value * 2, current_task()

    (first, first_task), (second, second_task) = job(1), job(2)

    assert (first, second) == (2, 4)
    assert first_task is not None and second_task is not None
    assert first_task.name == second_task.name == "job"
    assert first_task.task_id != second_task.task_id
    assert (job.__name__, job.__doc__) == ("job", "Doubles.")
    spans = spans_named(span_exporter, "task job")
    assert [span.attributes[attr.TASK_ID] for span in spans] == [first_task.task_id, second_task.task_id]
    assert all(span.attributes["llm_otel.task.attr.queue"] == "nightly" for span in spans)


async def test_decorated_async_function_runs_in_a_task_with_the_given_id(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    @task("summarize", task_id="fixed", tracer_provider=tracer_provider)
    async def summarize(text: str) -> tuple[str, TaskInfo | None]:
        await asyncio.sleep(0)
        return text.upper(), current_task()

    results = await asyncio.gather(summarize("a"), summarize("b"))

    assert results == [("A", TaskInfo("fixed", "summarize")), ("B", TaskInfo("fixed", "summarize"))]
    assert len(spans_named(span_exporter, "task summarize")) == 2
    assert current_task() is None


def test_exception_marks_the_task_span_failed_and_propagates_unchanged(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    error = KeyError("missing")
    with pytest.raises(KeyError) as raised, task("report", tracer_provider=tracer_provider):
        raise error
    assert raised.value is error
    assert current_task() is None

    span = one_span(span_exporter, "task report")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[attr.ERROR_TYPE] == "KeyError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"


async def test_exception_in_a_decorated_async_function_marks_its_task_failed(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    @task("flaky", tracer_provider=tracer_provider)
    async def flaky() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await flaky()
    span = one_span(span_exporter, "task flaky")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: boom"


def test_misuse_raises_configuration_errors(tracer_provider: TracerProvider) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        task("")
    scope = task("once", tracer_provider=tracer_provider)
    with scope, pytest.raises(ConfigurationError, match="already running"), scope:
        pass

    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(ConfigurationError, match="generator"):
        task("stream")(numbers)


def test_labels_nest_and_inner_labels_override_only_the_keys_they_set() -> None:
    assert current_labels() == Labels(None, None)
    with labels(source="billing", requested_by="alice") as outer:
        assert outer == current_labels() == Labels("billing", "alice")
        with labels(requested_by="bob"):
            assert current_labels() == Labels("billing", "bob")
            with labels(source="search"):
                assert current_labels() == Labels("search", "bob")
            assert current_labels() == Labels("billing", "bob")
        assert current_labels() == Labels("billing", "alice")
    assert current_labels() == Labels(None, None)


async def test_labels_reach_asyncio_tasks_and_propagated_threads() -> None:
    async def read_labels() -> Labels:
        await asyncio.sleep(0)
        return current_labels()

    with labels(source="worker"):
        in_tasks = await asyncio.gather(read_labels(), read_labels())
        with labels(requested_by="carol"):
            in_thread = await asyncio.to_thread(current_labels)  # to_thread copies the context
    assert in_tasks == [Labels("worker", None)] * 2
    assert in_thread == Labels("worker", "carol")
    assert current_labels() == Labels(None, None)
