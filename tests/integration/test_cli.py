"""The command line, run for real as a subprocess (in a PID namespace of its own when root, as
the test servers are): help and version, `run` with every request field and each kind of
failure, `check`, usage errors, and that `run` leaves no process or cgroup behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from adapters.settings import Settings
from domain.request import RequestRejected, parse_execute_body
from tests.integration.server import ROOT, TEST_ENV

CLI_TIMEOUT_S = 120  # a generous bound for commands that start sandboxes
QUICK_TIMEOUT_S = 30  # for commands that start nothing: one that served would never exit
IN_NAMESPACE = shutil.which("unshare") is not None and os.geteuid() == 0
NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
NEEDS_NAMESPACE = pytest.mark.skipif(
    not IN_NAMESPACE, reason="counting leftover processes needs a PID namespace (root)"
)
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the rlimit runners need root")
RUNNERS = ("nsjail-warm", "nsjail", "rlimit-warm", "rlimit")
EXPECTED_LIMITS = {
    "wall_time_s": 2.0,
    "cpu_time_s": 2.0,
    "memory_mb": 256,
    "max_processes": 32,
    "max_open_files": 64,
    "tmp_size_mb": 64,
    "stdout_cap_bytes": 65536,
    "result_cap_bytes": 65536,
    "script_cap_bytes": 32768,
}


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **TEST_ENV, **(extra or {})}
    if "FORCE_COMPAT" not in (extra or {}):
        env.pop("FORCE_COMPAT", None)
    return env


def safe_exec(
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    namespace: bool = IN_NAMESPACE,
    timeout: float = CLI_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "entrypoints", *args]
    return subprocess.run(
        [*NAMESPACE, *argv] if namespace else argv,
        input=stdin if stdin is not None else "",
        env=cli_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def answer(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON the command printed: exactly one line on stdout."""
    lines = done.stdout.splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    body = json.loads(lines[0])
    assert isinstance(body, dict)
    return body


def script_file(tmp_path: Path, source: str, name: str = "script.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


# ---------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["-h"],
        ["serve", "--help"],
        ["run", "--help"],
        ["check", "--help"],
        ["mcp", "--help"],
    ],
)
def test_help_prints_usage_and_never_serves(args: list[str]) -> None:
    done = safe_exec(*args, namespace=False, timeout=QUICK_TIMEOUT_S)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: safe-exec")
    assert "Exit status" in done.stdout or args[0] == "mcp"


def test_the_top_level_help_lists_every_command_and_the_exit_statuses() -> None:
    done = safe_exec("--help", namespace=False)

    for command in ("serve", "run", "check", "mcp"):
        assert f"\n  {command} " in done.stdout
    for status in ("0 success", "1 the script failed", "2 usage error", "3 no working sandbox"):
        assert status in " ".join(done.stdout.split())


def test_mcp_help_describes_the_stdio_tool() -> None:
    done = safe_exec("mcp", "--help", namespace=False)

    assert "serve the run_python tool over mcp stdio for desktop agents" in done.stdout.lower()


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_package_version(flag: str) -> None:
    done = safe_exec(flag, namespace=False, timeout=QUICK_TIMEOUT_S)

    assert done.returncode == 0
    assert done.stdout.strip() == f"safe-exec, version {version('safe-exec')}"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["bogus"], "No such command 'bogus'"),
        (["--bogus"], "No such option"),
        (["run"], "Missing argument 'FILE|-'"),
        (["run", "--bogus", "x.py"], "No such option"),
        (["run", "does-not-exist.py"], "does not exist"),
        (["run", "-", "--stdin", "-"], "cannot both be '-'"),
        (["check", "extra"], "unexpected extra argument"),
    ],
)
def test_usage_errors_exit_2_with_a_usage_line(args: list[str], complaint: str) -> None:
    done = safe_exec(*args, namespace=False, timeout=QUICK_TIMEOUT_S)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("Usage: safe-exec")
    assert complaint in done.stderr


@pytest.mark.parametrize(
    ("args", "name", "value"),
    [
        ([], "WALL_TIME_S", "abc"),
        ([], "PORT", "70000"),
        ([], "SANDBOX", "docker"),
        (["serve"], "PORT", "70000"),
        (["run", "-"], "WALL_TIME_S", "abc"),
        (["check"], "SANDBOX", "docker"),
    ],
)
def test_a_bad_setting_stops_every_command_with_one_clear_line(
    args: list[str], name: str, value: str
) -> None:
    done = safe_exec(*args, env={name: value}, namespace=False)

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert name in lines[0]
    assert repr(value) in lines[0]


