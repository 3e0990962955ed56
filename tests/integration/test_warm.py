"""Attacks on the warm runners' own guarantees (issue 5), in both warm modes.

A warm runner keeps, per execution slot, a plain zygote (the harness only) and a data zygote
(numpy and pandas preloaded) alive, and forks every execution from one of them. That is fast,
and it is exactly where one execution could leak into the next: through the zygote's memory,
its modules, its random state, its processes, or through a zygote that died. Each test here
sends real scripts to a real server over HTTP and checks the evidence they return, and, where a
script cannot see the damage (processes, cgroups, zygotes), the host side too (the tests run as
root and see every process of the server's PID namespace through /proc).

Helpers and the attack prelude come from test_isolation.py; zygotes are found from the host by
walking the server's process tree (`warm_standby` tells the warm runner's processes apart) and
told apart by whether numpy is mapped into them."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import NEEDS_ROOT
from tests.integration.server import (
    ROOT,
    TEST_ENV,
    HttpAnswer,
    Server,
    free_port,
    running_server,
    start_server,
    stop_server,
)
from tests.integration.test_isolation import (
    MIB,
    assert_healthy,
    attack,
    describe,
    leftovers,
    process_table,
    result_of,
    sandbox_uids,
    token,
    warm_standby,
)

WARM_MODES = ("nsjail-warm", pytest.param("rlimit-warm", marks=NEEDS_ROOT))
PLAIN = "plain"
DATA = "data"
KINDS = (PLAIN, DATA)
DATA_IMPORT = "import numpy, pandas\n"  # what routes a script to the data zygote (its AST)
CONTRACT_CODES = {
    "NO_MAIN",
    "NON_JSON_RETURN",
    "SYNTAX_ERROR",
    "RUNTIME_ERROR",
    "TIMEOUT",
    "MEMORY_LIMIT",
    "OUTPUT_LIMIT",
    "EMPTY_OUTPUT",
}
CGROUP_CONTROLLERS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids"))
# The first value of each generator right after seed(0): what a seeded zygote would replay.
RANDOM_AFTER_SEED_0 = random.Random(0).random()
NUMPY_AFTER_SEED_0 = 0.5488135039273248  # numpy.random.seed(0); numpy.random.random()


TRIVIAL = "def main():\n    return 'after'\n"


def routed(kind: str, script: str) -> str:
    """`script`, importing numpy and pandas first when it is meant for the data zygote."""
    return (DATA_IMPORT if kind == DATA else "") + script


# --------------------------------------------------------------------------------------------
# Servers and the host's view of them
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=WARM_MODES)
def warm_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One warm server per mode with the test limits (2 slots), shared by this module."""
    with running_server(request.param, tmp_path_factory.mktemp("warm")) as srv:
        assert srv.health().json()["sandbox"] == request.param, srv.log()
        yield srv


@pytest.fixture(scope="module", params=WARM_MODES)
def one_slot_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A warm server with a single slot, so every execution's zygote is known: the fault tests
    kill its zygotes on purpose."""
    extra = {"MAX_CONCURRENCY": "1"}
    with running_server(request.param, tmp_path_factory.mktemp("faults"), extra) as srv:
        assert srv.health().json()["sandbox"] == request.param, srv.log()
        yield srv


def server_tree(server: Server) -> list[dict[str, Any]]:
    """Every host process descending from the server's `unshare` (itself included)."""
    table = list(process_table())
    children: dict[int, list[int]] = {}
    for proc in table:
        children.setdefault(proc["ppid"], []).append(proc["pid"])
    found: set[int] = set()
    todo = [server.process.pid]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return [proc for proc in table if proc["pid"] in found]


