"""The warm runner: per slot, long-lived zygotes that fork each execution ahead of demand.

Each slot keeps a *plain* zygote (the harness only) and, when libraries are preloaded, a
*data* zygote that imported them once; a script goes to the lightest one that has what it
imports. Both live in the slot's cgroup, so a forked execution is already where its limits
apply and no execution pays a cgroup migration. How a zygote is started and what jail it
builds around each execution (see zygote.py) comes from the mode: nsjail.py starts it inside a
long-lived nsjail, rlimit.py as a root process exec'ed with an empty environment.

Per execution the service only writes the job to a process that is already confined and
waiting, reads the streams under the same caps and deadline as the one-shot runners
(process.pump), and reads how it ended from the keeper's status message."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from adapters.sandbox.cgroups import CgroupParent, CgroupScope
from adapters.sandbox.process import (
    CHANNEL_OVERHEAD,
    CappedBuffer,
    CpuMeter,
    Launch,
    end_quiet,
    pump,
    spawn_quiet,
    streams_report,
    tree_cpu_seconds,
)
from adapters.sandbox.protocol import job_payload
from adapters.settings import cgroup_cpu_quota
from application.ports import SandboxJob
from domain.classify import parse_harness_report
from domain.imports import needs_preloaded
from domain.limits import Limits
from domain.report import SandboxReport

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# Every execution gets fresh ones of these: its files (/tmp, /dev/shm), processes (/proc) and
# System V IPC objects, which outlive their processes, never carry over.
EXECUTION_NAMESPACES = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID
# Each zygote has its own of these (nsjail-warm: its nsjail's), shared by its executions one
# at a time. An execution can leave nothing in them: with no capability it cannot configure
# the network or the hostname, seccomp allows only AF_UNIX sockets, and its abstract unix
# sockets close when its processes die with their PID namespace. A fresh network namespace
# per execution costs ~1.8 ms of CPU in the host's user namespace and ~0.3-0.5 ms of latency
# inside nsjail's (docs/performance.md).
ZYGOTE_NAMESPACES = CLONE_NEWNET | CLONE_NEWUTS
PLAIN = "plain"
DATA = "data"
# Execution processes each zygote keeps confined and waiting. Two, because preparing one
# (~6 ms of CPU) takes longer than a trivial execution: with one, back-to-back requests
# would wait for it; the second is prepared while the first serves.
STANDBY = 2
START_TIMEOUT_S = 60.0  # importing pandas on a loaded 2-core machine can take seconds
READY_TIMEOUT_S = 10.0
EXIT_WAIT_S = 1.0
STATUS_CAP = 4096
EXIT_REPORT_GRACE_S = 3.0  # beyond the streams' drain grace, for the zygote's exit message
UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
PF_EXITING = 0x4  # /proc/<pid>/stat flags: the process is on its way out


class ZygoteFailed(RuntimeError):
    """A zygote could not start, or died; the message says why."""


def jail_config(
    *,
    limits: Limits,
    seccomp: bytes,
    scratch: Sequence[str],
    uid: int | None = None,
    root_paths: Sequence[str] = (),
    devices: Sequence[str] = (),
    proc_options: str = "",
    cpu: int | None = None,
    namespaces: int = EXECUTION_NAMESPACES,
    zygote_namespaces: int = ZYGOTE_NAMESPACES,
) -> dict[str, Any]:
    """The zygote's configuration for confining each execution (zygote.py's `Jail`): with
    `uid` it drops to that uid (a root zygote), without it it drops every capability. The
    zygote enters `zygote_namespaces` itself (0 where nsjail made them already) and, given
    `root_paths`, pivots into a minimal root of those paths and `devices` (nsjail makes its
    own)."""
    return {
        "namespaces": namespaces,
        "zygote_namespaces": zygote_namespaces,
        "uid": uid,
        "root_paths": list(root_paths),
        "devices": list(devices),
        "scratch": list(scratch),
        "tmp_size": limits.tmp_size_bytes,
        "proc_options": proc_options,
        "seccomp": seccomp.hex(),
        "cpu": cpu,
    }


def slot_cpu(slot: int, quota: Callable[[], float | None] = cgroup_cpu_quota) -> int | None:
    """The CPU a slot's executions run on, so that concurrent slots never share a core while
    another one idles (affinity only: a script may widen it, and that gains it nothing).

    Only where the CPUs in the affinity mask are this service's: under a cgroup CPU quota
    (a container or pod with a CPU limit but no cpuset) the mask lists the whole node, and
    every instance pinning its slot 0 to the same core would make them queue on it."""
    cpus = sorted(os.sched_getaffinity(0))
    if not cpus or quota() is not None:
        return None
    return cpus[slot % len(cpus)]


STANDBY_FDS = ("job", "stdout", "stderr", "channel", "status")
ANCILLARY_SPACE = socket.CMSG_SPACE(len(STANDBY_FDS) * 4) + socket.CMSG_SPACE(UCRED.size)


def _receive(sock: socket.socket, timeout_s: float) -> tuple[bytes, list[int], int | None]:
    """One message (b"" at EOF), the descriptors it carries (SCM_RIGHTS) and its sender's pid
    in our PID namespace (SO_PASSCRED)."""
    ready, _w, _x = select.select([sock], [], [], timeout_s)
    if not ready:
        raise ZygoteFailed(f"no answer within {timeout_s:g} s")
    message, ancillary, _flags, _address = sock.recvmsg(65536, ANCILLARY_SPACE)
    fds: list[int] = []
    pid = None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4])
        elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = UCRED.unpack(data[: UCRED.size])[0]
    return message, fds, pid


def _seqpacket_pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return ours, theirs


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@attrs.define
class Pending:
    """An execution process forked ahead of demand, and our ends of its pipes."""

    job_w: int
    stdout_r: int
    stderr_r: int
    channel_r: int
    status: socket.socket
    pid: int | None = None  # known once it said "ready"
    pidfd: int = -1  # refers to that process from then on (no pid reuse can fool us)
    resident_bytes: int = 0  # what it inherited from the zygote, said with "ready"
    setup_cpu_s: float = 0.0  # what confining itself cost, said with "ready"
    answered_early: bool = False  # answered from its report, before its exit was reported

    def wait_ready(self, timeout_s: float) -> None:
        """Return once the execution is confined and waiting for its job (`pid` then set)."""
        if self.pid is None:
            message, _fds, pid = _receive(self.status, timeout_s)
            if not message.startswith(b"ready") or pid is None:
                why = message.decode(errors="replace") or "its zygote died"
                raise ZygoteFailed(f"the execution process did not start: {why}")
            try:
                self.pidfd = os.pidfd_open(pid)
            except OSError as error:
                raise ZygoteFailed(f"the execution process is gone: {error}") from error
            self.pid = pid
            with contextlib.suppress(ValueError, IndexError):
                _ready, resident, setup_cpu = message.split()[:3]
                self.resident_bytes, self.setup_cpu_s = int(resident), float(setup_cpu)
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if poller.poll(0):  # readable: it has exited (its zygote died, or it was killed)
            raise ZygoteFailed("the execution process is gone")

    def close(self) -> None:
        _close_all((self.job_w, self.stdout_r, self.stderr_r, self.channel_r, self.pidfd))
        self.status.close()


class Zygote:
    """One warm interpreter of one kind, in one slot."""

    def __init__(
        self,
        kind: str,
        launch: Callable[[int], Launch],
        config: dict[str, Any],
        scope: CgroupScope | None,
    ) -> None:
        self.kind = kind
        self.standby: deque[Pending] = deque()
        control, theirs = _seqpacket_pair()
        try:
            self.process = spawn_quiet(launch(theirs.fileno()), pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self.control = control
        try:
            self._handshake(config, scope)
        except BaseException:
            self.stop()
            raise

    def _handshake(self, config: dict[str, Any], scope: CgroupScope | None) -> None:
        message, _fds, pid = _receive(self.control, START_TIMEOUT_S)
        if message != b"hello" or pid is None:
            raise ZygoteFailed(f"the {self.kind} zygote did not start ({message[:200]!r})")
        self.pid = pid
        if scope is not None:
            scope.adopt(pid)  # before it loads anything: its memory is the slot's
        # The OOM killer must take an execution, never the zygote that serves the next one;
        # each execution raises its own score back (zygote.py).
        with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w") as handle:
            handle.write("-1000")
        self.control.sendmsg([json.dumps(config).encode()])
        message, _fds, _pid = _receive(self.control, START_TIMEOUT_S)
        if message != b"ready":
            why = message.decode(errors="replace") or "it exited"
            raise ZygoteFailed(f"the {self.kind} zygote failed to warm up: {why}")

    def alive(self) -> bool:
        """Whether the zygote still serves. A killed zygote takes milliseconds to finish
        dying (unmapping a pandas-sized heap) before its socket hangs up or its nsjail exits,
        and an execution handed to it meanwhile would be lost: the kernel's view of the
        process (gone, a zombie, or exiting) answers at once."""
        if self.process.poll() is not None:
            return False
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            return False  # gone (and reaped)
        state, flags = fields[0], int(fields[6])
        return state not in (b"Z", b"X", b"x") and not flags & PF_EXITING

    def take(self, timeout_s: float) -> Pending:
        """The oldest execution process the zygote forked ahead (waiting for one if none has
        arrived yet; asking for one more if none comes in time)."""
        self._collect(0.0)
        if not self.standby:
            self._collect(timeout_s / 2)
        if not self.standby:
            with contextlib.suppress(OSError):
                self.control.sendmsg([b"fork"])
            self._collect(timeout_s / 2)
        if not self.standby:
            raise ZygoteFailed(f"the {self.kind} zygote forked nothing in {timeout_s:g} s")
        return self.standby.popleft()

    def _collect(self, timeout_s: float) -> None:
        """Receive what the zygote sent: standby processes, or why it could not fork."""
        while select.select([self.control], [], [], timeout_s)[0]:
            timeout_s = 0.0
            message, fds, _pid = _receive(self.control, 0.0)  # readable: returns at once
            if message == b"standby" and len(fds) == len(STANDBY_FDS):
                job_w, stdout_r, stderr_r, channel_r, status = fds
                self.standby.append(
                    Pending(job_w, stdout_r, stderr_r, channel_r, socket.socket(fileno=status))
                )
                continue
            _close_all(fds)
            if not message:
                raise ZygoteFailed(f"the {self.kind} zygote is gone")
            if message.startswith(b"error"):
                raise ZygoteFailed(f"the {self.kind} zygote: {message.decode(errors='replace')}")

    def stop(self) -> None:
        for pending in self.standby:
            pending.close()
        self.standby.clear()
        self.control.close()  # the zygote exits when its control socket closes
        end_quiet(self.process)


class Slot:
    """The zygotes of one execution slot and the executions they have forked ahead."""

    def __init__(self, index: int, scope: CgroupScope | None) -> None:
        self.index = index
        self.scope = scope
        self.lock = threading.Lock()
        self.zygotes: dict[str, Zygote] = {}
        self.exiting = -1  # pidfd of an execution answered before its exit completed

    def wait_for_previous(self) -> None:
        """Let the previous execution's exit finish (about a millisecond; it was SIGKILLed)
        before the slot's cgroup is re-armed, so its processes and memory are not counted
        in the next one's baseline."""
        if self.exiting >= 0:
            select.select([self.exiting], [], [], EXIT_WAIT_S)
            os.close(self.exiting)
            self.exiting = -1


