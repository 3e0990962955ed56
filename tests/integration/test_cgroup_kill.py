"""Kills that reach every process of a cgroup, on this machine's real kernel: the v1 path
(freezer, then SIGKILL through pidfds, then thaw) against a respawning fork bomb, the v2 path
(`cgroup.kill`, and `cgroup.freeze` when one process is spared) on the cgroup2 mount, and a
group that does not empty is reported, not given up on silently.

The cgroup2 mount here has no controllers (memory and pids are on v1), so the v2 scope is
made without its limits; memory.max, pids.max, memory.peak and memory.events are tested
against a fake kernel in tests/unit/test_cgroups_v2.py."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.sandbox.cgroups import (
    FREEZER,
    KILL_FAILED,
    PROC_SELF_MOUNTINFO,
    CgroupParent,
    CgroupScope,
    CgroupV1Parent,
    CgroupV1Scope,
    CgroupV2Scope,
    ExecutionBaseline,
    _cgroup2_mount,
    _read,
)
from adapters.sandbox.rlimit import RlimitSandbox
from adapters.sandbox.runtime import SandboxRuntime, default_interpreter
from application.ports import SandboxJob
from domain.limits import MIB, Limits
from domain.request import Script

V1 = Path("/sys/fs/cgroup")
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root here")
NAME = f"safe-exec-test-kill-{os.getpid()}"

# Every process forks for as long as it can (pids.max refuses the rest, then it retries),
# and each child starts a session of its own: a respawning, daemonising fork bomb.
FORK_BOMB = """
import os, time
while True:
    try:
        if os.fork() == 0:
            os.setsid()
    except OSError:
        time.sleep(0.001)
"""
# Sleepers that daemonise: a double fork leaves grandchildren re-parented to init.
DOUBLE_FORK = """
import os, sys, time
for _ in range(3):
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(600)
        os._exit(0)
    os.waitpid(child, 0)
print("ready", flush=True)
time.sleep(600)
"""


def start_in(procs_files: list[str], source: str) -> subprocess.Popen[bytes]:
    """Python running `source` in the scope: it joins the scope's groups before anything."""
    join = "import sys\nfor f in sys.argv[2:]:\n    open(f, 'w').write('0')\nexec(sys.argv[1])"
    argv = [sys.executable, "-c", join, source, *procs_files]
    return subprocess.Popen(argv, stdout=subprocess.PIPE)


def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@contextlib.contextmanager
def v1_freezer_group(name: str) -> Iterator[Path]:
    """A v1 freezer group of its own (not the scope's), thawed and removed afterwards."""
    group = V1 / FREEZER / name
    group.mkdir()
    try:
        yield group
    finally:
        for pid in _pids_in_file(group / "cgroup.procs"):  # a failed test's held process
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            (group / "freezer.state").write_text("THAWED")
        for _ in range(200):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.01)


def frozen_sleeper(scope: Any, holdout: Path) -> subprocess.Popen[bytes]:
    """A process that joined `scope`, then moved to `holdout` and frozen there: it cannot act
    on a SIGKILL until the holdout thaws."""
    sleeper = start_in(scope.procs_files, "import time; time.sleep(600)")
    wait_for(lambda: sleeper.pid in scope.pids())  # it has joined the scope
    (holdout / "cgroup.procs").write_text(str(sleeper.pid))
    (holdout / "freezer.state").write_text("FROZEN")
    wait_for(lambda: _read(holdout / "freezer.state").strip() == "FROZEN")
    return sleeper


# -- v1 ------------------------------------------------------------------------------------


@pytest.fixture
def v1_scope() -> Iterator[CgroupV1Scope]:
    if not all((V1 / c / "cgroup.procs").exists() for c in ("memory", "pids", FREEZER)):
        pytest.skip("no cgroup v1 memory, pids and freezer hierarchies on this host")
    parent = CgroupV1Parent.setup(NAME)
    scope = parent.scope("slot-0", 256 * MIB, 64)
    scope.create()
    try:
        yield scope
    finally:
        scope.remove()
        parent.remove()


