"""Per-execution cgroup scopes: hard memory and pids limits, OOM evidence, peak memory, and a
kill that reaches every process of the execution, however it daemonised.

One backend is chosen once at start-up (`CgroupParent.create`): cgroup v2 where the service's
own group offers the memory and pids controllers and may hand them to children (root, or a
sub-tree delegated to the service's user), else cgroup v1 where the memory and pids hierarchies
are mounted and writable (root), else none (the runners then say so in /health).

A scope may hold child groups (nsjail makes one per jail inside the scope it is given):
limits, OOM events and peak usage are read at the scope, where the limit is set, and kills
and removal walk the whole subtree.

Killing never trusts a pid list alone, which races with pid reuse: v2 writes `cgroup.kill`
(the kernel kills the whole subtree and refuses forks meanwhile); v1 freezes the group first
(freezer hierarchy), so the listing is complete and none of its pids can be freed and reused,
and every signal goes through a pidfd opened before the process's membership is checked.
When the group does not empty within a bound, `kill_all` logs a warning and returns False,
and the runners turn that into the execution's sandbox error."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import attrs

log = logging.getLogger("safe_exec.cgroups")

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
PROC_SELF_MOUNTINFO = Path("/proc/self/mountinfo")
CONTROLLERS = ("memory", "pids")  # required: v1 hierarchies, v2 controllers
FREEZER = "freezer"  # v1, optional: without it a kill relies on pidfds and pids.max alone
# The isolation layers a runner with cgroups lists in /health: "cgroup-limits" (the
# guarantee), and the version in force.
CGROUP_LAYERS = ("cgroup-limits", "cgroup-v1", "cgroup-v2")
# v2 allows controllers for children only in a group with no processes of its own: where the
# service's group holds processes, they move to this leaf beside the service's parent group.
SERVICE_LEAF = "safe-exec-service"
KILL_TIMEOUT_S = 2.0  # long enough for a pandas-sized heap to unmap, short enough to answer
FREEZE_TIMEOUT_S = 0.5
KILL_FAILED = "some of its processes survived SIGKILL (its cgroup did not empty)"


# -- shared helpers ------------------------------------------------------------------------


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


class CgroupFS:
    """The changes this module makes to a cgroup v2 file system. Unit tests substitute a fake
    kernel that keeps the same rules over a plain directory (tests/unit/test_cgroups_v2.py);
    reads are plain file reads either way."""

    def mkdir(self, path: Path, exist_ok: bool = False) -> None:
        path.mkdir(exist_ok=exist_ok)

    def rmdir(self, path: Path) -> None:
        path.rmdir()

    def write(self, path: Path, text: str) -> None:
        _write(path, text)


KERNEL = CgroupFS()


class CgroupParent(ABC):
    """The service's own group for executions; each execution gets a child scope of it."""

    version: int

    @classmethod
    def create(
        cls,
        name: str = "safe-exec",
        root: Path = CGROUP_ROOT,
        proc_cgroup: Path = PROC_SELF_CGROUP,
        mountinfo: Path = PROC_SELF_MOUNTINFO,
        fs: CgroupFS = KERNEL,
    ) -> CgroupParent:
        """The backend this host offers, v2 before v1; raises OSError (saying why for each)
        where neither is usable. (`fs` only changes v2 groups: the v1 path has no fake.)"""
        try:
            parent: CgroupParent = CgroupV2Parent.setup(name, proc_cgroup, mountinfo, fs)
        except (OSError, ValueError) as v2_error:
            try:
                parent = CgroupV1Parent.setup(name, root, proc_cgroup)
            except (OSError, ValueError) as v1_error:
                raise OSError(f"no usable cgroups: v2: {v2_error}; v1: {v1_error}") from None
        log.info("per-execution cgroups: %s", parent)
        return parent

    @property
    def layers(self) -> tuple[str, ...]:
        return ("cgroup-limits", f"cgroup-v{self.version}")

    @abstractmethod
    def scope(
        self, name: str, memory_bytes: int, max_pids: int, oom_group: bool = True
    ) -> CgroupScope:
        """A scope (not created yet). With `oom_group` (v2), an OOM kills every process of
        the scope: right for one execution's own scope, not for a warm slot, whose standby
        processes would die with it and fail the next execution."""

    @abstractmethod
    def remove(self) -> None:
        """Remove the service's groups at shutdown (empty by then; busy ones are left)."""


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


