"""The nsjail runner: namespaces, a read-only root of just the runtime, seccomp, rlimits,
a cgroup per execution, and the wall-clock limit enforced from outside."""

from __future__ import annotations

import os
import re
import signal

import attrs

from adapters.sandbox.cgroups import (
    CGROUP_LAYERS,
    KILL_FAILED,
    CgroupParent,
    CgroupScope,
    CgroupV1Scope,
    CgroupV2Scope,
    execution_scope,
)
from adapters.sandbox.process import Launch, kill_process, supervise
from adapters.sandbox.runtime import SANDBOX_ENV, SandboxRuntime
from adapters.sandbox.seccomp import ZYGOTE_NEEDS, build_program, kafel_policy
from adapters.sandbox.warm import STANDBY, WarmSandbox, jail_config, slot_cpu
from application.ports import SandboxJob
from domain.limits import MIB, Limits
from domain.report import SandboxReport

INSIDE_UID = 1000  # the script's uid inside its user namespace; mapped to a per-slot host uid
NSJAIL_SETUP_FAILED = 255  # nsjail's exit status when it could not build the jail
# nsjail's own group for the jail sits inside our scope, with a looser limit, so the scope's
# limit is the one that bites: the OOM event and the peak are then recorded on the scope.
# (Keeping nsjail itself out of the scope also matters for speed: creating the jail's
# network namespace inside a memory cgroup costs ~12 ms more here.)
CHILD_GROUP_SLACK = 64 * MIB
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")

# The kafel renderings of seccomp.py's one policy: executions get all of it; a warm zygote
# keeps unshare, setns and mount to build each execution's jail (each execution then installs
# the full BPF filter itself, stacked on the zygote's). None where the architecture is unknown.
SECCOMP_POLICY = kafel_policy()
ZYGOTE_SECCOMP_POLICY = kafel_policy(keep=ZYGOTE_NEEDS)
ZYGOTE_SCRATCH_SIZE = 65536  # the zygote's own /tmp and /dev/shm: each execution gets fresh ones
# What the zygote keeps: CAP_SYS_ADMIN for unshare/mount/sethostname, CAP_SETPCAP to empty
# each execution's bounding set. Both only inside the jail's user namespace.
ZYGOTE_CAPS = ("CAP_SYS_ADMIN", "CAP_SETPCAP")


def _seccomp_option(policy: str | None) -> list[tuple[str, str]]:
    return [] if policy is None else [("--seccomp_string", policy)]


