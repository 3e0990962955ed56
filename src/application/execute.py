"""The ExecuteScript use case: admit, run in the sandbox, classify, record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

import attrs

from application.ports import Metrics, Sandbox, SandboxJob
from application.slots import ExecutionSlots, SlotsBusy, SlotsClosed
from domain.classify import classify
from domain.limits import Limits
from domain.outcome import ErrorCode, Failure, Outcome
from domain.request import ExecuteRequest


class ExecuteScript:
    """Runs one validated request through the active sandbox under the service's limits."""

    def __init__(
        self,
        *,
        sandbox: Callable[[], Sandbox | None],
        slots: ExecutionSlots,
        limits: Limits,
        metrics: Metrics,
        executor: Executor | None = None,
        retry_after_s: int = 1,
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._ready = ready
        self._sandbox = sandbox
        self._slots = slots
        self._limits = limits
        self._metrics = metrics
        self._executor = executor
        self._retry_after_s = retry_after_s

    async def __call__(self, request: ExecuteRequest) -> Outcome:
        queued_at = time.monotonic()
        try:
            slot = await self._slots.acquire()
        except SlotsBusy:
            return self._reject(
                ErrorCode.BUSY,
                "Every execution slot and the queue are full; retry shortly.",
                retry_after_s=self._retry_after_s,
            )
        except SlotsClosed:
            return self._reject(ErrorCode.UNAVAILABLE, "The service is shutting down.")
        try:
            if self._ready is not None:  # while the service warms up, admitted requests wait
                await self._ready()
            sandbox = self._sandbox()
        except BaseException:
            self._slots.release(slot)
            raise
        if sandbox is None:
            self._slots.release(slot)
            return self._reject(ErrorCode.UNAVAILABLE, "No working sandbox is available.")
        queued_s = time.monotonic() - queued_at
        limits = request.limits_within(self._limits)
        job = SandboxJob(
            script=request.script,
            limits=limits,
            slot=slot,
            stdin=request.stdin,
            input_json=request.input_json,
        )
        try:
            running = asyncio.get_running_loop().run_in_executor(self._executor, sandbox.run, job)
        except BaseException:
            self._slots.release(slot)
            raise
        # The slot is freed when the worker thread finishes, not when the caller stops
        # waiting: a client that disconnects must not let a second execution share its slot.
        running.add_done_callback(lambda _done: self._slots.release(slot))
        try:
            report = await asyncio.shield(running)
        except Exception as error:  # a runner bug must still give the client a contract answer
            return self._failed_run(error, queued_s, limits)
        outcome = attrs.evolve(classify(report, limits), limits=limits)
        self._metrics.observe_execution(outcome, queued_s)
        return outcome

    def _failed_run(self, error: Exception, queued_s: float, limits: Limits) -> Failure:
        failure = Failure(
            code=ErrorCode.EMPTY_OUTPUT,
            message=f"The sandbox failed: {type(error).__name__}: {error}.",
            limits=limits,
        )
        self._metrics.observe_execution(failure, queued_s)
        return failure

    def _reject(self, code: ErrorCode, message: str, **details: object) -> Failure:
        self._metrics.observe_rejection(code.code)
        return Failure(code=code, message=message, details=dict(details), limits=self._limits)
