"""The live feed: one reader per admin process follows ``llm_call_events`` for every live client.

::

    store ──(one read per commit)──► Feed reader thread ──► ring of recent ticks
                                                 │            (resume from memory)
                                                 ├──► Subscription (bounded queue of frames) ──► websocket
                                                 └──► condition variable ──► long polls

- **One reader**: the thread reads ``call_events_after(position)`` once per tick, whatever the
  number of clients, and sleeps while no client is connected (it stays awake for ``LINGER_S``
  after the last one leaves, so long polls that come back at once find it awake).
- **Reading only what changed**: on SQLite the reader asks every ``PROBE_S`` (5 ms) whether another
  connection committed since its last read (``commit_marker``: ``PRAGMA data_version`` on its open
  connection, a few µs, no read of the store) and reads only then: a call's events reach the
  clients within ~5 ms of their commit, not ~25 ms on average (half of a fixed 50 ms), and an idle
  store costs no reads. Once no read has found an event for ``QUIET_AFTER_S`` (commits without
  events, such as the apps' scheduler heartbeats, do not count), it asks every ``QUIET_PROBE_S``
  (50 ms) until one does: 200 probes a second cost ~3% of a core here, sleeps and wake-ups mostly,
  and the first event after a quiet second comes up to 45 ms later. Where the store cannot say
  (PostgreSQL) it reads every ``poll_interval_s``. A read is always preceded by the store's file
  check (``require_store``).
- **Encoded once**: each message is serialized and framed for the websocket once
  (``admin_flask.frames``); every client's thread writes the same bytes.
- **Coalescing**: the events of one call read in one tick become one ``llm.call`` message: the
  last event's ``event_id``, ``kind`` and ``at``, the call's current summary, and ``events`` (every
  event folded into it, in order). Messages go out in ``event_id`` order.
- **Resuming**: ``after`` is the ``event_id`` of the last message a client received (or a
  ``last_event_id`` the feed gave it). The ring holds the last ``buffer`` messages as whole ticks.
  A resuming client is caught up in pages that fit its queue, the next one queued when its thread
  has sent the last (the client's thread reads them, as fast as the client takes them): from the
  store while ``after`` is older than the ring (reads of at most ``READ_LIMIT`` events, coalesced
  the same way, up to the ring's start), then the ring's ticks; then it joins the live feed. Every
  later event exactly once, however long the client was away (retention permitting).
- **Slow clients**: each websocket client has a queue of at most ``client_queue`` messages. When a
  live client's queue overflows, the client is sent
  ``{"type": "llm.reset", "reason": "behind", "last_event_id": N}`` and closed: it should reload its
  view and reconnect with ``after=N``.
- **Status**: while clients are connected the reader also computes the ``llm/status`` body every
  ``status_interval_s`` and sends it to every websocket client as ``llm.status``.
- **Faults**: when the store cannot be read the reader keeps its position, retries every second,
  and sends ``llm.status`` with an ``error``; once the store is back it carries on from where it was.
  The reader reconnects every ``status_interval_s``, and a store whose newest event id went
  backwards (a new file under the same path) resets every client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from admin_flask import serialize
from admin_flask.errors import StoreUnavailable, unavailable
from admin_flask.frames import frame_header_size, text_frame
from exporter import StoreError

logger = logging.getLogger(__name__)

READ_LIMIT = 500
"""Events read per tick (a burst larger than this is read in several ticks without sleeping)."""
POLL_LIMIT = 500
"""Messages one long poll returns at most (the client asks again with the last ``event_id``)."""
LINGER_S = 10.0
PROBE_S = 0.005
"""How often the reader asks a store that can say so (SQLite) whether anything was committed."""
QUIET_PROBE_S = 0.05
"""How often it asks once no read found an event for ``QUIET_AFTER_S``."""
QUIET_AFTER_S = 1.0
_RETRY_S = 1.0

ReadEvents = Callable[[int, int], "list[dict[str, Any]]"]


@dataclass(frozen=True)
class LiveMessage:
    """One ``llm.call`` message: its websocket frame (the JSON text after a header) and what resuming
    needs."""

    event_id: int
    first_event_id: int
    payload: dict[str, Any]
    frame: bytes

    @classmethod
    def of(cls, payload: dict[str, Any]) -> LiveMessage:
        events = payload["events"]
        return cls(payload["event_id"], events[0]["id"], payload, text_frame(serialize.dumps(payload)))

    @property
    def json(self) -> memoryview:
        """The JSON as UTF-8 (what a long poll answers): the frame's payload, neither copied nor
        decoded (a long poll's messages are read under the feed's lock)."""
        return memoryview(self.frame)[frame_header_size(self.frame) :]


@dataclass
class _Tick:
    """The messages of one read: every event in ``(start, end]``, coalesced."""

    start: int
    end: int
    messages: list[LiveMessage]


@dataclass
class FeedStats:
    """Counters for tests and benchmarks: the reads the feed made, by kind."""

    ticks: int = 0
    unchanged: int = 0  # probes that found no commit since the last read (no read made)
    event_reads: int = 0
    catch_up_reads: int = 0
    status_reads: int = 0
    resets: int = 0


class Behind(Exception):
    """The client's queue overflowed: send it ``llm.reset`` and close it."""

    def __init__(self, last_event_id: int, reason: str = "behind") -> None:
        super().__init__(reason)
        self.last_event_id = last_event_id
        self.reason = reason

    @property
    def text(self) -> str:
        return serialize.dumps(
            {"type": "llm.reset", "reason": self.reason, "last_event_id": self.last_event_id}
        )