@attrs.frozen
class ExecutionBaseline:
    usage_bytes: int
    oom_kills: int
    peak_bytes: int | None = None  # v2 where memory.peak cannot be reset: its value at begin


class CgroupScope(ABC):
    """One execution's group (or a warm slot's, re-armed per execution)."""

    memory_bytes: int
    max_pids: int
    fs: CgroupFS = KERNEL

    @abstractmethod
    def create(self) -> None:
        """Make the group with its limits; raises OSError if any limit cannot be set."""

    @property
    @abstractmethod
    def procs_files(self) -> list[str]:
        """The files a process writes "0" to, to join the scope (before it execs)."""

    def adopt(self, pid: int) -> None:
        """Move a long-lived process (a warm zygote) into the scope, once; its forks stay."""
        for procs in self.procs_files:
            self.fs.write(Path(procs), str(pid))

    @abstractmethod
    def oom_killed(self) -> bool: ...

    @abstractmethod
    def peak_memory(self) -> int | None:
        """The scope's peak memory, None where the kernel does not record it."""

    @abstractmethod
    def begin_execution(self, memory_bytes: int, max_pids: int) -> ExecutionBaseline:
        """Re-arm a shared scope for one execution: whatever the scope holds now (zygotes and
        their idle forks) is the baseline, and the execution may add `memory_bytes` and
        `max_pids` processes (itself included) to it."""

    @abstractmethod
    def end_execution(self, baseline: ExecutionBaseline) -> tuple[int, bool]:
        """(peak memory the execution added, 0 where unknown; whether the OOM killer acted
        since `begin_execution`)."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Every process in the scope and below it, however it daemonised."""

    @abstractmethod
    def _member(self, pid: int) -> bool:
        """Whether the process with this pid is in the scope or below it, now."""

    @abstractmethod
    def _frozen(self, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        """Freeze the scope's processes while the block runs, where the kernel allows."""

    def kill_all(self, sparing: int | None = None, timeout_s: float = KILL_TIMEOUT_S) -> bool:
        """SIGKILL every process of the scope but `sparing`, and wait until they are gone.
        False (and a warning) when some are still there after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        if not self._others(sparing):
            return True
        # Frozen, no member can fork or exit: the listing is complete, and no pid in it can
        # be freed and reused by another process before it is signalled. The SIGKILLs take
        # effect at the thaw.
        with self._frozen(min(FREEZE_TIMEOUT_S, timeout_s / 2)):
            self._signal(self._others(sparing))
        delay = 0.001
        while survivors := self._others(sparing):
            if time.monotonic() >= deadline:
                log.warning(
                    "cgroup %s: %d processes still there %.1f s after SIGKILL: %s",
                    self,
                    len(survivors),
                    timeout_s,
                    survivors[:20],
                )
                return False
            self._signal(survivors)  # anything the freeze could not hold (no freezer)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return True

    def _others(self, sparing: int | None) -> list[int]:
        return [pid for pid in self.pids() if pid != sparing]

    def _signal(self, pids: Iterable[int]) -> None:
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue  # gone already
            try:
                # The pidfd names one process for good: if the pid was reused before it was
                # opened, the check below sees a stranger and spares it; if the process dies
                # after, the signal goes nowhere.
                if self._member(pid):
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            finally:
                os.close(pidfd)

    @abstractmethod
    def remove(self) -> None:
        """Kill what is left and remove the groups."""


def _pids_in(directory: Path) -> list[int]:
    pids: list[int] = []
    for group in _subtree(directory):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(p) for p in _read(group / "cgroup.procs").split()]
    return pids


def _keyed(text: str) -> dict[str, int]:
    """A flat keyed cgroup file ("key value" lines) as a dict."""
    pairs = (line.split() for line in text.splitlines())
    return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2 and pair[1].isdigit()}


def _under(path: str, group: str) -> bool:
    return path == group or path.startswith(group.rstrip("/") + "/")


def _proc_cgroup_path(pid: int | str, match: Callable[[str], bool]) -> str | None:
    """The path of the first /proc/<pid>/cgroup line whose controller list `match`es."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _hierarchy, controllers, path = line.split(":", 2)
        if match(controllers):
            return path
    return None


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return True


def _remove_groups(directory: Path, scope: CgroupScope) -> None:
    for group in _subtree(directory):
        for _ in range(100):  # rmdir fails with EBUSY until the killed tasks are gone
            try:
                scope.fs.rmdir(group)
                break
            except FileNotFoundError:
                break
            except OSError:
                scope._signal(scope.pids())
                time.sleep(0.005)


# -- cgroup v1 -----------------------------------------------------------------------------


def _own_cgroup(controller: str, proc_cgroup: Path = PROC_SELF_CGROUP) -> str:
    for line in proc_cgroup.read_text().splitlines():
        _hierarchy, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path.lstrip("/")
    raise OSError(f"no cgroup v1 '{controller}' hierarchy")


class CgroupV1Parent(CgroupParent):
    """The service's own directory under each v1 controller (memory, pids, and freezer where
    mounted); executions get children of it."""

    version = 1

    def __init__(self, dirs: dict[str, Path], mounts: dict[str, Path]) -> None:
        self.dirs = dirs
        self.mounts = mounts

    @classmethod
    def setup(
        cls, name: str = "safe-exec", root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
    ) -> CgroupV1Parent:
        """Create (or reuse) the parent directories; raises OSError where v1 is unusable."""
        dirs: dict[str, Path] = {}
        mounts: dict[str, Path] = {}
        for controller in (*CONTROLLERS, FREEZER):
            mount = root / controller
            try:
                if not (mount / "cgroup.procs").exists():
                    raise OSError(f"{mount} is not a cgroup v1 hierarchy")
                directory = mount / _own_cgroup(controller, proc_cgroup) / name
                directory.mkdir(exist_ok=True)
                # An existing group on a read-only cgroupfs (a container's) passes mkdir but
                # would fail every execution: such a host has no usable v1 cgroups.
                if not os.access(directory, os.W_OK):
                    raise OSError(f"{directory} is not writable")
            except OSError:
                if controller == FREEZER:
                    log.warning("no cgroup v1 freezer: kills go by pidfd, without freezing")
                    continue
                raise
            dirs[controller], mounts[controller] = directory, mount
        return cls(dirs, mounts)

    def __str__(self) -> str:
        return "v1 (" + ", ".join(str(d) for d in self.dirs.values()) + ")"

    def remove(self) -> None:
        for directory in self.dirs.values():
            for group in _subtree(directory):
                with contextlib.suppress(OSError):
                    group.rmdir()

    def scope(
        self, name: str, memory_bytes: int, max_pids: int, oom_group: bool = True
    ) -> CgroupV1Scope:
        return CgroupV1Scope(
            {c: d / name for c, d in self.dirs.items()}, self.mounts, memory_bytes, max_pids
        )


class CgroupV1Scope(CgroupScope):
    """One execution's v1 groups: `dirs` by controller; `mounts` are the controllers' roots."""

    def __init__(
        self, dirs: dict[str, Path], mounts: dict[str, Path], memory_bytes: int, max_pids: int
    ) -> None:
        self.dirs = dirs
        self.mounts = mounts
        self.memory_bytes = memory_bytes
        self.max_pids = max_pids
        self._memory_limit_files: list[Path] | None = None
        self._oom_event = -1

    def __str__(self) -> str:
        return str(self.dirs["pids"])

    def create(self) -> None:
        if any(directory.exists() for directory in self.dirs.values()):
            # Left over from a crash: empty it before reuse.
            self.kill_all()
            self._remove_dirs()
        for directory in self.dirs.values():
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
                total += _keyed(_read(group / "memory.oom_control")).get("oom_kill", 0)
        return total

    def begin_execution(self, memory_bytes: int, max_pids: int) -> ExecutionBaseline:
        memory = self.dirs["memory"]
        usage = int(_read(memory / "memory.usage_in_bytes"))
        self._set_memory_limit(usage + memory_bytes)
        _write(memory / "memory.max_usage_in_bytes", "0")  # v1: reset to current usage
        pids = self.dirs["pids"]
        current = int(_read(pids / "pids.current"))
        _write(pids / "pids.max", str(current + max_pids - 1))
        return ExecutionBaseline(usage_bytes=usage, oom_kills=self._oom_kills())

    def end_execution(self, baseline: ExecutionBaseline) -> tuple[int, bool]:
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

    def peak_memory(self) -> int | None:
        return int(_read(self.dirs["memory"] / "memory.max_usage_in_bytes"))

    def pids(self) -> list[int]:
        return _pids_in(self.dirs["pids"])

    def _member(self, pid: int) -> bool:
        path = _proc_cgroup_path(pid, lambda c: "pids" in c.split(","))
        return path is not None and _under(path, "/" + self.relative("pids"))

    @contextlib.contextmanager
    def _frozen(self, timeout_s: float) -> Iterator[None]:
        # v1 freezes a group and every group below it. nsjail's jails are not in it (nsjail
        # moves them only in the hierarchies it manages): they are killed through pidfds.
        freezer = self.dirs.get(FREEZER)
        if freezer is None:
            yield
            return
        state = freezer / "freezer.state"
        try:
            _write(state, "FROZEN")
        except OSError:
            yield
            return
        try:
            # A task in uninterruptible sleep delays FROZEN; kill what is frozen meanwhile.
            _wait_until(lambda: _read(state).strip() == "FROZEN", timeout_s)
            yield
        finally:
            with contextlib.suppress(OSError):
                _write(state, "THAWED")

    def remove(self) -> None:
        if self._oom_event >= 0:
            os.close(self._oom_event)
            self._oom_event = -1
        self.kill_all()
        self._remove_dirs()

    def _remove_dirs(self) -> None:
        for directory in self.dirs.values():
            _remove_groups(directory, self)


# -- cgroup v2 -----------------------------------------------------------------------------


def _cgroup2_mount(mountinfo: Path) -> tuple[Path, str]:
    """(mount point, root within the hierarchy) of the first cgroup2 mount."""
    for line in mountinfo.read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if tail.split()[:1] == ["cgroup2"]:
            parts = fields.split()
            return Path(parts[4]), parts[3]
    raise OSError("no cgroup2 mount")


def _own_cgroup_v2(proc_cgroup: Path) -> str:
    for line in proc_cgroup.read_text().splitlines():
        hierarchy, _controllers, path = line.split(":", 2)
        if hierarchy == "0":
            return path
    raise OSError("this process is in no cgroup v2 group")


def _enable_controllers(group: Path, leaf: Path, fs: CgroupFS) -> None:
    """Let `group`'s children have the memory and pids controllers. v2 refuses that (EBUSY)
    while `group` holds processes of its own: those (the service, and whatever else runs in
    its group, e.g. a container's init) move to `leaf` first, where their limits are the same
    (they are still below `group`)."""
    wanted = " ".join(f"+{c}" for c in CONTROLLERS)
    if set(CONTROLLERS) <= set(_read(group / "cgroup.subtree_control").split()):
        return
    try:
        fs.write(group / "cgroup.subtree_control", wanted)
        return
    except OSError as error:
        if error.errno != errno.EBUSY:  # the "no internal processes" rule
            raise
    fs.mkdir(leaf, exist_ok=True)
    for _ in range(10):  # a process may fork while the others move
        pids = _read(group / "cgroup.procs").split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                fs.write(leaf / "cgroup.procs", pid)
    fs.write(group / "cgroup.subtree_control", wanted)


class CgroupV2Parent(CgroupParent):
    """`directory`: the service's group for executions, a sibling of the service's own leaf
    where the service's group had to be split. `cgroup_path`: the same group as
    /proc/<pid>/cgroup names it."""

    version = 2

    def __init__(self, directory: Path, cgroup_path: str, fs: CgroupFS = KERNEL) -> None:
        self.directory = directory
        self.cgroup_path = cgroup_path
        self.fs = fs

    @classmethod
    def setup(
        cls,
        name: str = "safe-exec",
        proc_cgroup: Path = PROC_SELF_CGROUP,
        mountinfo: Path = PROC_SELF_MOUNTINFO,
        fs: CgroupFS = KERNEL,
    ) -> CgroupV2Parent:
        """Create (or reuse) the parent group; raises OSError where v2 is unusable."""
        mount, mount_root = _cgroup2_mount(mountinfo)
        own = _own_cgroup_v2(proc_cgroup)
        if not _under(own, mount_root):
            raise OSError(f"this process's group {own} is not below the cgroup2 mount {mount}")
        if own.rstrip("/").endswith("/" + SERVICE_LEAF):
            own = own.rstrip("/").rsplit("/", 1)[0]  # a restart inside a group split before
        own_dir = mount / own[len(mount_root.rstrip("/")) :].lstrip("/")
        missing = set(CONTROLLERS) - set(_read(own_dir / "cgroup.controllers").split())
        if missing:
            raise OSError(f"{own_dir} does not offer the {', '.join(sorted(missing))} controller")
        _enable_controllers(own_dir, own_dir / SERVICE_LEAF, fs)
        directory = own_dir / name
        fs.mkdir(directory, exist_ok=True)
        _enable_controllers(directory, directory / SERVICE_LEAF, fs)  # it holds no process
        return cls(directory, own.rstrip("/") + "/" + name, fs)

    def __str__(self) -> str:
        return f"v2 ({self.directory})"

    def remove(self) -> None:
        for group in _subtree(self.directory):
            with contextlib.suppress(OSError):
                self.fs.rmdir(group)

    def scope(
        self, name: str, memory_bytes: int, max_pids: int, oom_group: bool = True
    ) -> CgroupV2Scope:
        return CgroupV2Scope(
            self.directory / name,
            f"{self.cgroup_path}/{name}",
            memory_bytes,
            max_pids,
            fs=self.fs,
            oom_group=oom_group,
        )


class CgroupV2Scope(CgroupScope):
    """One execution's v2 group: `directory` in the mount, `cgroup_path` as /proc names it."""

    def __init__(
        self,
        directory: Path,
        cgroup_path: str,
        memory_bytes: int,
        max_pids: int,
        *,
        fs: CgroupFS = KERNEL,
        oom_group: bool = True,
    ) -> None:
        self.fs = fs
        self.oom_group = oom_group
        self.directory = directory
        self.cgroup_path = cgroup_path
        self.memory_bytes = memory_bytes
        self.max_pids = max_pids
        self._peak_fd = -1
        self._peak_resettable = False

    def __str__(self) -> str:
        return str(self.directory)

    def create(self) -> None:
        if self.directory.exists():  # left over from a crash: empty it before reuse
            self.kill_all()
            _remove_groups(self.directory, self)
        self.fs.mkdir(self.directory)
        self.fs.write(self.directory / "memory.max", str(self.memory_bytes))
        with contextlib.suppress(FileNotFoundError):  # absent without swap accounting
            self.fs.write(self.directory / "memory.swap.max", "0")
        self.fs.write(self.directory / "pids.max", str(self.max_pids))
        # An OOM kills the whole execution, not one process a parent could shrug off.
        with contextlib.suppress(FileNotFoundError):  # kernels before 4.19
            self.fs.write(self.directory / "memory.oom.group", str(int(self.oom_group)))

    @property
    def procs_files(self) -> list[str]:
        return [str(self.directory / "cgroup.procs")]

    def _oom_kills(self) -> int:
        # memory.events is hierarchical: kills in nsjail's group below the scope count here,
        # even after that group is gone.
        try:
            events = _keyed(_read(self.directory / "memory.events"))
        except OSError:
            return 0
        return events.get("oom_kill", 0) + events.get("oom_group_kill", 0)

    def oom_killed(self) -> bool:
        return self._oom_kills() > 0

    def peak_memory(self) -> int | None:
        try:
            return int(_read(self.directory / "memory.peak"))
        except FileNotFoundError:
            return None  # kernels before 5.19

    def _open_peak(self) -> None:
        """memory.peak, kept open: since 6.12 a write resets the peak for reads through the
        same open file (its mode then allows writing); before, it is read-only."""
        if self._peak_fd >= 0:
            return
        path = self.directory / "memory.peak"
        try:
            self._peak_resettable = bool(os.stat(path).st_mode & 0o222)
            flags = os.O_RDWR if self._peak_resettable else os.O_RDONLY
            self._peak_fd = os.open(path, flags | os.O_CLOEXEC)
        except FileNotFoundError:
            self._peak_resettable = False

    def _read_peak(self) -> int | None:
        if self._peak_fd < 0:
            return None
        return int(os.pread(self._peak_fd, 64, 0).split()[0])

    def begin_execution(self, memory_bytes: int, max_pids: int) -> ExecutionBaseline:
        usage = int(_read(self.directory / "memory.current"))
        self.fs.write(self.directory / "memory.max", str(usage + memory_bytes))
        self._open_peak()
        peak_before = None
        if self._peak_resettable:
            os.pwrite(self._peak_fd, b"reset\n", 0)  # any non-empty write resets
        else:
            peak_before = self._read_peak()
        current = int(_read(self.directory / "pids.current"))
        self.fs.write(self.directory / "pids.max", str(current + max_pids - 1))
        return ExecutionBaseline(
            usage_bytes=usage, oom_kills=self._oom_kills(), peak_bytes=peak_before
        )

    def end_execution(self, baseline: ExecutionBaseline) -> tuple[int, bool]:
        oom = self._oom_kills() > baseline.oom_kills
        peak = self._read_peak()
        if peak is None:
            return 0, oom
        if self._peak_resettable:
            return max(0, peak - baseline.usage_bytes), oom
        # Not resettable: the slot's lifetime peak. If it rose during the execution, the
        # execution reached it; otherwise its own peak is unknown (the caller keeps its RSS).
        if baseline.peak_bytes is not None and peak > baseline.peak_bytes:
            return max(0, peak - baseline.usage_bytes), oom
        return 0, oom

    def pids(self) -> list[int]:
        return _pids_in(self.directory)

    def _member(self, pid: int) -> bool:
        path = _proc_cgroup_path(pid, lambda c: c == "")
        return path is not None and _under(path, self.cgroup_path)

    def _populated(self) -> bool:
        try:
            return _keyed(_read(self.directory / "cgroup.events")).get("populated", 0) != 0
        except FileNotFoundError:
            return False

    @contextlib.contextmanager
    def _frozen(self, timeout_s: float) -> Iterator[None]:
        try:
            self.fs.write(self.directory / "cgroup.freeze", "1")
        except OSError:
            yield
            return
        try:
            _wait_until(
                lambda: _keyed(_read(self.directory / "cgroup.events")).get("frozen") == 1,
                timeout_s,
            )
            yield
        finally:
            with contextlib.suppress(OSError):
                self.fs.write(self.directory / "cgroup.freeze", "0")

    def kill_all(self, sparing: int | None = None, timeout_s: float = KILL_TIMEOUT_S) -> bool:
        if sparing is not None and sparing in self.pids():
            return super().kill_all(sparing, timeout_s)  # freeze, and kill all but one
        if not self._populated():
            return True
        try:
            # The kernel kills the whole subtree and fails any fork racing with it.
            self.fs.write(self.directory / "cgroup.kill", "1")
        except OSError:
            return super().kill_all(sparing, timeout_s)  # kernels before 5.14
        if _wait_until(lambda: not self._populated(), timeout_s):
            return True
        survivors = self.pids()
        log.warning(
            "cgroup %s: still populated %.1f s after cgroup.kill: %s",
            self,
            timeout_s,
            survivors[:20],
        )
        return False

    def remove(self) -> None:
        if self._peak_fd >= 0:
            os.close(self._peak_fd)
            self._peak_fd = -1
        self.kill_all()
        _remove_groups(self.directory, self)
