"""The syscall policy (adapters/sandbox/seccomp.py), attacked from inside every runner: each
refused call must fail with its specific errno, and a call the attack cannot even make (a
typo, a missing symbol) fails the test instead of passing for a refusal."""

from __future__ import annotations

import platform

import pytest

from tests.integration.server import Server

ATTACK = r"""
import ctypes, errno, os, socket

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long


def outcome(result):
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]


def family(number):
    try:
        socket.socket(number, socket.SOCK_STREAM).close()
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]


def main():
    numbers = %(numbers)r
    found = {name: outcome(LIBC.syscall(nr, 0, 0, 0, 0)) for name, nr in numbers.items()}
    ctx = ctypes.c_ulong(0)
    found["io_setup"] = outcome(LIBC.syscall(numbers["io_setup"], 8, ctypes.byref(ctx)))
    found["families"] = {str(f): family(f) for f in (2, 10, 16, 17, 38, 40)}
    found["unix"] = family(1)
    return found
"""

NUMBERS = {
    "x86_64": {
        "inotify_init1": 294,
        "fanotify_init": 300,
        "io_setup": 206,
        "ptrace": 101,
        "unshare": 272,
        "bpf": 321,
        "x32_getpid": 0x40000000 | 39,
        "getpid": 39,
    },
    "aarch64": {
        "inotify_init1": 26,
        "fanotify_init": 262,
        "io_setup": 0,
        "ptrace": 117,
        "unshare": 97,
        "bpf": 280,
        "getpid": 172,
    },
}


@pytest.mark.skipif(platform.machine() not in NUMBERS, reason="no syscall table for this machine")
def test_refused_syscalls_fail_with_their_errno(server: Server) -> None:
    numbers = NUMBERS[platform.machine()]
    answer = server.execute(ATTACK % {"numbers": numbers})
    assert answer.status == 200, answer.body
    found = answer.json()["result"]

    assert found["getpid"] == "ok", found  # the attack itself works
    for name in ("inotify_init1", "fanotify_init", "io_setup", "ptrace", "unshare", "bpf"):
        assert found[name] == "EPERM", (name, found)
    if "x32_getpid" in numbers:
        assert found["x32_getpid"] == "EPERM", found  # the x32 ABI does not bypass the rules
    # AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, AF_ALG, AF_VSOCK: only AF_UNIX exists.
    assert set(found["families"].values()) == {"EAFNOSUPPORT"}, found
    assert found["unix"] == "ok", found


PRIVILEGES = r"""
def main():
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines())
    root = [line.split() for line in open("/proc/self/mountinfo") if line.split()[4] == "/"]
    return {
        "no_new_privs": status["NoNewPrivs"].strip(),
        "cap_eff": status["CapEff"].strip(),
        "cap_bnd": status["CapBnd"].strip(),
        "root_options": root[-1][5].split(",") if root else [],
    }
"""


def test_no_privilege_can_be_gained(server: Server) -> None:
    """no_new_privs is set in every runner (with or without seccomp), no capability is held
    or could come back from an exec, and the host tree the rlimit runners show is nosuid."""
    answer = server.execute(PRIVILEGES)
    assert answer.status == 200, answer.body
    found = answer.json()["result"]

    assert found["no_new_privs"] == "1", found
    assert int(found["cap_eff"], 16) == 0, found
    if server.family == "rlimit":
        assert {"ro", "nosuid"} <= set(found["root_options"]), found
    if server.mode.endswith("-warm"):
        assert int(found["cap_bnd"], 16) == 0, found  # the zygote emptied the bounding set
