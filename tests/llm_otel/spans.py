"""Helpers to read the spans a test produced."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_otel import attributes as attr

API_KEY = "sk-test-secret-key-0123456789"


def call_spans(span_exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The finished LLM call spans, oldest first."""
    return [span for span in span_exporter.get_finished_spans() if attr.CALL_ID in (span.attributes or {})]


def only_call_span(span_exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = call_spans(span_exporter)
    assert len(spans) == 1, [span.name for span in spans]
    return spans[0]


def events_named(span: ReadableSpan, name: str) -> list[Any]:
    return [event for event in span.events if event.name == name]
