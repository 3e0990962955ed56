"""Executions see a minimal root (nsjail's, or the rlimit runners' own): only the runtime,
a few devices and empty scratch directories. The host's files, unix sockets (D-Bus, syslog),
FIFOs, ptys, setuid binaries and cgroup files are not there to be reached."""

from __future__ import annotations

import os

from tests.integration.server import Server

LOOK = r"""
import errno, os, socket

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]

def connect(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)

def main():
    return {
        "root": sorted(os.listdir("/")),
        "dev": sorted(os.listdir("/dev")),
        "usr_bin": sorted(os.listdir("/usr/bin")),
        "dbus": attempt(lambda: connect("/run/dbus/system_bus_socket")),
        "syslog": attempt(lambda: connect("/dev/log")),
        "ptmx": attempt(lambda: os.close(os.open("/dev/ptmx", os.O_RDWR))),
        "passwd": attempt(lambda: open("/etc/passwd").read()),
        "cgroup": attempt(lambda: os.listdir("/sys/fs/cgroup")),
        "null": attempt(lambda: open("/dev/null", "w").write("x")),
    }
"""


def test_the_host_tree_is_not_there(server: Server) -> None:
    answer = server.execute(LOOK)
    assert answer.status == 200, answer.body
    found = answer.json()["result"]

    assert set(found["root"]) <= {"dev", "lib", "lib64", "opt", "proc", "tmp", "usr", "var"}
    assert "etc" not in found["root"] and "run" not in found["root"], found
    assert set(found["dev"]) == {"null", "random", "shm", "urandom", "zero"}, found
    assert found["usr_bin"] == [os.path.basename(os.path.realpath("/usr/bin/python3.11"))]
    for reach in ("dbus", "syslog", "ptmx", "passwd", "cgroup"):
        assert found[reach] == "ENOENT", (reach, found)
    assert found["null"] == "ok", found
