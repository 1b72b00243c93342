"""The in-process LLM scheduler: FIFO permits, a concurrency limit and a fixed throttle.

Plain Python: no OpenTelemetry, no I/O. ``llm_otel.setup(scheduler=...)`` routes every
instrumented call through one scheduler; the instrumentation records how long each call queued.

Usage
-----
::

    scheduler = Scheduler(max_concurrency=1, min_interval=0.5, max_queue=100, name="openai")

    # threads: blocks the calling thread until the call may run
    with scheduler.acquire(call_id, source="billing") as permit:
        ...                                  # the call; permit.wait = seconds it queued

    # asyncio: suspends the task, never the event loop
    permit = await scheduler.acquire_async(call_id, timeout=30)
    try:
        ...
    finally:
        permit.release()

A streaming call keeps its permit until its stream ends, so :meth:`Permit.release` may run on
another thread or in a garbage-collection finalizer; it is idempotent.

Configuration
-------------
``max_concurrency``
    Permits out at once (calls in flight); ``None`` for no limit. Default 1: serial dispatch.
``min_interval``
    Seconds between two consecutive dispatches, measured from the previous dispatch with
    ``time.monotonic()``. Default 0: no throttle.
``max_queue``
    Callers allowed to wait; one more raises :class:`SchedulerFull` at once. ``None`` for no limit.
``name``
    Shown in :meth:`Scheduler.status` and in error messages.

The scheduler ``setup()`` installs by default is ``Scheduler(max_concurrency=None, min_interval=0.0,
max_queue=None)``: it never queues anyone and only counts, at the cost of one lock and a counter.

Fairness
--------
Threads and asyncio tasks, from any number of event loops in any threads, share one FIFO queue and
one limit. Every permit is handed out under the scheduler's lock to the head of the queue only,
so a newcomer never overtakes a waiter, whichever kind. A thread waiter sleeps on its own
``threading.Event``; an asyncio waiter awaits a future of its own loop, resolved with
``loop.call_soon_threadsafe``. The throttle gap is waited by the head of the queue: a thread head
waits on its event with a timeout, an asyncio head arms a ``loop.call_later`` timer on its loop.

Leaving the queue
-----------------
A waiter whose ``timeout`` elapses leaves the queue and gets :class:`SchedulerTimeout`; a cancelled
asyncio waiter leaves it and re-raises ``CancelledError``. The decision is taken under the lock, so
a waiter is either still queued (it just leaves) or already granted (the permit is handed back, or
on timeout simply returned): no permit is ever lost when cancellation races with a grant.

API
---
:meth:`Scheduler.acquire`, :meth:`Scheduler.acquire_async`, :meth:`Scheduler.status`, :class:`Permit`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from types import TracebackType
from typing import Any

from llm_otel._exceptions import ConfigurationError, SchedulerFull, SchedulerTimeout

_WAITING = "waiting"
_GRANTED = "granted"
_GONE = "gone"


class Permit:
    """The right to run one call, from its dispatch until :meth:`release`.

    ``wait`` is the seconds the call spent queued (0.0 when it was dispatched at once) and
    ``dispatched_at`` the dispatch time in epoch seconds (``time.time()``). Use it as a context
    manager, or call :meth:`release` from any thread, as often as you like.
    """

    __slots__ = ("_released", "_scheduler", "call_id", "dispatched_at", "wait")

    def __init__(self, scheduler: Scheduler, call_id: str, wait: float, dispatched_at: float) -> None:
        self._scheduler = scheduler
        self._released = False
        self.call_id = call_id
        self.wait = wait
        self.dispatched_at = dispatched_at

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Give the permit back; the next waiter may be dispatched. Later calls do nothing."""
        self._scheduler._release(self)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Permit {self.call_id!r} {state} wait={self.wait:.3f}s>"


class _Waiter:
    """A caller in the queue. ``state`` moves from waiting to granted or gone, under the lock."""

    __slots__ = ("call_id", "enqueued", "permit", "since", "source", "state", "throttled_until")

    def __init__(self, call_id: str, source: str | None) -> None:
        self.call_id = call_id
        self.source = source
        self.since = time.time()
        self.enqueued = time.monotonic()
        self.state = _WAITING
        self.permit: Permit | None = None
        # The throttle deadline this waiter was last told about, so it is told only once.
        self.throttled_until: float | None = None

    def notify_granted(self) -> bool:
        """Wake the caller to take ``self.permit``; False if nobody is left to take it."""
        raise NotImplementedError

    def notify_throttled(self, scheduler: Scheduler, ready_at: float) -> bool:
        """Make sure ``scheduler`` is pumped again at ``ready_at``; False if this waiter can't."""
        raise NotImplementedError