@NEEDS_ROOT
def test_v1_freezes_and_kills_a_respawning_fork_bomb(v1_scope: CgroupV1Scope) -> None:
    bomb = start_in(v1_scope.procs_files, FORK_BOMB)
    wait_for(lambda: len(v1_scope.pids()) >= 48)
    # Its forks inherit the freezer group, as they do the memory and pids ones.
    assert bomb.pid in _pids_in_file(v1_scope.dirs[FREEZER] / "cgroup.procs")

    assert v1_scope.kill_all() is True

    assert v1_scope.pids() == []
    assert bomb.wait(timeout=5) == -9
    assert _read(v1_scope.dirs[FREEZER] / "freezer.state").strip() == "THAWED"


class WatchedScope(CgroupV1Scope):
    """The real v1 scope, noting the freezer's state each time it signals."""

    states: list[str]

    def _signal(self, pids: Iterable[int]) -> None:
        self.states.append(_read(self.dirs[FREEZER] / "freezer.state").strip())
        super()._signal(pids)


@NEEDS_ROOT
def test_v1_signals_the_bomb_while_it_is_frozen(v1_scope: CgroupV1Scope) -> None:
    """The first (normally only) round of SIGKILLs goes out while the group is frozen, so the
    listing it used was complete and none of its pids could have been reused."""
    watched = WatchedScope(v1_scope.dirs, v1_scope.mounts, 256 * MIB, 64)
    watched.states = []
    bomb = start_in(watched.procs_files, FORK_BOMB)
    wait_for(lambda: len(watched.pids()) >= 48)

    assert watched.kill_all() is True

    assert watched.states[0] == "FROZEN", watched.states
    assert watched.pids() == []
    assert bomb.wait(timeout=5) == -9


