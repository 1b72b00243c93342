"""Live call notifications: what happens to a call between its span's start and end.

Span processors see a span only when it starts and when it ends; a call's dispatch, first token and
retries happen in between. The instrumentation announces those moments here so that a live view (the
store's writer) can show a call as it progresses. The same moments are also span events, so a span
exported later carries everything; this channel only makes them visible early.

Listeners run on the app's calling thread: they must only hand the notice off (microseconds) and
must not raise; an exception is logged and swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

logger = logging.getLogger(__name__)

QUEUED = "queued"
DISPATCHED = "dispatched"
FIRST_TOKEN = "first_token"
RETRY = "retry"

CallListener = Callable[[str, ReadableSpan, int, Mapping[str, Any]], None]
"""``listener(kind, span, timestamp_ns, attributes)``; ``kind`` is one of the constants above.

``attributes`` are the event's (``dispatched``, ``first_token``, ``retry``); for ``queued``, the
call's start attributes (the span's at its start; never changed afterwards).
"""

_listeners: tuple[CallListener, ...] = ()


def add_listener(listener: CallListener) -> None:
    """Start sending call notices to ``listener``."""
    global _listeners
    if listener not in _listeners:
        _listeners = (*_listeners, listener)


def remove_listener(listener: CallListener) -> None:
    """Stop sending call notices to ``listener``; unknown listeners are ignored."""
    global _listeners
    _listeners = tuple(known for known in _listeners if known != listener)


def emit(kind: str, span: Any, timestamp_ns: int, attributes: Mapping[str, Any]) -> None:
    """Send one notice to every listener. Only SDK spans (that record) are announced."""
    if not _listeners or not isinstance(span, ReadableSpan):
        return
    for listener in _listeners:
        try:
            listener(kind, span, timestamp_ns, attributes)
        except Exception:
            logger.exception("llm_otel call listener %r failed", listener)
