"""Attacks on the contract's isolation guarantees (shared/contract.md, "Isolation guarantees").

Every attack is a script sent to a real server over HTTP whose main() returns the evidence it
gathered (what it could read, write, reach or kill); the test asserts the guarantee on that
evidence and, where the sandbox could hide a failure from itself, from the host side too (the
test runs as root and sees every process and file). Attacks touch only this machine: loopback
addresses or nothing. Every loop in a script is bounded in count and in time.

The session `server` fixture runs each mode with the shared test limits; `special_server` adds
a secret to the server's environment and an 8 MiB /tmp; `bomb_server` takes the attacks whose
damage could outlast them, so the shared server stays clean for other suites. Host-side
process scans look only at the uids of the server under attack (its leased range) or at a token
the attack planted, so another session's sandboxes are never mistaken for survivors of ours."""

from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
import os
import re
import signal
import socket
import sys
import sysconfig
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import MODES
from tests.integration.server import ROOT, TEST_ENV, HttpAnswer, Server, free_port, running_server

MIB = 1 << 20
WALL_S = float(TEST_ENV["WALL_TIME_S"])
MEMORY_MB = int(TEST_ENV["MEMORY_MB"])
STDOUT_CAP = int(TEST_ENV["STDOUT_CAP_BYTES"])
STDERR_CAP = int(TEST_ENV["STDERR_CAP_BYTES"])
MAX_OPEN_FILES = 64  # the documented MAX_OPEN_FILES default; TEST_ENV keeps it
MAX_PROCESSES = 32  # the documented MAX_PROCESSES default; TEST_ENV keeps it
DEFAULT_TMP_MB = 64  # the documented TMP_SIZE_MB default; TEST_ENV keeps it
ANSWER_GRACE_S = 2.5  # "the answer comes within about 1 s of the limit", plus HTTP and startup
SCRATCH_DIRS = {"/tmp", "/var/tmp", "/dev/shm"}  # private, capped, wiped (checked below)

SECRET = "s3cr3t-value"
SPECIAL_TMP_MB = 8
SPECIAL_ENV = {"SECRET_TOKEN": SECRET, "TMP_SIZE_MB": str(SPECIAL_TMP_MB)}
DEFAULT_UID_BASE = 900_000  # the documented SANDBOX_UID_BASE default
UID_LEASE = re.compile(r"/uids-(\d+)\.lock$")  # the lock file of a server's leased uid range

# Helpers every attack script starts with. The scripts run under `python -I -S` inside the
# sandbox, so they use the standard library only.
PRELUDE = '''
import ctypes, errno, json, os, signal, socket, struct, sys, time

LIBC = ctypes.CDLL(None, use_errno=True)


STARTED = time.time()  # the script's time window starts here (the host's clock)


def window():
    """[start, now] of this execution in host time: concurrency tests check the overlap."""
    return [STARTED, time.time()]


def errname(error):
    """An OSError's errno name (EPERM, ENOENT...), else the exception's type name."""
    if isinstance(error, OSError) and error.errno in errno.errorcode:
        return errno.errorcode[error.errno]
    return type(error).__name__


def attempt(action, expected=(OSError,)):
    """'ok' when action() succeeds, else the name of the `expected` error it raised. Anything
    unexpected (a NameError in the attack itself) propagates and fails the execution."""
    try:
        action()
    except expected as error:
        return errname(error)
    return "ok"


def libc_result(result):
    """A libc call's result as 'ok' or the errno name it failed with."""
    return "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def pids():
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())[:4000]


def read(path, limit=1 << 20):
    with open(path, "rb") as handle:
        return handle.read(limit)


def status_field(name, pid="self"):
    for line in read(f"/proc/{pid}/status").decode().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None
'''


def attack(body: str, **params: Any) -> str:
    """An attack script: the prelude, its parameters as PARAMS, then `body`."""
    return f"{PRELUDE}\nPARAMS = {params!r}\n\n{textwrap.dedent(body)}"


def describe(answer: HttpAnswer) -> str:
    return f"HTTP {answer.status}: {answer.body[:4000]!r}"


def result_of(server: Server, script: str) -> Any:
    """main()'s value; fails the test if the execution did not succeed."""
    answer = server.execute(script)
    body = answer.json()
    assert answer.status == 200 and "result" in body, f"{server.mode}: {describe(answer)}"
    return body["result"]


def assert_healthy(server: Server) -> None:
    answer = server.health()
    assert answer.status == 200 and answer.json().get("ok") is True, describe(answer)
    assert server.process.poll() is None, "the server process died"


def run_concurrently(
    server: Server, first: str, second: str, delay_s: float = 0.4
) -> tuple[HttpAnswer, HttpAnswer]:
    """Start `first`, then `second` `delay_s` later, so the two run in both slots at once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(server.execute, first)
        time.sleep(delay_s)
        two = pool.submit(server.execute, second)
        return one.result(timeout=60), two.result(timeout=60)


def assert_overlap(*windows: list[float]) -> None:
    """The executions' [start, end] windows (host time, reported by the scripts) overlap: the
    attack really ran while its target did, not before or after it."""
    latest_start = max(start for start, _end in windows)
    earliest_end = min(end for _start, end in windows)
    assert latest_start < earliest_end, f"the executions did not overlap: {windows}"


class HealthWatch:
    """Polls /health in a thread while an attack runs and records every bad answer."""

    def __init__(self, server: Server, interval_s: float = 0.2, max_latency_s: float = 2.0) -> None:
        self.server = server
        self.interval_s = interval_s
        self.max_latency_s = max_latency_s
        self.polls = 0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            started = time.monotonic()
            try:
                answer = self.server.request("GET", "/health", timeout=10)
                ok = answer.status == 200 and answer.json().get("ok") is True
                problem = None if ok else describe(answer)
            except Exception as error:
                problem = f"{type(error).__name__}: {error}"
            latency = time.monotonic() - started
            if problem is None and latency > self.max_latency_s:
                problem = f"/health took {latency:.2f} s"
            self.polls += 1
            if problem is not None:
                self.problems.append(problem)

    def check(self, min_polls: int = 3) -> None:
        assert self.polls >= min_polls, f"/health was polled only {self.polls} times"
        assert not self.problems, f"/health failed during the attack: {self.problems[:5]}"


def token() -> str:
    return uuid.uuid4().hex[:10]


def process_table() -> Iterator[dict[str, Any]]:
    """Every process on the host: pid, real uid, state, name and command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            continue  # gone meanwhile
        yield {
            "pid": int(entry.name),
            "ended": process_ended(entry, fields),
            "ppid": int(fields["PPid"]),
            "inner_pid": int(fields["NSpid"].split()[-1]),  # its pid in its own namespace
            "uid": int(fields["Uid"].split()[0]),
            "state": fields["State"].split()[0],
            "name": fields["Name"].strip(),
            "warm": ZYGOTE_PROGRAM_MARK in cmdline,
            "cmdline": cmdline.decode(errors="replace")[:200],
        }


ZYGOTE_PROGRAM_MARK = b"zygote_main()"
PF_EXITING = 0x4
SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


def process_ended(entry: Path, status: dict[str, str]) -> bool:
    """Whether a process can never run user code again: SIGKILLed (pending) or already in the
    kernel's exit path. A warm runner answers from a whole report while the execution's last
    process (alone in its namespace) is being torn down; such a process has ended."""
    pending = int(status["ShdPnd"], 16) | int(status["SigPnd"], 16)
    try:
        flags = int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[6])
    except (OSError, ValueError, IndexError):
        return True  # gone meanwhile
    return bool(pending & SIGKILL_BIT or flags & PF_EXITING)


