"""Supervising one sandboxed process: feed it the script, collect its streams under caps,
enforce the wall-clock deadline from outside, and measure what it used."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from adapters.sandbox.protocol import job_payload
from application.ports import SandboxJob
from domain.report import SandboxReport

READ_CHUNK = 1 << 16
CHANNEL_OVERHEAD = 64 * 1024  # report header on top of the result cap
DRAIN_GRACE_S = 1.0  # how long streams may stay open after the process ended or was killed


@attrs.frozen(kw_only=True)
class Launch:
    """How to start the sandboxed process. `preexec` runs in the child between fork and exec,
    so it must only make system calls (no locks, no imports)."""

    argv: Sequence[str]
    env: Mapping[str, str]
    preexec: Callable[[], None] | None = None
    pass_fds: tuple[int, ...] = ()  # more descriptors the process keeps (e.g. a log pipe)


@attrs.define
class CappedBuffer:
    """Keeps the first `cap` bytes of a stream and discards the rest, noting that it did."""

    cap: int
    chunks: list[bytes] = attrs.field(factory=list)
    size: int = 0
    truncated: bool = False

    def feed(self, data: bytes) -> None:
        room = self.cap - self.size
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        if data:
            self.chunks.append(data)
            self.size += len(data)

    def value(self) -> bytes:
        return b"".join(self.chunks)


@attrs.frozen(kw_only=True)
class Ended:
    exit_code: int | None
    signal: int | None
    cpu_time_s: float
    max_rss_bytes: int


def make_script_fd(payload: bytes) -> int:
    """An anonymous in-memory file holding the job (protocol.job_payload): nothing touches
    the disk. The harness reads and closes it before the script runs."""
    fd = os.memfd_create("script", os.MFD_CLOEXEC)
    data = memoryview(payload)
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def supervise(
    build: Callable[[int, int], Launch],
    job: SandboxJob,
    *,
    kill_tree: Callable[[int], None],
    decode_status: Callable[[int], tuple[int | None, int | None]] | None = None,
    members: Callable[[], list[int]] | None = None,
) -> tuple[SandboxReport, Ended | None]:
    """Start the process that `build(script_fd, channel_fd)` describes and see it to its end.

    `kill_tree(pid)` must kill the process and everything it started. It is called on the
    deadline and again once the process has ended (to reap daemonised descendants).
    `members()` lists the execution's processes (default: the started one's descendants),
    whose CPU time together is held to the CPU limit."""
    started = time.monotonic()
    limits = job.limits
    token = secrets.token_hex(16).encode()
    script_fd = make_script_fd(job_payload(job, token))
    channel_r, channel_w = os.pipe()
    try:
        launch = build(script_fd, channel_w)
        proc = _spawn(launch, pass_fds=(script_fd, channel_w, *launch.pass_fds))
    except (OSError, subprocess.SubprocessError) as error:
        os.close(channel_r)
        return SandboxReport(sandbox_error=f"could not start the sandbox: {error}"), None
    finally:
        os.close(script_fd)
        os.close(channel_w)

    assert proc.stdout is not None and proc.stderr is not None
    buffers = {
        proc.stdout.fileno(): CappedBuffer(limits.stdout_cap_bytes),
        proc.stderr.fileno(): CappedBuffer(limits.stderr_cap_bytes),
        channel_r: CappedBuffer(limits.result_cap_bytes + CHANNEL_OVERHEAD),
    }
    meter = CpuMeter(limits.cpu_time_s, lambda: tree_cpu_seconds(proc.pid, members))
    reaped: list[Ended] = []
    # Even if reading fails, and even if one clean-up step fails, every later step runs
    # (in the reverse order of registration): nothing may outlive the execution or leak.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(os.close, channel_r)
        cleanup.callback(proc.stderr.close)
        cleanup.callback(proc.stdout.close)
        cleanup.callback(lambda: reaped.append(_reap(proc, decode_status)))
        cleanup.callback(kill_process, proc.pid)  # normally a zombie; never block wait4()
        cleanup.callback(kill_tree, proc.pid)
        limit = _pump(proc.pid, buffers, started + limits.wall_time_s, kill_tree, meter)
    [ended] = reaped
    stdout, stderr, channel = buffers.values()
    report = streams_report(
        stdout,
        stderr,
        channel,
        token,
        started,
        exit_code=ended.exit_code,
        signal=ended.signal,
        timed_out=limit == "wall",
        cpu_limit_hit=limit == "cpu",
        cpu_time_s=round(max(ended.cpu_time_s, meter.seen_s), 4),
        peak_memory_bytes=ended.max_rss_bytes,
    )
    return report, ended


def streams_report(
    stdout: CappedBuffer,
    stderr: CappedBuffer,
    channel: CappedBuffer,
    token: bytes,
    started: float,
    **evidence: Any,
) -> SandboxReport:
    """What an execution's streams carried, its wall time since `started`, and whatever else
    the runner observed (`evidence`: SandboxReport's other fields)."""
    return SandboxReport(
        harness_report=channel.value(),
        report_token=token,
        harness_report_truncated=channel.truncated,
        stdout=stdout.value(),
        stdout_truncated=stdout.truncated,
        stderr=stderr.value(),
        stderr_truncated=stderr.truncated,
        wall_time_s=round(time.monotonic() - started, 4),
        **evidence,
    )


# Processes this module started and will wait4() itself; the orphan reaper leaves them alone.
_supervised: set[int] = set()
_spawn_lock = threading.Lock()


def _spawn(
    launch: Launch, pass_fds: tuple[int, ...], streams: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    with _spawn_lock:  # registered before the reaper can see it, however fast it exits
        proc = subprocess.Popen(
            list(launch.argv),
            stdin=subprocess.DEVNULL,
            stdout=streams,
            stderr=streams,
            pass_fds=pass_fds,
            env=dict(launch.env),
            # Safe here: every preexec only makes system calls, prepared before the fork.
            preexec_fn=launch.preexec,  # noqa: PLW1509
            start_new_session=True,
        )
        _supervised.add(proc.pid)
    return proc


def run_forked(child: Callable[[], None]) -> int:
    """Run `child` in a forked process and return its exit status (0: it returned; 1: it
    raised). The fork is registered like a spawned process, so that the orphan reaper of a
    service running as PID 1 never reaps it before this wait does."""
    with _spawn_lock:  # the child only makes system calls and never takes the lock
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                child()
                code = 0
            finally:
                os._exit(code)
        _supervised.add(pid)
    try:
        _pid, status = os.waitpid(pid, 0)
    finally:
        with _spawn_lock:
            _supervised.discard(pid)
    return os.waitstatus_to_exitcode(status)


def spawn_quiet(launch: Launch, pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """Start a long-lived helper (a warm zygote) with no streams; `end_quiet` ends it."""
    return _spawn(launch, pass_fds, streams=subprocess.DEVNULL)


def end_quiet(proc: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    """Wait up to `grace_s` for the helper to exit on its own, then kill it; always reaped."""
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        kill_process(proc.pid)
        proc.wait()
    finally:
        with _spawn_lock:
            _supervised.discard(proc.pid)


def reap_orphans() -> None:
    """Reap zombies that were re-parented to us: when the service is PID 1 (a container
    without an init, or the tests' PID namespace), killed descendants of a script become our
    children, and unreaped they would keep counting against their uid's process limit."""
    if os.getpid() != 1:
        return
    with _spawn_lock:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) in _supervised:
                continue
            with contextlib.suppress(OSError):
                stat = Path(entry.path, "stat").read_text()
                state, parent = stat.rsplit(")", 1)[1].split()[:2]
                if state == "Z" and parent == "1":
                    os.waitpid(int(entry.name), os.WNOHANG)


def _pump(
    pid: int,
    buffers: dict[int, CappedBuffer],
    deadline: float,
    kill_tree: Callable[[int], None],
    meter: CpuMeter,
) -> Limit | None:
    pidfd = os.pidfd_open(pid)
    try:
        limit = pump(pidfd, buffers, deadline, lambda: kill_tree(pid), cpu=meter)
        if limit is not None:
            return limit
        # Every stream is closed but the process may still be running (the harness closes
        # its streams right after reporting, a moment before it exits; a script may close
        # them and go on): it is not killed before it exits or its deadline passes.
        if not select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            kill_tree(pid)
            return "wall"
        return None
    finally:
        os.close(pidfd)


Limit = Literal["wall", "cpu"]
CPU_CHECK_AFTER_S = 0.5  # executions shorter than this never pay for a CPU check
CPU_CHECK_EVERY_S = 0.2


def tree_cpu_seconds(root: int, members: Callable[[], list[int]] | None = None) -> float:
    """CPU time of a whole execution: every live or zombie process of it (`members()`, or
    the descendants of `root` by parent links), each with the time of the children it
    reaped, so a process that died and was reaped is counted exactly once, in its reaper."""
    pids = members() if members is not None else _descendants(root)
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
            total += sum(int(field) for field in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(entry.path, "stat").read_bytes()
                children.setdefault(int(stat.rsplit(b")", 1)[1].split()[1]), []).append(
                    int(entry.name)
                )
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


@attrs.define
class CpuMeter:
    """The execution's CPU limit as a whole (all its processes together), and how to measure
    it; per-process RLIMIT_CPU alone would let N processes use N times the limit. `seen_s`
    keeps the largest measurement (the processes are gone by the time usage is reported)."""

    limit_s: float
    measure_tree: Callable[[], float]
    seen_s: float = 0.0

    def measure(self) -> float:
        self.seen_s = max(self.seen_s, self.measure_tree())
        return self.seen_s


def pump(
    pidfd: int,
    buffers: dict[int, CappedBuffer],
    deadline: float,
    kill: Callable[[], None],
    *,
    finished: Callable[[set[int]], bool] | None = None,
    cpu: CpuMeter | None = None,
) -> Limit | None:
    """Read every stream until all are closed (or for a short grace once the process `pidfd`
    refers to has ended, or as soon as `finished(the streams still open)` says so after one
    closes); `kill()` on the deadline, or when the execution's measured CPU time reaches
    `cpu`'s limit. Return which limit ended it, if one did."""
    poller = select.poll()
    for fd in buffers:
        poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    open_fds = set(buffers)
    timed_out: Limit | None = None
    stop_at: float | None = None  # set once the process is gone: streams get a short grace
    next_cpu_check = time.monotonic() + CPU_CHECK_AFTER_S
    while open_fds:
        now = time.monotonic()
        if stop_at is None and now >= deadline:
            timed_out = "wall"
            kill()
            stop_at = now + DRAIN_GRACE_S
        if stop_at is None and cpu is not None and now >= next_cpu_check:
            next_cpu_check = now + CPU_CHECK_EVERY_S
            if cpu.measure() >= cpu.limit_s:
                timed_out = "cpu"
                kill()
                stop_at = now + DRAIN_GRACE_S
        if stop_at is not None and now >= stop_at:
            break
        until = stop_at if stop_at is not None else deadline
        if stop_at is None and cpu is not None:
            until = min(until, next_cpu_check)
        for fd, _event in poller.poll(max(0.0, until - now) * 1000 + 1):
            if fd == pidfd:
                poller.unregister(pidfd)
                kill()  # daemonised descendants would hold the pipes open
                stop_at = time.monotonic() + DRAIN_GRACE_S
                continue
            data = os.read(fd, READ_CHUNK)
            if data:
                buffers[fd].feed(data)
            else:
                poller.unregister(fd)
                open_fds.discard(fd)
                if finished is not None and timed_out is None and finished(open_fds):
                    return None
    return timed_out


def _reap(
    proc: subprocess.Popen[bytes],
    decode_status: Callable[[int], tuple[int | None, int | None]] | None,
) -> Ended:
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        with _spawn_lock:
            _supervised.discard(proc.pid)
    proc.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen from waiting again
    if os.WIFSIGNALED(status):
        exit_code, sig = None, os.WTERMSIG(status)
    else:
        exit_code, sig = os.WEXITSTATUS(status), None
        if decode_status is not None:
            exit_code, sig = decode_status(exit_code)
    return Ended(
        exit_code=exit_code,
        signal=sig,
        cpu_time_s=usage.ru_utime + usage.ru_stime,
        max_rss_bytes=usage.ru_maxrss * 1024,
    )


def kill_process(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
