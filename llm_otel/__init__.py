"""llm-otel: every OpenAI SDK call of a Python app as an OpenTelemetry span, stored and browsable.

Usage::

    import llm_otel

    llm_otel.setup(db="sqlite:///llm_calls.db")      # spans + the SQLite span store

    with llm_otel.task("nightly-report", task_id="job-42"), llm_otel.labels(source="reports"):
        client.chat.completions.create(...)          # a span linked to the task, tagged "reports"

Configuration (environment):

- ``LLM_OTEL_DB``: the store's database URL when ``setup(db=None)``.
- ``LLM_OTEL_RETENTION_DAYS``: how long the store keeps calls (default 7).
- ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=no_content``: record no prompt or response.
- ``OTEL_EXPORTER_OTLP_ENDPOINT``: also send the spans by OTLP when setup() makes the provider.

API: ``setup`` / ``shutdown``, ``task``, ``labels``, ``Scheduler`` and its errors,
``redact_secrets`` / ``SecretRedactor`` (``setup(redact=...)``: mask API keys in prompts); the
instrumentor alone is ``llm_otel.instrumentation.OpenAIInstrumentor``; the fake OpenAI server for
tests and demos is ``llm_otel.testing.FakeOpenAI``. See docs/quickstart.md.

The names load on first use (PEP 562), so that importing the package, ``llm_otel.cli`` or
``llm_otel.testing`` does not import the OpenAI SDK (about a second); ``setup`` does.
"""

from __future__ import annotations

import importlib
import typing

from llm_otel._exceptions import ConfigurationError, LLMOtelError, SchedulerFull, SchedulerTimeout

if typing.TYPE_CHECKING:
    from llm_otel._setup import LLMOtel, setup, shutdown
    from llm_otel.context import labels, task
    from llm_otel.redaction import SecretRedactor, redact_secrets
    from llm_otel.scheduler import Scheduler

_LAZY = {
    "LLMOtel": "llm_otel._setup",
    "Scheduler": "llm_otel.scheduler",
    "SecretRedactor": "llm_otel.redaction",
    "labels": "llm_otel.context",
    "redact_secrets": "llm_otel.redaction",
    "setup": "llm_otel._setup",
    "shutdown": "llm_otel._setup",
    "task": "llm_otel.context",
}
"""Each public name that loads on first use -> the module that defines it."""

__all__ = [
    "ConfigurationError",
    "LLMOtel",
    "LLMOtelError",
    "Scheduler",
    "SchedulerFull",
    "SchedulerTimeout",
    "SecretRedactor",
    "labels",
    "redact_secrets",
    "setup",
    "shutdown",
    "task",
]


if not typing.TYPE_CHECKING:  # type checkers read the imports above, and flag a misspelt name

    def __getattr__(name: str) -> object:
        """Import the module that defines ``name`` and keep the name here (later look-ups are plain)."""
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
