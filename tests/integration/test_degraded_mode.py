"""The rlimit runner's degraded mode (no namespaces: some gVisor setups, forced here with
SANDBOX_NAMESPACES=off): /health lists only the layers really in force, and each of them is
attacked. Landlock stands in for the minimal root: outside the runtime, four devices and the
private work directory, every path is refused."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from adapters.sandbox import landlock
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rlimit runner needs root")
LANDLOCK_ABI = landlock.abi()


@pytest.fixture(scope="module")
def degraded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SANDBOX_NAMESPACES": "off"}
    with running_server("rlimit", tmp_path_factory.mktemp("degraded"), env) as srv:
        yield srv


def test_health_lists_exactly_the_layers_in_force(degraded: Server) -> None:
    health = degraded.health().json()

    assert health["sandbox"] == "rlimit"
    layers = set(health["isolation"])
    expected = {"uid", "rlimits", "session", "no-new-privs", "private-workdir", "seccomp"}
    assert expected <= layers
    assert not layers & {"network", "mount", "ipc", "uts", "minimal-root", "private-tmpfs"}
    assert (f"landlock-abi-{LANDLOCK_ABI}" in layers) == (LANDLOCK_ABI > 0)


def test_the_warm_runner_refuses_degraded_mode(tmp_path_factory: pytest.TempPathFactory) -> None:
    env = {"SANDBOX_NAMESPACES": "off"}
    with running_server("rlimit-warm", tmp_path_factory.mktemp("warm"), env) as srv:
        health = srv.health()

        assert health.status == 503
        assert health.json()["error"] == "UNAVAILABLE"
        assert "rlimit-warm is unusable" in srv.log()
        assert "needs mount, PID and network namespaces" in srv.log()


FILES = r"""
import errno, os

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return errno.errorcode[error.errno]

def write(path):
    with open(path, "w") as handle:
        handle.write("x")

def main():
    home = os.environ["TMPDIR"]
    return {
        "cwd_is_home": os.getcwd() == home,
        "own_write": attempt(lambda: write(os.path.join(home, "mine.txt"))),
        "own_list": attempt(lambda: os.listdir(home)),
        "own_mkdir": attempt(lambda: os.mkdir(os.path.join(home, "d"))),
        "passwd": attempt(lambda: open("/etc/passwd").read()),
        "list_root": attempt(lambda: os.listdir("/")),
        "host_tmp_write": attempt(lambda: write("/tmp/safe-exec-degraded-probe")),
        "host_tmp_list": attempt(lambda: os.listdir("/tmp")),
        "proc": attempt(lambda: os.listdir("/proc")),
        "cgroup": attempt(lambda: open("/sys/fs/cgroup/memory/memory.usage_in_bytes").read()),
        "ptmx": attempt(lambda: os.close(os.open("/dev/ptmx", os.O_RDWR))),
        "dev_null": attempt(lambda: write("/dev/null")),
        "runtime_read": attempt(lambda: os.listdir(os.path.dirname(os.__file__))),
    }
"""


@pytest.mark.skipif(LANDLOCK_ABI == 0, reason="the kernel has no Landlock")
def test_landlock_refuses_every_path_but_the_runtime_devices_and_own_directory(
    degraded: Server,
) -> None:
    answer = degraded.execute(FILES)

    assert answer.status == 200, answer.body
    found = answer.json()["result"]
    assert found["cwd_is_home"] is True
    for allowed in ("own_write", "own_list", "own_mkdir", "dev_null", "runtime_read"):
        assert found[allowed] == "ok", (allowed, found)
    for refused in (
        "passwd",
        "list_root",
        "host_tmp_write",
        "host_tmp_list",
        "proc",
        "cgroup",
        "ptmx",
    ):
        assert found[refused] == "EACCES", (refused, found)
    assert not os.path.exists("/tmp/safe-exec-degraded-probe")


def test_the_private_directory_is_gone_after_the_execution(degraded: Server) -> None:
    first = degraded.execute(
        "import os\ndef main():\n    open(os.environ['TMPDIR'] + '/left', 'w').write('x')\n"
        "    return os.environ['TMPDIR']"
    )
    home = first.json()["result"]

    assert first.status == 200, first.body
    assert not os.path.exists(home)


ABSTRACT = r"""
import errno, socket

def main():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(NAME)
        return "connected"
    except OSError as error:
        return errno.errorcode[error.errno]
"""


@pytest.mark.skipif(LANDLOCK_ABI < 6, reason="Landlock scoping needs ABI 6")
def test_a_host_abstract_socket_is_out_of_scope(degraded: Server) -> None:
    name = b"\0safe-exec-degraded-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(name)
        listener.listen(1)
        answer = degraded.execute(ABSTRACT.replace("NAME", repr(name)))

    assert answer.status == 200, answer.body
    assert answer.json()["result"] == "EPERM"


def test_network_families_are_still_refused(degraded: Server) -> None:
    script = (
        "import errno, socket\n"
        "def main():\n"
        "    try:\n"
        "        socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "        return 'created'\n"
        "    except OSError as error:\n"
        "        return errno.errorcode[error.errno]\n"
    )
    answer = degraded.execute(script)

    assert answer.json()["result"] == "EAFNOSUPPORT", answer.body
