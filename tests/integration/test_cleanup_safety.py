"""Clean-up after an execution is exception-safe: when one step fails (here the cgroup kill),
the remaining steps (the scope's removal, the private work directory's removal) still run,
and the failure is not swallowed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from adapters.sandbox.rlimit import RlimitSandbox
from adapters.sandbox.runtime import SandboxRuntime, default_interpreter
from application.ports import SandboxJob
from domain.limits import MIB, Limits
from domain.request import Script

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rlimit runner needs root")
JOB = SandboxJob(
    script=Script("def main():\n    return 1\n"), limits=Limits(memory_bytes=256 * MIB), slot=7
)


class BrokenKillScope:
    """A scope whose kill fails the way a vanished cgroup file would; it records the rest."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.procs_files: list[str] = []

    def create(self) -> None:
        self.calls.append("create")

    def pids(self) -> list[int]:
        return []

    def kill_all(self, sparing: int | None = None) -> None:
        self.calls.append("kill_all")
        raise OSError(19, "No such device")

    def oom_killed(self) -> bool:
        return False

    def peak_memory(self) -> int:
        return 0

    def remove(self) -> None:
        self.calls.append("remove")


class Parent:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def scope(self, _name: str, _memory: int, _pids: int) -> Any:
        return BrokenKillScope(self.calls)


def test_a_failing_kill_still_removes_the_scope_and_the_work_directory() -> None:
    calls: list[str] = []
    sandbox = RlimitSandbox(
        runtime=SandboxRuntime(python=default_interpreter()),
        uid_base=900000,
        cgroups=Parent(calls),  # type: ignore[arg-type]
        use_namespaces=False,  # so that a private work directory is made on the host
        seccomp=None,
    )
    before = set(Path("/tmp").glob("safe-exec-900007-*"))

    with pytest.raises(OSError, match="No such device"):
        sandbox.run(JOB)

    assert calls[0] == "create"
    assert "kill_all" in calls
    assert calls[-1] == "remove"  # after the failed kill
    assert set(Path("/tmp").glob("safe-exec-900007-*")) == before  # the work directory is gone


def test_a_failing_kill_still_reaps_the_started_process() -> None:
    calls: list[str] = []
    sandbox = RlimitSandbox(
        runtime=SandboxRuntime(python=default_interpreter()),
        uid_base=900000,
        cgroups=Parent(calls),  # type: ignore[arg-type]
        use_namespaces=False,
        seccomp=None,
    )

    with pytest.raises(OSError):
        sandbox.run(JOB)

    assert zombie_children() == []


def zombie_children() -> list[int]:
    """Our children that ended and were never waited for."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:
                continue
            if state == "Z" and int(parent) == os.getpid():
                found.append(int(entry.name))
    return found