@attrs.define(kw_only=True)
class WarmSandbox:
    """A Sandbox whose executions are forked from warm zygotes (see the module docstring).

    `launch(slot, control_fd)` starts a zygote; `jail(slot)` is the configuration it confines
    each execution with; `nproc_allowance` is how many processes of the execution's uid exist
    outside it (the slot's other warm processes), added to RLIMIT_NPROC."""

    name: str
    isolation: tuple[str, ...]
    launch: Callable[[int, int], Launch]
    jail: Callable[[int], dict[str, Any]]
    limits: Limits
    slots: int
    site_dirs: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    nproc_allowance: int = 0
    cgroups: CgroupParent | None = None
    unusable: str | None = None  # why this runner cannot work on this host, if it cannot
    standby: int = STANDBY
    _slots: dict[int, Slot] = attrs.field(factory=dict, init=False)
    _slots_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    @property
    def kinds(self) -> tuple[str, ...]:
        return (PLAIN, DATA) if self.preload else (PLAIN,)

    def start(self) -> None:
        """Warm every slot (in parallel); raises ZygoteFailed if any zygote cannot start."""
        if self.unusable:
            raise ZygoteFailed(self.unusable)
        errors: list[BaseException] = []

        def warm(index: int) -> None:
            try:
                slot = self._slot(index)
                with slot.lock:
                    for kind in self.kinds:
                        self._ready_zygote(slot, kind)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=warm, args=(i,)) for i in range(self.slots)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Stop every zygote; in-flight executions die with them. Idempotent."""
        with self._slots_lock:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            slot.wait_for_previous()  # its pidfd, if the last execution was answered early
            for zygote in slot.zygotes.values():
                zygote.stop()
            if slot.scope is not None:
                slot.scope.kill_all()
                slot.scope.remove()

    def standby_count(self) -> int:
        """Execution processes forked ahead and waiting, over every slot (for /metrics)."""
        with self._slots_lock:
            slots = list(self._slots.values())
        return sum(len(zygote.standby) for slot in slots for zygote in list(slot.zygotes.values()))

    def kind_for(self, source: str) -> str:
        return DATA if self.preload and needs_preloaded(source, self.preload) else PLAIN

    def run(self, job: SandboxJob) -> SandboxReport:
        if self.unusable:
            return SandboxReport(sandbox_error=self.unusable)
        slot = self._slot(job.slot)
        kind = self.kind_for(job.script.source)
        with slot.lock:
            slot.wait_for_previous()
            try:
                pending = self._claim(slot, kind)
            except (ZygoteFailed, OSError) as error:
                return SandboxReport(sandbox_error=f"the warm sandbox could not start: {error}")
            try:
                return self._execute(pending, job, slot.scope)
            finally:
                if pending.answered_early:  # the next execution here waits for its end
                    slot.exiting, pending.pidfd = pending.pidfd, -1
                pending.close()  # the zygote forks its replacement when it has ended

    def _slot(self, index: int) -> Slot:
        with self._slots_lock:
            slot = self._slots.get(index)
            if slot is None:
                slot = self._slots[index] = Slot(index, self._scope(index))
            return slot

    def _scope(self, index: int) -> CgroupScope | None:
        if self.cgroups is None:
            return None
        # The scope's own limits only bound the idle zygotes; each execution re-arms them.
        scope = self.cgroups.scope(
            f"warm-slot-{index}",
            memory_bytes=len(self.kinds) * 1024 * 1024 * 1024 + self.limits.memory_bytes,
            max_pids=4 * len(self.kinds) + self.limits.max_processes,
            oom_group=False,  # an OOM takes the largest process, never the standby ones too
        )
        scope.create()
        return scope

    def _ready_zygote(self, slot: Slot, kind: str) -> Zygote:
        zygote = slot.zygotes.get(kind)
        if zygote is not None and zygote.alive():
            return zygote
        if zygote is not None:  # died (killed, crashed, OOM): replace it and its standby
            zygote.stop()
        config = {
            **self.jail(slot.index),
            "kind": kind,
            "preload": list(self.preload) if kind == DATA else [],
            "site_dirs": list(self.site_dirs),
            "standby": self.standby,
        }
        zygote = slot.zygotes[kind] = Zygote(
            kind, lambda fd: self.launch(slot.index, fd), config, slot.scope
        )
        return zygote

    def _claim(self, slot: Slot, kind: str) -> Pending:
        """The slot's ready execution process of `kind`. One that is gone (its zygote died,
        and is replaced here) costs a second try, never the execution."""
        for attempt in range(2):
            zygote = self._ready_zygote(slot, kind)
            pending = None
            try:
                pending = zygote.take(READY_TIMEOUT_S)
                pending.wait_ready(READY_TIMEOUT_S)
                return pending
            except ZygoteFailed:
                if pending is not None:
                    pending.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _job_bytes(self, job: SandboxJob, token: bytes) -> bytes:
        limits = job.limits
        header = {
            "cpu_s": limits.cpu_limit_whole_seconds,
            "memory_bytes": limits.memory_bytes,
            "fsize_bytes": limits.tmp_size_bytes,
            "nofile": limits.max_open_files,
            "nproc": limits.max_processes + self.nproc_allowance,
            "result_cap": limits.result_cap_bytes,
        }
        return b"%s\n%s" % (json.dumps(header).encode(), job_payload(job, token))

    def _execute(
        self, pending: Pending, job: SandboxJob, scope: CgroupScope | None
    ) -> SandboxReport:
        limits = job.limits
        token = secrets.token_hex(16).encode()
        baseline = (
            scope.begin_execution(limits.memory_bytes, limits.max_processes)
            if scope is not None
            else None
        )
        started = time.monotonic()
        try:
            _write_all(pending.job_w, self._job_bytes(job, token))
        except OSError:
            pass  # it died; the pump and the status tell how
        finally:
            os.close(pending.job_w)
            pending.job_w = -1
        streams = {pending.stdout_r, pending.stderr_r, pending.channel_r}
        buffers = {
            pending.stdout_r: CappedBuffer(limits.stdout_cap_bytes),
            pending.stderr_r: CappedBuffer(limits.stderr_cap_bytes),
            pending.channel_r: CappedBuffer(limits.result_cap_bytes + CHANNEL_OVERHEAD),
            pending.status.fileno(): CappedBuffer(STATUS_CAP),
        }
        stdout, stderr, channel, status = buffers.values()

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pending.pidfd, signal.SIGKILL)  # PID 1: all of it dies

        def reported(still_open: set[int]) -> bool:
            # The harness closes its streams right after a whole report; when no other
            # process of the script holds them and none is left at all, the answer need not
            # wait the millisecond the harness's own exit takes (it is SIGKILLed first).
            return (
                still_open.isdisjoint(streams)
                and _reported_usage(channel, token) is not None
                and _alone(pending.pid or 0)
            )

        pid = pending.pid or 0
        meter = CpuMeter(limits.cpu_time_s, lambda: tree_cpu_seconds(pid))
        deadline = started + limits.wall_time_s
        limit = pump(pending.pidfd, buffers, deadline, kill, finished=reported, cpu=meter)
        timed_out = limit == "wall"
        kill()  # whatever is left of it: its PID namespace dies with it
        report = streams_report(stdout, stderr, channel, token, started, timed_out=timed_out)
        ended = _parse_exit(status.value())
        usage = _reported_usage(channel, token)
        if ended is None and (usage is None or timed_out):
            # The zygote reports the wait status once the execution's whole PID namespace is
            # gone; under heavy load (many processes, much memory to free) that can take
            # longer than the streams' drain grace. Without it the answer would be a sandbox
            # failure, so it is worth waiting a little more for.
            _await_exit_report(pending.status, status, EXIT_REPORT_GRACE_S)
            ended = _parse_exit(status.value())
        if ended is None and usage is not None and not timed_out:
            # Answered from the report: the harness, which always exits 0 right after it,
            # was still on its way out (we made sure with SIGKILL).
            pending.answered_early = True
            ended = (0, *usage)
        if ended is None:
            return attrs.evolve(
                report, sandbox_error="the warm sandbox process died during the execution"
            )
        wait_status, cpu_s, max_rss = ended
        if os.WIFSIGNALED(wait_status):
            report = attrs.evolve(report, signal=os.WTERMSIG(wait_status))
        else:
            report = attrs.evolve(report, exit_code=os.WEXITSTATUS(wait_status))
        # The RSS high-water mark less what the fork inherited: a lower bound of the peak
        # (the script's main process only), and the whole answer where there is no cgroup.
        own_peak = max(0, max_rss - pending.resident_bytes)
        own_cpu = max(0.0, cpu_s - pending.setup_cpu_s, meter.seen_s - pending.setup_cpu_s)
        report = attrs.evolve(report, cpu_time_s=round(own_cpu, 4), peak_memory_bytes=own_peak)
        if scope is not None and baseline is not None:
            # The scope's growth counts children and files in /tmp too, but it is measured
            # against a baseline that other processes of the slot may shrink meanwhile (the
            # previous execution still exiting): the larger lower bound wins.
            peak, oom = scope.end_execution(baseline)
            report = attrs.evolve(report, peak_memory_bytes=max(peak, own_peak), oom_killed=oom)
        # The script is PID 1 of its namespace: nothing inside can signal it, and the kernel's
        # SIGXCPU is ignored by such a process, so RLIMIT_CPU ends it with the SIGKILL at the
        # hard limit; blamed on the CPU limit only when the measured CPU time reached it.
        cpu_killed = report.signal == signal.SIGKILL and job.limits.cpu_limit_reached(cpu_s)
        if limit == "cpu" or (cpu_killed and not report.timed_out and not report.oom_killed):
            report = attrs.evolve(report, cpu_limit_hit=True)
        return report


def _alone(pid: int) -> bool:
    """Whether the execution process is the only one left in its PID namespace (where it is
    PID 1, every other process is its child or descendant, and orphans are re-parented to it)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            return not handle.read().split()
    except OSError:
        return False


