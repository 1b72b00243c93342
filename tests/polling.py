"""Waiting in tests for what another thread or process does: ``until`` a check holds.

The deadline is a hang guard, never a speed bound (speed targets live in ``bench/``): it turns a
wait that would last until pytest's timeout into a failure that says what did not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

HANG_GUARD_S = 30.0
"""How long a wait may take before the test fails: far past anything a loaded machine needs."""

_T = TypeVar("_T")


def until(
    check: Callable[[], _T],
    what: str | Callable[[], Any],
    timeout: float = HANG_GUARD_S,
    interval: float = 0.01,
) -> _T:
    """``check()``'s first true result, asked every ``interval`` seconds; after ``timeout`` the test
    fails with ``what`` (a text, or a callable that says how things stand then)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(_said(what, timeout))
        time.sleep(interval)
    return result


async def async_until(
    check: Callable[[], _T], what: str | Callable[[], Any], timeout: float = HANG_GUARD_S
) -> _T:
    """``until`` on a running event loop: it sleeps with ``asyncio.sleep``, so the loop runs on."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(_said(what, timeout))
        await asyncio.sleep(0.001)
    return result


def until_equal(read: Callable[[], Any], expected: Any, timeout: float = HANG_GUARD_S) -> None:
    """Wait until ``read()`` returns ``expected``; the failure shows the last value read."""
    last: list[Any] = [None]

    def matches() -> bool:
        last[0] = read()
        return last[0] == expected

    until(matches, lambda: f"still {last[0]!r}, expected {expected!r}", timeout)


def _said(what: str | Callable[[], Any], timeout: float) -> str:
    return f"not within {timeout:g} s: {what if isinstance(what, str) else what()}"
