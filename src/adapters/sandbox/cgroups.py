"""Per-execution cgroup v1 scopes (memory + pids): hard limits, OOM evidence, peak memory,
and a kill that reaches every process of the execution, however it daemonised."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

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
        self.dirs = {c: CGROUP_ROOT / c / _own_cgroup(c) / name for c in CONTROLLERS}

    @classmethod
    def create(cls) -> CgroupParent:
        """Create (or reuse) the parent directories; raises OSError where cgroups are unusable."""
        parent = cls()
        for directory in parent.dirs.values():
            directory.mkdir(exist_ok=True)
        return parent

    def scope(self, name: str, memory_bytes: int, max_pids: int) -> CgroupScope:
        return CgroupScope({c: d / name for c, d in self.dirs.items()}, memory_bytes, max_pids)


class CgroupScope:
    """One execution's cgroups. `join_paths` are written by the child before exec."""

    def __init__(self, dirs: dict[str, Path], memory_bytes: int, max_pids: int) -> None:
        self.dirs = dirs
        self.memory_bytes = memory_bytes
        self.max_pids = max_pids

    def create(self) -> None:
        for directory in self.dirs.values():
            if directory.exists():  # left over from a crash: empty it before reuse
                self._kill_in(directory)
            else:
                directory.mkdir()
        memory = self.dirs["memory"]
        (memory / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
        with contextlib.suppress(OSError):  # absent when swap accounting is off
            (memory / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
        (self.dirs["pids"] / "pids.max").write_text(str(self.max_pids))

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def oom_killed(self) -> bool:
        text = (self.dirs["memory"] / "memory.oom_control").read_text()
        counts = dict(line.split() for line in text.splitlines() if line)
        return int(counts.get("oom_kill", "0")) > 0

    def peak_memory(self) -> int:
        return int((self.dirs["memory"] / "memory.max_usage_in_bytes").read_text())

    def kill_all(self, sparing: int | None = None) -> None:
        self._kill_in(self.dirs["pids"], sparing=sparing)

    @staticmethod
    def _kill_in(directory: Path, attempts: int = 200, sparing: int | None = None) -> None:
        # pids.max bounds how fast a fork bomb refills the group, so this converges.
        for _ in range(attempts):
            pids = [int(p) for p in (directory / "cgroup.procs").read_text().split()]
            pids = [p for p in pids if p != sparing]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self) -> None:
        for directory in self.dirs.values():
            for _ in range(100):  # rmdir fails with EBUSY until the killed tasks are gone
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self._kill_in(directory, attempts=1)
                    time.sleep(0.005)
