# The warm zygote: the second half of the program `runtime.zygote_source()` builds (harness.py
# comes first, so `execute`, `_read_all` and `HIGH_FD` are the harness's). It runs inside the
# sandbox (in a long-lived nsjail, or as a root process exec'ed with an empty environment by the
# rlimit runner), loads the harness and the preloaded libraries once, and never runs a script
# itself. For each execution it forks, ahead of demand, a child born as PID 1 of a fresh PID
# namespace (unshare(CLONE_NEWPID) just before the fork, setns back just after), which enters
# fresh mount and IPC namespaces (and network and UTS ones where the configuration asks),
# mounts its own /proc, /tmp and /dev/shm, drops to the slot's uid or drops every capability,
# sets no_new_privs and seccomp, says "ready", then waits for its job, applies its limits and
# runs the script in this already-warm interpreter. The zygote waits for each such child and
# reports how it ended.
#
# Protocol with the service, on a SOCK_SEQPACKET control socket (argv[1]):
#   zygote -> "hello"; service -> the configuration as JSON; zygote -> "ready" | "error <why>";
#   then zygote -> "standby" + SCM_RIGHTS [job_w, stdout_r, stderr_r, channel_r, status] for
#   each execution it forks ahead (it keeps `standby` of them, replacing each one that ends),
#   service -> "fork" when it wants one more; zygote -> "error <why>" when it cannot fork.
# The status socket (SOCK_SEQPACKET, SO_PASSCRED at the service's end, so the kernel tells the
# service each sender's pid in its own PID namespace) carries "ready <rss> <cpu s>" from the
# execution (what it inherited and what confining itself cost, both excluded from its usage),
# then "exit <wait status> <utime> <stime> <maxrss KiB>" from the zygote, or "error <why>".
# The job pipe carries one JSON line of limits, then the job (protocol.py: the token line,
# a JSON line of call details, the script).
import array
import ctypes
import gc
import json
import os
import resource
import select
import signal
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # at run time these come from harness.py and minimal_root.py, which precede
    # this file in the zygote's program
    from typing import Any, NoReturn

    from adapters.sandbox.harness import HIGH_FD, SCRIPT_FILENAME, _dumps, _read_all, execute
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

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
REHEARSAL = "def main():\n    return {'ok': [1, 2.5, 'x', None, True]}\n"
PAGE = os.sysconf("SC_PAGE_SIZE")


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


class Jail:
    """How each execution is confined, from the service's configuration message."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.namespaces = int(config["namespaces"])
        self.zygote_namespaces = int(config["zygote_namespaces"])
        self.uid = config["uid"]  # None: stay the jail's uid and drop capabilities instead
        self.root_paths: list[str] = config["root_paths"]
        self.devices: list[str] = config["devices"]
        self.scratch = [path.encode() for path in config["scratch"]]
        self.mount_points = [*config["scratch"], "/proc"]
        self.tmpfs_options = f"size={int(config['tmp_size'])},mode=1777".encode()
        self.proc_options = config["proc_options"].encode()
        program = bytes.fromhex(config["seccomp"])
        self._filter = ctypes.create_string_buffer(program, len(program))
        self._prog = _SockFprog(len(program) // 8, ctypes.addressof(self._filter))

    def isolate_zygote(self) -> None:
        """What the zygote's executions share, one at a time (see warm.py), set up once: its
        own network and UTS namespaces where nsjail has not made them already, and, where the
        configuration lists a root, a mount namespace whose whole tree is that minimal root
        (the runtime read-only, a few devices, empty mount points), which each execution then
        copies: the host's files, sockets and setuid binaries are not there at all."""
        flags = self.zygote_namespaces | (CLONE_NEWNS if self.root_paths else 0)
        if flags:
            _check(_libc.unshare(flags), "unshare")
        if self.root_paths:
            _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "private")
            pivot_into_minimal_root(self.root_paths, self.devices, self.mount_points)
        if flags & CLONE_NEWUTS:
            _check(_libc.sethostname(b"sandbox", 7), "sethostname")

    def enter(self) -> None:
        """Build this execution's view of the system (runs as PID 1 of a fresh namespace)."""
        _check(_libc.unshare(self.namespaces & ~CLONE_NEWPID), "unshare")
        # A session and process group of its own: kill(0, sig) - and getppid() is 0 here, so
        # "signal my parent" is that - must reach this execution only, never the zygote or
        # its standby processes, which share the zygote's group and (nsjail) uid.
        os.setsid()
        # Nothing mounted below may propagate back to the zygote's namespace.
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
        # A /proc of this PID namespace: the execution sees its own processes and no others.
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        _check(_libc.mount(b"proc", b"/proc", b"proc", flags, self.proc_options), "mount /proc")
        for path in self.scratch:
            flags = MS_NOSUID | MS_NODEV
            _check(_libc.mount(b"tmpfs", path, b"tmpfs", flags, self.tmpfs_options), "tmpfs")
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")  # the zygotes are exempt: the OOM killer takes the execution

    def drop_privileges(self) -> None:
        _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)  # root -> unprivileged clears every capability
            # The uid change made it non-dumpable, which (no exec follows) would hide the
            # script's own processes from it under hidepid=2 and from each other's /proc.
            _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
        else:
            header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
            data = (_CapData * 2)()
            _check(_libc.capset(ctypes.byref(header), data), "capset")
        with open("/proc/self/status") as handle:
            status = handle.read()
        if "CapEff:\t0000000000000000" not in status:
            raise RuntimeError("capabilities remain after the drop")
        # Credential changes clear the parent-death signal, so it is set after them.
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")

    def confine(self) -> None:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(
            _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog), 0, 0),
            "seccomp",
        )


