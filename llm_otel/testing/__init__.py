"""A fake OpenAI-compatible HTTP server for tests and the demo (stdlib only, no API key needed).

Usage::

    import openai
    from llm_otel.testing import Behavior, FakeOpenAI

    with FakeOpenAI() as server:                       # 127.0.0.1, a free port, a daemon thread
        client = openai.OpenAI(base_url=server.base_url, api_key="test-key")
        server.script(Behavior(status=429, retry_after_ms=10))          # the next request only
        server.set_default(Behavior(first_chunk_delay=0.3), model="slow-model")
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        server.calls[-1].usage, server.calls[-1].retry_count          # what was sent, retries seen

Without ``with``: ``server = FakeOpenAI(port=0, host="127.0.0.1").start()`` … ``server.stop()``.

Endpoints (shapes as the real API sends them, see ``payloads``):

- ``POST /v1/chat/completions``: JSON or SSE stream (``n``, tool calls, ``include_usage``);
- ``POST /v1/responses``: JSON or the Responses event stream;
- ``POST /v1/embeddings``: float or base64 vectors, ``dimensions`` (default 8);
- ``GET /v1/models``; any other path: 404 with the OpenAI error body.

Behaviour (see ``Behavior`` for every field): each request takes the next one-shot behaviour
scripted for its model, else for any model, else the default for its model, else for any model,
else ``Behavior()`` (a quick echo: ``"Echo: <last user text>"``). The models list takes none.

Control endpoints, for other processes (JSON bodies, Behavior fields as keys):

- ``POST /_fake/script`` ``{"model": optional, "behaviors": [{...}, ...]}``
- ``POST /_fake/default`` ``{"model": optional, "behavior": {...}}``
- ``POST /_fake/reset`` (scripts, defaults and calls)
- ``GET /_fake/calls`` → ``{"calls": [RecordedCall as JSON, ...]}``

Token counts are deterministic (see ``tokens``): prompt = 3 per message + its words (the
Responses ``instructions`` count as one more message); completion = the words of the reply and of
the tool-call arguments + ``reasoning_tokens``; cached and reasoning tokens come from the
``Behavior``. ``RecordedCall.usage`` is the usage exactly as sent.
"""

from .behavior import Behavior
from .calls import RecordedCall
from .server import FakeOpenAI

__all__ = ["Behavior", "FakeOpenAI", "RecordedCall"]
