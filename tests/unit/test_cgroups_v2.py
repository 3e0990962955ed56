"""The cgroup v2 backend against a fake kernel: what this machine's cgroup2 mount cannot show
(it has no controllers: memory.max, pids.max, memory.peak, memory.events, delegation and the
"no internal processes" rule). Group creation, moves, cgroup.kill and cgroup.freeze are
attacked on the real mount in tests/integration/test_cgroup_kill.py.

The fake keeps, over a plain directory, the kernel's rules this backend depends on (see
FakeKernel); what the kernel would show next (usage, peaks, OOM counters) the test writes."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from adapters.sandbox.cgroups import (
    SERVICE_LEAF,
    CgroupFS,
    CgroupParent,
    CgroupScope,
    CgroupV1Parent,
    CgroupV1Scope,
    CgroupV2Parent,
    CgroupV2Scope,
    execution_scope,
)
from adapters.sandbox.nsjail import NsjailSandbox
from adapters.sandbox.rlimit import RlimitSandbox
from adapters.sandbox.runtime import SandboxRuntime, default_interpreter
from application.ports import SandboxJob
from domain.limits import MIB, Limits
from domain.request import Script

# Pids above the kernel's largest pid_max (2^22): no real process can have them, so nothing
# here can ever signal one.
SERVICE, SIDECAR, ZYGOTE = 5_000_001, 5_000_002, 5_000_003
CORE_FILES = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0\n",
    "cgroup.kill": "",
}
MEMORY_FILES = {
    "memory.max": "max\n",
    "memory.current": "0\n",
    "memory.oom.group": "0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
}
PIDS_FILES = {"pids.max": "max\n", "pids.current": "0\n"}


class FakeKernel(CgroupFS):
    """A cgroup2 hierarchy over a plain directory `mount`, with these kernel rules:

    - mkdir makes a group with its core interface files, and the memory.* / pids.* files
      only for the controllers its parent's cgroup.subtree_control enables; its
      cgroup.controllers is that list. `swap` adds memory.swap.max; `peak` adds memory.peak,
      "rw" (kernel >= 6.12: mode 0644, resettable per open file) or "ro" (5.19-6.11: 0444).
    - Writing "+c" to cgroup.subtree_control needs c in the group's cgroup.controllers
      (ENOENT) and, below the root, a group without processes (EBUSY).
    - Writing a pid to cgroup.procs moves it out of every other group.
    - cgroup.kill empties the subtree (unless `unkillable`); cgroup.freeze sets "frozen".
    - cgroup.events "populated" follows the subtree's processes.
    - rmdir of a group holding processes, in it or below, is EBUSY.
    Any other write replaces the file's content (the test plays the kernel's side)."""

    def __init__(
        self, mount: Path, swap: bool = True, peak: str | None = "rw", unkillable: bool = False
    ) -> None:
        self.mount = mount
        self.swap = swap
        self.peak = peak
        self.unkillable = unkillable
        self.writes: list[tuple[str, str]] = []

    def boot(self, own: str, offered: str, procs: list[int]) -> Path:
        """The root, and the service's group `own` offering `offered`, holding `procs`."""
        self.mount.mkdir(parents=True)
        self._files(self.mount, "cpu io memory pids")
        (self.mount / "cgroup.subtree_control").write_text("cpu io memory pids\n")
        group = self.mount
        for part in filter(None, own.split("/")):
            group = group / part
            self.mkdir(group)
        (group / "cgroup.controllers").write_text(offered + "\n")
        (group / "cgroup.procs").write_text("".join(f"{p}\n" for p in procs))
        self._refresh()
        return group

    def _files(self, group: Path, controllers: str) -> None:
        files = dict(CORE_FILES, **{"cgroup.controllers": controllers + "\n"})
        if "memory" in controllers.split():
            files.update(MEMORY_FILES)
            if self.swap:
                files["memory.swap.max"] = "max\n"
            if self.peak:
                files["memory.peak"] = "0\n"
        if "pids" in controllers.split():
            files.update(PIDS_FILES)
        for name, text in files.items():
            (group / name).write_text(text)
        if self.peak and (group / "memory.peak").exists():
            (group / "memory.peak").chmod(0o644 if self.peak == "rw" else 0o444)

    def mkdir(self, path: Path, exist_ok: bool = False) -> None:
        if path.exists() and exist_ok:
            return
        path.mkdir()
        enabled = (path.parent / "cgroup.subtree_control").read_text().split()
        self._files(path, " ".join(enabled))

    def rmdir(self, path: Path) -> None:
        if self._procs(path, below=True):
            raise OSError(errno.EBUSY, "busy", str(path))
        for child in path.iterdir():
            if child.is_dir():
                raise OSError(errno.EBUSY, "has children", str(path))
        for child in path.iterdir():
            child.unlink()
        path.rmdir()

    def write(self, path: Path, text: str) -> None:
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
        self.writes.append((str(path.relative_to(self.mount)), text))
        group, name = path.parent, path.name
        if name == "cgroup.subtree_control":
            offered = (group / "cgroup.controllers").read_text().split()
            wanted = [word[1:] for word in text.split() if word.startswith("+")]
            if any(c not in offered for c in wanted):
                raise OSError(errno.ENOENT, "controller not available", str(path))
            if group != self.mount and self._procs(group):
                raise OSError(errno.EBUSY, "no internal processes", str(path))
            current = path.read_text().split()
            path.write_text(" ".join(sorted({*current, *wanted})) + "\n")
        elif name == "cgroup.procs":
            pid = int(text)
            for other in self._groups():
                other_file = other / "cgroup.procs"
                other_file.write_text("".join(f"{p}\n" for p in self._procs(other) if p != pid))
            path.write_text("".join(f"{p}\n" for p in [*self._procs(group), pid]))
        elif name == "cgroup.kill":
            path.write_text(text)
            if not self.unkillable:
                for sub in self._groups(group):
                    (sub / "cgroup.procs").write_text("")
        elif name == "cgroup.freeze":
            path.write_text(text)
        else:
            path.write_text(text)
        self._refresh()

    def _groups(self, top: Path | None = None) -> list[Path]:
        top = top or self.mount
        return [top, *(p for p in top.rglob("*") if p.is_dir())]

    def _procs(self, group: Path, below: bool = False) -> list[int]:
        groups = self._groups(group) if below else [group]
        return [int(p) for g in groups for p in (g / "cgroup.procs").read_text().split()]

    def _refresh(self) -> None:
        for group in self._groups():
            populated = int(bool(self._procs(group, below=True)))
            frozen = (group / "cgroup.freeze").read_text().strip() == "1"
            (group / "cgroup.events").write_text(f"populated {populated}\nfrozen {int(frozen)}\n")