class FeedClosed(Exception):
    """The feed was closed (the app is stopping)."""


def coalesce(events: Sequence[dict[str, Any]]) -> list[LiveMessage]:
    """One message per call: the call's events of this read folded into its last one, by event id."""
    folded: dict[str, list[dict[str, Any]]] = {}
    for one in events:
        folded.setdefault(one["call_id"], []).append(one)
    messages = []
    for call_id, group in folded.items():
        last = group[-1]
        payload = {
            "type": "llm.call",
            "event_id": last["id"],
            "kind": last["kind"],
            "at": serialize.iso(last.get("at")),
            "call_id": call_id,
            "call": serialize.call_summary(last["call"]) if last.get("call") else None,
            "events": [serialize.event(one) for one in group],
        }
        messages.append(LiveMessage.of(payload))
    messages.sort(key=lambda message: message.event_id)
    return messages


def _without_events_up_to(messages: Iterable[LiveMessage], cursor: int) -> list[LiveMessage]:
    """``messages`` after ``cursor``, each without the folded events at or before it (already sent)."""
    kept = []
    for message in messages:
        if message.event_id <= cursor:
            continue
        if message.first_event_id > cursor:
            kept.append(message)
            continue
        payload = dict(
            message.payload, events=[one for one in message.payload["events"] if one["id"] > cursor]
        )
        kept.append(LiveMessage.of(payload))
    return kept


@dataclass(eq=False)
class Subscription:
    """One websocket client's queue of frames; the feed fills it, the client's thread drains it."""

    feed: Feed
    limit: int
    queue: deque[bytes] = field(default_factory=deque)
    behind: Behind | None = None
    cursor: int = 0
    """While catching up (in the feed's ``_catching_up``, not yet a subscriber): the events sent so
    far (see ``every_event_sent``)."""
    every_event_sent: bool = False
    """True: every event up to ``cursor`` was queued. False: ``cursor`` is the ``after`` the client
    gave, the ``event_id`` of the last message it received (later messages of that tick are new to it)."""

    def push(self, frames: Sequence[bytes]) -> None:
        """Under the feed's lock: queue ``frames``, or mark the client behind when they do not fit."""
        if self.behind is not None:
            return
        if len(self.queue) + len(frames) > self.limit:
            self.queue.clear()
            self.behind = Behind(self.feed.position)
            return
        self.queue.extend(frames)

    @property
    def pending(self) -> int:
        """Messages queued for the client and not yet taken by its thread."""
        return len(self.queue)

    def next(self, timeout: float) -> list[bytes]:
        """The queued messages' frames (waiting up to ``timeout`` s for one; [] if none came).

        Raises ``Behind`` once the queue overflowed and ``FeedClosed`` when the feed closed.
        """
        return self.feed._drain(self, timeout)

    def close(self) -> None:
        self.feed._unsubscribe(self)


