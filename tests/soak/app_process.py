"""One app process of the soak runs: ``python -m tests.soak.app_process BASE_URL DB PREFIX CALLS``.

It makes CALLS real OpenAI SDK calls through ``llm_otel.setup(db=DB)``, half from a pool of threads
and half from asyncio tasks, one in ten streamed, under tasks and labels, and prints one JSON line:
the calls made, every exception the app saw (by type and message: there must be none from the
store), and the process's RSS at the start, the middle and the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

import llm_otel

THREADS = 4
ASYNC_CONCURRENCY = 8
FLUSH_TIMEOUT_S = 120
"""How long the writer may take, after the last call, to store what it still holds."""


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _messages(prefix: str, i: int) -> list[dict[str, str]]:
    text = f"{prefix}-{i}: summarise the quarter 季度销售报告 " + "lorem ipsum " * 40
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def _sync_call(client: openai.OpenAI, prefix: str, i: int) -> None:
    with llm_otel.labels(source=f"{prefix}-threads", requested_by=f"user-{i % 7}"):
        if i % 10 == 0:
            for _ in client.chat.completions.create(
                model="gpt-4o-mini", messages=_messages(prefix, i), stream=True
            ):
                pass
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=_messages(prefix, i))


async def _async_call(client: openai.AsyncOpenAI, limit: asyncio.Semaphore, prefix: str, i: int) -> None:
    async with limit:
        with llm_otel.labels(source=f"{prefix}-asyncio", requested_by=f"user-{i % 5}"):
            if i % 10 == 0:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=_messages(prefix, i), stream=True
                )
                async for _ in stream:
                    pass
            else:
                await client.chat.completions.create(model="gpt-4o-mini", messages=_messages(prefix, i))


def run(base_url: str, db: str, prefix: str, calls: int) -> dict[str, Any]:
    errors: dict[str, int] = {}
    rss = {"start": rss_mb()}

    def note(exc: BaseException) -> None:
        key = f"{type(exc).__name__}: {str(exc)[:120]}"
        errors[key] = errors.get(key, 0) + 1

    handle = llm_otel.setup(
        db=db, scheduler=llm_otel.Scheduler(max_concurrency=8, max_queue=None, name=prefix)
    )
    half = calls // 2
    started = time.monotonic()
    client = openai.OpenAI(base_url=base_url, api_key="sk-soak", max_retries=0)
    with llm_otel.task(f"{prefix}-threads"), ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(_sync_call, client, prefix, i) for i in range(half)]
        for n, future in enumerate(futures):
            try:
                future.result()
            except Exception as exc:
                note(exc)
            if n == half // 2:
                rss["quarter"] = rss_mb()
    rss["middle"] = rss_mb()

    async def async_half() -> None:
        aclient = openai.AsyncOpenAI(base_url=base_url, api_key="sk-soak", max_retries=0)
        limit = asyncio.Semaphore(ASYNC_CONCURRENCY)
        async with llm_otel.task(f"{prefix}-asyncio"):
            results = await asyncio.gather(
                *(_async_call(aclient, limit, prefix, i) for i in range(half, calls)), return_exceptions=True
            )
        for result in results:
            if isinstance(result, BaseException):
                note(result)
        await aclient.close()

    asyncio.run(async_half())
    rss["end"] = rss_mb()
    elapsed = time.monotonic() - started
    flush_started = time.monotonic()
    flushed = handle.flush(FLUSH_TIMEOUT_S)
    flush_s = time.monotonic() - flush_started
    stats = handle.store.stats() if handle.store is not None else {}
    llm_otel.shutdown()
    return {
        "prefix": prefix,
        "process": f"{socket.gethostname()}:{os.getpid()}",
        "calls": calls,
        "seconds": round(elapsed, 1),
        "errors": errors,
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "flushed": flushed,
        "flush_s": round(flush_s, 1),
        "store": stats,
    }


if __name__ == "__main__":
    base_url, db, prefix, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(json.dumps(run(base_url, db, prefix, calls)), flush=True)