def _drop_bounding_set() -> None:
    """Empty the capability bounding set (it limits what an exec could grant; the zygote's own
    capabilities stay until each execution drops them)."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # EINVAL: past the last capability this kernel knows


def _send(sock: socket.socket, message: bytes) -> None:
    sock.sendmsg([message])


def _limit(kind: int, soft: int, hard: int | None = None) -> None:
    ceiling = resource.getrlimit(kind)[1]
    hard = soft if hard is None else hard
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    resource.setrlimit(kind, (soft, hard))


def _apply_limits(limits: dict[str, Any]) -> None:
    with open("/proc/self/statm") as handle:
        mapped = int(handle.read().split()[0]) * PAGE
    cpu = int(limits["cpu_s"])
    _limit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU first, SIGKILL a second later
    _limit(resource.RLIMIT_AS, mapped + int(limits["memory_bytes"]))  # what the script may add
    _limit(resource.RLIMIT_FSIZE, int(limits["fsize_bytes"]))
    _limit(resource.RLIMIT_NOFILE, int(limits["nofile"]))
    _limit(resource.RLIMIT_NPROC, int(limits["nproc"]))
    _limit(resource.RLIMIT_CORE, 0)


def _reseed() -> None:
    """Fresh randomness: `random` reseeds itself after fork; numpy's global generator does not."""
    for name in ("random", "numpy.random"):
        module = sys.modules.get(name)
        if module is not None:
            module.seed()


def _rehearse() -> None:
    """Run the harness's hot path once on a throwaway script, so the copy-on-write faults of
    compiling, executing and encoding happen now, while nobody waits."""
    namespace: dict[str, Any] = {"__name__": "rehearsal"}
    exec(compile(REHEARSAL, SCRIPT_FILENAME, "exec", dont_inherit=True), namespace)
    _dumps(namespace["main"]())
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def _execution(jail: Jail, fds: list[int]) -> NoReturn:
    """The execution process: confine, say ready, wait for the job, run it. Never returns."""
    job, stdout, stderr, channel, status = fds
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    high = HIGH_FD if soft == resource.RLIM_INFINITY else min(HIGH_FD, soft - 3)
    try:
        jail.enter()
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        # High, close-on-exec descriptors: the script's children never inherit them, and a
        # lowered RLIMIT_NOFILE keeps the script from dup2()-ing over them.
        channel = os.dup2(channel, high, inheritable=False)
        status = os.dup2(status, high + 1, inheritable=False)
        job = os.dup2(job, high + 2, inheritable=False)
        os.closerange(3, high)  # the zygote's control socket and everything else
        os.chdir("/tmp")
        jail.drop_privileges()
        jail.confine()
        _rehearse()
        _reseed()
        setup = resource.getrusage(resource.RUSAGE_SELF)  # not the script's: subtracted
        os.write(status, b"ready %d %f" % (_resident_bytes(), setup.ru_utime + setup.ru_stime))
        os.close(status)
    except BaseException as error:
        os.write(status, f"error {type(error).__name__}: {error}".encode())
        os._exit(1)
    header, _newline, rest = _read_all(job).partition(b"\n")
    if not header:
        os._exit(0)  # the service withdrew this execution (shutdown, zygote replaced)
    limits = json.loads(header)
    _apply_limits(limits)
    execute(rest, channel, int(limits["result_cap"]))