def _cgroup_options(limits: Limits, scope: CgroupScope | None) -> list[tuple[str, str]]:
    if scope is None:
        return []
    if isinstance(scope, CgroupV2Scope):  # with --use_cgroupv2: NSJAIL.<pid> inside the scope
        return [
            ("--cgroupv2_mount", str(scope.directory)),
            ("--cgroup_mem_max", str(limits.memory_bytes + CHILD_GROUP_SLACK)),
            ("--cgroup_pids_max", str(limits.max_processes + CHILD_GROUP_SLACK // MIB)),
        ]
    assert isinstance(scope, CgroupV1Scope)
    return [
        ("--cgroup_mem_mount", str(scope.mounts["memory"])),
        ("--cgroup_mem_parent", scope.relative("memory")),
        ("--cgroup_mem_max", str(limits.memory_bytes + CHILD_GROUP_SLACK)),
        ("--cgroup_pids_mount", str(scope.mounts["pids"])),
        ("--cgroup_pids_parent", scope.relative("pids")),
        ("--cgroup_pids_max", str(limits.max_processes + CHILD_GROUP_SLACK // MIB)),
    ]


def _nsjail_fatal_line(log: str) -> str | None:
    """nsjail's own fatal log line ("[F][time][pid] where: what"), if it wrote one."""
    fatal = [line for line in log.splitlines() if line.startswith("[F][")]
    return fatal[-1].rsplit("]", 1)[-1].strip() if fatal else None


def _exit_status(code: int) -> tuple[int | None, int | None]:
    """nsjail's exit status for a child killed by signal N is 128 + N: ambiguous (a script can
    exit with 137 itself), so only a fallback for when nsjail's log says nothing."""
    if 128 < code < 128 + 65:
        return None, code - 128
    return code, None


def _ended_from_log(log: str) -> tuple[int | None, int | None] | None:
    """(exit code, signal) of the jailed process as nsjail logged it, which the script cannot
    forge (the log goes to a pipe of its own, not to the script's stderr)."""
    for line in reversed(log.splitlines()):
        exited = _EXITED.search(line)
        if exited:
            return int(exited.group(1)), None
        killed = _KILLED.search(line)
        if killed:
            return None, int(killed.group(1))
    return None


_EXITED = re.compile(r"\) exited with status: (\d+)")
_KILLED = re.compile(r"\) terminated with signal: \S+ \((\d+)\)")
NSJAIL_LOG_CAP = 1 << 20


def _read_log(fd: int) -> str:
    chunks: list[bytes] = []
    size = 0
    while size < NSJAIL_LOG_CAP and (chunk := os.read(fd, 1 << 16)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


@attrs.frozen(kw_only=True)
class NsjailSandbox:
    """Runs each job in a fresh nsjail. `cgroups` is None where cgroups are not usable;
    rlimits and the outside deadline still apply then."""

    nsjail: str
    runtime: SandboxRuntime
    uid_base: int
    cgroups: CgroupParent | None = None
    name: str = "nsjail"

    @property
    def isolation(self) -> tuple[str, ...]:
        layers: tuple[str, ...] = (
            "user",
            "pid",
            "mount",
            "network",
            "ipc",
            "uts",
            "cgroup-namespace",
            "read-only-root",
            "private-tmpfs",
            *(("seccomp",) if SECCOMP_POLICY is not None else ()),
            "rlimits",
        )
        if os.geteuid() == 0:  # unprivileged, every jail maps to the service's own uid
            layers = (*layers, "uid")
        return (*layers, *self.cgroups.layers) if self.cgroups is not None else layers

    def _outside_uid(self, slot: int) -> int:
        return self.uid_base + slot if os.geteuid() == 0 else os.geteuid()

    def _outside_gid(self, slot: int) -> int:
        # Unprivileged, a user namespace may map only the service's own effective gid.
        return self.uid_base + slot if os.geteuid() == 0 else os.getegid()

    def _common_options(self, slot: int) -> list[tuple[str, str]]:
        """The jail both runners build: identity, the read-only runtime, devices, env."""
        outside = self._outside_uid(slot)
        return [
            ("--mode", "o"),
            ("--user", f"{INSIDE_UID}:{outside}:1"),
            ("--group", f"{INSIDE_UID}:{self._outside_gid(slot)}:1"),
            ("--hostname", "sandbox"),
            *(("-R", path) for path in self.runtime.read_only_paths()),
            *(("-B" if dev == "/dev/null" else "-R", dev) for dev in DEVICES),
            *(("-E", f"{key}={value}") for key, value in SANDBOX_ENV.items()),
        ]

    def zygote_launch(self, slot: int, control_fd: int) -> Launch:
        """A long-lived nsjail around a warm zygote (warm.py): no time limit, generous
        rlimits (each execution sets its own), only the capabilities it needs."""
        options: list[tuple[str, str]] = [
            *self._common_options(slot),
            ("--cwd", "/"),
            ("--time_limit", "0"),
            *(("--cap", cap) for cap in ZYGOTE_CAPS),
            ("--rlimit_as", "max"),
            ("--rlimit_cpu", "max"),
            ("--rlimit_fsize", "max"),
            ("--rlimit_nofile", "2048"),
            ("--rlimit_nproc", "max"),
            ("--rlimit_core", "0"),
            ("--rlimit_stack", "soft"),
            ("--mount", f"none:/tmp:tmpfs:size={ZYGOTE_SCRATCH_SIZE}"),
            ("--mount", f"none:/dev/shm:tmpfs:size={ZYGOTE_SCRATCH_SIZE}"),
            ("--pass_fd", str(control_fd)),
            *_seccomp_option(ZYGOTE_SECCOMP_POLICY),
        ]
        argv = [
            self.nsjail,
            "--really_quiet",
            "--iface_no_lo",
            *(part for option in options for part in option),
            "--",
            *self.runtime.zygote_argv(control_fd),
        ]
        return Launch(argv=argv, env={})

    def _argv(
        self,
        job: SandboxJob,
        script_fd: int,
        channel_fd: int,
        scope: CgroupScope | None,
        log_fd: int,
    ) -> list[str]:
        limits: Limits = job.limits
        options: list[tuple[str, str]] = [
            *self._common_options(job.slot),
            ("--cwd", "/tmp"),
            ("--time_limit", str(int(limits.wall_time_s) + 5)),  # backstop; we kill first
            ("--max_cpus", "1"),
            ("--rlimit_as", str(max(1, limits.memory_bytes // MIB))),
            ("--rlimit_cpu", str(limits.cpu_limit_whole_seconds)),
            ("--rlimit_fsize", str(max(1, limits.tmp_size_bytes // MIB))),
            ("--rlimit_nofile", str(limits.max_open_files)),
            ("--rlimit_nproc", str(limits.max_processes)),
            ("--rlimit_core", "0"),
            ("--rlimit_stack", "soft"),
            ("--mount", f"none:/tmp:tmpfs:size={limits.tmp_size_bytes}"),
            # multiprocessing's semaphores live in /dev/shm (the cgroup caps both tmpfs).
            ("--mount", f"none:/dev/shm:tmpfs:size={limits.tmp_size_bytes}"),
            ("--pass_fd", str(script_fd)),
            ("--pass_fd", str(channel_fd)),
            *_seccomp_option(SECCOMP_POLICY),
            *_cgroup_options(limits, scope),
        ]
        flags = [
            # nsjail's own log (how the jail ended, its fatal errors) on a pipe of its own:
            # the script writes to stderr, so nothing it prints can pass for nsjail's word.
            "--log_fd",
            str(log_fd),
            "--iface_no_lo",  # no loopback either: the jail has no network interface up
            *(["--use_cgroupv2"] if isinstance(scope, CgroupV2Scope) else []),
        ]
        return [
            self.nsjail,
            *flags,
            *(part for option in options for part in option),
            "--",
            *self.runtime.harness_argv(script_fd, channel_fd, limits.result_cap_bytes),
        ]

    def start(self) -> None:
        """Nothing to warm: every execution starts from nothing."""

    def close(self) -> None:
        """Nothing outlives an execution."""

    def run(self, job: SandboxJob) -> SandboxReport:
        try:
            scope = execution_scope(
                self.cgroups, f"slot-{job.slot}", job.limits.memory_bytes, job.limits.max_processes
            )
        except OSError as error:
            return SandboxReport(
                sandbox_error=f"its cgroup could not be created ({error}); it was not run "
                "without its memory and process limits"
            )
        try:

            def kill_tree(pid: int) -> None:
                if scope is not None:
                    # Spare nsjail: it reaps the killed jail and exits by itself, so the
                    # script's CPU time still reaches our wait4().
                    scope.kill_all(sparing=pid)
                else:
                    kill_process(pid)  # the jail's init has PDEATHSIG: it follows nsjail

            def launch(script_fd: int, channel_fd: int) -> Launch:
                argv = self._argv(job, script_fd, channel_fd, scope, log_w)
                return Launch(argv=argv, env={}, pass_fds=(log_w,))

            log_r, log_w = os.pipe2(os.O_CLOEXEC)
            try:
                report, ended = supervise(
                    launch,
                    job,
                    kill_tree=kill_tree,
                    decode_status=_exit_status,
                )
            finally:
                os.close(log_w)  # nsjail has exited: its log ends here
            try:
                log = _read_log(log_r)
            finally:
                os.close(log_r)
            if ended is None:
                return report
            fatal = _nsjail_fatal_line(log)
            if ended.exit_code == NSJAIL_SETUP_FAILED and fatal and not report.harness_report:
                return attrs.evolve(report, sandbox_error=f"nsjail could not start: {fatal}")
            logged = _ended_from_log(log)
            if logged is not None:
                report = attrs.evolve(report, exit_code=logged[0], signal=logged[1])
            if scope is not None:
                report = attrs.evolve(
                    report,
                    oom_killed=scope.oom_killed(),
                    peak_memory_bytes=scope.peak_memory() or report.peak_memory_bytes,
                )
                if not scope.kill_all():
                    report = attrs.evolve(report, sandbox_error=KILL_FAILED)
            # The script is PID 1 of its namespace: nothing inside can SIGKILL it, so a
            # SIGKILL we did not send and the OOM killer did not send is RLIMIT_CPU's, when
            # the measured CPU time reached the limit.
            cpu_killed = report.signal == signal.SIGKILL and job.limits.cpu_limit_reached(
                report.cpu_time_s
            )
            if cpu_killed and not report.timed_out and not report.oom_killed:
                report = attrs.evolve(report, cpu_limit_hit=True)
            return report
        finally:
            if scope is not None:
                scope.remove()


def warm_nsjail(
    sandbox: NsjailSandbox, limits: Limits, slots: int, preload: tuple[str, ...]
) -> WarmSandbox:
    """nsjail-warm: per slot, zygotes in long-lived nsjails (user, PID, mount, network, IPC,
    UTS and cgroup namespaces, read-only runtime root); each execution additionally gets its
    own PID, mount, IPC, UTS and network namespaces, no capabilities and seccomp-bpf."""
    program = build_program()
    layers = [layer for layer in sandbox.isolation if layer not in CGROUP_LAYERS]
    layers += ["fresh-pid-mount-ipc-per-execution", "no-capabilities", "no-new-privs"]
    if sandbox.cgroups is not None:
        layers += sandbox.cgroups.layers
    return WarmSandbox(
        name="nsjail-warm",
        isolation=tuple(layers),
        launch=sandbox.zygote_launch,
        jail=lambda slot: jail_config(
            limits=limits,
            seccomp=program or b"",
            scratch=("/tmp", "/dev/shm"),
            cpu=slot_cpu(slot),
            # Network and UTS: each zygote's nsjail has its own, shared by its executions one
            # at a time, as in rlimit-warm (why that is safe: warm.py, ZYGOTE_NAMESPACES).
            zygote_namespaces=0,
        ),
        limits=limits,
        slots=slots,
        site_dirs=sandbox.runtime.site_dirs,
        preload=preload,
        # The slot's zygotes and their standby processes share the jail's uid.
        nproc_allowance=(1 + STANDBY) * (2 if preload else 1),
        cgroups=sandbox.cgroups,
        unusable=None if program else "no seccomp syscall table for this architecture",
    )
