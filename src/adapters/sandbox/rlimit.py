"""The rlimit runner: the fallback where nsjail cannot run (e.g. Cloud Run's gVisor).

Per execution, as root: a new session; a per-slot unprivileged uid; where the kernel allows
them, new network, mount, IPC and UTS namespaces whose root is a minimal one (the runtime
read-only, four devices, fresh size-capped tmpfs on /tmp, /var/tmp and /dev/shm, /proc with
hidepid=2); without namespaces (degraded mode), a private work directory and Landlock where
the kernel has it; rlimits; no_new_privs and a seccomp filter refusing non-Unix sockets and
escape syscalls; an empty environment; a cgroup where usable. Afterwards every process of the
execution (its cgroup, else the slot's uid) is killed."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable

import attrs

from adapters.sandbox.cgroups import (
    CGROUP_LAYERS,
    KILL_FAILED,
    CgroupParent,
    CgroupScope,
    execution_scope,
)
from adapters.sandbox.landlock import Confinement
from adapters.sandbox.minimal_root import (
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    _check,
    _libc,
    pivot_into_minimal_root,
)
from adapters.sandbox.process import Launch, reap_orphans, run_forked, supervise
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
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def _mount(source: bytes, target: bytes, fstype: bytes, flags: int, data: bytes) -> None:
    _check(_libc.mount(source, target, fstype, flags, data), f"mount {target!r}")


PR_SET_NO_NEW_PRIVS = 38


def namespaces_available() -> bool:
    """Whether this process may unshare the namespaces the runner wants (root, not blocked)."""

    def probe() -> None:
        _check(_libc.unshare(NAMESPACES), "unshare")

    return run_forked(probe) == 0


def kill_uid(uid: int) -> None:
    """Kill every process running as `uid`, wherever it moved (new session, reparented).

    A child that becomes `uid` and calls kill(-1) reaches exactly that uid's processes."""

    def sweep() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, 19)  # the server keeps the CPU when it needs it
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        with contextlib.suppress(ProcessLookupError):  # none left: the sweep is done
            for _ in range(1000):
                os.kill(-1, signal.SIGKILL)

    run_forked(sweep)


def default_seccomp() -> SeccompFilter | None:
    program = build_program()
    return SeccompFilter(program) if program is not None else None


@attrs.frozen(kw_only=True)
class RlimitSandbox:
    runtime: SandboxRuntime
    uid_base: int
    cgroups: CgroupParent | None = None
    use_namespaces: bool = True
    landlock_abi: int = 0  # degraded mode confines the filesystem with Landlock when > 0
    seccomp: SeccompFilter | None = attrs.field(factory=default_seccomp)
    name: str = "rlimit"

    @property
    def isolation(self) -> tuple[str, ...]:
        layers = ["uid", "rlimits", "session", "no-new-privs"]
        if self.use_namespaces:
            layers += ["network", "mount", "ipc", "uts", "minimal-root", "private-tmpfs"]
        else:  # degraded mode: the host's namespaces, see SECURITY.md for what that leaves
            layers.append("private-workdir")
            if self.landlock_abi > 0:
                layers.append(f"landlock-abi-{self.landlock_abi}")
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
        # Every clean-up step runs even when an earlier one (or the run itself) raises:
        # nothing of the execution may outlive it, however it went wrong.
        with contextlib.ExitStack() as cleanup:
            if scope is not None:
                cleanup.callback(scope.remove)
            cleanup.callback(reap_orphans)
            workdir = None if self.use_namespaces else self._make_workdir(uid)
            if workdir is not None:
                cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
            kill_descendants = self._descendant_killer(uid, scope)
            cleanup.callback(kill_descendants)
            return self._supervise(job, uid, scope, workdir, kill_descendants)
        raise AssertionError("unreachable")  # ExitStack never swallows the return

    def _descendant_killer(self, uid: int, scope: CgroupScope | None) -> Callable[[], None]:
        def kill_descendants() -> None:
            # An unprivileged process cannot leave its cgroup, so the cgroup reaches every
            # descendant; without one, the slot's uid does (setsid cannot escape that).
            if scope is not None:
                scope.kill_all()
            else:
                kill_uid(uid)

        return kill_descendants

    def _supervise(
        self,
        job: SandboxJob,
        uid: int,
        scope: CgroupScope | None,
        workdir: str | None,
        kill_descendants: Callable[[], None],
    ) -> SandboxReport:
        preexec = self._preexec(job.limits, uid, scope, workdir)

        def kill_tree(pid: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            kill_descendants()

        env = dict(SANDBOX_ENV)
        if workdir is not None:
            env.update(HOME=workdir, TMPDIR=workdir)
        report, ended = supervise(
            lambda script_fd, channel_fd: Launch(
                argv=self.runtime.harness_argv(script_fd, channel_fd, job.limits.result_cap_bytes),
                env=env,
                preexec=preexec,
            ),
            job,
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
        root_paths = self.runtime.read_only_paths()
        empty = [*SCRATCH_DIRS, "/proc"]
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
        landlock = None
        if not use_namespaces and self.landlock_abi > 0 and workdir is not None:
            landlock = Confinement(self.landlock_abi, root_paths, DEVICES, [workdir])
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
                # Only the runtime, read-only: the host's files, sockets, FIFOs, ptys,
                # setuid binaries and the service's own code are simply not there.
                pivot_into_minimal_root(root_paths, list(DEVICES), empty)
                # Best effort (gVisor may refuse): a /proc that shows only the sandbox uid's
                # own processes, not the server's or other tenants' command lines.
                _libc.mount(
                    b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"hidepid=2"
                )
                for scratch in SCRATCH_DIRS:
                    _mount(
                        b"tmpfs", scratch.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, tmpfs_options
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
            if landlock is not None:
                landlock.apply()
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
    # network and UTS: the zygote's own, shared by its executions one at a time (warm.py)
    layers += ["pid", "proc-hidepid", "fresh-pid-mount-ipc-per-execution"]
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