@NEEDS_ROOT
def test_v1_never_signals_a_stranger_whose_pid_a_stale_listing_names(
    v1_scope: CgroupV1Scope,
) -> None:
    """A pid read from cgroup.procs may belong to another process by the time it is
    signalled: the signal goes through a pidfd, and only if that process is a member."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        v1_scope._signal([stranger.pid])
        time.sleep(0.05)
        assert stranger.poll() is None, "a process outside the scope was killed"
    finally:
        stranger.kill()
        stranger.wait()


@NEEDS_ROOT
def test_v1_reports_a_process_that_does_not_die(
    v1_scope: CgroupV1Scope, caplog: pytest.LogCaptureFixture
) -> None:
    """A process frozen by someone else (a freezer group not the scope's) cannot act on its
    SIGKILL: the scope does not empty, and kill_all says so instead of giving up silently."""
    with v1_freezer_group(f"{NAME}-holdout") as holdout:
        sleeper = frozen_sleeper(v1_scope, holdout)

        with caplog.at_level(logging.WARNING, logger="safe_exec.cgroups"):
            assert v1_scope.kill_all(timeout_s=0.3) is False
        assert f"{sleeper.pid}" in caplog.text
        assert alive(sleeper.pid)

        (holdout / "freezer.state").write_text("THAWED")  # its pending SIGKILL lands
        assert sleeper.wait(timeout=5) == -9
        assert v1_scope.kill_all() is True


# -- v2 ------------------------------------------------------------------------------------


@pytest.fixture
def v2_scope() -> Iterator[CgroupV2Scope]:
    """A group on the real cgroup2 mount, made without limits (no controllers here)."""
    try:
        mount, root = _cgroup2_mount(PROC_SELF_MOUNTINFO)
    except OSError:
        pytest.skip("no cgroup2 mount")
    own = Path("/proc/self/cgroup").read_text().split("0::", 1)[1].split()[0]
    if root != "/":
        pytest.skip("the cgroup2 mount is a sub-tree")
    directory = mount / own.lstrip("/") / NAME
    directory.mkdir()
    if not (directory / "cgroup.kill").exists():
        directory.rmdir()
        pytest.skip("no cgroup.kill (kernel before 5.14)")
    scope = CgroupV2Scope(directory, f"{own.rstrip('/')}/{NAME}", 0, 0)
    try:
        yield scope
    finally:
        scope.remove()


@NEEDS_ROOT
def test_v2_cgroup_kill_takes_every_process_including_double_forked_ones(
    v2_scope: CgroupV2Scope,
) -> None:
    parent = start_in(v2_scope.procs_files, DOUBLE_FORK)
    assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"
    members = v2_scope.pids()
    assert len(members) == 4, members  # the parent and three re-parented grandchildren

    assert v2_scope.kill_all() is True

    assert v2_scope.pids() == []
    assert "populated 0" in _read(v2_scope.directory / "cgroup.events")
    assert not any(alive(pid) for pid in members)
    assert parent.wait(timeout=5) == -9


@NEEDS_ROOT
def test_v2_sparing_one_process_freezes_and_kills_the_others(v2_scope: CgroupV2Scope) -> None:
    parent = start_in(v2_scope.procs_files, DOUBLE_FORK)
    assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"
    try:
        assert v2_scope.kill_all(sparing=parent.pid) is True

        assert v2_scope.pids() == [parent.pid]
        assert parent.poll() is None
        assert "frozen 0" in _read(v2_scope.directory / "cgroup.events")  # thawed again
    finally:
        parent.kill()
        parent.wait()


@NEEDS_ROOT
def test_v2_reports_a_group_that_does_not_empty(
    v2_scope: CgroupV2Scope, caplog: pytest.LogCaptureFixture
) -> None:
    """cgroup.kill cannot finish a process frozen on the v1 freezer (this hybrid host):
    kill_all says so, and the next one, after the thaw, empties the group."""
    if not (V1 / FREEZER / "cgroup.procs").exists():
        pytest.skip("no v1 freezer to hold a process with")
    with v1_freezer_group(f"{NAME}-holdout") as holdout:
        sleeper = frozen_sleeper(v2_scope, holdout)

        with caplog.at_level(logging.WARNING, logger="safe_exec.cgroups"):
            assert v2_scope.kill_all(timeout_s=0.3) is False
        assert "still populated" in caplog.text and str(sleeper.pid) in caplog.text

        (holdout / "freezer.state").write_text("THAWED")
        assert sleeper.wait(timeout=5) == -9
        assert v2_scope.kill_all() is True


# -- a runner reports it -------------------------------------------------------------------


class UnkillableScope(CgroupScope):
    """A scope whose processes outlive every kill (what the tests above make for real)."""

    def __init__(self) -> None:
        self.memory_bytes, self.max_pids = 64 * MIB, 16

    def create(self) -> None:
        pass

    @property
    def procs_files(self) -> list[str]:
        return []

    def oom_killed(self) -> bool:
        return False

    def peak_memory(self) -> int | None:
        return None

    def begin_execution(self, memory_bytes: int, max_pids: int) -> ExecutionBaseline:
        return ExecutionBaseline(usage_bytes=0, oom_kills=0)

    def end_execution(self, baseline: ExecutionBaseline) -> tuple[int, bool]:
        return 0, False

    def pids(self) -> list[int]:
        return []

    def _member(self, pid: int) -> bool:
        return False

    def _frozen(self, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def kill_all(self, sparing: int | None = None, timeout_s: float = 0.0) -> bool:
        return False

    def remove(self) -> None:
        pass


class UnkillableParent(CgroupParent):
    version = 1

    def scope(self, name: str, memory_bytes: int, max_pids: int) -> CgroupScope:
        return UnkillableScope()

    def remove(self) -> None:
        pass


@NEEDS_ROOT
def test_the_rlimit_runner_turns_a_failed_kill_into_a_sandbox_error() -> None:
    sandbox = RlimitSandbox(
        runtime=SandboxRuntime(python=default_interpreter()),
        uid_base=900000,
        cgroups=UnkillableParent(),
        seccomp=None,
    )
    job = SandboxJob(
        script=Script("def main():\n    return 1\n"), limits=Limits(memory_bytes=64 * MIB), slot=0
    )

    report = sandbox.run(job)

    assert report.sandbox_error == KILL_FAILED
    assert report.harness_report != b""  # it ran; what it left behind is the failure


def _pids_in_file(path: Path) -> list[int]:
    return [int(p) for p in _read(path).split()]
