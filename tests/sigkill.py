"""A process killed while it writes: the SIGKILL tests of the store and of the admin share it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.children import checkout_python


def kill_while_writing(script: str, args: list[str], busy: Callable[[], bool], timeout: float) -> int:
    """Run ``python -c script *args`` from the checkout; once it prints ``ready``, wait until
    ``busy()`` (writing in full swing) or ``timeout`` seconds, then SIGKILL it. Returns its pid."""
    child = checkout_python(script, *args)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + timeout
        while not busy() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    return child.pid
