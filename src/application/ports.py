"""The ports: the few things the use cases need from the outside world."""

from __future__ import annotations

from typing import Protocol

import attrs

from domain.limits import Limits
from domain.outcome import Outcome
from domain.report import SandboxReport
from domain.request import Script


@attrs.frozen(kw_only=True)
class SandboxJob:
    """One execution to run. `slot` is unique among the executions running at the same time,
    so a runner can give each concurrent execution its own identity (uid, cgroup, directory)."""

    script: Script
    limits: Limits
    slot: int = 0
    stdin: str | None = None  # None: the script's stdin is empty
    input_json: str | None = None  # None: main() is called without an argument


class Sandbox(Protocol):
    """Runs one job to completion and reports what happened. Blocking; safe to call from
    several threads at once with distinct slots. Implementations may reuse pre-started
    processes: nothing here assumes one process spawn per call."""

    @property
    def name(self) -> str: ...

    @property
    def isolation(self) -> tuple[str, ...]:
        """The isolation layers in force (e.g. "network", "seccomp"), for operators."""
        ...

    def start(self) -> None:
        """Get ready to run (e.g. warm pre-started processes); raises if it cannot. Blocking."""
        ...

    def run(self, job: SandboxJob) -> SandboxReport: ...

    def close(self) -> None:
        """Release what `start` acquired; nothing the sandbox started may outlive this."""
        ...


class Metrics(Protocol):
    """Where use cases record what happened, for operators."""

    def observe_execution(self, outcome: Outcome, queued_s: float) -> None: ...

    def observe_rejection(self, code: str) -> None: ...