def _fork_execution(jail: Jail, own_pid_ns: int, fds: list[int]) -> int:
    """Fork an execution as PID 1 of a fresh PID namespace and return its pid; the child
    never returns from here. Raises OSError when it cannot fork."""
    _check(_libc.unshare(CLONE_NEWPID), "unshare")  # applies to the next child only
    try:
        pid = os.fork()
    except BaseException:
        _restore_pid_namespace(own_pid_ns)
        raise
    if pid == 0:
        _execution(jail, fds)
    _restore_pid_namespace(own_pid_ns)
    return pid


def _restore_pid_namespace(own_pid_ns: int) -> None:
    # A later execution must never be born into this one's namespace: if getting back cannot
    # be guaranteed, this zygote must not fork again (the service replaces it).
    if _libc.setns(own_pid_ns, CLONE_NEWPID) != 0:
        os._exit(3)


def _new_standby(jail: Jail, own_pid_ns: int, control: socket.socket) -> tuple[int, int, int]:
    """Fork one execution ahead of demand and hand the service its ends of the pipes (job,
    stdout, stderr, result channel, status); (pidfd, pid, our end of its status socket)."""
    pipes = [os.pipe() for _ in range(4)]
    status_ours, status_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # The service learns each sender's pid in its own PID namespace from the kernel.
    status_theirs.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    (job_r, job_w), (out_r, out_w), (err_r, err_w), (chan_r, chan_w) = pipes
    child = [job_r, out_w, err_w, chan_w, status_ours.fileno()]
    service = [job_w, out_r, err_r, chan_r, status_theirs.fileno()]
    try:
        pid = _fork_execution(jail, own_pid_ns, child)
        control.sendmsg(
            [b"standby"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", service))]
        )
        return os.pidfd_open(pid), pid, os.dup(status_ours.fileno())
    finally:  # only the zygote gets here: the execution never returns from the fork
        for fd in child[:4] + service[:4]:
            os.close(fd)
        status_ours.close()
        status_theirs.close()


def _report_exit(pid: int, status: int) -> None:
    """Tell the service how an execution ended (what only its parent can know)."""
    _pid, wait_status, usage = os.wait4(pid, 0)
    message = f"exit {wait_status} {usage.ru_utime} {usage.ru_stime} {usage.ru_maxrss}"
    try:  # noqa: SIM105  (no contextlib: the zygote imports only what it must)
        os.write(status, message.encode())
    except OSError:
        pass  # the service gave up on it (shutdown)
    os.close(status)


def zygote_main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    os.chdir("/")
    _send(control, b"hello")
    message = control.recv(65536)
    try:
        config = json.loads(message)
        sys.path[:0] = config["site_dirs"]
        for name in config["preload"]:
            __import__(name)
        import linecache  # noqa: F401  (the harness needs them for tracebacks: load them once)
        import traceback  # noqa: F401

        if config["cpu"] is not None:  # the slot's CPU: slots do not compete for a core
            os.sched_setaffinity(0, {int(config["cpu"])})
        threads = len(os.listdir("/proc/self/task"))
        if threads != 1:
            raise RuntimeError(f"{threads} threads after preloading; forking would be unsafe")
        jail = Jail(config)
        own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)  # before any pivot
        jail.isolate_zygote()
        _rehearse()  # lazily built interpreter state is built here once, not in every fork
        _drop_bounding_set()  # once for all: no execution can ever exec its way to a capability
        # Keep the collector off the zygote's objects: each execution would otherwise copy
        # every page it traverses (copy-on-write) and pay for that again when it exits.
        gc.freeze()
    except BaseException as error:
        _send(control, f"error {type(error).__name__}: {error}".encode())
        os._exit(1)
    _send(control, b"ready")
    _serve(control, jail, own_pid_ns, int(config["standby"]))


def _serve(control: socket.socket, jail: Jail, own_pid_ns: int, standby: int) -> NoReturn:
    """Keep `standby` executions forked ahead; replace each one when it ends (ran, or was
    discarded), and one more whenever the service asks ("fork")."""
    poller = select.poll()
    poller.register(control, select.POLLIN)
    running: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, status fd) of each execution
    wanted = standby
    while True:
        while wanted:
            try:
                pidfd, pid, status = _new_standby(jail, own_pid_ns, control)
            except OSError as error:  # e.g. the slot's process limit: tell, retry later
                _send(control, f"error fork: {error}".encode())
                break
            poller.register(pidfd, select.POLLIN)
            running[pidfd] = (pid, status)
            wanted -= 1
        for fd, _event in poller.poll():
            if fd in running:
                poller.unregister(fd)
                os.close(fd)
                _report_exit(*running.pop(fd))
                wanted += 1
                continue
            message = control.recv(65536)
            if not message:
                os._exit(0)  # the service closed its end: it is gone or replacing us
            if message == b"fork":
                wanted += 1