def warm_standby(table: list[dict[str, Any]]) -> set[int]:
    """The warm runners' own processes, which live on by design: each zygote and the execution
    processes it holds ready (PID 1 of a fresh PID namespace, waiting for their job). Nothing
    of a finished execution can pass for one: its namespace died with it, and a script cannot
    make a new one (seccomp)."""
    # The zygote program's own interpreters (nsjail's arguments carry the program too).
    by_pid = {proc["pid"]: proc for proc in table if proc["warm"] and proc["name"] != "nsjail"}
    zygotes = {pid for pid, proc in by_pid.items() if proc["ppid"] not in by_pid}
    ready = {
        pid for pid, proc in by_pid.items() if proc["ppid"] in zygotes and proc["inner_pid"] == 1
    }
    return zygotes | ready


def server_python_pids(server: Server) -> list[int]:
    """The server's own processes: `unshare` and its children (the uvicorn process)."""
    root = server.process.pid
    children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    return [root, *(int(pid) for pid in children)]


def sandbox_uids(server: Server) -> range:
    """The host uids the server's sandboxes run as: its leased range (the lock file it holds
    open names the base), else the configured base."""
    base = int(os.environ.get("SANDBOX_UID_BASE", DEFAULT_UID_BASE))
    for pid in server_python_pids(server):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    match = UID_LEASE.search(os.readlink(fd))
                    if match:
                        base = int(match.group(1))
    return range(base, base + int(TEST_ENV["MAX_CONCURRENCY"]))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module", params=MODES)
def special_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with a secret in its environment and an 8 MiB /tmp."""
    with running_server(request.param, tmp_path_factory.mktemp("special"), SPECIAL_ENV) as srv:
        assert srv.health().json()["sandbox"] == request.param, srv.log()
        yield srv


@pytest.fixture(scope="module", params=MODES)
def bomb_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server for attacks whose damage could outlast them (leftover processes eating a
    slot's process limit), so that the session's shared server stays clean for other suites."""
    with running_server(request.param, tmp_path_factory.mktemp("bombs")) as srv:
        assert srv.health().json()["sandbox"] == request.param, srv.log()
        yield srv


# --------------------------------------------------------------------------------------------
# Privileges
# --------------------------------------------------------------------------------------------

UNPRIVILEGED = """
def main():
    return {
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(),
                *os.getresuid(), *os.getresgid()],
        "groups": os.getgroups(),
        "setuid0": attempt(lambda: os.setuid(0)),
        "seteuid0": attempt(lambda: os.seteuid(0)),
        "setresuid0": attempt(lambda: os.setresuid(0, 0, 0)),
        "setgid0": attempt(lambda: os.setgid(0)),
        "setgroups0": attempt(lambda: os.setgroups([0])),
        "shadow": attempt(lambda: read("/etc/shadow")),
        "caps": {key: status_field(key) for key in ("CapInh", "CapPrm", "CapEff", "CapAmb")},
        "no_new_privs": status_field("NoNewPrivs"),
        "ids_after": [os.getuid(), os.geteuid(), *os.getresuid()],
    }
"""


def test_script_runs_unprivileged_and_cannot_become_root(server: Server) -> None:
    evidence = result_of(server, attack(UNPRIVILEGED))
    assert 0 not in evidence["ids"], evidence
    assert 0 not in evidence["groups"], evidence
    for call in ("setuid0", "seteuid0", "setresuid0", "setgid0", "setgroups0"):
        # EPERM, or EINVAL where uid 0 is not mapped into the script's user namespace
        assert evidence[call] in ("EPERM", "EINVAL"), (call, evidence)
    assert 0 not in evidence["ids_after"], evidence
    # EACCES where the host's file is there; ENOENT where the sandbox's root holds no /etc
    assert evidence["shadow"] in ("EACCES", "ENOENT"), evidence
    assert all(int(value, 16) == 0 for value in evidence["caps"].values()), evidence
    assert evidence["no_new_privs"] == "1", evidence


NEW_USER_NAMESPACE = """
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
SYS_CLONE = {"x86_64": 56, "aarch64": 220}[os.uname().machine]
SYS_CLONE3 = 435


def become_root_in_child(use_clone3):
    # A child in a new user namespace maps itself to uid 0 there and reports its ids and
    # capabilities; the parent returns that report or the errno the clone failed with.
    uid, gid = os.getuid(), os.getgid()
    reader, writer = os.pipe()
    if use_clone3:
        args = struct.pack("8Q", CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0)
        buffer = ctypes.create_string_buffer(args, len(args))
        pid = LIBC.syscall(SYS_CLONE3, buffer, len(args))
    else:  # like fork(): no new stack, the child continues here
        pid = LIBC.syscall(SYS_CLONE, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        try:
            for path, text in (("/proc/self/setgroups", "deny"),
                               ("/proc/self/uid_map", f"0 {uid} 1"),
                               ("/proc/self/gid_map", f"0 {gid} 1")):
                attempt(lambda: open(path, "w").write(text))
            report = {"uid": os.getuid(), "CapEff": status_field("CapEff")}
            os.write(writer, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(writer)
    if pid < 0:
        failure = errno.errorcode.get(ctypes.get_errno(), "?")
        os.close(reader)
        return failure
    data = os.read(reader, 4096)
    os.close(reader)
    os.waitpid(pid, 0)
    return json.loads(data) if data else "child reported nothing"


def main():
    return {
        "unshare": libc_result(LIBC.unshare(CLONE_NEWUSER)),
        "clone": become_root_in_child(use_clone3=False),
        "clone3": become_root_in_child(use_clone3=True),
        "uid": os.getuid(),
    }
"""


def test_script_cannot_create_a_user_namespace_to_become_root_in(server: Server) -> None:
    """A new user namespace would make the script uid 0 with every capability in it (and open
    the kernel surface that only such a root reaches): unshare, clone and clone3 must fail."""
    evidence = result_of(server, attack(NEW_USER_NAMESPACE))
    assert evidence["uid"] != 0, evidence
    for call in ("unshare", "clone", "clone3"):
        assert isinstance(evidence[call], str), f"{call} made a user namespace: {evidence}"
        assert evidence[call] in ("EPERM", "ENOSYS", "EINVAL", "ENOSPC"), (call, evidence)


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------

TCP_CONNECT = """
def connect(family, address):
    sock = None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(0.5)
        sock.connect(address)
        return "connected"
    except OSError as error:
        return errname(error)
    finally:
        if sock is not None:
            sock.close()


def main():
    out = {}
    for host, port in PARAMS["v4"]:
        out[f"{host}:{port}"] = connect(socket.AF_INET, (host, port))
    for host, port in PARAMS["v6"]:
        out[f"[{host}]:{port}"] = connect(socket.AF_INET6, (host, port, 0, 0))
    return out
"""


