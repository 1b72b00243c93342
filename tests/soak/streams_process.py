"""The streams soak's app: ``python -m tests.soak.streams_process BASE_URL DB STREAMS``.

STREAMS streamed chat calls, half sync and half async, a third each abandoned after one chunk
(dropped without close, left to the garbage collector), closed early, or cut by the server
mid-stream (an error). Prints one JSON line: spans still open, the scheduler's permits still out,
the RSS at the first quarter and at the end, and every exception that was not the expected cut.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import urllib.request
from typing import Any

import openai
from opentelemetry.sdk.trace import SpanProcessor

import llm_otel
from tests.soak.app_process import rss_mb

CUT_MODEL = "gpt-cut-mid-stream"
MESSAGES = [{"role": "user", "content": "Tell me a long story about tracing, please."}]


class OpenSpans(SpanProcessor):
    def __init__(self) -> None:
        self.open: set[int] = set()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.open.add(span.context.span_id)

    def on_end(self, span: Any) -> None:
        self.open.discard(span.context.span_id)


def _cut_streams_on(base_url: str) -> None:
    body = json.dumps({"model": CUT_MODEL, "behavior": {"drop_after_chunks": 1}}).encode()
    root = base_url.removesuffix("/v1")
    request = urllib.request.Request(
        root + "/_fake/default", data=body, headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).close()


def run(base_url: str, db: str, streams: int) -> dict[str, Any]:
    _cut_streams_on(base_url)
    scheduler = llm_otel.Scheduler(max_concurrency=4, max_queue=None, name="streams")
    handle = llm_otel.setup(db=db, scheduler=scheduler)
    spans = OpenSpans()
    handle.tracer_provider.add_span_processor(spans)
    unexpected: dict[str, int] = {}
    rss: dict[str, float] = {}

    def note(exc: BaseException) -> None:
        key = f"{type(exc).__name__}: {str(exc)[:100]}"
        unexpected[key] = unexpected.get(key, 0) + 1

    half = streams // 2
    with openai.OpenAI(base_url=base_url, api_key="sk-soak", max_retries=0) as client:
        for i in range(half):
            kind = i % 3
            try:
                stream = client.chat.completions.create(
                    model=CUT_MODEL if kind == 2 else "gpt-4o-mini", messages=MESSAGES, stream=True
                )
                if kind == 2:
                    for _ in stream:
                        pass
                else:
                    next(stream)
                    if kind == 1:
                        stream.close()
                del stream  # kind 0: abandoned, unconsumed
            except openai.APIError:
                if kind != 2:
                    raise
            except Exception as exc:
                note(exc)
            if i == half // 2:
                rss["quarter"] = rss_mb()

    async def async_half() -> None:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-soak", max_retries=0)
        for i in range(half, streams):
            kind = i % 3
            try:
                stream = await client.chat.completions.create(
                    model=CUT_MODEL if kind == 2 else "gpt-4o-mini", messages=MESSAGES, stream=True
                )
                if kind == 2:
                    async for _ in stream:
                        pass
                else:
                    await stream.__anext__()
                    if kind == 1:
                        await stream.close()
                del stream
            except openai.APIError:
                if kind != 2:
                    raise
            except Exception as exc:
                note(exc)
        await client.close()

    asyncio.run(async_half())
    gc.collect()
    rss["end"] = rss_mb()
    flushed = handle.flush(60)
    status = scheduler.status()
    llm_otel.shutdown()
    return {
        "streams": streams,
        "open_spans": len(spans.open),
        "in_flight": status["in_flight"],
        "queue_depth": status["queue_depth"],
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "unexpected": unexpected,
        "flushed": flushed,
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)
