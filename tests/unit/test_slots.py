"""Tests of application.slots.ExecutionSlots: capacity, FIFO queue, busy, close, cancellation.

Each test runs its own event loop with asyncio.run (no pytest-asyncio); the slots object is
created inside the loop it is used in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from application.slots import ExecutionSlots, SlotsBusy, SlotsClosed

T = TypeVar("T")


# A guard so that a broken implementation fails the test instead of hanging the suite.
HANG_GUARD_S = 10


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), HANG_GUARD_S))


async def settle() -> None:
    """Let every ready task run until it blocks again (no wall-clock waiting)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def start(awaitable: Awaitable[T]) -> asyncio.Task[T]:
    async def wrapper() -> T:
        return await awaitable

    task = asyncio.create_task(wrapper())
    await settle()
    return task


@pytest.mark.parametrize(("capacity", "queue_size"), [(0, 0), (-1, 1), (1, -1)])
def test_invalid_sizes_are_rejected(capacity: int, queue_size: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        ExecutionSlots(capacity, queue_size)


def test_hands_out_distinct_slots_up_to_capacity() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=3, queue_size=0)

        taken = [await slots.acquire() for _ in range(3)]

        assert sorted(taken) == [0, 1, 2]
        assert slots.in_use == 3
        assert slots.waiting == 0

    run(scenario)


def test_a_released_slot_is_handed_out_again() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=0)
        slot = await slots.acquire()

        slots.release(slot)

        assert slots.in_use == 0
        assert await slots.acquire() == slot

    run(scenario)


def test_busy_when_every_slot_and_the_queue_are_full() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=2)
        await slots.acquire()
        queued = [await start(slots.acquire()) for _ in range(2)]

        with pytest.raises(SlotsBusy):
            await slots.acquire()

        assert slots.waiting == 2
        assert not any(task.done() for task in queued)
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)

    run(scenario)


def test_busy_at_once_with_no_queue() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=0)
        await slots.acquire()

        with pytest.raises(SlotsBusy):
            await slots.acquire()

        assert slots.waiting == 0

    run(scenario)


def test_waiters_are_served_in_fifo_order() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=3)
        held = await slots.acquire()
        served: list[str] = []

        async def wait_then_release(name: str) -> None:
            slot = await slots.acquire()
            served.append(name)
            await asyncio.sleep(0)
            slots.release(slot)

        tasks = [await start(wait_then_release(name)) for name in ("first", "second", "third")]
        assert slots.waiting == 3

        slots.release(held)
        await asyncio.gather(*tasks)

        assert served == ["first", "second", "third"]
        assert slots.in_use == 0

    run(scenario)


def test_a_release_goes_to_a_waiter_before_a_newcomer() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=1)
        held = await slots.acquire()
        waiter = await start(slots.acquire())

        slots.release(held)  # promised to the waiter, which has not resumed yet
        newcomer = await start(slots.acquire())

        assert await waiter == held
        assert not newcomer.done()
        slots.release(held)
        assert await newcomer == held

    run(scenario)


def test_close_fails_waiters_and_refuses_new_callers() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=2)
        held = await slots.acquire()
        waiters = [await start(slots.acquire()) for _ in range(2)]

        slots.close()

        for waiter in waiters:
            with pytest.raises(SlotsClosed):
                await waiter
        with pytest.raises(SlotsClosed):
            await slots.acquire()
        assert slots.waiting == 0
        # A running execution still finishes and gives its slot back.
        slots.release(held)
        assert slots.in_use == 0

    run(scenario)


def test_closed_slots_refuse_even_when_a_slot_is_free() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=2, queue_size=2)
        slots.close()

        with pytest.raises(SlotsClosed):
            await slots.acquire()
        assert slots.in_use == 0

    run(scenario)


def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=1)
        held = await slots.acquire()
        waiter = await start(slots.acquire())

        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

        assert slots.waiting == 0
        slots.release(held)
        assert slots.in_use == 0
        assert await slots.acquire() == held

    run(scenario)


def test_a_waiter_cancelled_just_after_being_handed_a_slot_gives_it_back() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=1)
        held = await slots.acquire()
        waiter = await start(slots.acquire())

        slots.release(held)  # promised to the waiter, which has not resumed yet
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

        assert slots.in_use == 0
        assert slots.waiting == 0
        assert await slots.acquire() == held

    run(scenario)


def test_a_cancelled_waiter_does_not_block_the_next_one() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=2)
        held = await slots.acquire()
        cancelled = await start(slots.acquire())
        patient = await start(slots.acquire())

        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        slots.release(held)

        assert await patient == held
        assert slots.in_use == 1

    run(scenario)


def test_wait_idle_returns_at_once_when_nothing_runs() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=2, queue_size=0)

        idle = await start(slots.wait_idle())

        assert idle.done()

    run(scenario)


def test_wait_idle_waits_for_every_slot_to_come_back() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=2, queue_size=1)
        first = await slots.acquire()
        second = await slots.acquire()
        idle = await start(slots.wait_idle())

        slots.release(first)
        await settle()
        assert not idle.done()

        slots.release(second)
        await settle()
        assert idle.done()

    run(scenario)


def test_wait_idle_is_not_satisfied_while_a_slot_passes_to_a_waiter() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=1)
        held = await slots.acquire()
        waiter = await start(slots.acquire())
        idle = await start(slots.wait_idle())

        slots.release(held)
        slot = await waiter
        await settle()
        assert not idle.done()

        slots.release(slot)
        await settle()
        assert idle.done()

    run(scenario)


def test_wait_idle_after_close_waits_for_running_executions() -> None:
    async def scenario() -> None:
        slots = ExecutionSlots(capacity=1, queue_size=0)
        held = await slots.acquire()
        slots.close()
        idle = await start(slots.wait_idle())

        assert not idle.done()
        slots.release(held)
        await settle()
        assert idle.done()

    run(scenario)
