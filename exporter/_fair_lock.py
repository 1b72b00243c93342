"""A lock handed to the threads waiting for it in the order they asked (the writer's and retention's).

Usage::

    lock = FairLock()
    with lock:          # one write transaction at a time: the store's writer's or retention's
        ...

``threading.Lock`` is not ordered: a thread that releases it and asks again at once (retention,
between two of its delete transactions) usually takes it back before a waiting thread that has
not yet got a core to run on (the store's writer, under load), which then waits for one more
transaction, and again (issue 10: waits of seconds at 1M calls on a loaded machine). Here a
release hands the lock to the longest waiter at once, before that thread runs, so a writer that
asked during a retention transaction always writes before retention's next one, however long the
scheduler takes to wake it. Uncontended, it costs one more ``threading.Lock`` round trip.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FairLock:
    """A non-reentrant lock whose waiters get it first in, first out (see the module docstring)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # guards the two fields below; held for a few statements
        self._held = False
        self._waiters: deque[threading.Lock] = deque()  # each held until its thread is given the lock

    def acquire(self) -> None:
        """Take the lock, after every thread that asked before."""
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        try:
            turn.acquire()  # released by ``release``, which hands this thread the lock
        except BaseException:  # interrupted (e.g. KeyboardInterrupt): give up the turn or the lock
            with self._mutex:
                if turn in self._waiters:
                    self._waiters.remove(turn)
                    raise
            self.release()
            raise

    def release(self) -> None:
        """Hand the lock to the longest waiter, if any (it stays held), else free it."""
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of an unheld FairLock")
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    @property
    def waiting(self) -> int:
        """How many threads wait for the lock now."""
        with self._mutex:
            return len(self._waiters)

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