OWN = "/system.slice/safe-exec.service"


def host(tmp_path: Path, kernel: FakeKernel, own: str = OWN, mount_root: str = "/") -> Path:
    """Fake /proc/self/mountinfo and /proc/self/cgroup of a v2-only host; returns their dir."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(
        "22 1 0:21 / / rw - ext4 /dev/root rw\n"
        f"35 22 0:30 {mount_root} {kernel.mount} rw,nosuid - cgroup2 cgroup2 rw\n"
    )
    (proc / "cgroup").write_text(f"0::{own}\n")
    return proc


def create(tmp_path: Path, kernel: FakeKernel, proc: Path) -> CgroupParent:
    return CgroupParent.create(
        "safe-exec-1",
        root=tmp_path / "no-v1",
        proc_cgroup=proc / "cgroup",
        mountinfo=proc / "mountinfo",
        fs=kernel,
    )


@pytest.fixture
def kernel(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path / "cgroup")


@pytest.fixture
def parent(tmp_path: Path, kernel: FakeKernel) -> CgroupV2Parent:
    kernel.boot(OWN, "memory pids", [SERVICE])
    chosen = create(tmp_path, kernel, host(tmp_path, kernel))
    assert isinstance(chosen, CgroupV2Parent)
    return chosen


# -- detection -----------------------------------------------------------------------------


def test_v2_is_chosen_and_the_services_group_is_split_for_the_no_internal_process_rule(
    tmp_path: Path, kernel: FakeKernel
) -> None:
    own = kernel.boot(OWN, "memory pids", [SERVICE, SIDECAR])

    parent = create(tmp_path, kernel, host(tmp_path, kernel))

    assert isinstance(parent, CgroupV2Parent)
    assert parent.layers == ("cgroup-limits", "cgroup-v2")
    assert parent.directory == own / "safe-exec-1"
    assert parent.cgroup_path == f"{OWN}/safe-exec-1"
    # Both processes of the service's group moved to the leaf, so that the group could
    # enable memory and pids for its children.
    assert (own / "cgroup.procs").read_text().split() == []
    assert (own / SERVICE_LEAF / "cgroup.procs").read_text().split() == [
        str(SERVICE),
        str(SIDECAR),
    ]
    assert (own / "cgroup.subtree_control").read_text().split() == ["memory", "pids"]
    assert (parent.directory / "cgroup.subtree_control").read_text().split() == [
        "memory",
        "pids",
    ]


def test_a_service_restarted_in_its_leaf_reuses_the_group_it_split(
    tmp_path: Path, kernel: FakeKernel
) -> None:
    own = kernel.boot(OWN, "memory pids", [])
    kernel.mkdir(own / SERVICE_LEAF)
    kernel.write(own / SERVICE_LEAF / "cgroup.procs", str(SERVICE))

    parent = create(tmp_path, kernel, host(tmp_path, kernel, own=f"{OWN}/{SERVICE_LEAF}"))

    assert isinstance(parent, CgroupV2Parent)
    assert parent.directory == own / "safe-exec-1"


def test_a_bind_mounted_sub_tree_is_found_below_its_mount_root(
    tmp_path: Path, kernel: FakeKernel
) -> None:
    # A container sees /kubepods/pod1 mounted at the mount point; it runs in .../ctr.
    own = kernel.boot("/ctr", "memory pids", [SERVICE])
    proc = host(tmp_path, kernel, own="/kubepods/pod1/ctr", mount_root="/kubepods/pod1")

    parent = create(tmp_path, kernel, proc)

    assert isinstance(parent, CgroupV2Parent)
    assert parent.directory == own / "safe-exec-1"
    assert parent.cgroup_path == "/kubepods/pod1/ctr/safe-exec-1"


def test_a_group_without_the_pids_controller_is_refused_with_the_reason(
    tmp_path: Path, kernel: FakeKernel
) -> None:
    kernel.boot(OWN, "cpu memory", [SERVICE])

    with pytest.raises(OSError, match="does not offer the pids controller") as raised:
        create(tmp_path, kernel, host(tmp_path, kernel))

    assert "v1:" in str(raised.value)  # v1 was tried too, and why it failed is said
    assert kernel.writes == []  # nothing was changed on the way


def test_a_hybrid_host_whose_cgroup2_mount_has_no_controllers_gets_v1(tmp_path: Path) -> None:
    kernel = FakeKernel(tmp_path / "cgroup" / "unified")
    kernel.boot("/", "", [])
    for controller in ("memory", "pids"):  # v1 hierarchies, no freezer
        (tmp_path / "cgroup" / controller).mkdir()
        (tmp_path / "cgroup" / controller / "cgroup.procs").write_text("")
    proc = host(tmp_path, kernel)
    (proc / "cgroup").write_text("8:pids:/\n4:memory:/\n0::/\n")

    parent = CgroupParent.create(
        "safe-exec-1",
        root=tmp_path / "cgroup",
        proc_cgroup=proc / "cgroup",
        mountinfo=proc / "mountinfo",
        fs=kernel,
    )

    assert isinstance(parent, CgroupV1Parent)
    assert parent.layers == ("cgroup-limits", "cgroup-v1")
    assert sorted(parent.dirs) == ["memory", "pids"]  # the freezer is optional
    assert kernel.writes == []


# -- limits --------------------------------------------------------------------------------


def test_a_scope_gets_memory_swap_pids_limits_and_group_oom(parent: CgroupV2Parent) -> None:
    scope = execution_scope(parent, "slot-0", 64 * MIB, 16)

    assert isinstance(scope, CgroupV2Scope)
    directory = scope.directory
    assert (directory / "memory.max").read_text() == str(64 * MIB)
    assert (directory / "memory.swap.max").read_text() == "0"
    assert (directory / "pids.max").read_text() == "16"
    assert (directory / "memory.oom.group").read_text() == "1"
    assert scope.procs_files == [str(directory / "cgroup.procs")]


def test_without_swap_accounting_the_scope_is_made_without_a_swap_limit(
    tmp_path: Path,
) -> None:
    kernel = FakeKernel(tmp_path / "cgroup", swap=False)
    kernel.boot(OWN, "memory pids", [SERVICE])
    parent = create(tmp_path, kernel, host(tmp_path, kernel))

    scope = execution_scope(parent, "slot-0", 64 * MIB, 16)

    assert isinstance(scope, CgroupV2Scope)
    assert not (scope.directory / "memory.swap.max").exists()
    assert (scope.directory / "memory.max").read_text() == str(64 * MIB)


def test_a_scope_whose_limits_cannot_be_set_is_refused(
    parent: CgroupV2Parent, kernel: FakeKernel
) -> None:
    # Someone took pids away from the service's group: no pids.max in a new scope.
    (parent.directory / "cgroup.subtree_control").write_text("memory\n")

    with pytest.raises(FileNotFoundError, match=r"pids\.max"):
        execution_scope(parent, "slot-0", 64 * MIB, 16)


def test_oom_kills_are_read_from_memory_events(parent: CgroupV2Parent) -> None:
    scope = parent.scope("slot-0", 64 * MIB, 16)
    scope.create()
    events = scope.directory / "memory.events"
    assert scope.oom_killed() is False

    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 1\n")
    assert scope.oom_killed() is True
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n")
    assert scope.oom_killed() is True
    # "oom" alone (the limit was reached, an allocation failed) is no kill.
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert scope.oom_killed() is False


def test_peak_memory_is_memory_peak_or_unknown_before_kernel_5_19(tmp_path: Path) -> None:
    for peak, expected in (("rw", 123 * MIB), (None, None)):
        kernel = FakeKernel(tmp_path / f"cgroup-{peak}", peak=peak)
        kernel.boot(OWN, "memory pids", [SERVICE])
        here = tmp_path / f"host-{peak}"
        here.mkdir()
        parent = create(here, kernel, host(here, kernel))
        scope = parent.scope("slot-0", 64 * MIB, 16)
        scope.create()
        if peak:
            (scope.directory / "memory.peak").write_text(f"{123 * MIB}\n")

        assert scope.peak_memory() == expected


# -- the warm runner's re-armed slot scope ------------------------------------------------


def slot_scope(parent: CgroupV2Parent) -> CgroupV2Scope:
    scope = parent.scope("warm-slot-0", 2048 * MIB, 24, oom_group=False)
    scope.create()
    assert (scope.directory / "memory.oom.group").read_text() == "0"
    scope.adopt(ZYGOTE)
    directory = scope.directory
    (directory / "memory.current").write_text(f"{100 * MIB}\n")
    (directory / "memory.peak").write_text(f"{300 * MIB}\n")  # an earlier execution's
    (directory / "pids.current").write_text("3\n")
    return scope


def test_each_execution_re_arms_the_limits_and_resets_the_peak(
    parent: CgroupV2Parent,
) -> None:
    scope = slot_scope(parent)
    directory = scope.directory

    baseline = scope.begin_execution(64 * MIB, 8)

    assert (directory / "cgroup.procs").read_text().split() == [str(ZYGOTE)]
    assert (directory / "memory.max").read_text() == str(164 * MIB)
    assert (directory / "pids.max").read_text() == str(3 + 8 - 1)
    # The reset went through the file kept open (since 6.12 it is per open file).
    assert (directory / "memory.peak").read_text().startswith("reset")
    (directory / "memory.peak").write_text(f"{180 * MIB}\n")  # the kernel, after the reset
    assert scope.end_execution(baseline) == (80 * MIB, False)

    baseline = scope.begin_execution(64 * MIB, 8)
    events = directory / "memory.events"
    events.write_text(events.read_text().replace("oom_kill 0", "oom_kill 1"))
    (directory / "memory.peak").write_text(f"{164 * MIB}\n")
    assert scope.end_execution(baseline) == (64 * MIB, True)
    scope.remove()


def test_a_peak_that_cannot_be_reset_counts_only_when_the_execution_raised_it(
    tmp_path: Path,
) -> None:
    kernel = FakeKernel(tmp_path / "cgroup", peak="ro")  # kernels 5.19 to 6.11
    kernel.boot(OWN, "memory pids", [SERVICE])
    parent = create(tmp_path, kernel, host(tmp_path, kernel))
    assert isinstance(parent, CgroupV2Parent)
    scope = slot_scope(parent)
    peak = scope.directory / "memory.peak"

    baseline = scope.begin_execution(64 * MIB, 8)
    assert peak.read_text() == f"{300 * MIB}\n"  # not written
    # Below the slot's old high-water mark: this execution's own peak is unknown (0: the
    # runner keeps the script's RSS).
    assert scope.end_execution(baseline) == (0, False)

    baseline = scope.begin_execution(64 * MIB, 8)
    peak.write_text(f"{350 * MIB}\n")  # a new high-water mark: this execution reached it
    assert scope.end_execution(baseline) == (250 * MIB, False)
    scope.remove()


# -- kills ---------------------------------------------------------------------------------


def test_kill_all_writes_cgroup_kill_and_waits_for_the_group_to_empty(
    parent: CgroupV2Parent, kernel: FakeKernel
) -> None:
    scope = parent.scope("slot-0", 64 * MIB, 16)
    scope.create()
    scope.adopt(ZYGOTE)
    assert scope.pids() == [ZYGOTE]

    assert scope.kill_all() is True

    assert scope.pids() == []
    assert (str((scope.directory / "cgroup.kill").relative_to(kernel.mount)), "1") in (
        kernel.writes
    )
    scope.remove()
    assert not scope.directory.exists()


def test_a_group_that_does_not_empty_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = FakeKernel(tmp_path / "cgroup", unkillable=True)
    kernel.boot(OWN, "memory pids", [SERVICE])
    parent = create(tmp_path, kernel, host(tmp_path, kernel))
    scope = parent.scope("slot-0", 64 * MIB, 16)
    scope.create()
    scope.adopt(ZYGOTE)

    with caplog.at_level(logging.WARNING, logger="safe_exec.cgroups"):
        assert scope.kill_all(timeout_s=0.05) is False

    assert "still populated" in caplog.text and str(ZYGOTE) in caplog.text


# -- the runners ---------------------------------------------------------------------------


def runtime() -> SandboxRuntime:
    return SandboxRuntime(python=default_interpreter())


JOB = SandboxJob(
    script=Script("def main():\n    return 1\n"), limits=Limits(memory_bytes=64 * MIB), slot=0
)


def test_nsjail_makes_its_jail_group_inside_a_v2_scope(parent: CgroupV2Parent) -> None:
    sandbox = NsjailSandbox(nsjail="nsjail", runtime=runtime(), uid_base=900000, cgroups=parent)
    scope = parent.scope("slot-0", JOB.limits.memory_bytes, JOB.limits.max_processes)

    argv = sandbox._argv(JOB, 3, 4, scope, 5)

    assert "--use_cgroupv2" in argv
    assert argv[argv.index("--cgroupv2_mount") + 1] == str(scope.directory)
    assert int(argv[argv.index("--cgroup_mem_max") + 1]) > JOB.limits.memory_bytes
    assert not [arg for arg in argv if arg.startswith(("--cgroup_mem_parent", "--cgroup_pids_p"))]
    assert sandbox.isolation[-2:] == ("cgroup-limits", "cgroup-v2")


def test_nsjail_keeps_its_v1_options_for_a_v1_scope(tmp_path: Path) -> None:
    mounts = {c: tmp_path / c for c in ("memory", "pids")}
    v1 = CgroupV1Parent({c: m / "safe-exec-1" for c, m in mounts.items()}, mounts)
    sandbox = NsjailSandbox(nsjail="nsjail", runtime=runtime(), uid_base=900000, cgroups=v1)
    scope: CgroupScope = v1.scope("slot-0", JOB.limits.memory_bytes, JOB.limits.max_processes)
    assert isinstance(scope, CgroupV1Scope)

    argv = sandbox._argv(JOB, 3, 4, scope, 5)

    assert "--use_cgroupv2" not in argv
    assert argv[argv.index("--cgroup_mem_parent") + 1] == "safe-exec-1/slot-0"
    assert argv[argv.index("--cgroup_pids_mount") + 1] == str(mounts["pids"])
    assert sandbox.isolation[-2:] == ("cgroup-limits", "cgroup-v1")


def test_rlimit_names_the_cgroup_version_in_its_layers(parent: CgroupV2Parent) -> None:
    sandbox = RlimitSandbox(runtime=runtime(), uid_base=900000, cgroups=parent, seccomp=None)

    assert sandbox.isolation[-2:] == ("cgroup-limits", "cgroup-v2")
