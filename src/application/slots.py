"""Admission control: a fixed number of execution slots and a bounded FIFO queue."""

from __future__ import annotations

import asyncio
from collections import deque


class SlotsBusy(Exception):
    """Every slot is taken and the queue is full."""


class SlotsClosed(Exception):
    """The service is shutting down and admits no more executions."""


class ExecutionSlots:
    """Hands out slot numbers 0..capacity-1; at most `queue_size` callers wait for one."""

    def __init__(self, capacity: int, queue_size: int) -> None:
        if capacity < 1 or queue_size < 0:
            raise ValueError("capacity must be >= 1 and queue_size >= 0")
        self.capacity = capacity
        self.queue_size = queue_size
        self._free: deque[int] = deque(range(capacity))
        self._waiters: deque[asyncio.Future[int]] = deque()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_use(self) -> int:
        return self.capacity - len(self._free)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> int:
        if self._closed:
            raise SlotsClosed
        if self._free and not self._waiters:
            self._idle.clear()
            return self._free.popleft()
        if len(self._waiters) >= self.queue_size:
            raise SlotsBusy
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())  # handed a slot just as the caller went away
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self, slot: int) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)
        if len(self._free) == self.capacity:
            self._idle.set()

    def close(self) -> None:
        """Refuse new callers and fail the queued ones; running executions finish."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(SlotsClosed())

    async def wait_idle(self) -> None:
        await self._idle.wait()