def zygote_kind(pid: int) -> str | None:
    """DATA when numpy is mapped into the process, PLAIN when not, None when it is gone."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_bytes()
    except OSError:
        return None
    return DATA if b"numpy" in maps else PLAIN


def zygotes(server: Server) -> dict[int, dict[str, Any]]:
    """The server's live zygotes (warm processes whose parent is not one), by pid, each with
    its `kind` and `jail` (the nsjail process around it, or None)."""
    tree = server_tree(server)
    by_pid = {proc["pid"]: proc for proc in tree}
    standby = warm_standby(tree)
    found: dict[int, dict[str, Any]] = {}
    for pid in standby:
        proc = by_pid[pid]
        if proc["ppid"] in standby or proc["state"] == "Z":
            continue
        kind = zygote_kind(pid)
        if kind is None:
            continue
        parent = by_pid.get(proc["ppid"])
        jail = parent["pid"] if parent is not None and parent["name"] == "nsjail" else None
        found[pid] = {**proc, "kind": kind, "jail": jail}
    return found


def zygote_pids(server: Server) -> dict[str, set[int]]:
    pids: dict[str, set[int]] = {kind: set() for kind in KINDS}
    for pid, proc in zygotes(server).items():
        pids[proc["kind"]].add(pid)
    return pids


def the_zygote(server: Server, kind: str) -> dict[str, Any]:
    """The single zygote of `kind` of a one-slot server."""
    found = [proc for proc in zygotes(server).values() if proc["kind"] == kind]
    assert len(found) == 1, f"{server.mode}: expected one {kind} zygote, found {found}"
    return found[0]


def is_dead(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_dead(pids: list[int], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(is_dead(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still alive after {timeout_s} s: {pids}"
        time.sleep(0.02)


def kill_zygote(zygote: dict[str, Any], wait: bool) -> None:
    """SIGKILL a zygote from the host; with `wait`, return once it (and its nsjail) is dead."""
    os.kill(zygote["pid"], signal.SIGKILL)
    if wait:
        wait_dead([pid for pid in (zygote["pid"], zygote["jail"]) if pid is not None])


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a reused pid apart), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def safe_exec_cgroups() -> set[Path]:
    """Every `safe-exec-*` cgroup directory under the memory and pids hierarchies."""
    found: set[Path] = set()
    for controller in CGROUP_CONTROLLERS:
        with contextlib.suppress(OSError):
            found.update(path for path in controller.rglob("safe-exec-*") if path.is_dir())
    return found


def launch_server(mode: str, tmp_dir: Path) -> Server:
    """start_server's process, without waiting for the port or for warm-up."""
    port = free_port()
    env = {**os.environ, **TEST_ENV, "SANDBOX": mode, "PORT": str(port)}
    env.pop("FORCE_COMPAT", None)
    log_path = tmp_dir / f"server-{mode}-{port}.log"
    argv = [sys.executable, "-m", "entrypoints"]
    if os.geteuid() == 0:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(mode=mode, port=port, process=process, log_path=log_path)


def wait_for_port(server: Server, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"the server exited:\n{server.log()}"
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), timeout=1),
        ):
            return
        time.sleep(0.005)
    raise AssertionError(f"the port never opened:\n{server.log()}")


def expect_error(answer: HttpAnswer, status: int, code: str) -> dict[str, Any]:
    body = answer.json()
    assert (answer.status, body.get("error")) == (status, code), describe(answer)
    return dict(body)


# --------------------------------------------------------------------------------------------
# 1. Fresh state per execution
# --------------------------------------------------------------------------------------------

