"""The rlimit runner: the fallback where nsjail cannot run (e.g. Cloud Run's gVisor).

Per execution, as root: a new session; a per-slot unprivileged uid; new network, mount, IPC
and UTS namespaces where the kernel allows them, with fresh size-capped tmpfs on /tmp,
/var/tmp and /dev/shm and the service's own directories hidden; rlimits; a seccomp filter
refusing non-Unix sockets and escape syscalls; an empty environment; a cgroup where usable.
Afterwards every process of the slot's uid is killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable, Sequence

import attrs

from adapters.sandbox.cgroups import (
    CGROUP_LAYERS,
    KILL_FAILED,
    CgroupParent,
    CgroupScope,
    execution_scope,
)
from adapters.sandbox.process import Launch, reap_orphans, supervise
from adapters.sandbox.runtime import SANDBOX_ENV, SandboxRuntime
from adapters.sandbox.seccomp import SeccompFilter, build_program
from adapters.sandbox.warm import STANDBY, WarmSandbox, jail_config, slot_cpu
from application.ports import SandboxJob
from domain.limits import Limits
from domain.report import SandboxReport

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: bytes, target: bytes, fstype: bytes, flags: int, data: bytes) -> None:
    _check(_libc.mount(source, target, fstype, flags, data), f"mount {target!r}")


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


SYS_MOUNT_SETATTR = 442  # the same number on every architecture (added in Linux 5.12)
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 1
MOUNT_ATTR_NOSUID = 2
# Read-only, and no setuid binary of the host tree can serve a script (not nodev: /dev
# must keep working; the scratch tmpfs are nodev, and mknod needs a capability no one has).
_READ_ONLY = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
PR_SET_NO_NEW_PRIVS = 38


def _mount_points() -> list[bytes]:
    """Every mount point, parents first (read in the parent: the child's copy is the same)."""
    with open("/proc/self/mountinfo", "rb") as handle:
        return [line.split()[4] for line in handle]


def _make_read_only(mount_points: list[bytes]) -> None:
    """Make the whole (private copy of the) mount tree read-only: world-writable host
    directories such as /run/lock must not become a channel between executions."""
    result = _libc.syscall(
        SYS_MOUNT_SETATTR,
        AT_FDCWD,
        b"/",
        AT_RECURSIVE,
        ctypes.byref(_READ_ONLY),
        ctypes.sizeof(_READ_ONLY),
    )
    if result == 0:
        return
    # Older kernels and gVisor: remount each mount read-only; the root must succeed.
    for point in mount_points:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
        if _libc.mount(None, point, None, flags, None) != 0 and point == b"/":
            _check(-1, "remount / read-only")


def namespaces_available() -> bool:
    """Whether this process may unshare the namespaces the runner wants (root, not blocked)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os._exit(0 if _libc.unshare(NAMESPACES) == 0 else 1)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def kill_uid(uid: int) -> None:
    """Kill every process running as `uid`, wherever it moved (new session, reparented).

    A child that becomes `uid` and calls kill(-1) reaches exactly that uid's processes."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 19)  # the server keeps the CPU when it needs it
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(1000):
                os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            os._exit(0)
        except BaseException:
            os._exit(1)
        os._exit(2)
    os.waitpid(pid, 0)


def default_seccomp() -> SeccompFilter | None:
    program = build_program()
    return SeccompFilter(program) if program is not None else None


def outermost(paths: Sequence[str]) -> list[str]:
    """Drop paths inside other listed paths (once a parent is hidden they no longer exist),
    and paths under the scratch directories (a fresh tmpfs hides those already)."""
    normal = sorted({os.path.normpath(p) for p in paths})
    kept: list[str] = []
    for path in normal:
        covered = [*kept, *SCRATCH_DIRS]
        if path != "/" and not any(path == c or path.startswith(c + "/") for c in covered):
            kept.append(path)
    return kept


@attrs.frozen(kw_only=True)
class RlimitSandbox:
    runtime: SandboxRuntime
    uid_base: int
    hide_paths: Sequence[str] = ()
    cgroups: CgroupParent | None = None
    use_namespaces: bool = True
    seccomp: SeccompFilter | None = attrs.field(factory=default_seccomp)
    name: str = "rlimit"

    @property
    def isolation(self) -> tuple[str, ...]:
        layers = ["uid", "rlimits", "session"]
        if self.use_namespaces:
            layers += ["network", "mount", "ipc", "uts", "private-tmpfs", "hidden-service-dirs"]
        if self.seccomp is not None:
            layers.append("seccomp")
        if self.cgroups is not None:
            layers += self.cgroups.layers
        return tuple(layers)

    def start(self) -> None:
        """Nothing to warm: every execution starts from nothing."""

    def close(self) -> None:
        """Nothing outlives an execution."""

    def run(self, job: SandboxJob) -> SandboxReport:
        if os.geteuid() != 0:
            return SandboxReport(
                sandbox_error="the rlimit runner needs root to run scripts as another user"
            )
        uid = self.uid_base + job.slot
        try:
            scope = execution_scope(
                self.cgroups,
                f"rlimit-slot-{job.slot}",
                job.limits.memory_bytes,
                job.limits.max_processes,
            )
        except OSError as error:
            return SandboxReport(
                sandbox_error=f"its cgroup could not be created ({error}); it was not run "
                "without its memory and process limits"
            )
        workdir = None if self.use_namespaces else self._make_workdir(uid)
        preexec = self._preexec(job.limits, uid, scope, workdir)

        def kill_descendants() -> None:
            # An unprivileged process cannot leave its cgroup, so the cgroup reaches every
            # descendant; without one, the slot's uid does (setsid cannot escape that).
            if scope is not None:
                scope.kill_all()
            else:
                kill_uid(uid)

        def kill_tree(pid: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            kill_descendants()

        try:
            env = dict(SANDBOX_ENV)
            if workdir is not None:
                env.update(HOME=workdir, TMPDIR=workdir)
            report, ended = supervise(
                lambda script_fd, channel_fd: Launch(
                    argv=self.runtime.harness_argv(
                        script_fd, channel_fd, job.limits.result_cap_bytes
                    ),
                    env=env,
                    preexec=preexec,
                ),
                job.script.source,
                job.limits,
                kill_tree=kill_tree,
                members=scope.pids if scope is not None else None,
            )
            if scope is not None and ended is not None:
                report = attrs.evolve(
                    report,
                    oom_killed=scope.oom_killed(),
                    peak_memory_bytes=scope.peak_memory() or report.peak_memory_bytes,
                )
            if scope is not None and not scope.kill_all():
                report = attrs.evolve(report, sandbox_error=KILL_FAILED)
            return report
        finally:
            kill_descendants()
            reap_orphans()
            if scope is not None:
                scope.remove()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def _make_workdir(uid: int) -> str:
        workdir = tempfile.mkdtemp(prefix=f"safe-exec-{uid}-")
        os.chown(workdir, uid, uid)
        return workdir

    def _preexec(
        self, limits: Limits, uid: int, scope: CgroupScope | None, workdir: str | None
    ) -> Callable[[], None]:
        """Everything here runs in the forked child before exec: prepare all values now."""
        procs_files = scope.procs_files if scope is not None else []
        tmpfs_options = f"size={limits.tmp_size_bytes},mode=1777".encode()
        hidden = [p.encode() for p in outermost(self.hide_paths) if os.path.isdir(p)]
        cpu = limits.cpu_limit_whole_seconds
        rlimits = [
            (resource.RLIMIT_AS, limits.memory_bytes),
            (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU first, SIGKILL a second later
            (resource.RLIMIT_FSIZE, limits.tmp_size_bytes),
            (resource.RLIMIT_NOFILE, limits.max_open_files),
            (resource.RLIMIT_NPROC, limits.max_processes),
            (resource.RLIMIT_CORE, 0),
        ]
        use_namespaces = self.use_namespaces
        mount_points = _mount_points() if use_namespaces else []
        seccomp = self.seccomp
        cwd = workdir or "/tmp"

        def preexec() -> None:
            pid = str(os.getpid())
            for procs in procs_files:
                with open(procs, "w") as handle:
                    handle.write(pid)
            if use_namespaces:
                _check(_libc.unshare(NAMESPACES), "unshare")
                _check(_libc.sethostname(b"sandbox", 7), "sethostname")
                _mount(b"none", b"/", b"", MS_REC | MS_PRIVATE, b"")
                _make_read_only(mount_points)
                # Best effort (gVisor may refuse): a /proc that shows only the sandbox uid's
                # own processes, not the server's or other tenants' command lines.
                _libc.mount(
                    b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"hidepid=2"
                )
                for scratch in SCRATCH_DIRS:
                    if os.path.isdir(scratch):
                        _mount(
                            b"tmpfs",
                            scratch.encode(),
                            b"tmpfs",
                            MS_NOSUID | MS_NODEV,
                            tmpfs_options,
                        )
                for path in hidden:
                    _mount(
                        b"tmpfs",
                        path,
                        b"tmpfs",
                        MS_RDONLY | MS_NOSUID | MS_NODEV,
                        b"size=4096,mode=0555",
                    )
            for entry in rlimits:
                soft, hard = (entry[1], entry[-1])
                resource.setrlimit(entry[0], (soft, hard))
            os.setpriority(os.PRIO_PROCESS, 0, 19)  # the server keeps the CPU when it needs it
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.chdir(cwd)
            # Always, seccomp or not: no exec can ever gain privileges (setuid binaries, file
            # capabilities) from here on.
            _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
            if seccomp is not None:
                seccomp.install()

        return preexec


def warm_rlimit(
    sandbox: RlimitSandbox, limits: Limits, slots: int, preload: tuple[str, ...]
) -> WarmSandbox:
    """rlimit-warm: per slot, root zygotes exec'ed with an empty environment (never forked from
    the service); each execution gets its own PID, mount and IPC namespaces (network and UTS:
    its zygote's), a minimal root of the runtime alone, fresh tmpfs scratch directories, the
    slot's uid, rlimits and seccomp-bpf."""
    program = sandbox.seccomp.program if sandbox.seccomp is not None else None
    unusable = None
    if os.geteuid() != 0:
        unusable = "the rlimit runner needs root to run scripts as another user"
    elif not sandbox.use_namespaces:
        unusable = "the warm rlimit runner needs mount, PID and network namespaces"
    elif program is None:
        unusable = "no seccomp syscall table for this architecture"
    root = sandbox.runtime.read_only_paths()
    layers = [layer for layer in sandbox.isolation if layer not in (*CGROUP_LAYERS, "session")]
    layers = [layer for layer in layers if layer != "hidden-service-dirs"]
    layers.append("minimal-root")  # only the runtime: no host files, sockets or setuid binaries
    # network and UTS: the zygote's own, shared by its executions one at a time (warm.py)
    layers += ["pid", "proc-hidepid", "fresh-pid-mount-ipc-per-execution", "no-new-privs"]
    if sandbox.cgroups is not None:
        layers += sandbox.cgroups.layers

    def launch(_slot: int, control_fd: int) -> Launch:
        return Launch(argv=sandbox.runtime.zygote_argv(control_fd), env=dict(SANDBOX_ENV))

    return WarmSandbox(
        name="rlimit-warm",
        isolation=tuple(layers),
        launch=launch,
        jail=lambda slot: jail_config(
            limits=limits,
            seccomp=program or b"",
            scratch=SCRATCH_DIRS,
            uid=sandbox.uid_base + slot,
            root_paths=root,
            devices=DEVICES,
            proc_options="hidepid=2",
            cpu=slot_cpu(slot),
        ),
        limits=limits,
        slots=slots,
        site_dirs=sandbox.runtime.site_dirs,
        preload=preload,
        # The slot's standby processes run as the slot's uid too (its zygotes are root).
        nproc_allowance=STANDBY * (2 if preload else 1),
        cgroups=sandbox.cgroups,
        unusable=unusable,
    )
