"""exporter._fair_lock: the lock the store's writer and retention take turns on, handed over in order."""

from __future__ import annotations

import threading
import time

import pytest

from exporter._fair_lock import FairLock


def _until_waiting(lock: FairLock, count: int) -> None:
    """Until ``count`` threads wait for ``lock`` (a thread started is not yet a thread waiting)."""
    deadline = time.monotonic() + 10
    while lock.waiting < count:
        assert time.monotonic() < deadline, f"{lock.waiting} threads wait, not {count}"
        time.sleep(0.001)


def _taker(lock: FairLock, name: str, order: list[str]) -> threading.Thread:
    def take() -> None:
        with lock:
            order.append(name)

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def test_waiters_get_the_lock_in_the_order_they_asked() -> None:
    lock, order = FairLock(), []
    threads = []
    with lock:
        for index, name in enumerate(("first", "second", "third"), start=1):
            threads.append(_taker(lock, name, order))
            _until_waiting(lock, index)
        assert order == []  # none of them got it while held
    for thread in threads:
        thread.join(10)

    assert order == ["first", "second", "third"]
    assert lock.waiting == 0


def test_a_thread_that_releases_and_asks_again_at_once_goes_after_the_waiter() -> None:
    """What retention does between two transactions: the writer that asked meanwhile writes first,
    however long it takes to get a core (``threading.Lock`` would usually go back to retention)."""
    lock, order = FairLock(), []
    lock.acquire()
    writer = _taker(lock, "writer", order)
    _until_waiting(lock, 1)

    lock.release()
    with lock:
        order.append("retention")
    writer.join(10)

    assert order == ["writer", "retention"]


def test_it_is_free_again_once_released_and_refuses_a_release_it_does_not_hold() -> None:
    lock = FairLock()
    with lock:
        pass
    with lock:  # not left held by the first turn
        pass

    with pytest.raises(RuntimeError, match="unheld"):
        lock.release()
