"""Hand-written fakes of the ports in application/ports.py, and report builders for them."""

from __future__ import annotations

import json
import threading
from typing import Any

from application.ports import SandboxJob
from domain.outcome import Outcome
from domain.report import SandboxReport
from domain.request import ExecuteRequest


def harness_channel(header: dict[str, Any], body: bytes = b"") -> bytes:
    """What the in-sandbox harness writes on its result channel."""
    return json.dumps(header).encode() + b"\n" + body


def ok_report(value: Any, *, stdout: bytes = b"", stderr: bytes = b"") -> SandboxReport:
    """A run whose main() returned `value` after printing `stdout`."""
    return SandboxReport(
        exit_code=0,
        harness_report=harness_channel({"status": "ok"}, json.dumps(value).encode()),
        stdout=stdout,
        stderr=stderr,
        wall_time_s=0.01,
        cpu_time_s=0.01,
    )


class FakeSandbox:
    """A Sandbox that answers each run with the next scripted report, or raises it.

    It records every job and the name of the thread that ran it. With `hold=True`, run()
    blocks until release() is called, so a test can observe what happens while an execution is
    in progress; `started` is set on entry.
    """

    def __init__(
        self,
        *results: SandboxReport | Exception,
        name: str = "fake",
        hold: bool = False,
        start_error: Exception | None = None,
    ) -> None:
        self._name = name
        self._start_error = start_error
        self.started_up = False
        self.closed = False
        self._results = list(results)
        self._lock = threading.Lock()
        self._gate = threading.Event()
        if not hold:
            self._gate.set()
        self.started = threading.Event()
        self.jobs: list[SandboxJob] = []
        self.threads: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def isolation(self) -> tuple[str, ...]:
        return ("fake",)

    def start(self) -> None:
        if self._start_error is not None:
            raise self._start_error
        self.started_up = True

    def close(self) -> None:
        self.closed = True

    def run(self, job: SandboxJob) -> SandboxReport:
        with self._lock:
            self.jobs.append(job)
            self.threads.append(threading.current_thread().name)
            if not self._results:
                raise AssertionError(f"{self._name}: run() called more often than scripted")
            result = self._results.pop(0)
        self.started.set()
        if not self._gate.wait(timeout=10):
            raise AssertionError(f"{self._name}: the test never released the held run")
        if isinstance(result, Exception):
            raise result
        return result

    def release(self) -> None:
        self._gate.set()


class FakeMetrics:
    """A Metrics port that records every call."""

    def __init__(self) -> None:
        self.executions: list[tuple[Outcome, float]] = []
        self.rejections: list[str] = []

    def observe_execution(self, outcome: Outcome, queued_s: float) -> None:
        self.executions.append((outcome, queued_s))

    def observe_rejection(self, code: str) -> None:
        self.rejections.append(code)


class FakeExecute:
    """The use case's place behind an adapter: records each request, answers a set outcome."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.requests: list[ExecuteRequest] = []

    async def __call__(self, request: ExecuteRequest) -> Outcome:
        self.requests.append(request)
        return self.outcome