# ------------------------------------------------------------------------------ run

HAPPY = """\
def main():
    print("hello")
    return {"answer": 42, "big": 2**70}
"""


def test_run_prints_the_apis_answer_on_one_line_and_exits_0(tmp_path: Path) -> None:
    done = safe_exec("run", script_file(tmp_path, HAPPY))

    assert done.returncode == 0, done.stderr
    body = answer(done)
    assert set(body) == {"result", "stdout", "stderr", "usage", "limits"}
    assert body["result"] == {"answer": 42, "big": 2**70}
    assert body["stdout"] == "hello\n"
    assert body["stderr"] == ""
    assert set(body["usage"]) == {"wall_time_ms", "cpu_time_ms", "peak_memory_bytes"}
    assert body["limits"] == EXPECTED_LIMITS


def test_run_pretty_prints_the_same_answer(tmp_path: Path) -> None:
    done = safe_exec("run", "--pretty", script_file(tmp_path, HAPPY))

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('{\n  "result": {\n')
    body = json.loads(done.stdout)
    assert body["result"] == {"answer": 42, "big": 2**70}
    assert body["stdout"] == "hello\n"


def test_run_passes_input_stdin_timeout_and_memory(tmp_path: Path) -> None:
    source = """\
import sys

def main(data):
    return {"data": data, "stdin": sys.stdin.read()}
"""
    stdin = tmp_path / "stdin.txt"
    stdin.write_text("line one\nline two\n")

    done = safe_exec(
        "run",
        script_file(tmp_path, source),
        "--input",
        '{"n": [1, 2.5, null], "s": "é"}',
        "--stdin",
        str(stdin),
        "--timeout",
        "1.5",
        "--memory",
        "128",
    )

    assert done.returncode == 0, done.stderr
    body = answer(done)
    assert body["result"] == {
        "data": {"n": [1, 2.5, None], "s": "é"},
        "stdin": "line one\nline two\n",
    }
    assert body["limits"] == {
        **EXPECTED_LIMITS,
        "wall_time_s": 1.5,
        "cpu_time_s": 1.5,
        "memory_mb": 128,
    }


def test_run_reads_the_script_from_standard_input() -> None:
    done = safe_exec("run", "-", "--input", "21", stdin="def main(n):\n    return n * 2\n")

    assert done.returncode == 0, done.stderr
    assert answer(done)["result"] == 42


def test_run_feeds_standard_input_to_the_script_with_stdin_dash(tmp_path: Path) -> None:
    source = "import sys\n\ndef main():\n    return sys.stdin.read().upper()\n"

    done = safe_exec("run", script_file(tmp_path, source), "--stdin", "-", stdin="piped")

    assert done.returncode == 0, done.stderr
    assert answer(done)["result"] == "PIPED"


@pytest.mark.parametrize(
    ("source", "args", "code"),
    [
        ("x = 1\n", [], "NO_MAIN"),
        ("def main(:\n    pass\n", [], "SYNTAX_ERROR"),
        ("def main():\n    raise ValueError('boom')\n", [], "RUNTIME_ERROR"),
        ("import time\n\ndef main():\n    time.sleep(30)\n", ["--timeout", "0.5"], "TIMEOUT"),
    ],
)
def test_a_failed_script_prints_its_error_and_exits_1(
    tmp_path: Path, source: str, args: list[str], code: str
) -> None:
    done = safe_exec("run", script_file(tmp_path, source), *args)

    assert done.returncode == 1, done.stderr
    body = answer(done)
    assert body["error"] == code
    assert body["message"]
    assert "limits" in body


def test_a_timeout_reports_the_lowered_limit(tmp_path: Path) -> None:
    source = "import time\n\ndef main():\n    time.sleep(30)\n"

    done = safe_exec("run", script_file(tmp_path, source), "--timeout", "0.5")

    assert answer(done)["limits"]["wall_time_s"] == 0.5


def api_message(fields: dict[str, Any]) -> str:
    """What the API answers for a body with these fields (the same parser, in process)."""
    limits = Settings.from_env({**TEST_ENV}).limits
    body = json.dumps({"script": "def main():\n    return 1\n", **fields}).encode()
    with pytest.raises(RequestRejected) as rejected:
        parse_execute_body(body, limits)
    return rejected.value.message