# Execution A: leaves every kind of trace it can, and returns proof that each one took hold.
LEAVE_TRACES = """
import builtins, colorsys, decimal, random, types

TAG = PARAMS["token"]
SOCKET_NAME = b"\\0warm-" + TAG.encode()
DATA = "pandas" in sys.modules


def daemon():
    # fork + setsid: a sleeping background process in a session of its own, holding the
    # abstract socket's name (it inherits the listener) and touching files in /tmp, /dev/shm.
    child = os.fork()
    if child:
        return child
    try:
        os.setsid()
        LIBC.prctl(15, TAG.encode()[:15], 0, 0, 0)  # PR_SET_NAME: the host looks for it
        for fd in (0, 1, 2):
            attempt(lambda: os.close(fd))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for directory in ("/dev/shm", "/tmp"):  # /tmp last: main() waits for it
                attempt(lambda: open(f"{directory}/{TAG}-alive", "w").close())
            time.sleep(0.1)
    finally:
        os._exit(0)


def main():
    for directory in ("/tmp", "/dev/shm"):
        with open(f"{directory}/{TAG}", "w") as handle:
            handle.write("trace")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(SOCKET_NAME)
    listener.listen(1)
    child = daemon()
    os.environ["WARM_TRACE"] = TAG
    os.putenv("WARM_TRACE_PUT", TAG)
    sys.modules["evil_" + TAG] = types.ModuleType("evil_" + TAG)
    setattr(builtins, "evil_" + TAG, True)
    json.dumps = lambda *args, **kwargs: "pwned"
    sys.setrecursionlimit(54321)
    decimal.getcontext().prec = 3
    random.seed(0)
    if DATA:  # no import statement: that would route the plain variant to the data zygote
        numpy, pandas = sys.modules["numpy"], sys.modules["pandas"]
        pandas.DataFrame.sum = lambda *args, **kwargs: 42
        numpy.mean = lambda *args, **kwargs: 42
        numpy.random.seed(0)
    deadline = time.monotonic() + 1.5
    while not os.path.exists(f"/tmp/{TAG}-alive") and time.monotonic() < deadline:
        time.sleep(0.02)
    evidence = {
        "files": sorted(os.listdir("/tmp") + os.listdir("/dev/shm")),
        "rebind": attempt(lambda: socket.socket(socket.AF_UNIX).bind(SOCKET_NAME)),
        "daemon": attempt(lambda: os.kill(child, 0)),
        "env": os.environ.get("WARM_TRACE"),
        "json": json.dumps({"a": 1}),
        "recursion": sys.getrecursionlimit(),
        "precision": decimal.getcontext().prec,
        "colorsys": "colorsys" in sys.modules,
    }
    if DATA:
        evidence["sum"] = pandas.DataFrame({"x": [1, 2, 3]}).sum()
        evidence["mean"] = numpy.mean([1, 2, 3])
    return evidence
"""

# Execution B: what a later execution sees. Everything but "slot" must match a baseline taken
# before A ran, from the same kind of zygote.
LOOK_FOR_TRACES = """
import builtins, decimal

TAG = PARAMS["token"]


def main():
    evidence = {
        "tmp": sorted(os.listdir("/tmp")),
        "shm": sorted(os.listdir("/dev/shm")),
        "processes": pids(),
        "bind": attempt(lambda: socket.socket(socket.AF_UNIX).bind(b"\\0warm-" + TAG.encode())),
        "environ": dict(os.environ),
        "modules": sorted(m for m in sys.modules if m == "colorsys" or m.startswith("evil_")),
        "builtin": hasattr(builtins, "evil_" + TAG),
        "json": json.dumps({"a": 1}),
        "recursion": sys.getrecursionlimit(),
        "precision": decimal.getcontext().prec,
        "third": str(decimal.Decimal(1) / decimal.Decimal(3)),
        "preloaded": "pandas" in sys.modules,
        # Which slot ran it: the uid (rlimit) or the host uid it maps to (nsjail).
        "slot": [os.getuid(), read("/proc/self/uid_map").decode().split()],
    }
    if "pandas" in sys.modules:
        numpy, pandas = sys.modules["numpy"], sys.modules["pandas"]
        evidence["sum"] = int(pandas.DataFrame({"x": [1, 2, 3]}).sum()["x"])
        evidence["mean"] = float(numpy.mean([1, 2, 3]))
    return evidence
"""


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_one_execution_does_is_visible_to_later_ones(
    warm_server: Server, kind: str
) -> None:
    """Attacks "fresh state per execution": files in /tmp and /dev/shm, a setsid'd sleeping
    process, an abstract socket's name, the environment, sys.modules, builtins, a module global
    (json.dumps, the recursion limit, decimal's context) and, from the data zygote, monkeypatched
    pandas/numpy functions. Later executions from both zygotes and both slots see none of it."""
    server, tag = warm_server, token()
    probe = {k: routed(k, attack(LOOK_FOR_TRACES, token=tag)) for k in KINDS}
    baseline = {k: result_of(server, probe[k]) for k in KINDS}
    assert baseline[PLAIN]["preloaded"] is False and baseline[DATA]["preloaded"] is True
    assert baseline[DATA]["sum"] == 6 and baseline[DATA]["mean"] == 2.0

    traces = result_of(server, routed(kind, attack(LEAVE_TRACES, token=tag)))
    expected = {
        "files": sorted([tag, f"{tag}-alive"] * 2),
        "rebind": "EADDRINUSE",
        "daemon": "ok",
        "env": tag,
        "json": "pwned",
        "recursion": 54321,
        "precision": 3,
        "colorsys": True,
    }
    if kind == DATA:
        expected |= {"sum": 42, "mean": 42}
    assert traces == expected, f"{server.mode}: execution A's traces did not take hold"
    # From the host: A's background process died with A.
    assert leftovers(tag, sandbox_uids(server)) == [], f"{server.mode}: A's daemon survived"

    # Slots are handed out in turn: two in a row of each kind reach both slots.
    later = [result_of(server, probe[k]) for _ in range(2) for k in KINDS for _ in range(2)]
    for evidence in later:
        kind_seen = DATA if evidence["preloaded"] else PLAIN
        assert evidence == {**baseline[kind_seen], "slot": evidence["slot"]}, (
            f"{server.mode}: a later {kind_seen} execution sees A's traces"
        )
    slots = {str(e["slot"]) for e in later if e["preloaded"] == (kind == DATA)}
    assert len(slots) == 2, f"the later executions did not cover both slots: {slots}"