def _reported_usage(channel: CappedBuffer, token: bytes) -> tuple[float, int] | None:
    """(CPU seconds, peak RSS bytes) from a whole report carrying the token, or None."""
    if channel.truncated:
        return None
    parsed = parse_harness_report(channel.value(), token)
    if parsed is None:
        return None
    header = parsed[0]
    cpu, peak_kib = header.get("cpu_s"), header.get("hwm_kib")
    if not isinstance(cpu, int | float) or not isinstance(peak_kib, int):
        return None
    return float(cpu), peak_kib * 1024


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _await_exit_report(sock: socket.socket, buffer: CappedBuffer, timeout_s: float) -> None:
    """Read the status socket until it holds the zygote's exit message, it closes (the zygote
    is gone), or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while _parse_exit(buffer.value()) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            return
        data = os.read(sock.fileno(), STATUS_CAP)
        if not data:
            return
        buffer.feed(data)


def _parse_exit(status: bytes) -> tuple[int, float, int] | None:
    """(wait status, CPU seconds, peak RSS bytes) from the keeper's "exit ..." message."""
    for message in status.split(b"exit ")[1:]:
        with contextlib.suppress(ValueError):
            wait_status, utime, stime, max_rss_kib = message.split()[:4]
            return int(wait_status), float(utime) + float(stime), int(max_rss_kib) * 1024
    return None
