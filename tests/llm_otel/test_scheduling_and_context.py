"""Calls through the scheduler, inside tasks and labels, over real HTTP to the fake server."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time

import openai
import pytest
from opentelemetry import context as otel_context

import llm_otel
from llm_otel import attributes as attr
from llm_otel.testing import Behavior
from tests.llm_otel.spans import API_KEY, call_spans, events_named, only_call_span

MESSAGES = [{"role": "user", "content": "hello"}]


def _dispatch_and_end(span) -> tuple[int, int]:
    [dispatched] = events_named(span, attr.EVENT_DISPATCHED)
    return dispatched.timestamp, span.end_time


def test_serial_scheduler_never_overlaps_calls(instrument, client, fake_openai, span_exporter) -> None:
    instrument(scheduler=llm_otel.Scheduler(max_concurrency=1))
    fake_openai.set_default(Behavior(first_chunk_delay=0.05))
    threads = [
        threading.Thread(target=client.chat.completions.create, kwargs={"model": "m", "messages": MESSAGES})
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = call_spans(span_exporter)
    assert len(spans) == 5
    intervals = sorted(_dispatch_and_end(span) for span in spans)
    for (_, previous_end), (next_start, _) in itertools.pairwise(intervals):
        assert next_start >= previous_end
    waits = sorted(span.attributes[attr.QUEUE_WAIT] for span in spans)
    assert waits[-1] >= 0.15  # the last of five waited for at least three 50 ms calls


def test_min_interval_spaces_dispatches(instrument, client, span_exporter) -> None:
    instrument(scheduler=llm_otel.Scheduler(max_concurrency=None, min_interval=0.2))
    threads = [
        threading.Thread(target=client.embeddings.create, kwargs={"model": "e", "input": "x"})
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    dispatches = sorted(_dispatch_and_end(span)[0] for span in call_spans(span_exporter))
    gaps = [(later - earlier) / 1e9 for earlier, later in itertools.pairwise(dispatches)]
    assert len(gaps) == 2
    assert all(gap >= 0.2 - 0.002 for gap in gaps), gaps  # 2 ms: timestamp vs monotonic clock


def test_full_queue_raises_scheduler_full_and_records_the_failure(
    instrument, client, fake_openai, span_exporter
) -> None:
    scheduler = llm_otel.Scheduler(max_concurrency=1, max_queue=1)
    instrument(scheduler=scheduler)
    blocker = scheduler.acquire("held-by-test")
    waiter = threading.Thread(
        target=client.chat.completions.create, kwargs={"model": "m", "messages": MESSAGES}
    )
    waiter.start()
    while scheduler.status()["queue_depth"] < 1:
        time.sleep(0.005)
    with pytest.raises(llm_otel.SchedulerFull, match="queue"):
        client.chat.completions.create(model="m", messages=MESSAGES)
    refused = only_call_span(span_exporter)
    assert refused.attributes[attr.STATUS] == attr.FAILED
    assert refused.attributes[attr.ERROR_TYPE] == "SchedulerFull"
    assert len(fake_openai.calls) == 0  # refused before any request
    blocker.release()
    waiter.join()
    assert len(call_spans(span_exporter)) == 2


def test_a_stream_holds_its_permit_until_it_ends(instrument, client, span_exporter) -> None:
    scheduler = llm_otel.Scheduler(max_concurrency=1)
    instrument(scheduler=scheduler)
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    second = threading.Thread(
        target=client.chat.completions.create, kwargs={"model": "m", "messages": MESSAGES}
    )
    second.start()
    time.sleep(0.2)
    assert scheduler.status()["queue_depth"] == 1  # still waiting behind the open stream
    list(stream)
    second.join()
    waits = sorted(span.attributes[attr.QUEUE_WAIT] for span in call_spans(span_exporter))
    assert waits[-1] >= 0.2


async def test_async_callers_wait_without_blocking_the_loop(instrument, fake_openai, span_exporter) -> None:
    instrument(scheduler=llm_otel.Scheduler(max_concurrency=1))
    fake_openai.set_default(Behavior(first_chunk_delay=0.1))
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=API_KEY)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticks_at_end: list[int] = []

    async def call() -> None:
        await client.chat.completions.create(model="m", messages=MESSAGES)
        ticks_at_end.append(ticks)

    ticking = asyncio.create_task(ticker())
    await asyncio.gather(*(call() for _ in range(4)))
    stop.set()
    await ticking
    await client.close()
    # The loop ran on while each call after the first waited for the one before (serial, 100 ms each).
    assert all(later > earlier for earlier, later in itertools.pairwise(ticks_at_end)), ticks_at_end
    assert max(span.attributes[attr.QUEUE_WAIT] for span in call_spans(span_exporter)) >= 0.25


async def test_a_cancelled_waiter_ends_cancelled(instrument, fake_openai, span_exporter) -> None:
    scheduler = llm_otel.Scheduler(max_concurrency=1)
    instrument(scheduler=scheduler)
    blocker = scheduler.acquire("held-by-test")
    client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=API_KEY)
    waiting = asyncio.create_task(client.chat.completions.create(model="m", messages=MESSAGES))
    while scheduler.status()["queue_depth"] < 1:
        await asyncio.sleep(0.005)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    blocker.release()
    await client.close()
    span = only_call_span(span_exporter)
    assert span.attributes[attr.STATUS] == attr.CANCELLED
    assert scheduler.status()["queue_depth"] == 0
    assert fake_openai.calls == []


# -- tasks and labels ---------------------------------------------------------------------------


def _ancestors(span, spans_by_id) -> list:
    chain = []
    while span.parent is not None and span.parent.span_id in spans_by_id:
        span = spans_by_id[span.parent.span_id]
        chain.append(span)
    return chain


def test_calls_in_a_task_link_to_it_from_threads_and_asyncio(
    instrumented, client, fake_openai, span_exporter, tracer_provider
) -> None:
    def in_thread_with_context(ctx) -> None:
        token = otel_context.attach(ctx)
        try:
            client.chat.completions.create(model="m", messages=MESSAGES)
        finally:
            otel_context.detach(token)

    async def in_asyncio_tasks() -> None:
        async_client = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key=API_KEY)
        await asyncio.gather(*(async_client.embeddings.create(model="e", input="x") for _ in range(2)))
        await async_client.close()

    with llm_otel.task("report", task_id="job-42", tracer_provider=tracer_provider, customer="acme"):
        client.chat.completions.create(model="m", messages=MESSAGES)
        worker = threading.Thread(target=in_thread_with_context, args=(otel_context.get_current(),))
        worker.start()
        worker.join()
        copied = contextvars.copy_context()
        runner = threading.Thread(target=copied.run, args=(lambda: asyncio.run(in_asyncio_tasks()),))
        runner.start()
        runner.join()
    client.chat.completions.create(model="m", messages=MESSAGES)  # outside: no task

    spans = span_exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans}
    [task_span] = [span for span in spans if span.attributes.get(attr.TASK_KIND) == attr.TASK_KIND_VALUE]
    assert task_span.attributes["llm_otel.task.attr.customer"] == "acme"
    calls = call_spans(span_exporter)
    assert len(calls) == 5
    inside, outside = calls[:-1], calls[-1]
    for span in inside:
        assert span.attributes[attr.TASK_ID] == "job-42"
        assert span.attributes[attr.TASK_NAME] == "report"
        assert task_span in _ancestors(span, by_id)
    assert attr.TASK_ID not in outside.attributes


def test_a_thread_without_the_context_is_not_linked(
    instrumented, client, span_exporter, tracer_provider
) -> None:
    with llm_otel.task("report", tracer_provider=tracer_provider):
        worker = threading.Thread(
            target=client.chat.completions.create, kwargs={"model": "m", "messages": MESSAGES}
        )
        worker.start()
        worker.join()
    assert attr.TASK_ID not in only_call_span(span_exporter).attributes


def test_labels_tag_calls_and_inner_labels_win(instrumented, client, span_exporter) -> None:
    with llm_otel.labels(source="billing", requested_by="alice"):
        client.chat.completions.create(model="m", messages=MESSAGES)
        with llm_otel.labels(requested_by="bob"):
            client.chat.completions.create(model="m", messages=MESSAGES)
    first, second = call_spans(span_exporter)
    assert (first.attributes[attr.SOURCE], first.attributes[attr.REQUESTED_BY]) == ("billing", "alice")
    assert (second.attributes[attr.SOURCE], second.attributes[attr.REQUESTED_BY]) == ("billing", "bob")


def test_scheduler_status_lists_waiting_calls_with_their_source(instrument, client) -> None:
    scheduler = llm_otel.Scheduler(max_concurrency=1)
    instrument(scheduler=scheduler)
    blocker = scheduler.acquire("held-by-test")

    def labelled_call() -> None:
        with llm_otel.labels(source="nightly"):
            client.chat.completions.create(model="m", messages=MESSAGES)

    worker = threading.Thread(target=labelled_call)
    worker.start()
    while scheduler.status()["queue_depth"] < 1:
        time.sleep(0.005)
    [waiting] = scheduler.status()["waiting"]
    assert waiting["source"] == "nightly"
    assert len(waiting["call_id"]) == 32
    blocker.release()
    worker.join()
    assert scheduler.status()["dispatched_total"] == 2