RANDOMNESS = """
import os, random, uuid


def main():
    values = {
        "random": random.random(),
        "urandom": os.urandom(16).hex(),
        "uuid4": str(uuid.uuid4()),
    }
    if "numpy" in sys.modules:
        numpy = sys.modules["numpy"]
        values["numpy_legacy"] = numpy.random.random()
        values["numpy_rng"] = float(numpy.random.default_rng().random())
    return values
"""

SEED_EVERYTHING = """
import random, sys


def main():
    random.seed(0)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)
    return "seeded"
"""


@pytest.mark.parametrize("kind", KINDS)
def test_randomness_is_fresh_in_every_execution(warm_server: Server, kind: str) -> None:
    """Attacks "randomness is fresh per execution": a fork inherits the zygote's generator
    states, so without reseeding every execution would draw the same numbers. After an
    execution that seeds `random` and numpy's global generator with 0, five executions draw
    five distinct values from each source (`random`, numpy's legacy global generator, a new
    numpy Generator, os.urandom, uuid4), none of them the seeded replay."""
    server = warm_server
    seed = routed(kind, "import sys\n" + SEED_EVERYTHING)
    assert result_of(server, seed) == "seeded"
    draws = [result_of(server, routed(kind, "import sys\n" + RANDOMNESS)) for _ in range(5)]
    sources = {"random", "urandom", "uuid4"} | (
        {"numpy_legacy", "numpy_rng"} if kind == DATA else set()
    )
    assert all(set(draw) == sources for draw in draws), draws
    for source in sources:
        values = [draw[source] for draw in draws]
        assert len(set(values)) == 5, f"{server.mode}: {source} repeats across executions: {values}"
    assert RANDOM_AFTER_SEED_0 not in [draw["random"] for draw in draws], draws
    if kind == DATA:
        assert NUMPY_AFTER_SEED_0 not in [draw["numpy_legacy"] for draw in draws], draws


OWN_CHILD_IN_PROC = """
def main():
    child = os.fork()
    if child == 0:
        time.sleep(2)
        os._exit(0)
    try:
        return {
            "pids": pids(),
            "child": child,
            "status": attempt(lambda: read(f"/proc/{child}/status")),
        }
    finally:
        os.kill(child, signal.SIGKILL)
"""


def test_script_sees_its_own_child_processes(warm_server: Server) -> None:
    """Attacks "/proc shows only the script's own processes" from the other side: fresh per
    execution, it still shows the script's own forked child (PID 2 of its namespace) - which
    hidepid=2 hides when a setuid() without exec leaves the execution non-dumpable."""
    evidence = result_of(warm_server, attack(OWN_CHILD_IN_PROC))
    assert evidence == {"pids": [1, 2], "child": 2, "status": "ok"}