class _ThreadWaiter(_Waiter):
    __slots__ = ("event",)

    def __init__(self, call_id: str, source: str | None) -> None:
        super().__init__(call_id, source)
        self.event = threading.Event()

    def notify_granted(self) -> bool:
        self.event.set()
        return True

    def notify_throttled(self, scheduler: Scheduler, ready_at: float) -> bool:
        # The thread wakes up, sees it heads the queue and waits on its event until ready_at.
        self.event.set()
        return True


class _AsyncWaiter(_Waiter):
    __slots__ = ("future", "loop")

    def __init__(self, call_id: str, source: str | None, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(call_id, source)
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def notify_granted(self) -> bool:
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def notify_throttled(self, scheduler: Scheduler, ready_at: float) -> bool:
        try:
            self.loop.call_soon_threadsafe(scheduler._arm_throttle_timer, self, ready_at)
        except RuntimeError:  # the loop is closed
            return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled waiter hands its permit back itself
        future.set_result(None)


class _Section:
    """The scheduler's lock, safe against a permit released by a GC finalizer.

    A finalizer runs on whichever thread triggered the collection, maybe one inside this very
    section, where a plain lock would deadlock. The lock is re-entrant and ``depth`` marks a nested
    entry, in which :meth:`Scheduler._release` only counts the release; the outermost exit applies
    the counted releases before it unlocks.
    """

    __slots__ = ("_lock", "_scheduler", "depth")

    def __init__(self, scheduler: Scheduler) -> None:
        self._lock = threading.RLock()
        self._scheduler = scheduler
        self.depth = 0

    def __enter__(self) -> None:
        self._lock.acquire()
        self.depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self.depth == 1 and self._scheduler._deferred_releases:
                self._scheduler._apply_deferred_releases_locked()
        finally:
            self.depth -= 1
            self._lock.release()


class Scheduler:
    """FIFO permits for LLM calls: at most ``max_concurrency`` in flight, ``min_interval`` apart.

    See the module docstring for the configuration, the fairness rules and how waiters leave.
    """

    def __init__(
        self,
        max_concurrency: int | None = 1,
        min_interval: float = 0.0,
        max_queue: int | None = 1000,
        name: str = "default",
    ) -> None:
        _check_config(name, max_concurrency, min_interval, max_queue)
        self._name = name
        self._max_concurrency = max_concurrency
        self._min_interval = float(min_interval)
        self._max_queue = max_queue
        self._section = _Section(self)
        self._queue: deque[_Waiter] = deque()
        self._in_flight = 0
        self._deferred_releases = 0
        self._dispatched_total = 0
        self._last_dispatch_at: float | None = None
        self._last_dispatch_monotonic: float | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def max_concurrency(self) -> int | None:
        return self._max_concurrency

    @property
    def min_interval(self) -> float:
        return self._min_interval

    @property
    def max_queue(self) -> int | None:
        return self._max_queue

    def __repr__(self) -> str:
        return (
            f"Scheduler(max_concurrency={self._max_concurrency!r}, min_interval={self._min_interval!r}, "
            f"max_queue={self._max_queue!r}, name={self._name!r})"
        )

    # -- public API -------------------------------------------------------------------------

    def acquire(self, call_id: str, source: str | None = None, timeout: float | None = None) -> Permit:
        """Block the calling thread until ``call_id`` may run; return its :class:`Permit`.

        ``source`` is shown in :meth:`status`. ``timeout`` (seconds, ``None`` = forever, 0 = don't
        wait) bounds the wait: past it the caller leaves the queue with :class:`SchedulerTimeout`.
        Raises :class:`SchedulerFull` at once when ``max_queue`` callers are already waiting.
        Don't call it on an event loop's thread; use :meth:`acquire_async` there.
        """
        deadline = None
        if timeout is not None:
            _check_timeout(timeout)
            deadline = time.monotonic() + timeout
        with self._section:
            permit = self._dispatch_immediately_locked(call_id)
            if permit is not None:
                return permit
            waiter = _ThreadWaiter(call_id, source)
            self._enqueue_locked(waiter)
        try:
            return self._wait_in_thread(waiter, deadline, timeout)
        except BaseException:  # KeyboardInterrupt while waiting, or our own SchedulerTimeout
            with self._section:
                self._abandon_locked(waiter)
            raise

    async def acquire_async(
        self, call_id: str, source: str | None = None, timeout: float | None = None
    ) -> Permit:
        """Wait without blocking the event loop until ``call_id`` may run; return its :class:`Permit`.

        Same arguments and errors as :meth:`acquire`. Cancelling the awaiting task removes the
        caller from the queue (or hands back a permit granted in the meantime).
        """
        _check_timeout(timeout)
        loop = asyncio.get_running_loop()
        with self._section:
            permit = self._dispatch_immediately_locked(call_id)
            if permit is not None:
                return permit
            waiter = _AsyncWaiter(call_id, source, loop)
            self._enqueue_locked(waiter)
        expiry = None if timeout is None else loop.call_later(timeout, self._expire, waiter, timeout)
        try:
            await waiter.future
        except BaseException:  # CancelledError, or the SchedulerTimeout set by _expire
            with self._section:
                self._abandon_locked(waiter)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        assert waiter.permit is not None
        return waiter.permit

    def status(self) -> dict[str, Any]:
        """A snapshot: limits, counters and the waiting callers in queue order (times in epoch s)."""
        with self._section:
            queue = self._queue
            return {
                "name": self._name,
                "queue_depth": len(queue),
                "in_flight": self._in_flight,
                "max_concurrency": self._max_concurrency,
                "min_interval": self._min_interval,
                "max_queue": self._max_queue,
                "dispatched_total": self._dispatched_total,
                "last_dispatch_at": self._last_dispatch_at,
                "oldest_wait": time.monotonic() - queue[0].enqueued if queue else None,
                "waiting": [
                    {"call_id": waiter.call_id, "source": waiter.source, "since": waiter.since}
                    for waiter in queue
                ],
            }

    # -- waiting ------------------------------------------------------------------------------

    def _wait_in_thread(self, waiter: _ThreadWaiter, deadline: float | None, timeout: float | None) -> Permit:
        """Sleep on the waiter's event until granted; past ``deadline`` leave the queue."""
        while True:
            with self._section:
                self._pump_locked()
                if waiter.state is _GRANTED:
                    assert waiter.permit is not None
                    return waiter.permit
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._remove_locked(waiter)
                    assert timeout is not None
                    raise self._timeout_error_locked(waiter.call_id, timeout)
                sleep_for = None if deadline is None else deadline - now
                if self._queue[0] is waiter and self._has_free_slot_locked():
                    # Only the throttle holds the head back: wait out the gap, then pump again.
                    ready_at = self._throttled_until_locked(now)
                    if ready_at is not None:
                        gap = ready_at - now
                        sleep_for = gap if sleep_for is None else min(sleep_for, gap)
                waiter.event.clear()
            waiter.event.wait(sleep_for)

    def _expire(self, waiter: _AsyncWaiter, timeout: float) -> None:
        """Timer callback on the waiter's loop: its timeout elapsed."""
        with self._section:
            if waiter.state is not _WAITING:
                return  # granted meanwhile: the caller gets its permit after all
            self._remove_locked(waiter)
            error = self._timeout_error_locked(waiter.call_id, timeout)
        if not waiter.future.done():
            waiter.future.set_exception(error)

    def _arm_throttle_timer(self, waiter: _AsyncWaiter, ready_at: float) -> None:
        """Runs on the waiter's loop: pump the scheduler when the throttle gap is over."""
        if waiter.state is _WAITING:
            delay = max(0.0, ready_at - time.monotonic())
            waiter.loop.call_later(delay, self._on_throttle_timer, waiter)

    def _on_throttle_timer(self, waiter: _AsyncWaiter) -> None:
        with self._section:
            waiter.throttled_until = None  # a timer that fired a hair early is armed again
            self._pump_locked()

    # -- state changes, all under the lock -----------------------------------------------------

    def _has_free_slot_locked(self) -> bool:
        return self._max_concurrency is None or self._in_flight < self._max_concurrency

    def _throttled_until_locked(self, now: float) -> float | None:
        """When the throttle lets the next dispatch through, or None if it does now."""
        if not self._min_interval or self._last_dispatch_monotonic is None:
            return None
        ready_at = self._last_dispatch_monotonic + self._min_interval
        return ready_at if now < ready_at else None

    def _record_dispatch_locked(self, now: float, dispatched_at: float) -> None:
        self._in_flight += 1
        self._dispatched_total += 1
        self._last_dispatch_monotonic = now
        self._last_dispatch_at = dispatched_at

    def _dispatch_immediately_locked(self, call_id: str) -> Permit | None:
        """The fast path: a permit without queueing, if nobody waits and nothing holds it back.

        Every call of an app takes it (the default scheduler never queues): it inlines
        ``_has_free_slot_locked`` and ``_record_dispatch_locked``."""
        if self._queue or (self._max_concurrency is not None and self._in_flight >= self._max_concurrency):
            return None
        now = time.monotonic()
        if self._min_interval and self._throttled_until_locked(now) is not None:
            return None
        dispatched_at = time.time()
        self._in_flight += 1
        self._dispatched_total += 1
        self._last_dispatch_monotonic = now
        self._last_dispatch_at = dispatched_at
        return Permit(self, call_id, 0.0, dispatched_at)

    def _enqueue_locked(self, waiter: _Waiter) -> None:
        if self._max_queue is not None and len(self._queue) >= self._max_queue:
            raise SchedulerFull(
                f"scheduler {self._name!r} is full: {len(self._queue)} calls already wait for a "
                f"permit (max_queue={self._max_queue}, {self._in_flight} in flight, "
                f"max_concurrency={self._max_concurrency}), so call {waiter.call_id!r} was refused. "
                f"Raise the limit with Scheduler(..., max_queue=N), or max_queue=None for no limit."
            )
        self._queue.append(waiter)
        self._pump_locked()  # a new head held back by the throttle must arm its wake-up

    def _pump_locked(self) -> None:
        """Grant permits to the head of the queue while the limit and the throttle allow."""
        queue = self._queue
        while queue and self._has_free_slot_locked():
            now = time.monotonic()
            ready_at = self._throttled_until_locked(now)
            if ready_at is not None:
                head = queue[0]
                if head.throttled_until == ready_at:
                    return  # already told
                head.throttled_until = ready_at
                if head.notify_throttled(self, ready_at):
                    return
                queue.popleft()  # its event loop is closed: drop it and tell the next one
                head.state = _GONE
                continue
            waiter = queue.popleft()
            dispatched_at = time.time()
            waiter.permit = Permit(self, waiter.call_id, now - waiter.enqueued, dispatched_at)
            waiter.state = _GRANTED
            if waiter.notify_granted():
                self._record_dispatch_locked(now, dispatched_at)
            else:
                waiter.state = _GONE
                waiter.permit = None

    def _remove_locked(self, waiter: _Waiter) -> None:
        self._queue.remove(waiter)
        waiter.state = _GONE
        self._pump_locked()  # the queue may have a new head to serve or to wake for the throttle

    def _abandon_locked(self, waiter: _Waiter) -> None:
        """The caller stopped waiting: leave the queue, or hand back a permit granted meanwhile."""
        if waiter.state is _WAITING:
            self._remove_locked(waiter)
        elif waiter.state is _GRANTED:
            waiter.state = _GONE
            assert waiter.permit is not None
            self._release_locked(waiter.permit)

    def _release(self, permit: Permit) -> None:
        with self._section:
            if permit._released:
                return
            if self._section.depth > 1:  # a finalizer inside our own section: apply on its exit
                permit._released = True
                self._deferred_releases += 1
                return
            self._release_locked(permit)

    def _release_locked(self, permit: Permit) -> None:
        if permit._released:
            return
        permit._released = True
        self._in_flight -= 1
        if self._queue:
            self._pump_locked()

    def _apply_deferred_releases_locked(self) -> None:
        while self._deferred_releases:
            self._in_flight -= self._deferred_releases
            self._deferred_releases = 0
            self._pump_locked()

    def _timeout_error_locked(self, call_id: str, timeout: float) -> SchedulerTimeout:
        return SchedulerTimeout(
            f"call {call_id!r} waited {timeout:g} s for a permit of scheduler {self._name!r} and "
            f"left the queue: {len(self._queue)} calls still wait, {self._in_flight} in flight "
            f"(max_concurrency={self._max_concurrency}, min_interval={self._min_interval:g} s). "
            f"Pass a longer timeout, or timeout=None to wait as long as it takes."
        )


def _check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ConfigurationError(
            f"timeout must be a number of seconds >= 0, or None to wait forever; got {timeout!r}"
        )


def _check_config(name: str, max_concurrency: int | None, min_interval: float, max_queue: int | None) -> None:
    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if max_concurrency is not None and not (is_int(max_concurrency) and max_concurrency >= 1):
        raise ConfigurationError(
            f"Scheduler {name!r}: max_concurrency must be an integer >= 1 (1 = serial dispatch), "
            f"or None for no limit; got {max_concurrency!r}"
        )
    if (
        isinstance(min_interval, bool)
        or not isinstance(min_interval, (int, float))
        or not math.isfinite(min_interval)
        or min_interval < 0
    ):
        raise ConfigurationError(
            f"Scheduler {name!r}: min_interval must be a finite number of seconds >= 0 "
            f"(0 = no throttle); got {min_interval!r}"
        )
    if max_queue is not None and not (is_int(max_queue) and max_queue >= 0):
        raise ConfigurationError(
            f"Scheduler {name!r}: max_queue must be an integer >= 0 (0 = never wait), "
            f"or None for no limit; got {max_queue!r}"
        )
