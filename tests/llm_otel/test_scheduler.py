"""The scheduler alone: FIFO, limits, throttle, timeouts, cancellation, threads and asyncio together."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable

import pytest

from llm_otel._exceptions import ConfigurationError, LLMOtelError, SchedulerFull, SchedulerTimeout
from llm_otel.scheduler import Permit, Scheduler
from tests.polling import HANG_GUARD_S, async_until, until

# Clocks are exact to the microsecond or better on Linux; this only absorbs float rounding.
CLOCK_EPSILON = 1e-3


def queue_depth_is(scheduler: Scheduler, depth: int) -> Callable[[], bool]:
    return lambda: scheduler.status()["queue_depth"] == depth


def start_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_serial_scheduler_never_overlaps_and_keeps_fifo_order() -> None:
    scheduler = Scheduler()  # max_concurrency=1
    intervals: list[tuple[float, float]] = []
    dispatch_order: list[str] = []

    def call(call_id: str) -> None:
        with scheduler.acquire(call_id):
            entered = time.monotonic()
            dispatch_order.append(call_id)
            time.sleep(0.01)
            intervals.append((entered, time.monotonic()))

    gate = scheduler.acquire("gate")
    threads = []
    for index in range(5):
        threads.append(start_thread(lambda call_id=f"call-{index}": call(call_id)))
        until(queue_depth_is(scheduler, index + 1), scheduler.status)  # queued in this order
    gate.release()
    for thread in threads:
        thread.join(5)

    assert dispatch_order == [f"call-{index}" for index in range(5)]
    intervals.sort()
    for (_, previous_exit), (next_enter, _) in itertools.pairwise(intervals):
        assert next_enter >= previous_exit
    assert scheduler.status()["in_flight"] == 0


def test_max_concurrency_two_runs_two_at_once_but_never_three() -> None:
    scheduler = Scheduler(max_concurrency=2)
    both_inside = threading.Barrier(2)  # breaks only if two calls really run together
    lock = threading.Lock()
    running = 0
    most_running = 0

    def call(call_id: str) -> None:
        nonlocal running, most_running
        with scheduler.acquire(call_id):
            with lock:
                running += 1
                most_running = max(most_running, running)
            both_inside.wait(timeout=5)
            time.sleep(0.02)
            with lock:
                running -= 1

    threads = [start_thread(lambda call_id=f"call-{index}": call(call_id)) for index in range(6)]
    for thread in threads:
        thread.join(5)

    assert most_running == 2
    assert not both_inside.broken
    assert scheduler.status()["dispatched_total"] == 6


def test_min_interval_spaces_dispatches_from_the_previous_dispatch() -> None:
    scheduler = Scheduler(max_concurrency=None, min_interval=0.2)
    dispatched: list[float] = []

    def call(call_id: str) -> None:
        with scheduler.acquire(call_id) as permit:
            dispatched.append(permit.dispatched_at)

    threads = [start_thread(lambda call_id=f"call-{index}": call(call_id)) for index in range(3)]
    for thread in threads:
        thread.join(5)

    assert len(dispatched) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(dispatched))]
    assert all(gap >= 0.2 - CLOCK_EPSILON for gap in gaps), gaps


def test_waits_show_in_status_while_waiting_and_in_the_permit_after() -> None:
    scheduler = Scheduler(name="openai")
    holder = scheduler.acquire("holder")
    assert holder.wait == 0.0
    permits: dict[str, Permit] = {}

    def call(call_id: str, source: str) -> None:
        with scheduler.acquire(call_id, source=source) as permit:
            permits[call_id] = permit

    before = time.time()
    start_thread(lambda: call("first", "billing"))
    until(queue_depth_is(scheduler, 1), scheduler.status)
    start_thread(lambda: call("second", "search"))
    until(queue_depth_is(scheduler, 2), scheduler.status)
    time.sleep(0.05)

    status = scheduler.status()
    assert status["name"] == "openai"
    assert status["in_flight"] == 1
    assert status["max_concurrency"] == 1
    assert status["min_interval"] == 0.0
    assert status["max_queue"] == 1000
    assert status["dispatched_total"] == 1
    assert status["last_dispatch_at"] == pytest.approx(holder.dispatched_at)
    assert status["oldest_wait"] >= 0.05
    assert [(item["call_id"], item["source"]) for item in status["waiting"]] == [
        ("first", "billing"),
        ("second", "search"),
    ]
    first_since, second_since = (item["since"] for item in status["waiting"])
    assert before <= first_since <= second_since <= time.time()

    holder.release()
    until(lambda: len(permits) == 2, lambda: f"granted: {permits}")
    assert permits["first"].wait >= 0.05
    assert permits["second"].wait >= 0.05
    assert permits["first"].dispatched_at <= permits["second"].dispatched_at
    until(lambda: scheduler.status()["in_flight"] == 0, scheduler.status)
    status = scheduler.status()
    assert (status["queue_depth"], status["oldest_wait"], status["waiting"]) == (0, None, [])
    assert status["dispatched_total"] == 3


def test_full_queue_raises_scheduler_full_at_once_with_a_helpful_message() -> None:
    scheduler = Scheduler(max_queue=1, name="tight")
    holder = scheduler.acquire("holder")
    start_thread(lambda: scheduler.acquire("waiter").release())
    until(queue_depth_is(scheduler, 1), scheduler.status)

    # The holder keeps its permit meanwhile: an acquire that waited instead of refusing would end
    # in SchedulerTimeout (after the hang guard), not SchedulerFull.
    with pytest.raises(SchedulerFull) as raised:
        scheduler.acquire("one-too-many", timeout=HANG_GUARD_S)
    message = str(raised.value)
    assert "'tight'" in message and "max_queue=1" in message and "max_queue=None" in message
    assert isinstance(raised.value, LLMOtelError)
    assert scheduler.status()["queue_depth"] == 1
    holder.release()
    until(lambda: scheduler.status()["in_flight"] == 0, scheduler.status)


async def test_full_queue_raises_for_async_callers_too() -> None:
    scheduler = Scheduler(max_queue=0)
    holder = scheduler.acquire("holder")
    with pytest.raises(SchedulerFull):
        await scheduler.acquire_async("refused")
    holder.release()
    (await scheduler.acquire_async("fine")).release()


def test_timeout_raises_scheduler_timeout_and_leaves_the_queue() -> None:
    scheduler = Scheduler(name="slow")
    holder = scheduler.acquire("holder")
    start_thread(lambda: scheduler.acquire("patient").release())
    until(queue_depth_is(scheduler, 1), scheduler.status)

    with pytest.raises(SchedulerTimeout) as raised:
        scheduler.acquire("impatient", timeout=0.05)
    assert isinstance(raised.value, TimeoutError) and isinstance(raised.value, LLMOtelError)
    assert "'impatient'" in str(raised.value) and "'slow'" in str(raised.value)
    assert [item["call_id"] for item in scheduler.status()["waiting"]] == ["patient"]

    holder.release()
    until(lambda: scheduler.status()["dispatched_total"] == 2, scheduler.status)
    until(lambda: scheduler.status()["in_flight"] == 0, scheduler.status)


async def test_async_timeout_raises_scheduler_timeout_and_leaves_the_queue() -> None:
    scheduler = Scheduler()
    holder = scheduler.acquire("holder")
    with pytest.raises(SchedulerTimeout):
        await scheduler.acquire_async("impatient", timeout=0.05)
    assert scheduler.status()["queue_depth"] == 0
    holder.release()
    assert scheduler.status()["in_flight"] == 0


async def test_async_waiters_never_block_the_event_loop() -> None:
    scheduler = Scheduler()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def call(call_id: str) -> float:
        permit = await asyncio.wait_for(scheduler.acquire_async(call_id), 5)
        with permit:
            await asyncio.sleep(0.02)
        return permit.wait

    ticking = asyncio.create_task(ticker())
    holder = scheduler.acquire("holder")
    calls = asyncio.gather(*(call(f"call-{index}") for index in range(3)))
    await async_until(queue_depth_is(scheduler, 3), scheduler.status)
    ticks_when_queued = ticks

    def hold_then_release() -> None:  # the permit holder is another thread
        time.sleep(0.2)
        holder.release()

    start_thread(hold_then_release)
    waits = await calls
    ticking.cancel()

    assert min(waits) >= 0.2 - CLOCK_EPSILON
    # ~25 ticks if the loop ran freely while the callers waited; none if a waiter had blocked it.
    assert ticks - ticks_when_queued >= 5


async def test_throttle_gap_of_async_waiters_is_waited_on_the_event_loop() -> None:
    scheduler = Scheduler(max_concurrency=None, min_interval=0.1)
    ticks = 0
    dispatched: list[float] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def call(call_id: str) -> None:
        with await scheduler.acquire_async(call_id) as permit:
            dispatched.append(permit.dispatched_at)

    ticking = asyncio.create_task(ticker())
    await asyncio.gather(*(call(f"call-{index}") for index in range(3)))
    ticking.cancel()

    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(dispatched))]
    assert all(gap >= 0.1 - CLOCK_EPSILON for gap in gaps), gaps
    assert ticks >= 5  # ~20 over the two 0.1 s gaps; about none if the gaps blocked the loop


async def test_cancelled_async_waiter_leaves_the_queue() -> None:
    scheduler = Scheduler()
    holder = scheduler.acquire("holder")
    doomed = asyncio.create_task(scheduler.acquire_async("doomed"))
    await async_until(queue_depth_is(scheduler, 1), scheduler.status)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert scheduler.status()["queue_depth"] == 0
    holder.release()
    permit = await scheduler.acquire_async("next")
    assert permit.wait == 0.0
    permit.release()


async def test_cancellation_racing_a_grant_loses_no_permit() -> None:
    scheduler = Scheduler()
    holder = scheduler.acquire("holder")
    doomed = asyncio.create_task(scheduler.acquire_async("doomed"))
    await async_until(queue_depth_is(scheduler, 1), scheduler.status)
    follower = asyncio.create_task(scheduler.acquire_async("follower"))
    await async_until(queue_depth_is(scheduler, 2), scheduler.status)

    holder.release()  # grants "doomed"; its future is resolved only on the next loop iteration
    assert scheduler.status()["in_flight"] == 1
    doomed.cancel()  # ... and it is cancelled before it could take the permit
    with pytest.raises(asyncio.CancelledError):
        await doomed

    permit = await asyncio.wait_for(follower, 5)  # the permit went on to the next waiter
    assert permit.call_id == "follower"
    assert scheduler.status()["in_flight"] == 1
    permit.release()
    assert scheduler.status()["in_flight"] == 0


async def test_threads_and_async_callers_share_one_fifo_queue() -> None:
    scheduler = Scheduler()
    dispatch_order: list[str] = []

    def thread_call(call_id: str) -> None:
        with scheduler.acquire(call_id):
            dispatch_order.append(call_id)
            time.sleep(0.005)

    async def async_call(call_id: str) -> None:
        with await scheduler.acquire_async(call_id):
            dispatch_order.append(call_id)
            await asyncio.sleep(0.005)

    holder = scheduler.acquire("holder")
    expected = ["thread-1", "async-1", "thread-2", "async-2", "thread-3"]
    threads, tasks = [], []
    for depth, call_id in enumerate(expected, start=1):
        if call_id.startswith("thread"):
            threads.append(start_thread(lambda call_id=call_id: thread_call(call_id)))
        else:
            tasks.append(asyncio.create_task(async_call(call_id)))
        await async_until(queue_depth_is(scheduler, depth), scheduler.status)
    holder.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    for thread in threads:
        await asyncio.to_thread(thread.join, 5)

    assert dispatch_order == expected
    assert scheduler.status()["in_flight"] == 0


def test_callers_on_several_event_loops_in_several_threads_share_the_limit() -> None:
    scheduler = Scheduler(max_concurrency=2)
    lock = threading.Lock()
    running = 0
    most_running = 0

    async def call(call_id: str) -> None:
        nonlocal running, most_running
        with await scheduler.acquire_async(call_id):
            with lock:
                running += 1
                most_running = max(most_running, running)
            await asyncio.sleep(0.01)
            with lock:
                running -= 1

    async def loop_main(loop_index: int) -> None:
        await asyncio.gather(*(call(f"loop-{loop_index}-call-{index}") for index in range(5)))

    threads = [start_thread(lambda index=index: asyncio.run(loop_main(index))) for index in range(3)]
    for thread in threads:
        thread.join(5)

    status = scheduler.status()
    assert most_running == 2
    assert (status["dispatched_total"], status["in_flight"], status["queue_depth"]) == (15, 0, 0)


def test_release_is_idempotent_from_any_thread_and_as_a_context_manager() -> None:
    scheduler = Scheduler(max_concurrency=2)
    permit = scheduler.acquire("call")
    other = scheduler.acquire("other")
    permit.release()
    permit.release()
    start_thread(permit.release).join(5)
    assert permit.released
    assert scheduler.status()["in_flight"] == 1
    with other:
        pass
    other.release()
    assert scheduler.status()["in_flight"] == 0


def test_release_from_a_finalizer_inside_the_schedulers_own_lock_does_not_deadlock() -> None:
    # A GC finalizer can release a permit on a thread that is inside the scheduler's critical
    # section; entering that section here stands in for such a collection.
    scheduler = Scheduler()
    holder = scheduler.acquire("holder")
    granted: list[Permit] = []
    start_thread(lambda: granted.append(scheduler.acquire("next")))
    until(queue_depth_is(scheduler, 1), scheduler.status)

    with scheduler._section:
        holder.release()
        assert holder.released

    until(lambda: len(granted) == 1, lambda: f"granted: {granted}")
    granted[0].release()
    assert scheduler.status()["in_flight"] == 0


def test_default_counting_scheduler_never_queues_or_waits() -> None:
    scheduler = Scheduler(max_concurrency=None, min_interval=0.0, max_queue=None)
    held = [scheduler.acquire(f"call-{index}") for index in range(1000)]
    assert scheduler.status()["in_flight"] == 1000
    for permit in held:
        permit.release()
    for index in range(1000):
        scheduler.acquire(f"again-{index}").release()

    status = scheduler.status()
    assert all(permit.wait == 0.0 for permit in held)
    assert (status["dispatched_total"], status["in_flight"], status["queue_depth"]) == (2000, 0, 0)


def test_no_permit_is_lost_under_random_timeouts_and_cancellations() -> None:
    scheduler = Scheduler(max_concurrency=2, max_queue=None)
    outcomes = {"ran": 0, "timed_out": 0, "cancelled": 0}
    lock = threading.Lock()

    def count(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    def thread_caller(index: int) -> None:
        rng = random.Random(index)
        for attempt in range(15):
            try:
                with scheduler.acquire(
                    f"thread-{index}-{attempt}", timeout=rng.choice([0, 0.001, 0.005, None])
                ):
                    time.sleep(rng.choice([0, 0.001]))
                count("ran")
            except SchedulerTimeout:
                count("timed_out")

    async def async_caller(index: int) -> None:
        rng = random.Random(100 + index)
        for attempt in range(15):
            waiting = asyncio.ensure_future(
                scheduler.acquire_async(f"async-{index}-{attempt}", timeout=rng.choice([0.001, None]))
            )
            if rng.random() < 0.3:
                await asyncio.sleep(rng.choice([0, 0.001]))
                waiting.cancel()
            try:
                with await waiting:
                    await asyncio.sleep(rng.choice([0, 0.001]))
                count("ran")
            except SchedulerTimeout:
                count("timed_out")
            except asyncio.CancelledError:
                count("cancelled")

    async def async_callers() -> None:
        await asyncio.gather(*(async_caller(index) for index in range(4)))

    threads = [start_thread(lambda index=index: thread_caller(index)) for index in range(4)]
    threads += [start_thread(lambda: asyncio.run(async_callers())) for _ in range(2)]
    for thread in threads:
        thread.join(10)

    assert sum(outcomes.values()) == 4 * 15 + 2 * 4 * 15
    assert outcomes["ran"] > 0
    status = scheduler.status()
    assert (status["in_flight"], status["queue_depth"]) == (0, 0)
    assert status["dispatched_total"] >= outcomes["ran"]
    first, second = scheduler.acquire("after-1", timeout=0), scheduler.acquire("after-2", timeout=0)
    first.release()
    second.release()


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 1.5}, "max_concurrency"),
        ({"min_interval": -0.1}, "min_interval"),
        ({"min_interval": float("nan")}, "min_interval"),
        ({"max_queue": -1}, "max_queue"),
    ],
)
def test_bad_configuration_raises_a_value_error_naming_the_setting(
    settings: dict[str, float], names: str
) -> None:
    with pytest.raises(ConfigurationError, match=names) as raised:
        Scheduler(**settings)  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError)


def test_negative_timeout_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Scheduler().acquire("call", timeout=-1)