@pytest.mark.parametrize(
    ("flags", "fields"),
    [
        (["--timeout", "9"], {"timeout_s": 9}),
        (["--timeout", "0"], {"timeout_s": 0}),
        (["--timeout", "soon"], {"timeout_s": "soon"}),
        (["--memory", "1.5"], {"memory_mb": 1.5}),
        (["--memory", "4096"], {"memory_mb": 4096}),
        (["--memory", "8"], {"memory_mb": 8}),
    ],
)
def test_an_invalid_flag_value_gets_the_apis_invalid_request_answer(
    tmp_path: Path, flags: list[str], fields: dict[str, Any]
) -> None:
    done = safe_exec("run", script_file(tmp_path, "def main():\n    return 1\n"), *flags)

    assert done.returncode == 2
    body = answer(done)
    assert body["error"] == "INVALID_REQUEST"
    assert body["message"] == api_message(fields)
    assert body["field"] == next(iter(fields))


def test_a_script_over_the_size_cap_is_payload_too_large(tmp_path: Path) -> None:
    source = "def main():\n    return 1\n" + "#" * 40_000 + "\n"

    done = safe_exec("run", script_file(tmp_path, source))

    assert done.returncode == 2
    assert answer(done)["error"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "Expecting property name"),
        ("{'a': 1}", "Expecting property name"),
        ("NaN", "NaN is not a JSON value"),
        ('{"a": 1, "a": 2}', "'a' appears more than once"),
        ("", "Expecting value"),
    ],
)
def test_invalid_input_json_is_a_usage_error(tmp_path: Path, text: str, why: str) -> None:
    done = safe_exec("run", script_file(tmp_path, "def main(x):\n    return x\n"), "--input", text)

    assert done.returncode == 2
    assert done.stdout == ""
    assert "Invalid value for --input: not valid JSON" in done.stderr
    assert why in done.stderr


def test_without_a_working_sandbox_run_answers_unavailable_and_exits_3(tmp_path: Path) -> None:
    # No interpreter at that path: every runner's probe fails.
    done = safe_exec(
        "run",
        script_file(tmp_path, "def main():\n    return 1\n"),
        env={"SANDBOX_PYTHON": "/nonexistent/python3"},
    )

    assert done.returncode == 3, done.stderr
    assert answer(done)["error"] == "UNAVAILABLE"
    assert "unusable" in done.stderr


# ---------------------------------------------------------------------------- check


