"""OpenTelemetry instrumentation of the OpenAI Python SDK.

Usage::

    from llm_otel.instrumentation import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)   # or llm_otel.setup()
    ...
    OpenAIInstrumentor().uninstrument()                          # the SDK is exactly as before

Wrapped: ``chat.completions.create`` / ``.parse``, ``responses.create`` / ``.parse`` and
``embeddings.create``, sync and async, streaming or not (the SDK's ``.stream()`` helpers go
through ``create``), also through ``with_raw_response``. One CLIENT span per logical call
(all SDK retries inside it), with the attributes and events of ``docs/contracts/spans.md``.

Configuration (keywords of ``instrument()``):

- ``tracer_provider``: default the global one.
- ``scheduler``: an ``llm_otel.Scheduler`` every call waits on; default one that only counts.
- ``capture_content`` (default True): record messages. The environment variable
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=no_content`` (or ``false``) turns it off.
- ``redact``: ``callable(message) -> message`` applied to every message before it is recorded.
- ``stream_usage`` (default True): ask streams for their token usage when the caller did not,
  and hide that extra chunk from the caller.

Zero-code: the ``opentelemetry_instrumentor`` entry point ``llm_otel_openai`` makes
``opentelemetry-instrument python app.py`` apply this instrumentor.
"""

from llm_otel.instrumentation.instrumentor import (
    CAPTURE_CONTENT_ENV,
    OpenAIInstrumentor,
    content_capture_enabled,
)

__all__ = ["CAPTURE_CONTENT_ENV", "OpenAIInstrumentor", "content_capture_enabled"]
