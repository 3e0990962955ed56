"""Per-execution cgroup v1 scopes (memory + pids): hard limits, OOM evidence, peak memory,
and a kill that reaches every process of the execution, however it daemonised.

A scope may hold child groups (nsjail makes one per jail inside the scope it is given):
limits, OOM events and peak usage are read at the scope, where the limit is set, and kills
and removal walk the whole subtree."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import attrs

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")


def _own_cgroup(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hierarchy, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path.lstrip("/")
    raise OSError(f"no cgroup v1 '{controller}' hierarchy")


class CgroupParent:
    """The service's own directory under each controller; executions get children of it."""

    def __init__(self, name: str = "safe-exec") -> None:
        self.mounts = {c: CGROUP_ROOT / c for c in CONTROLLERS}
        self.dirs = {c: self.mounts[c] / _own_cgroup(c) / name for c in CONTROLLERS}

    @classmethod
    def create(cls, name: str = "safe-exec") -> CgroupParent:
        """Create (or reuse) the parent directories; raises OSError where cgroups are unusable."""
        parent = cls(name)
        for directory in parent.dirs.values():
            directory.mkdir(exist_ok=True)
        return parent

    def remove(self) -> None:
        """Remove the service's groups at shutdown (empty by then; busy ones are left)."""
        for directory in self.dirs.values():
            for group in _subtree(directory):
                with contextlib.suppress(OSError):
                    group.rmdir()

    def scope(self, name: str, memory_bytes: int, max_pids: int) -> CgroupScope:
        return CgroupScope(
            {c: d / name for c, d in self.dirs.items()}, self.mounts, memory_bytes, max_pids
        )


def execution_scope(
    parent: CgroupParent | None, name: str, memory_bytes: int, max_pids: int
) -> CgroupScope | None:
    """A created scope for one execution; None for a runner without cgroups. Raises OSError
    when the runner has cgroups but this scope cannot be made: an execution never runs
    uncapped while the service claims "cgroup-limits"."""
    if parent is None:
        return None
    scope = parent.scope(name, memory_bytes, max_pids)
    scope.create()
    return scope


def _subtree(directory: Path) -> list[Path]:
    """`directory` and every group below it, deepest first (the order rmdir needs)."""
    found: list[Path] = []
    # A group that nsjail removes while we walk it answers ENOENT or, mid-removal, ENODEV.
    with contextlib.suppress(OSError):
        for child in directory.iterdir():
            if child.is_dir():
                found += _subtree(child)
    return [*found, directory]