@contextlib.contextmanager
def host_listener(family: socket.AddressFamily, kind: socket.SocketKind) -> Iterator[socket.socket]:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        sock.setblocking(False)
        yield sock


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_no_tcp_connection_to_loopback(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        v4 = stack.enter_context(host_listener(socket.AF_INET, socket.SOCK_STREAM))
        listeners = [v4]
        targets_v4 = [
            ("127.0.0.1", server.port),
            ("127.0.0.1", v4.getsockname()[1]),
            ("127.0.0.1", 22),
        ]
        targets_v6: list[tuple[str, int]] = []
        if has_ipv6_loopback():
            v6 = stack.enter_context(host_listener(socket.AF_INET6, socket.SOCK_STREAM))
            listeners.append(v6)
            targets_v6 = [("::1", v6.getsockname()[1]), ("::1", server.port)]
        evidence = result_of(server, attack(TCP_CONNECT, v4=targets_v4, v6=targets_v6))
        accepted = []
        for listener in listeners:
            with contextlib.suppress(BlockingIOError):
                conn, peer = listener.accept()
                accepted.append(peer)
                conn.close()
    assert set(evidence) == {f"{h}:{p}" for h, p in targets_v4} | {
        f"[{h}]:{p}" for h, p in targets_v6
    }, evidence
    # no socket of that family (seccomp), no route, or nothing listening in a private namespace
    refused = {"EAFNOSUPPORT", "EPERM", "EACCES", "ENETUNREACH", "ECONNREFUSED", "EADDRNOTAVAIL"}
    assert set(evidence.values()) <= refused, evidence
    assert not accepted, f"the host's loopback listener accepted {accepted}"


UDP_SEND = """
def main():
    out = {}
    for family, host, port in PARAMS["targets"]:
        family = socket.AF_INET6 if family == 6 else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                for _ in range(5):
                    sock.sendto(b"escaped-" + PARAMS["token"].encode(), (host, port))
            out[f"{host}:{port}"] = "sent"
        except OSError as error:
            out[f"{host}:{port}"] = errname(error)
    return out
"""


def test_no_udp_datagram_reaches_loopback(server: Server) -> None:
    """sendto() may 'succeed' inside a private network namespace; nothing may arrive."""
    marker = token()
    with contextlib.ExitStack() as stack:
        receivers = [stack.enter_context(host_listener(socket.AF_INET, socket.SOCK_DGRAM))]
        targets = [(4, "127.0.0.1", receivers[0].getsockname()[1])]
        if has_ipv6_loopback():
            receivers.append(stack.enter_context(host_listener(socket.AF_INET6, socket.SOCK_DGRAM)))
            targets.append((6, "::1", receivers[1].getsockname()[1]))
        evidence = result_of(server, attack(UDP_SEND, targets=targets, token=marker))
        time.sleep(0.3)
        arrived: list[tuple[bytes, Any]] = []
        for receiver in receivers:
            with contextlib.suppress(BlockingIOError):
                while len(arrived) < 20:
                    arrived.append(receiver.recvfrom(4096))
    assert len(evidence) == len(targets), evidence
    # sent into a private namespace, or refused: no socket of that family, no route
    sent_or_refused = {"sent", "EAFNOSUPPORT", "EPERM", "EACCES", "ENETUNREACH", "EADDRNOTAVAIL"}
    assert set(evidence.values()) <= sent_or_refused, evidence
    assert not arrived, f"datagrams from the sandbox arrived on the host: {arrived} ({evidence})"


NAME_RESOLUTION = """
def main():
    out = {}
    for name in ("example.com", "pypi.org", "localhost"):
        try:
            infos = socket.getaddrinfo(name, PARAMS["port"], type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            out[name] = {"resolved": None, "error": type(error).__name__}
            continue
        connects = []
        for family, kind, proto, _, address in infos[:4]:
            def connect():
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(0.5)
                    sock.connect(address)
            connects.append(attempt(connect))
        out[name] = {"resolved": [info[4][0] for info in infos], "connects": connects}
    out["gethostbyname"] = attempt(lambda: socket.gethostbyname("example.com"), socket.gaierror)
    return out
"""


def test_no_name_resolution_and_localhost_is_unusable(server: Server) -> None:
    evidence = result_of(server, attack(NAME_RESOLUTION, port=server.port))
    for name in ("example.com", "pypi.org"):
        assert evidence[name] == {"resolved": None, "error": "gaierror"}, f"{name}: {evidence}"
    assert evidence["gethostbyname"] == "gaierror", evidence
    # /etc/hosts may name localhost (no DNS involved), but nothing may answer there.
    refused = {"EAFNOSUPPORT", "EPERM", "EACCES", "ENETUNREACH", "ECONNREFUSED", "EADDRNOTAVAIL"}
    assert set(evidence["localhost"].get("connects", [])) <= refused, evidence


LISTENER = """
def main():
    name = PARAMS["name"]
    wanted = (("tcp", socket.AF_INET, ("127.0.0.1", PARAMS["port"])),
              ("abstract-unix", socket.AF_UNIX, "\\0" + name),
              ("path-unix", socket.AF_UNIX, f"/tmp/{name}.sock"))
    listening, accepted, sockets = [], [], []
    for label, family, address in wanted:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.bind(address)
            sock.listen(8)
            sock.setblocking(False)
        except OSError:
            continue
        listening.append(label)
        sockets.append((label, sock))
    deadline = time.monotonic() + PARAMS["seconds"]
    while time.monotonic() < deadline:
        for label, sock in sockets:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            accepted.append(label)
            conn.close()
        time.sleep(0.02)
    return {"listening": listening, "accepted": accepted, "window": window()}
"""

CONNECTOR = """
def main():
    name = PARAMS["name"]
    wanted = (("tcp", socket.AF_INET, ("127.0.0.1", PARAMS["port"])),
              ("abstract-unix", socket.AF_UNIX, "\\0" + name),
              ("path-unix", socket.AF_UNIX, f"/tmp/{name}.sock"))
    connected, errors, tries = [], {}, 0
    deadline = time.monotonic() + PARAMS["seconds"]
    while time.monotonic() < deadline and tries < 200:
        tries += 1
        for label, family, address in wanted:
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.2)
                    sock.connect(address)
                connected.append(label)
            except OSError as error:
                errors.setdefault(label, set()).add(errname(error))
        time.sleep(0.05)
    return {"connected": sorted(set(connected)), "tries": tries, "window": window(),
            "errors": {label: sorted(names) for label, names in errors.items()}}
"""


def test_listener_of_one_execution_is_unreachable_from_a_concurrent_one(server: Server) -> None:
    params = {"name": f"safe-exec-{token()}", "port": free_port()}
    listen, connect = run_concurrently(
        server,
        attack(LISTENER, seconds=1.4, **params),
        attack(CONNECTOR, seconds=0.9, **params),
        delay_s=0.2,
    )
    listener, connector = listen.json(), connect.json()
    assert listen.status == 200 and connect.status == 200, (describe(listen), describe(connect))
    listener, connector = listener["result"], connector["result"]
    assert "abstract-unix" in listener["listening"], listener  # the attack really listened
    assert connector["tries"] >= 3, connector
    assert_overlap(listener["window"], connector["window"])
    assert connector["connected"] == [], (listener, connector)
    assert listener["accepted"] == [], (listener, connector)
    # Each address was refused as absent from the connector's world, every time.
    tcp_refused = ["EAFNOSUPPORT", "ECONNREFUSED", "ENETUNREACH", "EPERM"]
    assert set(connector["errors"]) == {"tcp", "abstract-unix", "path-unix"}, connector
    assert len(connector["errors"]["tcp"]) == 1, connector
    assert connector["errors"]["tcp"][0] in tcp_refused, connector
    assert connector["errors"]["abstract-unix"] == ["ECONNREFUSED"], connector
    assert connector["errors"]["path-unix"] == ["ENOENT"], connector


# --------------------------------------------------------------------------------------------
# Environment, secrets and the service's own files
# --------------------------------------------------------------------------------------------

ENVIRONMENT = """
def main():
    secret = PARAMS["secret_reversed"][::-1].encode()
    me = os.getpid()
    found, server_pids, server_environ = [], [], {}
    for pid in pids():
        for leaf in ("environ", "cmdline"):
            try:
                data = read(f"/proc/{pid}/{leaf}")
            except OSError:
                continue
            if secret in data:
                found.append(f"/proc/{pid}/{leaf}")
            if leaf == "cmdline" and pid != me and b"entrypoints" in data:
                server_pids.append(pid)
    for pid in server_pids:
        server_environ[pid] = attempt(lambda: read(f"/proc/{pid}/environ"))  # ok or an errno
    for path in ("/proc/self/environ", "/proc/1/environ"):
        try:
            if secret in read(path):
                found.append(path)
        except OSError:
            pass
    return {
        "environ": dict(os.environ),
        "secret_in_environ": any(secret.decode() in v for v in os.environ.values()),
        "found": found,
        "server_pids": server_pids,
        "server_environ": server_environ,
    }
"""

HARMLESS_VARIABLES = {
    "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "PWD", "SHLVL", "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
}  # fmt: skip


def test_script_sees_none_of_the_service_environment(special_server: Server) -> None:
    server = special_server
    # The secret really is in the server's environment (else this test proves nothing).
    environs = [Path(f"/proc/{pid}/environ").read_bytes() for pid in server_python_pids(server)]
    assert any(SECRET.encode() in environ for environ in environs)

    answer = server.execute(attack(ENVIRONMENT, secret_reversed=SECRET[::-1]))
    assert answer.status == 200, describe(answer)
    assert SECRET.encode() not in answer.body, f"the secret leaked: {describe(answer)}"
    evidence = answer.json()["result"]
    assert not evidence["secret_in_environ"], evidence
    assert evidence["found"] == [], f"the secret is readable at {evidence['found']}"
    service_env = {**os.environ, **TEST_ENV, **SPECIAL_ENV, "SANDBOX": server.mode}
    leaked = {
        key
        for key, value in evidence["environ"].items()
        if service_env.get(key) == value and key not in HARMLESS_VARIABLES
    }
    assert not leaked, f"service variables visible to the script: {leaked}"
    assert not set(evidence["environ"]) & (set(TEST_ENV) | set(SPECIAL_ENV)), evidence["environ"]
    # nsjail: own PID namespace; rlimit: same namespace as the server (which is its PID 1
    # here), but /proc is mounted hidepid=2: the server's process cannot even be found.
    assert evidence["server_pids"] == [], evidence
    assert evidence["server_environ"] == {}, evidence


SOURCE = """
MARKER = PARAMS["marker_reversed"][::-1].encode()


def main():
    listed, readable, marker_found, imports = {}, [], [], {}
    me = os.getpid()
    dirs = list(PARAMS["dirs"])
    files = list(PARAMS["files"])
    for pid in pids():
        if pid == me:
            continue
        dirs += [f"/proc/{pid}/cwd", f"/proc/{pid}/root{PARAMS['root']}"]
        files += [f"/proc/{pid}/cwd/{rel}" for rel in PARAMS["relative"]]
        files += [f"/proc/{pid}/root{path}" for path in PARAMS["files"]]
    for path in dirs[:2000]:
        try:
            listed[path] = sorted(os.listdir(path))[:20]
        except OSError:
            pass
    for path in files[:4000]:
        try:
            data = read(path)
        except OSError:
            continue
        readable.append(path)
        if MARKER in data:
            marker_found.append(path)
    for module in ("application", "entrypoints", "adapters", "domain"):
        imports[module] = attempt(lambda: __import__(module), ImportError)
    return {"listed": {k: v for k, v in listed.items() if v}, "readable": readable,
            "marker_found": marker_found, "imports": imports}
"""


def test_service_source_and_configuration_are_unreachable(server: Server) -> None:
    import application.execute

    execute_py = Path(inspect.getsourcefile(application.execute) or "").resolve()
    assert "class ExecuteScript" in execute_py.read_text()
    site = Path(sysconfig.get_paths()["purelib"])
    dirs = [ROOT, ROOT / "src", execute_py.parent, ROOT / ".venv", Path(sys.prefix), site,
            ROOT / ".git", ROOT / "tests"]  # fmt: skip
    files = [
        execute_py,
        ROOT / "src" / "entrypoints" / "container.py",
        ROOT / "pyproject.toml",
        ROOT / "Makefile",
        ROOT / ".venv" / "pyvenv.cfg",
        *site.glob("__editable__*"),
    ]
    relative = [str(path.relative_to(ROOT)) for path in files if path.is_relative_to(ROOT)]
    evidence = result_of(
        server,
        attack(
            SOURCE,
            dirs=[str(d) for d in dirs],
            files=[str(f) for f in files],
            relative=relative,
            root=str(ROOT),
            marker_reversed="class ExecuteScript"[::-1],
        ),
    )
    assert evidence["marker_found"] == [], evidence
    assert evidence["readable"] == [], evidence
    assert evidence["listed"] == {}, f"service directories listable: {evidence['listed']}"
    assert set(evidence["imports"].values()) == {"ModuleNotFoundError"}, evidence


# --------------------------------------------------------------------------------------------
# Filesystem
# --------------------------------------------------------------------------------------------

WRITABLE = """
CANDIDATES = [
    "/", "/bin", "/boot", "/dev", "/dev/mqueue", "/dev/shm", "/etc", "/home", "/lib", "/lib64",
    "/media", "/mnt", "/opt", "/root", "/run", "/run/lock", "/run/shm", "/run/user", "/sbin",
    "/srv", "/sys/fs/cgroup", "/tmp", "/usr", "/usr/lib", "/usr/local", "/usr/local/lib",
    "/usr/share", "/var", "/var/cache", "/var/crash", "/var/lib", "/var/local", "/var/lock",
    "/var/log", "/var/mail", "/var/spool", "/var/tmp", "/work",
]
SKIP_WALK = {"/proc", "/sys"}


def main():
    import sysconfig
    dirs = set(CANDIDATES)
    dirs.update(p for p in sys.path if p and os.path.isdir(p))
    dirs.update(v for v in sysconfig.get_paths().values() if os.path.isdir(v))
    dirs.update((os.path.dirname(os.__file__), os.path.dirname(sys.executable), os.getcwd()))
    # A bounded walk adds every directory the kernel calls writable.
    stack, walked, deadline = [("/", 0)], 0, time.monotonic() + 1.0
    while stack and walked < 5000 and time.monotonic() < deadline:
        path, depth = stack.pop()
        walked += 1
        if os.access(path, os.W_OK):
            dirs.add(path)
        if depth >= 3 or path in SKIP_WALK:
            continue
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, depth + 1))
        except OSError:
            pass
    writable = []
    for directory in sorted(dirs):
        target = os.path.join(directory, PARAMS["marker"])
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"x")
            os.close(fd)
        except OSError:
            continue
        writable.append(os.path.realpath(directory))
    # The script's own cgroup limits and membership: raising or leaving them is an escape.
    cgroup_files = {}
    for line in read("/proc/self/cgroup").decode().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in filter(None, controllers.split(",")):
            base = f"/sys/fs/cgroup/{controller}{path}"
            for leaf in ("memory.limit_in_bytes", "pids.max", "cgroup.procs", "../cgroup.procs"):
                cgroup_files[os.path.normpath(f"{base}/{leaf}")] = None
    opened = [p for p in cgroup_files
              if os.path.exists(p) and attempt(lambda: os.close(os.open(p, os.O_WRONLY))) == "ok"]
    return {"writable": sorted(set(writable)), "walked": walked, "cgroup_writable": opened,
            "cwd": os.getcwd()}
"""


def remove_markers(directories: set[str], marker: str) -> list[str]:
    """Delete `marker` files from the host's directories; return where one was found."""
    found = []
    for directory in sorted(directories):
        path = Path(directory) / marker
        if path.exists():
            found.append(str(path))
            path.unlink()
    return found


def test_script_writes_only_to_its_private_scratch(server: Server) -> None:
    marker = f"safe-exec-probe-{token()}"
    evidence = result_of(server, attack(WRITABLE, marker=marker))
    # Whatever the script wrote must not be on the host (and is cleaned up from there).
    on_host = remove_markers({*evidence["writable"], *SCRATCH_DIRS}, marker)
    assert "/tmp" in evidence["writable"], evidence  # the attack could write somewhere
    assert evidence["walked"] > 10, evidence
    outside = set(evidence["writable"]) - SCRATCH_DIRS - {evidence["cwd"]}
    assert not outside, f"{server.mode}: the script can write to {sorted(outside)}"
    assert not on_host, f"{server.mode}: files written by the script reached the host: {on_host}"
    assert evidence["cgroup_writable"] == [], evidence


PERSIST_WRITE = """
def main():
    wrote = []
    for directory in PARAMS["dirs"]:
        path = os.path.join(directory, PARAMS["marker"])
        if attempt(lambda: open(path, "w").write("left behind")) == "ok":
            wrote.append(directory)
    shm = LIBC.shmget(PARAMS["ipc_key"], 4096, 0o1000 | 0o666)  # IPC_CREAT
    return {"wrote": wrote, "tmp": sorted(os.listdir("/tmp")), "shm": shm >= 0}
"""

PERSIST_READ = """
def main():
    seen = [d for d in PARAMS["dirs"] if os.path.exists(os.path.join(d, PARAMS["marker"]))]
    shm = LIBC.shmget(PARAMS["ipc_key"], 0, 0)
    return {"seen": seen, "tmp": sorted(os.listdir("/tmp")), "shm": shm >= 0,
            "cwd": sorted(os.listdir("."))}
"""

PERSIST_DIRS = ["/tmp", ".", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/run/shm"]


def test_nothing_written_by_one_execution_is_visible_to_a_later_one(server: Server) -> None:
    marker = f"safe-exec-left-{token()}"
    params = {"dirs": PERSIST_DIRS, "marker": marker, "ipc_key": 0x5AFE0000 + os.getpid() % 4096}
    wrote = result_of(server, attack(PERSIST_WRITE, **params))
    # Two later executions: slots rotate, so one of them reuses the writer's slot (and uid).
    later = [result_of(server, attack(PERSIST_READ, **params)) for _ in range(2)]
    on_host = remove_markers(set(PERSIST_DIRS) - {"."}, marker)
    assert "/tmp" in wrote["wrote"] and wrote["shm"], wrote
    for evidence in later:
        assert evidence["tmp"] == [], f"/tmp of a later execution is not empty: {evidence}"
        assert evidence["cwd"] == [], f"the working directory is not empty: {evidence}"
        assert evidence["seen"] == [], f"files from an earlier execution: {evidence} ({wrote})"
        assert not evidence["shm"], "a SysV shared memory segment survived the execution"
    assert not on_host, f"files written by the script reached the host: {on_host}"


TMP_NEIGHBOUR = """
def main():
    mine = f"/tmp/{PARAMS['token']}-{PARAMS['role']}"
    with open(mine, "w") as handle:
        handle.write(PARAMS["secret"])
    seen, peeked = set(), []  # names of the token's files; paths holding the token's text
    deadline = time.monotonic() + PARAMS["seconds"]
    while time.monotonic() < deadline:
        seen.update(name for name in os.listdir("/tmp") if PARAMS["token"] in name)
        time.sleep(0.05)
    # Other processes' views of /tmp (through /proc/<pid>/root) and their open files.
    me = os.getpid()
    for pid in pids():
        if pid == me:
            continue
        for probe in (lambda: os.listdir(f"/proc/{pid}/root/tmp"),
                      lambda: os.listdir(f"/proc/{pid}/fd")):
            try:
                names = probe()
            except OSError:
                continue
            peeked.append(pid)
            for name in names:
                for path in (f"/proc/{pid}/root/tmp/{name}", f"/proc/{pid}/fd/{name}"):
                    try:
                        if PARAMS["token"].encode() in read(path, 1 << 16):
                            seen.add(path)
                    except OSError:
                        pass
    return {"seen": sorted(seen), "peeked": sorted(set(peeked)), "window": window()}
"""


def test_concurrent_executions_do_not_see_each_others_files(server: Server) -> None:
    tag = token()
    victim, attacker = run_concurrently(
        server,
        attack(TMP_NEIGHBOUR, token=tag, role="victim", seconds=1.4, secret=f"victim-{tag}"),
        attack(TMP_NEIGHBOUR, token=tag, role="attacker", seconds=0.8, secret=f"attack-{tag}"),
        delay_s=0.3,
    )
    assert victim.status == 200 and attacker.status == 200, (describe(victim), describe(attacker))
    victim_saw, attacker_saw = victim.json()["result"], attacker.json()["result"]
    assert_overlap(victim_saw["window"], attacker_saw["window"])
    assert victim_saw["seen"] == [f"{tag}-victim"], victim_saw
    assert attacker_saw["seen"] == [f"{tag}-attacker"], attacker_saw


TMP_FILL = """
def fill(directory, files, chunk_bytes, limit_bytes):
    total, error = 0, None
    chunk = b"x" * chunk_bytes
    for index in range(files):
        try:
            fd = os.open(f"{directory}/fill-{index}", os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as failure:
            error = errname(failure)
            break
        try:
            while total < limit_bytes:
                total += os.write(fd, chunk)
                if files > 1:
                    break
        except OSError as failure:
            error = errname(failure)
        finally:
            os.close(fd)
        if error is not None or total >= limit_bytes:
            break
    for index in range(files):
        attempt(lambda: os.unlink(f"{directory}/fill-{index}"))
    return {"bytes": total, "error": error}


def main():
    limit = PARAMS["try_mb"] << 20
    stat = os.statvfs("/tmp")
    out = {"statvfs_bytes": stat.f_blocks * stat.f_frsize,
           "one_file": fill("/tmp", 1, 1 << 20, limit),
           "many_files": fill("/tmp", 4 * PARAMS["try_mb"], 1 << 19, limit)}
    for extra in ("/var/tmp", "/dev/shm"):
        if os.access(extra, os.W_OK):
            out[extra] = fill(extra, 4 * PARAMS["try_mb"], 1 << 19, limit)
    return out
"""


def test_tmp_is_size_capped(special_server: Server) -> None:
    server = special_server
    cap = SPECIAL_TMP_MB * MIB
    evidence = result_of(server, attack(TMP_FILL, try_mb=4 * SPECIAL_TMP_MB))
    assert evidence["statvfs_bytes"] <= cap, evidence
    assert evidence["one_file"]["error"] in ("EFBIG", "ENOSPC"), evidence
    assert evidence["one_file"]["bytes"] <= cap, evidence
    assert evidence["many_files"]["error"] == "ENOSPC", evidence
    assert evidence["many_files"]["bytes"] <= cap, evidence
    for extra in ("/var/tmp", "/dev/shm"):
        if extra in evidence:  # other private scratch directories are capped the same way
            assert evidence[extra]["error"] == "ENOSPC", evidence
            assert evidence[extra]["bytes"] <= cap, evidence
    assert_healthy(server)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

SURVIVORS = """
def set_name(name):
    LIBC.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def daemon(body):
    # Double fork into a new session: the classic way to escape a process group.
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        body()
    finally:
        os._exit(0)


def sleeper():
    set_name(PARAMS["token"])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    for fd in (0, 1, 2):
        attempt(lambda: os.close(fd))  # let the server's pipes close
    deadline = time.monotonic() + PARAMS["seconds"]
    while time.monotonic() < deadline:
        attempt(lambda: open(f"/tmp/{PARAMS['token']}-alive", "w").close())
        time.sleep(0.1)


def holder():  # keeps stdout open
    set_name(PARAMS["token"])
    time.sleep(PARAMS["seconds"])


def main():
    import subprocess
    daemon(sleeper)
    daemon(holder)
    child = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({PARAMS['seconds']})",
         PARAMS["token"]],
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    time.sleep(PARAMS["linger_s"])  # the test looks for them from the host meanwhile
    return {"pid": os.getpid(), "child": child.pid}
"""

FIND_SURVIVORS = """
def main():
    me, found, same_uid = os.getpid(), [], []
    for pid in pids():
        if pid == me:
            continue
        try:
            text = read(f"/proc/{pid}/cmdline") + read(f"/proc/{pid}/comm")
            uid = int(status_field("Uid", pid).split()[0])
            if status_field("State", pid).startswith("Z"):
                continue  # dead; test_no_zombie_is_left_behind looks at those
        except (OSError, AttributeError):
            continue
        if PARAMS["token"].encode() in text:
            found.append(pid)
        if uid == os.getuid():
            same_uid.append(pid)
    return {"found": found, "same_uid": same_uid}
"""


def leftovers(token_text: str, uids: range) -> list[dict[str, Any]]:
    """Host processes carrying `token_text` or running as one of `uids`, but for the warm
    runners' standby processes."""
    table = list(process_table())
    standby = warm_standby(table)
    return [
        proc
        for proc in table
        if proc["pid"] not in standby
        and not proc["ended"]
        and (
            token_text in proc["cmdline"] or token_text[:15] in proc["name"] or proc["uid"] in uids
        )
    ]


def test_no_process_outlives_its_execution(special_server: Server) -> None:
    server = special_server
    tag = token()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(server.execute, attack(SURVIVORS, token=tag, seconds=8, linger_s=1.5))
        # While the execution runs, the host sees its three escapees (so the scan below works).
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 1.2
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = [proc for proc in leftovers(tag, range(0)) if proc["state"] != "Z"]
        answer = running.result(timeout=60)
    assert answer.status == 200, describe(answer)
    assert len(seen) >= 3, f"the escapees never ran: {seen}"
    alive: list[dict[str, Any]] = []
    for _ in range(3):  # the kill happens before the answer; look now and a little later
        alive = [proc for proc in leftovers(tag, sandbox_uids(server)) if proc["state"] != "Z"]
        if alive:
            break
        time.sleep(0.3)
    later = [result_of(server, attack(FIND_SURVIVORS, token=tag)) for _ in range(2)]
    assert not alive, f"{server.mode}: processes outlived their execution: {alive}"
    for evidence in later:
        assert evidence["found"] == [], f"a later execution sees the survivors: {evidence}"
        assert evidence["same_uid"] == [], f"processes share the later execution's uid: {evidence}"


def test_no_zombie_is_left_behind(special_server: Server) -> None:
    """Orphans killed at the end of an execution must also be reaped: unreaped, they pile up
    with every request and keep counting against the slot uid's process limit (see
    test_a_fork_bomb_does_not_starve_later_executions)."""
    server = special_server
    tag = token()

    def zombies() -> dict[int, dict[str, Any]]:
        found = leftovers(tag, sandbox_uids(server))
        return {proc["pid"]: proc for proc in found if proc["state"] == "Z"}

    before = zombies()
    result_of(server, attack(SURVIVORS, token=tag, seconds=8, linger_s=0.2))
    time.sleep(0.5)
    new = [proc for pid, proc in zombies().items() if pid not in before]
    assert not new, f"{server.mode}: one execution left {len(new)} zombies: {new}"


REAPER_FIGHTER = """
def harness_gone(pid):
    try:
        return status_field("State", pid).startswith("Z")
    except OSError:
        return True


def main():
    harness = os.getpid()
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return "daemonised"
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        LIBC.prctl(15, PARAMS["token"].encode()[:15], 0, 0, 0)
        for fd in (0, 1, 2):
            attempt(lambda: os.close(fd))
        # Wait (at most 3 s) for the harness to exit, then kill everything else of this uid,
        # the service's reaper included if it takes this uid to do its work, and hop to a
        # fresh pid now and then; for at most PARAMS["seconds"].
        deadline = time.monotonic() + 3
        while not harness_gone(harness) and time.monotonic() < deadline:
            pass
        deadline = time.monotonic() + PARAMS["seconds"]
        rounds = 0
        while time.monotonic() < deadline and rounds < 2_000_000:
            rounds += 1
            attempt(lambda: os.kill(-1, signal.SIGKILL))
            if rounds % 500 == 0 and os.fork():
                os._exit(0)
    finally:
        os._exit(0)
"""


def test_a_process_fighting_the_reaper_does_not_survive(special_server: Server) -> None:
    server = special_server
    tag = token()
    answer = server.execute(attack(REAPER_FIGHTER, token=tag, seconds=8))
    assert answer.status == 200 and answer.json()["result"] == "daemonised", describe(answer)
    alive: list[dict[str, Any]] = []
    for _ in range(3):
        alive = [proc for proc in leftovers(tag, sandbox_uids(server)) if proc["state"] != "Z"]
        if alive:
            break
        time.sleep(0.3)
    assert not alive, f"{server.mode}: a reaper-fighting process survived: {alive}"
    assert_healthy(server)


# --------------------------------------------------------------------------------------------
# Signals, tracing and starvation
# --------------------------------------------------------------------------------------------

VICTIM = """
def main():
    time.sleep(PARAMS["seconds"])
    return {"alive": True, "pid": os.getpid(), "window": window()}
"""

KILLER = """
def main():
    me = os.getpid()
    out = {"kill_all": [], "kill_each": {}}
    deadline = time.monotonic() + 0.8
    for _ in range(20):
        out["kill_all"].append(attempt(lambda: os.kill(-1, signal.SIGKILL)))
        if time.monotonic() > deadline:
            break
        time.sleep(0.04)
    for pid in pids():
        if pid != me:
            out["kill_each"][pid] = attempt(lambda: os.kill(pid, signal.SIGKILL))
    if me != 1:
        out["kill_init"] = attempt(lambda: os.kill(1, signal.SIGKILL))
    out["pid"] = me
    out["window"] = window()
    return out
"""


# Every pid a script can see that is not its own: gone by now (ESRCH), or not its to signal.
KILL_REFUSALS = {"ESRCH", "EPERM"}


def test_script_cannot_signal_the_server_or_a_concurrent_execution(server: Server) -> None:
    with HealthWatch(server) as watch:
        victim, killer = run_concurrently(
            server, attack(VICTIM, seconds=1.6), attack(KILLER), delay_s=0.4
        )
    assert victim.status == 200, f"the concurrent execution was hit: {describe(victim)}"
    assert victim.json()["result"]["alive"] is True
    assert killer.status == 200, describe(killer)
    evidence = killer.json()["result"]
    assert_overlap(victim.json()["result"]["window"], evidence["window"])
    # kill(-1) reaches only the killer's own processes: none (ESRCH) or its own helpers
    assert set(evidence["kill_all"]) <= {"ok", "ESRCH"}, evidence
    assert set(evidence["kill_each"].values()) <= KILL_REFUSALS, evidence
    if "kill_init" in evidence:
        assert evidence["kill_init"] == "EPERM", evidence
    watch.check()
    assert_healthy(server)


PTRACE = """
PTRACE_ATTACH, PTRACE_DETACH, PTRACE_SEIZE = 16, 17, 0x4206


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def trace(pid, request=PTRACE_ATTACH):
    result = libc_result(LIBC.ptrace(request, pid, None, None))
    if result == "ok":
        LIBC.ptrace(PTRACE_DETACH, pid, None, None)
    return result


def main():
    child = os.fork()
    if child == 0:
        time.sleep(3)
        os._exit(0)
    try:
        buffer = ctypes.create_string_buffer(8)
        local = IoVec(ctypes.cast(buffer, ctypes.c_void_p), 8)
        remote = IoVec(ctypes.c_void_p(id(buffer)), 8)
        others = [pid for pid in pids() if pid not in (os.getpid(), child)]
        return {
            "attach_child": trace(child),
            "seize_child": trace(child, PTRACE_SEIZE),
            "vm_readv_child": libc_result(LIBC.process_vm_readv(
                child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)),
            "attach_others": {pid: trace(pid) for pid in others},
            "mem_others": {pid: attempt(lambda: read(f"/proc/{pid}/mem", 1)) for pid in others},
        }
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
"""


def test_ptrace_is_refused(server: Server) -> None:
    evidence = result_of(server, attack(PTRACE))
    # Even the script's own child: the seccomp policy refuses the syscalls outright.
    assert evidence["attach_child"] == "EPERM", evidence
    assert evidence["seize_child"] == "EPERM", evidence
    assert evidence["vm_readv_child"] == "EPERM", evidence
    assert set(evidence["attach_others"].values()) <= {"EPERM", "ESRCH"}, evidence
    assert all(result in ("EACCES", "EPERM", "ESRCH", "ENOENT")
               for result in evidence["mem_others"].values()), evidence  # fmt: skip


MEMORY_BOMB = """
def main():
    hoard = []
    for _ in range(64):
        hoard.append(bytearray(b"\\x01") * (32 << 20))
    return len(hoard)
"""


def test_memory_bomb_is_contained(server: Server) -> None:
    with HealthWatch(server) as watch:
        answer = server.execute(attack(MEMORY_BOMB))
    assert answer.status == 400 and answer.json()["error"] == "MEMORY_LIMIT", describe(answer)
    watch.check(min_polls=0)
    assert_healthy(server)


FD_EXHAUSTION = """
import resource


def main():
    opened, error = [], None
    for _ in range(100_000):
        try:
            opened.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as failure:
            error = errname(failure)
            break
    for fd in opened:
        os.close(fd)
    return {
        "opened": len(opened),
        "highest": max(opened, default=-1),
        "error": error,
        "limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "raise": attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)),
                         ValueError),
    }
"""


def test_fd_exhaustion_stops_at_max_open_files(server: Server) -> None:
    evidence = result_of(server, attack(FD_EXHAUSTION))
    assert evidence["error"] == "EMFILE", evidence
    assert evidence["limit"] == [MAX_OPEN_FILES, MAX_OPEN_FILES], evidence
    assert evidence["highest"] < MAX_OPEN_FILES, evidence
    assert MAX_OPEN_FILES - 12 <= evidence["opened"] <= MAX_OPEN_FILES, evidence
    assert evidence["raise"] == "ValueError", evidence  # CPython's EPERM from setrlimit
    assert_healthy(server)


STDOUT_FLOOD = """
def main():
    chunk, line = "x" * 65536, "y" * 1000
    written, started = 0, time.monotonic()
    while time.monotonic() - started < 10:
        sys.stdout.write(chunk)
        print(line)
        sys.stderr.write(chunk)
        written += len(chunk) + len(line) + 1
    return written
"""


def test_stdout_flood_stays_within_the_cap(server: Server) -> None:
    pid = server_python_pids(server)[-1]
    rss_before = rss_kib(pid)
    with HealthWatch(server) as watch:
        started = time.monotonic()
        answer = server.execute(attack(STDOUT_FLOOD))
        elapsed = time.monotonic() - started
    body = answer.json()
    assert elapsed < WALL_S + ANSWER_GRACE_S, f"answered after {elapsed:.1f} s"
    assert body.get("error") == "TIMEOUT", describe(answer)
    assert len(body["stdout"].encode()) <= STDOUT_CAP, len(body["stdout"])
    assert body.get("stdout_truncated") is True, {k: v for k, v in body.items() if "std" not in k}
    assert len(body.get("stderr", "").encode()) <= STDERR_CAP
    assert len(answer.body) <= STDOUT_CAP + STDERR_CAP + 16 * 1024, len(answer.body)
    grown_mib = (rss_kib(pid) - rss_before) / 1024
    assert grown_mib < 64, f"the server grew by {grown_mib:.0f} MiB during the flood"
    watch.check()
    assert_healthy(server)


# --------------------------------------------------------------------------------------------
# Attacks whose damage could outlast them, on a server of their own
# --------------------------------------------------------------------------------------------

MEMORY_IN_CHILDREN = """
def main():
    reader, writer = os.pipe()
    children = []
    for index in range(PARAMS["children"]):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            try:
                block = bytearray(b"\\x01") * (PARAMS["each_mb"] << 20)
                os.write(writer, bytes([index]))
                time.sleep(PARAMS["hold_s"] + 1)
                del block
            finally:
                os._exit(0)
        children.append(pid)
    os.close(writer)
    os.set_blocking(reader, False)
    reported = set()
    deadline = time.monotonic() + PARAMS["hold_s"]
    while time.monotonic() < deadline and len(reported) < len(children):
        try:
            reported.update(os.read(reader, 256))
        except BlockingIOError:
            time.sleep(0.05)
    alive = [i for i, pid in enumerate(children) if os.waitpid(pid, os.WNOHANG) == (0, 0)]
    held = sorted(set(alive) & reported)
    for pid in children:
        attempt(lambda: os.kill(pid, signal.SIGKILL))
    return {"held_mb": len(held) * PARAMS["each_mb"], "children": len(children),
            "reported": len(reported)}
"""


def test_memory_limit_covers_all_processes_together(bomb_server: Server) -> None:
    """Eight children of 100 MiB each stay under any per-process limit; together they must
    not get past the execution's memory limit."""
    server = bomb_server
    with HealthWatch(server) as watch:
        answer = server.execute(attack(MEMORY_IN_CHILDREN, children=8, each_mb=100, hold_s=1.2))
    body = answer.json()
    if answer.status == 200:
        evidence = body["result"]
        assert evidence["children"] >= 4, f"{server.mode}: could not even fork: {evidence}"
        assert evidence["held_mb"] <= MEMORY_MB + 16, f"{server.mode}: {evidence}"
    else:
        assert answer.status == 400 and body["error"] == "MEMORY_LIMIT", describe(answer)
    watch.check(min_polls=0)
    assert_healthy(server)


FORK_BOMB = """
def main():
    started = time.monotonic()
    forked, failed, errors = 0, 0, set()
    for _ in range(10_000):
        if time.monotonic() - started > 1.5:
            break
        try:
            pid = os.fork()
        except OSError as error:
            failed += 1
            errors.add(errname(error))
            time.sleep(0.0005)  # keep trying for the whole 1.5 s
            continue
        if pid == 0:
            try:
                time.sleep(10)
            finally:
                os._exit(0)
        forked += 1
    return {"forked": forked, "failed": failed, "errors": sorted(errors), "window": window()}
"""


def test_fork_bomb_is_contained(bomb_server: Server) -> None:
    server = bomb_server
    with HealthWatch(server) as watch:
        started = time.monotonic()
        answer = server.execute(attack(FORK_BOMB))
        elapsed = time.monotonic() - started
    body = answer.json()
    assert elapsed < WALL_S + ANSWER_GRACE_S, f"answered after {elapsed:.1f} s: {describe(answer)}"
    assert answer.status == 200, describe(answer)  # main() returns once the limit holds
    evidence = body["result"]
    assert evidence["forked"] <= MAX_PROCESSES, evidence
    assert evidence["failed"] > 0, evidence
    assert evidence["errors"] == ["EAGAIN"], evidence  # the process limit, nothing else
    watch.check()
    assert_healthy(server)


FORK_AFTERWARDS = """
def main():
    children, errors = [], []
    for _ in range(8):
        try:
            pid = os.fork()
        except OSError as error:
            errors.append(errname(error))
            continue
        if pid == 0:
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "errors": errors}
"""


def test_a_fork_bomb_does_not_starve_later_executions(bomb_server: Server) -> None:
    """What a fork bomb leaves behind (even dead, unreaped children of the uid) must not count
    against the process limit of the executions that later get the same slot."""
    server = bomb_server
    bombs = run_concurrently(server, attack(FORK_BOMB), attack(FORK_BOMB), delay_s=0.1)
    assert all(answer.status == 200 for answer in bombs), [describe(bomb) for bomb in bombs]
    assert_overlap(*(bomb.json()["result"]["window"] for bomb in bombs))  # both slots at once
    for _ in range(2):  # slots rotate: both are checked
        evidence = result_of(server, attack(FORK_AFTERWARDS))
        assert evidence["forked"] == 8, f"{server.mode}: a later execution cannot fork: {evidence}"
    assert_healthy(server)


# --------------------------------------------------------------------------------------------
# Result forging
# --------------------------------------------------------------------------------------------

FORGE = """
FORGED = b'{"status": "ok"}\\n"FORGED"'
null = os.open("/dev/null", os.O_WRONLY)
for fd in range(3, 1024):
    if fd == null:
        continue
    try:
        os.write(fd, FORGED)
        if PARAMS["hijack"]:
            os.dup2(null, fd)  # and let the real report go nowhere
    except OSError:
        pass
print('{"status": "ok"}')
print('"FORGED"')
print('{"result": "FORGED", "stdout": ""}')


def main():
    return "REAL"
"""


@pytest.mark.parametrize("hijack", [False, True], ids=["append", "hijack-channel"])
def test_result_cannot_be_forged(server: Server, hijack: bool) -> None:
    """The script writes a forged report to every descriptor it has (and, hijacking, points
    them all at /dev/null afterwards). The answer is main()'s value or an error, never the
    forgery."""
    answer = server.execute(attack(FORGE, hijack=hijack))
    body = answer.json()
    if "result" in body:
        assert answer.status == 200, describe(answer)
        assert body["result"] == "REAL", f"{server.mode}: forged result accepted: {body}"
    else:  # the channel was garbled (or, hijacked, the real report went to /dev/null)
        assert answer.status == 500 and body["error"] == "EMPTY_OUTPUT", describe(answer)
    assert_healthy(server)


# --------------------------------------------------------------------------------------------
# nsjail mode
# --------------------------------------------------------------------------------------------

NSJAIL_JAIL = """
def main():
    child = os.fork()
    if child == 0:
        time.sleep(3)
        os._exit(0)
    try:
        return {
            "pid": os.getpid(),
            "pids": pids(),
            "child": child,
            "hostname": socket.gethostname(),
            "root": sorted(os.listdir("/")),
            "write_root": attempt(lambda: open("/probe", "w")),
            "mkdir_usr": attempt(lambda: os.mkdir("/usr/probe")),
            "unshare": libc_result(LIBC.unshare(0x10000000)),
            "unshare_net": libc_result(LIBC.unshare(0x40000000)),
            "mount": libc_result(LIBC.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
            "ptrace": libc_result(LIBC.ptrace(16, child, None, None)),
            "sethostname": libc_result(LIBC.sethostname(b"evil", 4)),
            "seccomp": status_field("Seccomp"),
        }
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
"""


def test_nsjail_namespaces_read_only_root_and_seccomp(server: Server) -> None:
    if server.family != "nsjail":
        pytest.skip("nsjail modes only")
    evidence = result_of(server, attack(NSJAIL_JAIL))
    assert evidence["pid"] <= 2, evidence
    assert set(evidence["pids"]) <= {evidence["pid"], evidence["child"]}, evidence
    assert evidence["hostname"] == "sandbox", evidence
    assert evidence["write_root"] == "EROFS", evidence
    assert evidence["mkdir_usr"] == "EROFS", evidence
    for call in ("unshare", "unshare_net", "mount", "ptrace"):
        assert evidence[call] == "EPERM", (call, evidence)
    assert evidence["sethostname"] == "EPERM", evidence
    assert evidence["seccomp"] == "2", evidence
    # Only the runtime: none of the host's configuration, homes, state or projects.
    assert not {"etc", "home", "root", "var", "work", "srv", "mnt"} & set(evidence["root"])


# --------------------------------------------------------------------------------------------
# rlimit mode
# --------------------------------------------------------------------------------------------

RLIMIT_JAIL = """
def main():
    stat = os.statvfs("/tmp")
    mounts = [line.split() for line in read("/proc/self/mountinfo").decode().splitlines()]
    tmp_types = [fields[fields.index("-") + 1] for fields in mounts if fields[4] == "/tmp"]
    families = {"AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6,
                "AF_NETLINK": socket.AF_NETLINK, "AF_PACKET": getattr(socket, "AF_PACKET", 17)}
    return {
        "hostname": socket.gethostname(),
        "namespaces": {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in PARAMS["namespaces"]},
        "tmp_bytes": stat.f_blocks * stat.f_frsize,
        "tmp_types": tmp_types,
        "tmp_listing": os.listdir("/tmp"),
        "sockets": {name: attempt(lambda: socket.socket(family, socket.SOCK_DGRAM).close())
                    for name, family in families.items()},
        "ptrace": libc_result(LIBC.ptrace(0, 0, None, None)),  # PTRACE_TRACEME
        "unshare": libc_result(LIBC.unshare(0x40000000)),
        "seccomp": status_field("Seccomp"),
    }
"""
HOST_NAMESPACES = ("net", "uts", "ipc", "mnt")


def rlimit_evidence(server: Server) -> Any:
    if server.family != "rlimit":
        pytest.skip("rlimit modes only")
    return result_of(server, attack(RLIMIT_JAIL, namespaces=list(HOST_NAMESPACES)))


def test_rlimit_hostname_differs_from_the_host(server: Server) -> None:
    evidence = rlimit_evidence(server)
    assert evidence["hostname"] != socket.gethostname(), (
        f"the script reads the host's hostname {evidence['hostname']!r}"
    )


def test_rlimit_namespaces_fresh_tmpfs_and_seccomp(server: Server) -> None:
    evidence = rlimit_evidence(server)
    for ns in HOST_NAMESPACES:
        assert evidence["namespaces"][ns] != os.readlink(f"/proc/self/ns/{ns}"), (ns, evidence)
    tmp_mb = server.health().json().get("limits", {}).get("tmp_size_mb", DEFAULT_TMP_MB)
    assert evidence["tmp_bytes"] == tmp_mb * MIB, evidence
    assert evidence["tmp_types"] and evidence["tmp_types"][-1] == "tmpfs", evidence
    assert evidence["tmp_listing"] == [], evidence
    assert all(result == "EAFNOSUPPORT" for result in evidence["sockets"].values()), evidence
    assert evidence["ptrace"] == "EPERM", evidence
    assert evidence["unshare"] == "EPERM", evidence
    assert evidence["seccomp"] == "2", evidence


# --------------------------------------------------------------------------------------------
# Long attacks (make test-slow)
# --------------------------------------------------------------------------------------------

EVERYTHING_AT_ONCE = """
def main():
    started = time.monotonic()
    hoard, children = [], 0
    for _ in range(10_000):
        if time.monotonic() - started > 10:
            break
        try:
            if os.fork() == 0:
                try:
                    hoard.append(bytearray(b"\\x01") * (16 << 20))
                    while True:
                        sys.stdout.write("z" * 4096)
                finally:
                    os._exit(0)
            children += 1
        except OSError:
            pass
        try:
            hoard.append(bytearray(b"\\x01") * (8 << 20))
        except MemoryError:
            hoard.clear()
        sys.stdout.write("w" * 65536)
    return children
"""


@pytest.mark.slow
def test_server_answers_health_while_both_slots_are_under_attack(bomb_server: Server) -> None:
    server = bomb_server
    with HealthWatch(server, interval_s=0.1) as watch:
        for _ in range(3):
            started = time.monotonic()
            first, second = run_concurrently(
                server, attack(EVERYTHING_AT_ONCE), attack(EVERYTHING_AT_ONCE), delay_s=0.1
            )
            elapsed = time.monotonic() - started
            for answer in (first, second):
                body = answer.json()
                # killed at the wall-clock limit, or for the memory its hoards took together
                assert body.get("error") in ("TIMEOUT", "MEMORY_LIMIT"), describe(answer)
                assert len(body.get("stdout", "").encode()) <= STDOUT_CAP
            assert elapsed < WALL_S + 0.1 + ANSWER_GRACE_S, f"answered after {elapsed:.1f} s"
    # The guarantee is HealthWatch's per-poll bound (every answer ok within 2 s); the count
    # only shows polling went on throughout, and on a loaded 2-core machine it varies.
    watch.check(min_polls=5)
    assert_healthy(server)


@pytest.mark.slow
def test_repeated_escape_attempts_leave_no_process(special_server: Server) -> None:
    server = special_server
    tags = [token() for _ in range(8)]
    for tag in tags:
        for script in (SURVIVORS, REAPER_FIGHTER):
            answer = server.execute(attack(script, token=tag, seconds=20, linger_s=0.2))
            assert answer.status == 200 and "result" in answer.json(), describe(answer)
    time.sleep(0.5)
    alive = [
        proc
        for tag in tags
        for proc in leftovers(tag, sandbox_uids(server))
        if proc["state"] != "Z"
    ]
    assert not alive, f"{server.mode}: processes survived: {alive}"
    assert_healthy(server)


PROCESS_LIST = attack(
    """
    def main():
        own = os.getuid()
        visible = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    visible.append([int(name), os.stat(f"/proc/{name}").st_uid])
                except OSError:
                    pass
        return {"uid": own, "visible": visible}
    """
)


def test_script_sees_no_process_but_its_own(server: Server) -> None:
    """The server's and other tenants' processes (and so their command lines) are invisible:
    nsjail gives the script its own PID namespace, the rlimit runner a hidepid=2 /proc."""
    seen = result_of(server, PROCESS_LIST)

    foreign = [pid for pid, uid in seen["visible"] if uid != seen["uid"]]
    assert seen["visible"], "the script should at least see itself"
    assert foreign == [], f"{server.mode}: foreign processes visible: {foreign}"