def test_check_probes_every_runner_and_names_the_one_the_service_uses() -> None:
    done = safe_exec("check", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [runner["name"] for runner in report["runners"]] == list(RUNNERS)
    usable = [runner["name"] for runner in report["runners"] if runner["usable"]]
    assert report["ok"] is True
    assert report["mode"] == "auto"
    assert report["sandbox"] == usable[0]
    assert report["limits"] == EXPECTED_LIMITS
    for runner in report["runners"]:
        assert runner["usable"] == (runner["reason"] is None)
        assert runner["isolation"], runner
    nsjail = {runner["name"]: runner for runner in report["runners"]}["nsjail"]
    assert nsjail["usable"], nsjail["reason"]
    assert {"user", "pid", "mount", "network", "seccomp"} <= set(nsjail["isolation"])


def test_check_in_text_lists_each_runner_with_its_isolation() -> None:
    done = safe_exec("check", env={"FORCE_COMPAT": "1"})

    lines = done.stdout.splitlines()
    for name in RUNNERS:
        assert any(line.split()[0] == name for line in lines if line.strip()), done.stdout
    assert sum(line.strip().startswith("isolation: ") for line in lines) == len(RUNNERS)
    assert any(line.startswith("limits: wall_time_s=2.0") for line in lines)
    assert lines[-1].startswith("FORCE_COMPAT=1: the service uses ")


def test_check_exits_3_when_no_runner_works() -> None:
    done = safe_exec("check", "--json", env={"SANDBOX_PYTHON": "/nonexistent/python3"})

    assert done.returncode == 3
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert report["sandbox"] is None
    assert all(not runner["usable"] and runner["reason"] for runner in report["runners"])


# -------------------------------------------------------------------- what run leaves

# Runs as PID 1 of a fresh PID namespace, so every process the CLI leaves behind is re-parented
# to it and shows in /proc. It starts `safe-exec run -v`, optionally interrupts it once the
# sandbox is chosen (the script sleeps), and reports the exit status and what is left.
SUPERVISOR = """\
import json, os, signal, subprocess, sys, time

argv, interrupt = json.loads(sys.argv[1]), sys.argv[2]
cli = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
if interrupt != "none":
    for line in cli.stderr:
        if "sandbox: using" in line:
            break
    time.sleep(0.5)  # the execution is under way (its script sleeps for 30 s)
    cli.send_signal(getattr(signal, interrupt))
stdout, stderr = cli.communicate(timeout=60)
time.sleep(0.2)  # a process the CLI killed is reaped by init (this process) below
while True:
    try:
        if os.waitpid(-1, os.WNOHANG) == (0, 0):
            break
    except ChildProcessError:
        break
left = []
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            left.append(open(f"/proc/{pid}/cmdline").read().replace("\\0", " "))
        except OSError:
            pass
print(json.dumps({"status": cli.returncode, "stdout": stdout, "stderr": stderr, "left": left}))
"""


def supervised_run(
    tmp_path: Path, mode: str, source: str, interrupt: str, env: Mapping[str, str] = {}
) -> tuple[dict[str, Any], list[Path]]:
    """Run the CLI under SUPERVISOR; return its report and the cgroups it could have left."""
    base = 1_000_000 + (os.getpid() % 500) * 20_000 + RUNNERS.index(mode) * 10_000
    argv: Sequence[str] = [sys.executable, "-m", "entrypoints", "run", "-v"]
    argv = [*argv, script_file(tmp_path, source)]
    done = subprocess.run(
        [*NAMESPACE, sys.executable, "-c", SUPERVISOR, json.dumps(argv), interrupt],
        env=cli_env({"SANDBOX": mode, "SANDBOX_UID_BASE": str(base), **env}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    return report, own_cgroup_dirs(f"safe-exec-{base}")


def own_cgroup_dirs(name: str) -> list[Path]:
    """Where a cgroup parent called `name` would be, under this process's memory and pids
    cgroups (cgroup v1, as adapters.sandbox.cgroups creates them)."""
    dirs = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _number, controllers, path = line.split(":", 2)
        for controller in ("memory", "pids"):
            if controller in controllers.split(","):
                dirs.append(Path("/sys/fs/cgroup", controller, path.lstrip("/"), name))
    return dirs


SLOW = pytest.mark.slow
MODES = (
    "nsjail-warm",
    "nsjail",
    pytest.param("rlimit-warm", marks=(NEEDS_ROOT, SLOW)),
    pytest.param("rlimit", marks=(NEEDS_ROOT, SLOW)),
)
# A warm runner's zygotes and a one-shot runner's execution are stopped differently; each
# signal is tested with one of them in `make test`, the other pairs in `make test-slow`.
INTERRUPTS = (
    ("nsjail-warm", "SIGINT"),
    ("nsjail", "SIGTERM"),
    pytest.param("nsjail-warm", "SIGTERM", marks=SLOW),
    pytest.param("nsjail", "SIGINT", marks=SLOW),
    pytest.param("rlimit-warm", "SIGINT", marks=(NEEDS_ROOT, SLOW)),
    pytest.param("rlimit", "SIGTERM", marks=(NEEDS_ROOT, SLOW)),
)


@NEEDS_NAMESPACE
@pytest.mark.parametrize("mode", MODES)
def test_run_leaves_no_process_and_no_cgroup_behind(tmp_path: Path, mode: str) -> None:
    # Generous limits: under load, a one-shot runner's probe (numpy and pandas) can take 2 s.
    report, cgroups = supervised_run(tmp_path, mode, HAPPY, "none", {"WALL_TIME_S": "20"})

    assert report["status"] == 0, report["stderr"]
    assert json.loads(report["stdout"])["result"]["answer"] == 42
    assert f"sandbox: using {mode} (" in report["stderr"]
    assert report["left"] == []
    assert [path for path in cgroups if path.exists()] == []


@NEEDS_NAMESPACE
@pytest.mark.parametrize(("mode", "signal_name"), INTERRUPTS)
def test_an_interrupted_run_stops_everything_it_started(
    tmp_path: Path, mode: str, signal_name: str
) -> None:
    source = "import time\n\ndef main():\n    time.sleep(30)\n"

    # A wall limit far beyond the interrupt: the run must end because it was interrupted.
    report, cgroups = supervised_run(tmp_path, mode, source, signal_name, {"WALL_TIME_S": "60"})

    assert report["status"] == 130, report["stderr"]
    assert report["stdout"] == ""
    assert "interrupted" in report["stderr"]
    assert report["left"] == []
    assert [path for path in cgroups if path.exists()] == []