def _read(path: Path) -> str:
    """A cgroup file's content, with no more system calls than needed (a hot path)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _pids_in(directory: Path) -> list[int]:
    pids: list[int] = []
    for group in _subtree(directory):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (group / "cgroup.procs").read_text().split()]
    return pids


@attrs.frozen
class ExecutionBaseline:
    usage_bytes: int
    oom_kills: int


class CgroupScope:
    """One execution's groups: `dirs` by controller; `mounts` are the controllers' roots."""

    def __init__(
        self, dirs: dict[str, Path], mounts: dict[str, Path], memory_bytes: int, max_pids: int
    ) -> None:
        self.dirs = dirs
        self.mounts = mounts
        self.memory_bytes = memory_bytes
        self.max_pids = max_pids
        self._memory_limit_files: list[Path] | None = None
        self._oom_event = -1

    def create(self) -> None:
        for directory in self.dirs.values():
            if directory.exists():  # left over from a crash: empty it before reuse
                self._kill_in(directory)
                self._remove_tree(directory)
            directory.mkdir()
        memory = self.dirs["memory"]
        (memory / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
        with contextlib.suppress(OSError):  # absent when swap accounting is off
            (memory / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
        (self.dirs["pids"] / "pids.max").write_text(str(self.max_pids))
        self._watch_oom()

    def _watch_oom(self) -> None:
        """Ask the kernel to count OOM conditions of this scope on an eventfd. The kill
        counter alone can miss them: cgroup v1 counts a kill in the group of the task it
        killed, and nsjail removes its own group below the scope as it exits."""
        control = self.dirs["memory"] / "memory.oom_control"
        with contextlib.suppress(OSError):
            event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            watched = os.open(control, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _write(self.dirs["memory"] / "cgroup.event_control", f"{event} {watched}")
            except OSError:
                os.close(event)
                raise
            finally:
                os.close(watched)  # the kernel holds its own reference once registered
            self._oom_event = event

    def relative(self, controller: str) -> str:
        """The scope's path below its controller's mount point (nsjail's *_parent options)."""
        return str(self.dirs[controller].relative_to(self.mounts[controller]))

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def oom_killed(self) -> bool:
        if self._oom_event >= 0:
            with contextlib.suppress(BlockingIOError):
                if os.eventfd_read(self._oom_event) > 0:
                    return True
        return self._oom_kills(below=True) > 0

    def _oom_kills(self, below: bool = False) -> int:
        """OOM kills in the scope, and with `below` in every group below it too: cgroup v1
        counts a kill in the group whose task died (nsjail's own child group), not only where
        the limit is. (Walking the tree costs a stat per file: not for the warm hot path.)"""
        total = 0
        for group in _subtree(self.dirs["memory"]) if below else [self.dirs["memory"]]:
            with contextlib.suppress(OSError):
                text = _read(group / "memory.oom_control")
                counts = dict(line.split() for line in text.splitlines() if line)
                total += int(counts.get("oom_kill", "0"))
        return total

    def adopt(self, pid: int) -> None:
        """Move a long-lived process (a warm zygote) into the scope, once; its forks stay."""
        for procs in self.procs_files:
            Path(procs).write_text(str(pid))

    def begin_execution(self, memory_bytes: int, max_pids: int) -> ExecutionBaseline:
        """Re-arm a shared scope for one execution: whatever the scope holds now (zygotes and
        their idle forks) is the baseline, and the execution may add `memory_bytes` and
        `max_pids` processes (itself included) to it."""
        memory = self.dirs["memory"]
        usage = int(_read(memory / "memory.usage_in_bytes"))
        self._set_memory_limit(usage + memory_bytes)
        _write(memory / "memory.max_usage_in_bytes", "0")  # v1: reset to current usage
        pids = self.dirs["pids"]
        current = int(_read(pids / "pids.current"))
        _write(pids / "pids.max", str(current + max_pids - 1))
        return ExecutionBaseline(usage_bytes=usage, oom_kills=self._oom_kills())

    def end_execution(self, baseline: ExecutionBaseline) -> tuple[int, bool]:
        """(peak memory the execution added, whether the OOM killer acted since `begin`)."""
        peak = int(_read(self.dirs["memory"] / "memory.max_usage_in_bytes"))
        return max(0, peak - baseline.usage_bytes), self._oom_kills() > baseline.oom_kills

    def _set_memory_limit(self, value: int) -> None:
        # memsw (where swap accounting exists) must stay >= the limit at every step, so the
        # order of the two writes depends on the direction of the change.
        if self._memory_limit_files is None:
            memory = self.dirs["memory"]
            files = [memory / "memory.limit_in_bytes", memory / "memory.memsw.limit_in_bytes"]
            self._memory_limit_files = [f for f in files if f.exists()]
        try:
            for file in self._memory_limit_files:
                _write(file, str(value))
        except OSError:
            for file in reversed(self._memory_limit_files):
                _write(file, str(value))

    def peak_memory(self) -> int:
        return int((self.dirs["memory"] / "memory.max_usage_in_bytes").read_text())

    def pids(self) -> list[int]:
        """Every process in the scope and below it, however it daemonised."""
        return _pids_in(self.dirs["pids"])

    def kill_all(self, sparing: int | None = None) -> None:
        self._kill_in(self.dirs["pids"], sparing=sparing)

    @staticmethod
    def _kill_in(directory: Path, attempts: int = 200, sparing: int | None = None) -> None:
        # pids.max bounds how fast a fork bomb refills the group, so this converges.
        for _ in range(attempts):
            pids = [p for p in _pids_in(directory) if p != sparing]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self) -> None:
        if self._oom_event >= 0:
            os.close(self._oom_event)
            self._oom_event = -1
        for directory in self.dirs.values():
            self._remove_tree(directory)

    def _remove_tree(self, directory: Path) -> None:
        for group in _subtree(directory):
            for _ in range(100):  # rmdir fails with EBUSY until the killed tasks are gone
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self._kill_in(group, attempts=1)
                    time.sleep(0.005)
