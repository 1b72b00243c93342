"""The token login's back-off: after a few wrong tokens from one client address, that address waits.

Plain Python (no Flask), driven by ``admin_flask.auth``:

- ``check(address)`` before a token is compared: raises ``TooManyAttempts`` (429, ``Retry-After``)
  while the address waits. The token is then not compared at all, so guesses made during the wait
  teach nothing, and they are not counted (a client that retries too early is not punished longer).
- ``failed(address)`` after a wrong token: once ``attempts`` wrong tokens came in a row, the address
  waits ``backoff_s``, doubling with each further wrong token up to ``backoff_max_s``. A wrong token
  older than ``window_s`` is forgotten.
- ``succeeded(address)`` after a right token: the address starts again from zero.

The waits stay short (seconds), so an attacker on the same address can slow the real admin's token
logins but never lock them out for long; a session cookie already issued is not subject to the
back-off at all. Memory is bounded: at most ``TRACKED_ADDRESSES`` addresses are remembered (the one
whose last wrong token is oldest is forgotten first). IPv6 addresses count per /64 network, the
block one client usually holds. ``attempts=0`` turns the back-off off.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.exceptions import TooManyRequests

logger = logging.getLogger(__name__)

TRACKED_ADDRESSES = 10_000
"""Client addresses remembered at most (~150 bytes each)."""


class TooManyAttempts(TooManyRequests):
    """429 with ``Retry-After``: this address sent too many wrong tokens; it may try again later."""

    code_name = "too_many_attempts"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many wrong tokens from your address: try again in {retry_after_s} s",
            retry_after=retry_after_s,
        )
        self.retry_after_s = retry_after_s


@dataclass
class _Record:
    failures: int
    last_failure: float
    wait_until: float = 0.0


class LoginBackoff:
    """Wrong-token counts per client address; see the module docstring."""

    def __init__(
        self,
        *,
        attempts: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        window_s: float = 300.0,
        tracked: int = TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.window_s = window_s
        self.tracked = tracked
        self._clock = clock
        self._lock = threading.Lock()
        self._records: OrderedDict[str, _Record] = OrderedDict()  # oldest last failure first

    @property
    def enabled(self) -> bool:
        return self.attempts > 0

    def check(self, address: str | None) -> None:
        """Return when ``address`` may present a token now; else raise ``TooManyAttempts``."""
        if not self.enabled:
            return
        key = _key(address)
        with self._lock:
            record = self._records.get(key)
            wait = 0.0 if record is None else record.wait_until - self._clock()
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))

    def failed(self, address: str | None) -> None:
        """Count a wrong token from ``address``; start (or lengthen) its wait past ``attempts``."""
        if not self.enabled:
            return
        key, now = _key(address), self._clock()
        with self._lock:
            record = self._records.pop(key, None)
            if record is None or now - record.last_failure > self.window_s:
                record = _Record(0, now)
            record.failures += 1
            record.last_failure = now
            excess = record.failures - self.attempts
            if excess >= 0:
                wait = min(self.backoff_max_s, self.backoff_s * 2 ** min(excess, 32))
                record.wait_until = now + wait
            self._records[key] = record
            self._forget(now)
        if excess >= 0:
            logger.warning(
                "the LLM admin refuses token logins from %s for %.1f s: %d wrong tokens in a row",
                key,
                wait,
                record.failures,
            )

    def succeeded(self, address: str | None) -> None:
        """A right token from ``address``: forget its wrong ones."""
        if not self.enabled:
            return
        with self._lock:
            self._records.pop(_key(address), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def _forget(self, now: float) -> None:
        """Drop the records past their window, then the oldest ones beyond ``tracked``."""
        while self._records:
            oldest = next(iter(self._records.values()))
            expired = now - oldest.last_failure > self.window_s and oldest.wait_until <= now
            if not expired and len(self._records) <= self.tracked:
                return
            self._records.popitem(last=False)


def _key(address: str | None) -> str:
    """The address counted: IPv4 as is, IPv6 by its /64 network; anything else as given."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
