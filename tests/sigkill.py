"""A process killed while it writes: the SIGKILL tests of the store and of the admin share it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kill_while_writing(script: str, args: list[str], busy: Callable[[], bool], timeout: float) -> int:
    """Run ``python -c script *args`` from the checkout; once it prints ``ready``, wait until
    ``busy()`` (writing in full swing) or ``timeout`` seconds, then SIGKILL it. Returns its pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
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
