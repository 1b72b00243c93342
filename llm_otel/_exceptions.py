"""The exceptions ``llm_otel`` raises into the app.

One root, so ``except llm_otel.LLMOtelError`` catches everything this package raises; misuse
(a wrong argument or setting, fixed by changing the code) is kept apart from runtime failures
(a full or slow scheduler, which happen under load)::

    LLMOtelError
    ├── ConfigurationError      (also a ValueError)  misuse: a bad argument or setting
    ├── SchedulerFull                                 the scheduler's queue has no room left
    └── SchedulerTimeout        (also a TimeoutError) no permit came within the caller's timeout

Every message says what happened and how to fix it.
"""

from __future__ import annotations


class LLMOtelError(Exception):
    """Root of every exception raised by ``llm_otel``."""


class ConfigurationError(LLMOtelError, ValueError):
    """A bad argument or setting; the message names it and the values it accepts."""


class SchedulerFull(LLMOtelError):
    """A call asked a scheduler for a permit while ``max_queue`` calls were already waiting."""


class SchedulerTimeout(LLMOtelError, TimeoutError):
    """A call waited ``timeout`` seconds for a scheduler permit and left the queue without one."""