# --------------------------------------------------------------------------------------------
# 2. Routing by imports
# --------------------------------------------------------------------------------------------

ROUTING_CASES = {
    # The import comes after the check: only an AST scan of the whole script routes it.
    "import-after-check": (
        "import sys\nBEFORE = ['numpy' in sys.modules, 'pandas' in sys.modules]\n"
        "import pandas\n\ndef main():\n    return BEFORE\n",
        [True, True],
    ),
    "import-inside-main": (
        "import sys\nBEFORE = 'pandas' in sys.modules\n\n"
        "def main():\n    import pandas\n    return [BEFORE, pandas.DataFrame({'x': [2]}).x.sum()"
        ".item()]\n",
        [True, 2],
    ),
    "from-numpy-submodule": (
        "import sys\nBEFORE = 'pandas' in sys.modules\nfrom numpy.linalg import norm\n\n"
        "def main():\n    return [BEFORE, float(norm([3, 4]))]\n",
        [True, 5.0],
    ),
    "dynamic-import": (
        "import sys\nBEFORE = 'pandas' in sys.modules\n\n"
        "def main():\n    return [BEFORE, __import__('pandas').__name__]\n",
        [True, "pandas"],
    ),
    "no-import": (
        "import sys\n\ndef main():\n    return ['numpy' in sys.modules, 'pandas' in sys.modules]\n",
        [False, False],
    ),
    # Mentions in strings and comments are no imports (AST, not regexes).
    "mentions-only": (
        "import sys\nNOTE = 'import pandas'\n# import numpy\n\n"
        "def main():\n    return ['numpy' in sys.modules, 'pandas' in sys.modules, NOTE]\n",
        [False, False, "import pandas"],
    ),
}


@pytest.mark.parametrize("case", sorted(ROUTING_CASES))
def test_scripts_are_routed_by_their_imports(warm_server: Server, case: str) -> None:
    """Attacks routing: a script whose syntax tree imports numpy or pandas anywhere (even after
    the line that looks, inside main(), or through __import__) runs where they are preloaded;
    one that only mentions them in a string or a comment runs in the plain zygote."""
    script, expected = ROUTING_CASES[case]
    assert result_of(warm_server, script) == expected


def test_unparsable_script_with_data_imports_reports_the_exact_syntax_error(
    warm_server: Server,
) -> None:
    """Attacks routing's failure path: a script importing pandas that does not parse (so its
    imports cannot be known) still gets SYNTAX_ERROR naming the right line."""
    script = "import pandas\nimport numpy\n\ndef main():\n    return [1,\n\nx = 1 +\n"
    body = expect_error(warm_server.execute(script), 400, "SYNTAX_ERROR")
    assert body["exception"] == "SyntaxError"
    assert body["line"] == 5, body
    assert "line 5" in body["message"], body


# --------------------------------------------------------------------------------------------
# 3. Signalling the parent, everyone, or init
# --------------------------------------------------------------------------------------------