class Feed:
    """The live feed of one admin app; see the module docstring."""

    def __init__(
        self,
        *,
        read_events: ReadEvents,
        latest_event_id: Callable[[], int],
        read_status: Callable[[], dict[str, Any]],
        require_store: Callable[[], None],
        close_connection: Callable[[], None],
        commit_marker: Callable[[], Hashable | None] | None = None,
        poll_interval_s: float = 0.05,
        status_interval_s: float = 5.0,
        buffer: int = 5000,
        client_queue: int = 2000,
    ) -> None:
        self._read_events = read_events
        self._latest_event_id = latest_event_id
        self._read_status = read_status
        self._require_store = require_store
        self._close_connection = close_connection
        self._commit_marker = commit_marker
        self._read_marker: Hashable | None = None  # the store's commit marker at the last read
        self._events_at = 0.0  # when a read last found events (time.monotonic)
        self.poll_interval_s = poll_interval_s
        self.status_interval_s = status_interval_s
        self.buffer = buffer
        self.client_queue = client_queue
        self.stats = FeedStats()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._ticks: deque[_Tick] = deque()
        self._buffered = 0  # messages in self._ticks
        self._floor = 0  # the ring holds every event after this id
        self.position = 0  # the last event id read
        self._active = False
        self._subscribers: set[Subscription] = set()
        self._catching_up: set[Subscription] = set()  # clients paging in what they missed
        self._waiting = 0  # long polls
        self._last_client_at = 0.0
        self._status: dict[str, Any] | None = None
        self._status_at = 0.0
        self._status_due = True
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._last_reason = "unavailable"

    # -- clients -------------------------------------------------------------------------------

    def subscribe(self, after: int | None) -> Subscription:
        """A websocket client's subscription, holding the messages after ``after`` (None: from now).

        A client that missed more than its queue holds is caught up in pages, each read when its
        thread has sent the last (``_fill``): from the store below the ring, then the ring's ticks,
        then it joins the live feed. The first page is read here, in the handshake's thread: raises
        ``StoreUnavailable`` / ``StoreError`` when the store cannot be read.
        """
        subscription = Subscription(self, self.client_queue)
        self._activate()
        with self._lock:
            self._check_open()
            subscription.cursor = self.position if after is None else after
            self._catching_up.add(subscription)
        try:
            self._fill(subscription)
        except BaseException:
            self._unsubscribe(subscription)
            raise
        return subscription

    def poll(self, after: int | None, timeout: float) -> tuple[list[memoryview], int]:
        """A long poll: the messages after ``after`` (None: from now), waiting up to ``timeout`` s.

        Returns their JSON (``LiveMessage.json``) and the ``last_event_id`` to poll after next.
        """
        self._activate()
        with self._lock:
            self._check_open()
            if self._last_error is not None:  # the reader cannot read the store: say so, not "no news"
                raise StoreUnavailable(self._last_error, self._last_reason)
            self._waiting += 1
            cursor = self.position if after is None else after
            floor = self._floor
            self._changed.notify_all()
        try:
            if cursor < floor:
                events = self._catch_up_read(cursor, floor)
                if events:
                    messages = coalesce(events)[:POLL_LIMIT]
                    return [message.json for message in messages], messages[-1].event_id
                cursor = floor
            deadline = time.monotonic() + timeout
            with self._lock:
                while True:
                    ready = [m for tick in self._ticks if tick.end > cursor for m in tick.messages]
                    ready = [message for message in ready if message.event_id > cursor][:POLL_LIMIT]
                    remaining = deadline - time.monotonic()
                    if ready or self._closed or remaining <= 0:
                        return [message.json for message in ready], ready[-1].event_id if ready else cursor
                    self._changed.wait(remaining)
        finally:
            with self._lock:
                self._waiting -= 1
                self._last_client_at = time.monotonic()

    def close(self) -> None:
        """Stop the reader and wake every client (their next ``next()`` raises ``FeedClosed``)."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "subscribers": len(self._subscribers) + len(self._catching_up),
                "catching_up": len(self._catching_up),
                "long_polls": self._waiting,
                "buffered": self._buffered,
            }

    # -- the subscription side -------------------------------------------------------------------

    def _drain(self, subscription: Subscription, timeout: float) -> list[bytes]:
        if subscription in self._catching_up and not subscription.queue and subscription.behind is None:
            try:
                self._fill(subscription)
            except (StoreUnavailable, StoreError) as exc:  # the next turn tries again
                logger.warning("the LLM admin's live feed could not catch a client up: %s", exc)
                self._stop.wait(timeout)
        with self._lock:
            if not subscription.queue and subscription.behind is None and not self._closed:
                self._changed.wait(timeout)
            if subscription.behind is not None:
                self._subscribers.discard(subscription)
                self._catching_up.discard(subscription)
                raise subscription.behind
            if self._closed:
                raise FeedClosed()
            frames = list(subscription.queue)
            subscription.queue.clear()
            return frames

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)
            self._catching_up.discard(subscription)
            self._last_client_at = time.monotonic()

    def _fill(self, subscription: Subscription) -> None:
        """Queue the next page of what a catching-up client missed, or make it a subscriber.

        A page fits the client's queue: the ring's whole ticks while they fit, else a read of the
        store of at most ``limit`` events (events below the ring, or a tick too large to fit), so
        catching up never overflows the queue, however long the client was away.
        """
        while True:
            with self._lock:
                self._check_open()
                cursor, floor = subscription.cursor, self._floor
                if cursor >= floor:
                    upto = self._queue_ticks(subscription)
                    if upto is None:
                        return
                else:
                    upto = floor
            events = self._catch_up_read(cursor, upto, min(READ_LIMIT, subscription.limit))
            with self._lock:
                if events:
                    subscription.push([message.frame for message in coalesce(events)])
                subscription.cursor = events[-1]["id"] if events else upto  # none: retention took them
                subscription.every_event_sent = True
                if subscription.behind is not None:
                    subscription.behind = Behind(self.position)
                    return
                if events:
                    return

    def _queue_ticks(self, subscription: Subscription) -> int | None:
        """Under the lock: queue the ring's ticks after the client's cursor that fit its queue (all
        of them: it joins the subscribers). None when done for now; else the end of a tick too large
        for its queue, to be read from the store in pages. (A tick holds at most ``READ_LIMIT``
        messages, fewer than the default queue: only a queue set smaller meets one.)"""
        for tick in self._ticks:
            cursor = subscription.cursor
            if tick.end <= cursor:
                continue
            if subscription.every_event_sent:
                messages = _without_events_up_to(tick.messages, cursor)
            else:
                messages = [message for message in tick.messages if message.event_id > cursor]
            too_many = len(subscription.queue) + len(messages) > subscription.limit
            if too_many and subscription.queue:
                return None
            if too_many and subscription.every_event_sent:
                return tick.end  # read from the store in pages; else it goes whole (and may not fit)
            subscription.push([message.frame for message in messages])
            subscription.cursor, subscription.every_event_sent = tick.end, True
        if self._status and len(subscription.queue) >= subscription.limit:
            return None  # the status it gets on joining would not fit yet
        self._catching_up.discard(subscription)
        if self._status:
            subscription.push([text_frame(self._status_text(max(subscription.cursor, self.position)))])
        self._subscribers.add(subscription)
        self._status_due = self._status_due or self._status is None
        self._changed.notify_all()
        return None

    def _catch_up_read(self, cursor: int, upto: int, limit: int = READ_LIMIT) -> list[dict[str, Any]]:
        """One read of at most ``limit`` events after ``cursor``, cut at ``upto`` (where the ring
        takes over exactly)."""
        self._require_store()
        try:
            events = self._read_events(cursor, limit)
        finally:
            self._close_connection()
        with self._lock:
            self.stats.catch_up_reads += 1
        return [one for one in events if one["id"] <= upto]

    def _check_open(self) -> None:
        if self._closed:
            raise FeedClosed()

    # -- the reader ------------------------------------------------------------------------------

    def _activate(self) -> None:
        """Wake the reader; when it was asleep, start the ring at the store's newest event."""
        with self._lock:
            self._check_open()
            active = self._active
        if not active:
            self._require_store()
            try:
                latest = self._latest_event_id()
            finally:
                self._close_connection()
            with self._lock:
                if not self._active:
                    self._restart_at(latest)
                    self._active = True
                    self._last_client_at = time.monotonic()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="llm-otel-admin-feed", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def _restart_at(self, latest: int) -> None:
        self._ticks.clear()
        self._buffered = 0
        self._floor = self.position = latest

    def _wanted(self) -> bool:
        return (
            bool(self._subscribers or self._catching_up or self._waiting)
            or time.monotonic() - self._last_client_at < LINGER_S
        )

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not (self._active and self._wanted()):
                    if self._active:  # the last client left LINGER_S ago: sleep
                        self._active = False
                        self._restart_at(self.position)
                        self._reconnect()
                    self._changed.wait()
                if self._closed:
                    return
            pause = self._probe_pause() if self._commit_marker is not None else self.poll_interval_s
            try:
                marker = self._commit_marker() if self._commit_marker and self._last_error is None else None
                if marker is not None and marker == self._read_marker and not self._status_is_due():
                    self.stats.unchanged += 1  # nothing committed: no file check, no read
                    time.sleep(pause)  # cheaper than waiting on _stop; close() is seen at the next turn
                    continue
                self._require_store()
                full = self._tick(marker)
                if self._last_error is not None:
                    logger.warning("the LLM admin's live feed reads the store again")
                    self._last_error, self._status_due = None, True
                if self._status_is_due():
                    self._refresh_status()
                if full:
                    pause = 0.0
            except (StoreUnavailable, StoreError) as exc:
                self._reconnect()
                unreadable = exc if isinstance(exc, StoreUnavailable) else unavailable(exc)
                message = unreadable.description
                if message != self._last_error:
                    logger.warning("the LLM admin's live feed cannot read the store: %s", message)
                if (
                    message != self._last_error
                    or time.monotonic() - self._status_at >= self.status_interval_s
                ):
                    self._publish_status({"error": unreadable.error()})
                self._last_error, self._last_reason = message, unreadable.reason
                pause = max(pause, _RETRY_S)
            except Exception:
                logger.exception("the LLM admin's live feed failed; it carries on")
                self._reconnect()
                pause = max(pause, _RETRY_S)
            if pause and self._stop.wait(pause):
                return

    def _probe_pause(self) -> float:
        """The pause before the next ``commit_marker`` probe: short while events come, longer once
        they have stopped (``QUIET_AFTER_S``)."""
        return PROBE_S if time.monotonic() - self._events_at < QUIET_AFTER_S else QUIET_PROBE_S

    def _status_is_due(self) -> bool:
        return self._status_due or time.monotonic() - self._status_at >= self.status_interval_s

    def _reconnect(self) -> None:
        """Close the reader's connection (the next turn reads, whatever the next one's marker)."""
        self._read_marker = None
        self._close_connection()

    def _tick(self, marker: Hashable | None = None) -> bool:
        """Read once after the position (``marker``: the store's commit marker, taken before the
        read: a commit during the read changes it again); True when the read was full."""
        self._read_marker = marker
        start = self.position
        events = self._read_events(start, READ_LIMIT)
        with self._lock:
            self.stats.ticks += 1
            self.stats.event_reads += 1
        if not events:
            return False
        self._events_at = time.monotonic()
        messages = coalesce(events)
        with self._lock:
            if self.position != start:  # the feed was restarted meanwhile
                return False
            self._ticks.append(_Tick(start, events[-1]["id"], messages))
            self._buffered += len(messages)
            while self._buffered > self.buffer and len(self._ticks) > 1:
                evicted = self._ticks.popleft()
                self._buffered -= len(evicted.messages)
                self._floor = evicted.end
            self.position = events[-1]["id"]
            frames = [message.frame for message in messages]
            for subscription in self._subscribers:
                subscription.push(frames)
            self._changed.notify_all()
        if len(events) < READ_LIMIT:
            return False
        self._read_marker = None  # more are waiting, committed before this read: read again
        return True

    def _refresh_status(self) -> None:
        # A fresh connection every status interval: a store file replaced under the same path (a
        # restore, a new store) is then read, not the old file an open connection still holds.
        self._reconnect()
        body = self._read_status()
        latest = self._latest_event_id()
        with self._lock:
            self.stats.status_reads += 1
            if latest < self.position:  # a new store under the same URL: ids start again
                logger.warning(
                    "the store's newest event id went back from %s to %s: resetting the live feed",
                    self.position,
                    latest,
                )
                self.stats.resets += 1
                self._restart_at(latest)
                for subscription in self._subscribers | self._catching_up:
                    subscription.behind = Behind(latest, "store_reset")
        self._publish_status(body)

    def _publish_status(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._status, self._status_at, self._status_due = body, time.monotonic(), False
            if self._subscribers:
                frame = text_frame(self._status_text(self.position))
                for subscription in self._subscribers:
                    subscription.push([frame])
            self._changed.notify_all()

    def _status_text(self, last_event_id: int) -> str:
        return serialize.dumps({"type": "llm.status", "last_event_id": last_event_id, **(self._status or {})})
