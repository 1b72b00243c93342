"""What the app's threads hand to the store's writer: one record per moment of a call or task.

``exporter.store.SpanStore`` makes them (on the app's thread, so they only hold references: no
copy, no mapping); ``exporter.writer.StoreWriter`` queues them; ``exporter.mapping.RowBatch.add``
turns each into rows on the writer's thread. These four are every kind of record there is:

- ``QueuedCall``: a call was queued (its span started): the call's first row, ``queued``;
- ``CallNotice``: a call in flight was dispatched, got its first token, or retried;
- ``EndedSpan``: a call or task span ended: the final rows;
- ``TaskStarted``: a task span started: its row, ``running``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan


@dataclass(frozen=True, slots=True)
class QueuedCall:
    """A call just queued; ``attributes`` are its start attributes (the span's, never changed after)."""

    call_id: str
    span: ReadableSpan
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CallNotice:
    """A live notice of a call in flight: ``kind`` is dispatched, first_token or retry.

    ``attributes`` are the notice's (those of its span event); ``start_time_ns`` is the span's
    start, so that the call's row can be created should the notice overtake its ``QueuedCall``.
    """

    kind: str
    call_id: str
    start_time_ns: int
    timestamp_ns: int
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EndedSpan:
    """An ended call span (``call_id`` set) or task span (``call_id`` None).

    ``process`` (``host:pid``) fills a task row's ``process``: task spans do not carry it.
    """

    span: ReadableSpan
    call_id: str | None = None
    process: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A task span just started; ``attributes`` are a copy of its attributes."""

    span: ReadableSpan
    attributes: Mapping[str, Any]
    process: str | None = None


Record = QueuedCall | CallNotice | EndedSpan | TaskStarted
"""Every kind of record the writer takes."""