SIGNAL_ATTACKS = {
    # PID 1 of its namespace: getppid() is 0, so this is kill(0): the script's process group,
    # which must not hold the zygote's standby executions (same uid): the next execution
    # would get a dead one. SIGSTOP to the group would leave it a stopped one (a TIMEOUT).
    "parent": "import os\n\ndef main():\n    os.kill(os.getppid(), 9)\n    return os.getppid()\n",
    "everyone": "import os\n\ndef main():\n    os.kill(-1, 9)\n    return 'alive'\n",
    "init": "import os\n\ndef main():\n    os.kill(1, 9)\n    return os.getpid()\n",
    "group-stop": "import os\n\ndef main():\n    os.kill(0, 19)\n    return 'stopped'\n",
}
# What the attacking execution itself answers (the same in both modes): the script is PID 1 of
# its namespace, so the kernel ignores the signals it sends itself; kill(-1) finds no other
# process in its namespace (ProcessLookupError is ESRCH).
SIGNAL_ANSWERS: dict[str, tuple[int, str, Any]] = {
    "parent": (200, "result", 0),
    "everyone": (400, "error", "RUNTIME_ERROR"),
    "init": (200, "result", 1),
    "group-stop": (200, "result", "stopped"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attack_name", sorted(SIGNAL_ATTACKS))
def test_signalling_parent_everyone_or_init_harms_only_the_script(
    one_slot_server: Server, kind: str, attack_name: str
) -> None:
    """Attacks "a script that signals its parent or kill(-1) harms only itself": the attacking
    execution (SIGKILL to its parent, its process group, everyone, init; SIGSTOP to its group)
    ends with its own contract answer, no zygote dies, and the next executions from the same
    zygote (one slot: they are its standby processes, forked before the attack) and from the
    other one succeed; /health stays ok."""
    server = one_slot_server
    assert result_of(server, routed(kind, TRIVIAL)) == "after"
    time.sleep(0.3)  # the zygote's standby executions are forked and ready again
    before = zygote_pids(server)
    assert all(len(pids) == 1 for pids in before.values()), before
    answer = server.execute(routed(kind, SIGNAL_ATTACKS[attack_name]))
    status, field, value = SIGNAL_ANSWERS[attack_name]
    body = answer.json()
    assert (answer.status, body.get(field)) == (status, value), describe(answer)
    if field == "error":
        assert body["error"] in CONTRACT_CODES
        assert body["exception"] == "ProcessLookupError", body
    assert zygote_pids(server) == before, f"{server.mode}: a zygote died"
    nexts = [server.execute(routed(k, TRIVIAL)) for k in (kind, kind, kind, PLAIN, DATA)]
    failed = [describe(answer) for answer in nexts if answer.status != 200]
    assert failed == [], f"{server.mode}: executions after the attack failed: {failed}"
    assert_healthy(server)


# --------------------------------------------------------------------------------------------
# 4. Zygote faults
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_idle_zygote_is_replaced(one_slot_server: Server, kind: str) -> None:
    """Attacks "a zygote that dies is replaced automatically": SIGKILL the idle zygote of one
    kind from the host; once it is dead, the next executions of that kind succeed from a new
    zygote (new pid), and the other kind's zygote is untouched."""
    server = one_slot_server
    assert result_of(server, routed(kind, TRIVIAL)) == "after"
    victim = the_zygote(server, kind)
    other = the_zygote(server, DATA if kind == PLAIN else PLAIN)
    kill_zygote(victim, wait=True)
    for _ in range(3):
        assert result_of(server, routed(kind, TRIVIAL)) == "after"
    replacement = the_zygote(server, kind)
    assert replacement["pid"] != victim["pid"]
    assert the_zygote(server, other["kind"])["pid"] == other["pid"]
    assert_healthy(server)


def test_the_execution_right_after_a_zygote_dies_succeeds(one_slot_server: Server) -> None:
    """Attacks "a zygote that dies is replaced; later executions succeed" without giving the
    service time to notice: an execution sent right after its idle zygote was SIGKILLed (no
    execution was in flight) must still succeed. Three rounds per zygote kind."""
    server = one_slot_server
    answers: list[str] = []
    for kind in KINDS:
        for _ in range(3):
            # A healthy, warm zygote with its next execution forked ahead and ready.
            for _attempt in range(3):
                if server.execute(routed(kind, TRIVIAL)).status == 200:
                    break
            time.sleep(0.2)
            victim = the_zygote(server, kind)
            kill_zygote(victim, wait=False)
            answer = server.execute(routed(kind, TRIVIAL))
            answers.append(f"{kind}: {describe(answer)}")
            wait_dead([pid for pid in (victim["pid"], victim["jail"]) if pid is not None])
    failed = [answer for answer in answers if "HTTP 200" not in answer]
    assert failed == [], f"{server.mode}: {len(failed)} of {len(answers)} failed: {failed}"


SLEEP_IN_FLIGHT = """
def main():
    LIBC.prctl(15, PARAMS["token"].encode()[:15], 0, 0, 0)  # PR_SET_NAME: the host waits for it
    time.sleep(1)
    return "finished"
"""


@pytest.mark.parametrize("kind", KINDS)
def test_zygote_killed_during_an_execution(one_slot_server: Server, kind: str) -> None:
    """Attacks "an execution in flight then gets a documented error, and later ones succeed":
    while a 1 s script runs (the host sees it running), its zygote is SIGKILLed. That execution
    answers 500 EMPTY_OUTPUT blaming the sandbox, before the script could have finished; once
    the zygote is dead the next execution succeeds from a replacement."""
    server, tag = one_slot_server, token()
    assert result_of(server, routed(kind, TRIVIAL)) == "after"
    victim = the_zygote(server, kind)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(server.execute, routed(kind, attack(SLEEP_IN_FLIGHT, token=tag)))
        deadline = time.monotonic() + 5
        while not any(proc["name"] == tag for proc in server_tree(server)):
            assert time.monotonic() < deadline, "the script never started"
            time.sleep(0.01)
        kill_zygote(victim, wait=False)
        answer = running.result(timeout=30)
    body = expect_error(answer, 500, "EMPTY_OUTPUT")
    assert body["message"].startswith("The sandbox failed:"), body
    assert "sandbox" in body["message"].split(":", 1)[1], body
    assert body["usage"]["wall_time_ms"] < 1000, body  # killed, not finished
    wait_dead([pid for pid in (victim["pid"], victim["jail"]) if pid is not None])
    assert result_of(server, routed(kind, TRIVIAL)) == "after"
    assert the_zygote(server, kind)["pid"] != victim["pid"]
    assert_healthy(server)


# --------------------------------------------------------------------------------------------
# 5. Concurrency
# --------------------------------------------------------------------------------------------

TIMED_SLEEP = """
import os, time


def main():
    start = time.time()
    time.sleep(1)
    return [start, time.time(), os.getuid(), open("/proc/self/uid_map").read().split()]
"""


def test_two_slots_run_two_executions_at_once(warm_server: Server) -> None:
    """Attacks "MAX_CONCURRENCY slots run at once": two 1 s sleeps sent together finish in well
    under 2 s, their [start, end] intervals (the scripts' own clocks) overlap by most of a
    second, and they ran in different slots."""
    server = warm_server
    barrier = threading.Barrier(2)

    def send() -> HttpAnswer:
        barrier.wait()
        return server.execute(TIMED_SLEEP)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        answers = [future.result(timeout=30) for future in [pool.submit(send) for _ in "ab"]]
    elapsed = time.monotonic() - started
    assert all(answer.status == 200 for answer in answers), [describe(a) for a in answers]
    (start_a, end_a, *slot_a), (start_b, end_b, *slot_b) = [a.json()["result"] for a in answers]
    assert elapsed < 1.7, f"{server.mode}: two 1 s executions took {elapsed:.2f} s"
    overlap = min(end_a, end_b) - max(start_a, start_b)
    assert overlap > 0.8, f"{server.mode}: the executions overlapped only {overlap:.3f} s"
    assert slot_a != slot_b, "both ran in the same slot"


# --------------------------------------------------------------------------------------------
# 6. Shutdown
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", WARM_MODES)
def test_sigterm_leaves_no_process_and_no_cgroup(mode: str, tmp_path: Path) -> None:
    """Attacks "SIGTERM leaves no zygote, child or cgroup behind": after a few executions from
    both zygotes, SIGTERM the server; it exits 0 after a clean shutdown, none of its processes
    (zygotes, their standby executions, nsjails) remain, and the cgroup directories of its
    lease (safe-exec-<uid base>, with a warm-slot group per slot) are gone: the service
    stopped its zygotes itself (a live process in a group would have kept it)."""
    before = safe_exec_cgroups()
    server = start_server(mode, tmp_path)
    try:
        for kind in KINDS:
            for _ in range(2):
                assert result_of(server, routed(kind, TRIVIAL)) == "after"
        health = server.health().json()
        tree = {proc["pid"]: start_time(proc["pid"]) for proc in server_tree(server)}
        assert len(zygotes(server)) == 4, zygotes(server)
        name = f"safe-exec-{sandbox_uids(server).start}"
        ours = {path for path in safe_exec_cgroups() if path.name == name}
        slot_groups = [sorted(p.name for p in group.iterdir() if p.is_dir()) for group in ours]
    finally:
        stop_server(server)
    assert server.process.returncode == 0, server.log()[-3000:]
    assert "Application shutdown complete" in server.log()
    survivors = [pid for pid, started in tree.items() if start_time(pid) == started]
    assert survivors == [], f"{mode}: processes outlived the server: {survivors}"
    if os.geteuid() == 0 and "cgroup-limits" in health["isolation"]:
        assert len(ours) == 2, f"expected a memory and a pids group named {name}: {ours}"
        assert slot_groups == [["warm-slot-0", "warm-slot-1"]] * 2, slot_groups
        left = sorted(str(path) for path in ours if path.exists())
        assert left == [], f"{mode}: cgroups left behind: {left}"
        assert {p for p in safe_exec_cgroups() - before if p.name == name} == set()


# --------------------------------------------------------------------------------------------
# 7. Start-up
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", WARM_MODES)
def test_health_answers_at_once_and_execute_waits_for_warm_up(mode: str, tmp_path: Path) -> None:
    """Attacks "the service answers /health quickly; /execute waits for warming instead of
    failing": right after the port opens /health answers 200 within 1 s while warming (no
    sandbox named yet), and a POST /execute sent then gets a real result, not UNAVAILABLE."""
    server = launch_server(mode, tmp_path)
    try:
        wait_for_port(server)
        opened = time.monotonic()
        first = server.health()
        latency = time.monotonic() - opened
        assert first.status == 200, describe(first)
        assert latency < 1.0, f"/health took {latency:.2f} s after the port opened"
        body = first.json()
        assert (body["ok"], body["warming"], body["sandbox"]) == (True, True, None), body
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            plain = pool.submit(server.execute, "def main():\n    return 'during warm-up'\n")
            data = pool.submit(
                server.execute, "import pandas\n\ndef main():\n    return pandas.__name__\n"
            )
            answers = [plain.result(timeout=90), data.result(timeout=90)]
        assert [a.status for a in answers] == [200, 200], [describe(a) for a in answers]
        assert [a.json()["result"] for a in answers] == ["during warm-up", "pandas"]
        after = server.health().json()
        assert (after["ok"], after.get("warming", False), after["sandbox"]) == (True, False, mode)
    finally:
        stop_server(server)


# --------------------------------------------------------------------------------------------
# 8. Usage
# --------------------------------------------------------------------------------------------

ALLOCATE_50_MIB = """
def main():
    block = b"\\x01" * (50 * 1024 * 1024)  # written, so every page is resident
    return len(block)
"""


@pytest.mark.parametrize("kind", KINDS)
def test_usage_counts_the_execution_not_the_zygote(warm_server: Server, kind: str) -> None:
    """Attacks "usage reports the execution's own CPU and peak memory, not the zygote's
    baseline": a trivial script (even one importing pandas, which the data zygote preloaded)
    reports under 50 ms of CPU and a small peak although its zygote holds far more; a script
    that writes 50 MiB reports a peak of at least 50 MiB and under 200 MiB."""
    server = warm_server
    zygote_rss = max(
        int(line.split()[1]) * 1024
        for pid in zygote_pids(server)[kind]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    trivial = server.execute(routed(kind, TRIVIAL))
    assert trivial.status == 200, describe(trivial)
    usage = trivial.json()["usage"]
    assert usage["cpu_time_ms"] < 50, usage
    assert usage["peak_memory_bytes"] < 16 * MIB, (usage, zygote_rss)
    if kind == DATA:
        assert zygote_rss > 32 * MIB, f"the data zygote holds only {zygote_rss} bytes"
    big = server.execute(routed(kind, ALLOCATE_50_MIB))
    assert big.status == 200 and big.json()["result"] == 50 * MIB, describe(big)
    peak = big.json()["usage"]["peak_memory_bytes"]
    assert 50 * MIB <= peak < 200 * MIB, f"{server.mode}: peak {peak} bytes for 50 MiB"
