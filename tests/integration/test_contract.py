"""Contract tests: shared/contract.md version 1, over real HTTP, in both sandbox modes.

Every test talks to a real server (tests/integration/server.py) the way a client does: it sends
bytes and reads the status, the headers and the JSON body. Nothing is mocked. The session's
`server` fixture runs each test once per sandbox mode; servers that need other settings are
module-scoped fixtures below, so each one starts once per mode.

The limits come from TEST_ENV: 2 s wall and CPU time, 256 MiB memory, 64 KiB stdout and result
caps, a 32 KiB script cap, a 128 KiB body cap and 2 execution slots.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.conftest import MODES
from tests.integration.server import TEST_ENV, HttpAnswer, Server, running_server

WALL_LIMIT_S = float(TEST_ENV["WALL_TIME_S"])
MEMORY_LIMIT_BYTES = int(TEST_ENV["MEMORY_MB"]) * 1024 * 1024
STDOUT_CAP = int(TEST_ENV["STDOUT_CAP_BYTES"])
RESULT_CAP = int(TEST_ENV["RESULT_CAP_BYTES"])
SCRIPT_CAP = int(TEST_ENV["MAX_SCRIPT_BYTES"])
BODY_CAP = int(TEST_ENV["MAX_BODY_BYTES"])

# "The answer comes within about 1 s of the limit": asserted generously, this is no benchmark.
ANSWER_SLACK_S = 1.5

# The contract's error table: code -> HTTP status.
ERROR_STATUS = {
    "NO_MAIN": 400,
    "NON_JSON_RETURN": 400,
    "SYNTAX_ERROR": 400,
    "RUNTIME_ERROR": 400,
    "TIMEOUT": 400,
    "MEMORY_LIMIT": 400,
    "OUTPUT_LIMIT": 400,
    "EMPTY_OUTPUT": 500,
    "INVALID_REQUEST": 400,
    "PAYLOAD_TOO_LARGE": 413,
    "BUSY": 429,
    "UNAVAILABLE": 503,
}

HELLO = 'def main():\n  print("hi")\n  return {"sum": 1+2}\n'


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def post_raw(server: Server, body: bytes) -> HttpAnswer:
    return server.request("POST", "/execute", body, {"Content-Type": "application/json"})


def post_json(server: Server, payload: Any) -> HttpAnswer:
    return post_raw(server, json.dumps(payload).encode())


def header(answer: HttpAnswer, name: str) -> str | None:
    """A response header, looked up case-insensitively (uvicorn sends lower-case names)."""
    wanted = name.lower()
    return next((value for key, value in answer.headers.items() if key.lower() == wanted), None)


def expect_success(answer: HttpAnswer) -> dict[str, Any]:
    """A 200 whose body carries `result` and `stdout`; returns the body."""
    assert answer.status == 200, answer.body
    body = answer.json()
    assert isinstance(body, dict), answer.body
    assert "error" not in body, body
    assert "result" in body, body
    assert isinstance(body["stdout"], str), body
    return body


def expect_error(answer: HttpAnswer, code: str) -> dict[str, Any]:
    """A failure with the contract's status and body shape {error, message, stdout, ...}."""
    assert answer.status == ERROR_STATUS[code], answer.body
    body = answer.json()
    assert isinstance(body, dict), answer.body
    assert body.get("error") == code, body
    assert isinstance(body.get("message"), str), body
    assert body["message"].strip(), body
    assert isinstance(body.get("stdout"), str), body
    assert "result" not in body, body
    return body


def assert_overlap(*windows: list[float]) -> None:
    """The executions' [start, end] windows (host time, reported by the scripts) overlap."""
    latest_start = max(start for start, _end in windows)
    earliest_end = min(end for _start, end in windows)
    assert latest_start < earliest_end, f"the executions did not overlap: {windows}"


def assert_serving(server: Server) -> None:
    """The server is healthy and still runs scripts correctly."""
    health = server.health()
    assert health.status == 200, health.body
    assert health.json()["ok"] is True, health.body
    body = expect_success(server.execute("def main():\n    return 'still here'\n"))
    assert body["result"] == "still here"


def timed_execute(server: Server, script: str) -> tuple[HttpAnswer, float]:
    started = time.monotonic()
    answer = server.execute(script)
    return answer, time.monotonic() - started


def assert_user_frames_only(traceback: str) -> None:
    """Every frame of the traceback is the user's script; nothing of the harness shows."""
    frames = [line.strip() for line in traceback.splitlines() if line.strip().startswith("File ")]
    assert frames, traceback
    assert all(frame.startswith('File "<script>"') for frame in frames), traceback
    for internal in ("harness", "<string>", "_bootstrap", "exec(code", "site-packages"):
        assert internal not in traceback, traceback


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` of an OpenAPI document."""
    while "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


# ---------------------------------------------------------------------------------------------
# Servers with other settings (one per mode, started once for the module)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=MODES)
def cpu_limited_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A CPU limit (1 s) well below the wall-clock limit (3 s), and 3 slots on 2 cores."""
    env = {"CPU_TIME_S": "1", "WALL_TIME_S": "3", "MAX_CONCURRENCY": "3"}
    with running_server(request.param, tmp_path_factory.mktemp("cpu"), env) as srv:
        yield srv


@pytest.fixture(scope="module", params=MODES)
def single_slot_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One execution slot and no queue: a second concurrent request must be refused. The wall
    limit is generous so that the slow request finishes even on a loaded machine."""
    env = {"MAX_CONCURRENCY": "1", "QUEUE_SIZE": "0", "WALL_TIME_S": "10", "CPU_TIME_S": "2"}
    with running_server(request.param, tmp_path_factory.mktemp("busy"), env) as srv:
        yield srv


@pytest.fixture(scope="module")
def sandboxless_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """nsjail required but broken (/bin/false): the service has no working sandbox."""
    env = {"NSJAIL": "/bin/false"}
    with running_server("nsjail", tmp_path_factory.mktemp("nosandbox"), env) as srv:
        yield srv


# ---------------------------------------------------------------------------------------------
# /health and the issue's examples
# ---------------------------------------------------------------------------------------------


def test_health_is_ok_and_names_the_sandbox_mode(server: Server) -> None:
    answer = server.health()
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["ok"] is True, body
    assert body["sandbox"] == server.mode, body


def test_issue_example_returns_result_and_stdout(server: Server) -> None:
    body = expect_success(server.execute(HELLO))
    assert body["result"] == {"sum": 3}
    assert body["stdout"] == "hi\n"


@pytest.mark.parametrize(
    ("raw_body", "code", "stdout"),
    [
        pytest.param(b'{"script":"print(123)"}', "NO_MAIN", "123\n", id="print-only"),
        pytest.param(
            b'{"script":"def main(): return set([1,2])"}', "NON_JSON_RETURN", "", id="set"
        ),
        pytest.param(
            b'{"script":"def main():\\n while True: pass"}', "TIMEOUT", "", id="endless-loop"
        ),
    ],
)
def test_original_examples(server: Server, raw_body: bytes, code: str, stdout: str) -> None:
    started = time.monotonic()
    answer = post_raw(server, raw_body)
    elapsed = time.monotonic() - started
    body = expect_error(answer, code)
    assert body["stdout"] == stdout
    if code == "TIMEOUT":
        assert WALL_LIMIT_S * 0.9 <= elapsed < WALL_LIMIT_S + ANSWER_SLACK_S, elapsed
    assert_serving(server)


# ---------------------------------------------------------------------------------------------
# Execution errors, one contract row at a time
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "stdout"),
    [
        pytest.param("print(123)", "123\n", id="no-main"),
        pytest.param("main = 5\n", "", id="main-is-an-int"),
        pytest.param("main = None\n", "", id="main-is-none"),
        pytest.param("def helper():\n    return 1\n", "", id="other-function-only"),
        pytest.param(
            'if __name__ == "__main__":\n    def main():\n        return 1\n',
            "",
            id="main-behind-name-guard",
        ),
    ],
)
def test_no_main(server: Server, script: str, stdout: str) -> None:
    body = expect_error(server.execute(script), "NO_MAIN")
    assert body["stdout"] == stdout
    assert_serving(server)


@pytest.mark.parametrize(
    "returned",
    [
        pytest.param("set([1, 2])", id="set"),
        pytest.param('b"bytes"', id="bytes"),
        pytest.param('float("nan")', id="nan"),
        pytest.param('float("inf")', id="infinity"),
        pytest.param('{"deep": [1, float("-inf")]}', id="nested-negative-infinity"),
        pytest.param("cycle()", id="cycle"),
        pytest.param("object()", id="object"),
        pytest.param("{(1, 2): 3}", id="tuple-key"),
        pytest.param("complex(1, 2)", id="complex"),
    ],
)
def test_non_json_return(server: Server, returned: str) -> None:
    script = (
        "def cycle():\n"
        "    items = []\n"
        "    items.append(items)\n"
        "    return items\n"
        "\n"
        "def main():\n"
        '    print("computed")\n'
        f"    return {returned}\n"
    )
    body = expect_error(server.execute(script), "NON_JSON_RETURN")
    assert body["stdout"] == "computed\n"
    assert_serving(server)


@pytest.mark.parametrize(
    ("script", "line"),
    [
        pytest.param("def main():\n    return 1\n\nthis is not ) python\n", 4, id="invalid-syntax"),
        pytest.param("def main():\nreturn 1\n", 2, id="indentation"),
        pytest.param("x = 1\ndef main(:\n    return x\n", 2, id="bad-signature"),
        pytest.param('def main():\n    return "unterminated\n', 2, id="unterminated-string"),
    ],
)
def test_syntax_error_names_the_line(server: Server, script: str, line: int) -> None:
    body = expect_error(server.execute(script), "SYNTAX_ERROR")
    assert body["line"] == line, body
    assert f"line {line}" in body["message"], body["message"]
    assert body["stdout"] == ""
    assert_serving(server)


def test_syntax_error_runs_nothing(server: Server) -> None:
    body = expect_error(server.execute('print("top")\ndef main(:\n    pass\n'), "SYNTAX_ERROR")
    assert body["stdout"] == ""


@pytest.mark.parametrize(
    ("script", "exception", "stdout", "frame"),
    [
        pytest.param(
            'def main():\n    print("before")\n    raise ValueError("boom")\n',
            "ValueError",
            "before\n",
            'File "<script>", line 3, in main',
            id="raise-in-main",
        ),
        pytest.param(
            'print("top")\nraise KeyError("k")\n\ndef main():\n    return 1\n',
            "KeyError",
            "top\n",
            'File "<script>", line 2, in <module>',
            id="raise-at-top-level",
        ),
        pytest.param(
            "def helper(n):\n    return 1 / n\n\ndef main():\n    return helper(0)\n",
            "ZeroDivisionError",
            "",
            'File "<script>", line 2, in helper',
            id="raise-in-helper",
        ),
        pytest.param(
            'import json\n\ndef main():\n    return json.loads("{")\n',
            "JSONDecodeError",
            "",
            'File "<script>", line 4, in main',
            id="raise-inside-stdlib",
        ),
        pytest.param(
            'import sys\n\ndef main():\n    print("leaving")\n    sys.exit(3)\n',
            "SystemExit",
            "leaving\n",
            'File "<script>", line 5, in main',
            id="sys-exit-in-main",
        ),
        pytest.param(
            "def main():\n    raise SystemExit(0)\n",
            "SystemExit",
            "",
            'File "<script>", line 2, in main',
            id="system-exit-zero",
        ),
        pytest.param(
            "print('{\"result\": 42}')\nraise SystemExit(0)\n",
            "SystemExit",
            '{"result": 42}\n',
            'File "<script>", line 2, in <module>',
            id="system-exit-at-top-level",
        ),
        pytest.param(
            "def main():\n    raise KeyboardInterrupt\n",
            "KeyboardInterrupt",
            "",
            'File "<script>", line 2, in main',
            id="keyboard-interrupt",
        ),
    ],
)
def test_runtime_error(
    server: Server, script: str, exception: str, stdout: str, frame: str
) -> None:
    body = expect_error(server.execute(script), "RUNTIME_ERROR")
    assert body["exception"] == exception, body
    assert body["stdout"] == stdout
    traceback = body["traceback"]
    assert frame in traceback, traceback
    assert exception in traceback.splitlines()[-1], traceback
    assert_user_frames_only(traceback)
    assert_serving(server)


def test_runtime_error_traceback_shows_the_whole_user_call_chain(server: Server) -> None:
    script = (
        "def inner():\n"
        '    raise RuntimeError("deep")\n'
        "\n"
        "def outer():\n"
        "    inner()\n"
        "\n"
        "def main():\n"
        "    outer()\n"
    )
    body = expect_error(server.execute(script), "RUNTIME_ERROR")
    traceback = body["traceback"]
    for frame in ("line 8, in main", "line 5, in outer", "line 2, in inner"):
        assert frame in traceback, traceback
    assert "RuntimeError: deep" in traceback, traceback
    assert_user_frames_only(traceback)


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("import time\n\ndef main():\n    time.sleep(60)\n", id="sleep"),
        pytest.param("def main():\n    while True:\n        pass\n", id="busy-loop"),
        pytest.param(
            "import os\n\ndef main():\n    os.fork()\n    while True:\n        pass\n",
            id="forked-busy-loop",
        ),
    ],
)
def test_timeout_answers_within_about_a_second_of_the_limit(server: Server, script: str) -> None:
    answer, elapsed = timed_execute(server, script)
    body = expect_error(answer, "TIMEOUT")
    if body["limit"] == "cpu_time":
        # Processes spinning on several cores together reach the execution's CPU limit
        # before the wall clock does: never sooner than the cores of this machine allow.
        earliest = float(TEST_ENV["CPU_TIME_S"]) / (os.cpu_count() or 1) * 0.9
    else:
        assert body["limit"] == "wall_time", body
        earliest = WALL_LIMIT_S * 0.9
    assert earliest <= elapsed < WALL_LIMIT_S + ANSWER_SLACK_S, (elapsed, body)
    assert_serving(server)


def test_timeout_keeps_the_stdout_printed_before_it(server: Server) -> None:
    script = 'import time\n\ndef main():\n    print("working")\n    time.sleep(60)\n'
    body = expect_error(server.execute(script), "TIMEOUT")
    assert body["stdout"] == "working\n", body
    assert body["limit"] == "wall_time", body  # asleep: no CPU limit can have fired


def test_cpu_limit_is_a_timeout(cpu_limited_server: Server) -> None:
    answer, elapsed = timed_execute(
        cpu_limited_server, "def main():\n    while True:\n        pass\n"
    )
    body = expect_error(answer, "TIMEOUT")
    assert body["limit"] == "cpu_time", body
    # CPU limit 1 s, wall limit 3 s: answered before the wall limit could have fired.
    assert elapsed < 1 + ANSWER_SLACK_S, elapsed
    assert_serving(cpu_limited_server)


# Spins forever, printing the host time when it starts and every 250 ms (line-buffered stdout
# comes back with the TIMEOUT): the first and last lines bound a window it surely ran in.
TIMED_SPIN = """import time

def main():
    last = time.time()
    print(last)
    while True:
        now = time.time()
        if now - last > 0.25:
            print(now)
            last = now
"""


def test_cpu_limit_under_contention_is_still_a_timeout(cpu_limited_server: Server) -> None:
    """Three CPU-bound scripts at once on two cores: each one hits its CPU limit, and each
    answer says so, however the kernel's CPU accounting rounds. Each prints the host time as it
    spins, so the answers show that the three really ran at the same time."""
    with ThreadPoolExecutor(3) as pool:
        for _round in range(3):
            answers = list(pool.map(lambda _: cpu_limited_server.execute(TIMED_SPIN), range(3)))
            windows = []
            for answer in answers:
                body = expect_error(answer, "TIMEOUT")
                # on a machine shared with other load the 3 s wall limit may come first
                assert body["limit"] in ("cpu_time", "wall_time"), body
                times = [float(line) for line in body["stdout"].splitlines()]
                assert len(times) >= 2, body
                windows.append([times[0], times[-1]])
            assert_overlap(*windows)


def test_cpu_limit_does_not_count_sleeping(cpu_limited_server: Server) -> None:
    script = 'import time\n\ndef main():\n    time.sleep(1.5)\n    return "rested"\n'
    body = expect_success(cpu_limited_server.execute(script))
    assert body["result"] == "rested"


@pytest.mark.parametrize(
    ("script", "stdout"),
    [
        pytest.param(
            "def main():\n    block = bytearray(400 * 1024 * 1024)\n    return len(block)\n",
            "",
            id="one-big-bytearray",
        ),
        pytest.param(
            "def main():\n"
            '    print("growing")\n'
            "    chunks = []\n"
            "    while True:\n"
            '        chunks.append(b"x" * (1024 * 1024))\n',
            "growing\n",
            id="growing-list",
        ),
        pytest.param(
            "import numpy as np\n\ndef main():\n    return float(np.ones(10**9).sum())\n",
            "",
            id="numpy-array",
        ),
    ],
)
def test_memory_limit(server: Server, script: str, stdout: str) -> None:
    body = expect_error(server.execute(script), "MEMORY_LIMIT")
    assert body["stdout"] == stdout
    assert_serving(server)


def test_memory_below_the_limit_is_usable(server: Server) -> None:
    script = "def main():\n    block = bytearray(100 * 1024 * 1024)\n    return len(block)\n"
    body = expect_success(server.execute(script))
    assert body["result"] == 100 * 1024 * 1024
    assert body["usage"]["peak_memory_bytes"] >= 100 * 1024 * 1024, body["usage"]


@pytest.mark.parametrize(
    "returned",
    [
        pytest.param(f'"x" * {RESULT_CAP}', id="long-string"),
        pytest.param(f"list(range({RESULT_CAP // 3}))", id="long-list"),
        pytest.param('"y" * (10 * 1024 * 1024)', id="ten-megabytes"),
    ],
)
def test_result_over_its_cap_is_output_limit(server: Server, returned: str) -> None:
    script = f'def main():\n    print("partial")\n    return {returned}\n'
    body = expect_error(server.execute(script), "OUTPUT_LIMIT")
    assert body["stdout"] == "partial\n"
    assert_serving(server)


def test_result_exactly_at_its_cap_is_returned(server: Server) -> None:
    # A JSON string of n ASCII characters encodes to n + 2 bytes.
    body = expect_success(server.execute(f'def main():\n    return "x" * {RESULT_CAP - 2}\n'))
    assert body["result"] == "x" * (RESULT_CAP - 2)


@pytest.mark.parametrize(
    ("script", "stdout"),
    [
        pytest.param(
            "import os, sys\n\n"
            "def main():\n"
            '    print("before")\n'
            "    sys.stdout.flush()\n"
            "    os._exit(0)\n",
            "before\n",
            id="os-exit-0-in-main",
        ),
        pytest.param("import os\nos._exit(3)\n\ndef main():\n    return 1\n", "", id="os-exit-3"),
        pytest.param("import ctypes\n\ndef main():\n    ctypes.string_at(0)\n", "", id="segfault"),
        pytest.param(
            "import os, sys\nprint('{\"result\": 42}')\nsys.stdout.flush()\nos._exit(0)\n",
            '{"result": 42}\n',
            id="result-printed-then-exit-0",
        ),
    ],
)
def test_empty_output_when_the_process_dies_without_reporting(
    server: Server, script: str, stdout: str
) -> None:
    body = expect_error(server.execute(script), "EMPTY_OUTPUT")
    assert body["stdout"] == stdout
    assert_serving(server)


def test_self_signal_is_empty_output_or_ignored(server: Server) -> None:
    """Where the script is PID 1 of its namespace, the kernel drops signals a process sends
    itself; it then lives on and its result counts. Anywhere else it dies: EMPTY_OUTPUT."""
    script = (
        "import os, signal\n\n"
        "def main():\n"
        "    print(os.getpid())\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
        '    return "survived"\n'
    )
    answer = server.execute(script)
    pid = int(answer.json()["stdout"])
    if pid == 1:
        assert expect_success(answer)["result"] == "survived"
    else:
        expect_error(answer, "EMPTY_OUTPUT")
    assert_serving(server)


# ---------------------------------------------------------------------------------------------
# stdout, stderr and usage
# ---------------------------------------------------------------------------------------------


def test_stdout_over_its_cap_is_cut_and_not_an_error(server: Server) -> None:
    script = f'def main():\n    print("a" * {STDOUT_CAP + 50_000})\n    return "done"\n'
    body = expect_success(server.execute(script))
    assert body["result"] == "done"
    assert body["stdout_truncated"] is True
    assert body["stdout"] == "a" * STDOUT_CAP


def test_stdout_flood_is_cut_at_the_cap(server: Server) -> None:
    script = (
        "import sys\n\n"
        "def main():\n"
        '    chunk = "y" * 65536\n'
        "    for _ in range(320):\n"  # 20 MiB
        "        sys.stdout.write(chunk)\n"
        '    return "flooded"\n'
    )
    body = expect_success(server.execute(script))
    assert body["result"] == "flooded"
    assert body["stdout_truncated"] is True
    assert body["stdout"] == "y" * STDOUT_CAP
    assert_serving(server)


def test_stdout_under_its_cap_is_not_marked_truncated(server: Server) -> None:
    body = expect_success(server.execute(f'def main():\n    print("b" * {STDOUT_CAP - 1})\n'))
    assert body["stdout"] == "b" * (STDOUT_CAP - 1) + "\n"
    assert body.get("stdout_truncated", False) is False


def test_stderr_is_captured_separately(server: Server) -> None:
    script = (
        "import sys\n\n"
        "def main():\n"
        '    print("to stdout")\n'
        '    print("to stderr", file=sys.stderr)\n'
        "    return 1\n"
    )
    body = expect_success(server.execute(script))
    assert body["stdout"] == "to stdout\n"
    assert body["stderr"] == "to stderr\n"


def test_usage_reports_time_and_memory(server: Server) -> None:
    script = "import time\n\ndef main():\n    time.sleep(0.3)\n    return 1\n"
    usage = expect_success(server.execute(script))["usage"]
    assert set(usage) >= {"wall_time_ms", "cpu_time_ms", "peak_memory_bytes"}, usage
    assert 300 <= usage["wall_time_ms"] < WALL_LIMIT_S * 1000, usage
    assert 0 <= usage["cpu_time_ms"] < usage["wall_time_ms"], usage
    assert isinstance(usage["peak_memory_bytes"], int), usage
    assert 0 < usage["peak_memory_bytes"] < MEMORY_LIMIT_BYTES, usage


def test_errors_report_usage_too(server: Server) -> None:
    body = expect_error(server.execute("def main():\n    raise ValueError\n"), "RUNTIME_ERROR")
    assert set(body["usage"]) >= {"wall_time_ms", "cpu_time_ms", "peak_memory_bytes"}, body


# ---------------------------------------------------------------------------------------------
# Execution semantics
# ---------------------------------------------------------------------------------------------


def test_script_runs_as_a_module_not_as_main(server: Server) -> None:
    script = "NAME = __name__\n\ndef main():\n    return [NAME, __name__]\n"
    result = expect_success(server.execute(script))["result"]
    assert "__main__" not in result, result


def test_top_level_runs_before_main_and_both_print(server: Server) -> None:
    script = (
        "STATE = []\n"
        'STATE.append("top")\n'
        'print("top level")\n'
        "\n"
        "def main():\n"
        '    STATE.append("main")\n'
        '    print("in main")\n'
        "    return STATE\n"
    )
    body = expect_success(server.execute(script))
    assert body["result"] == ["top", "main"]
    assert body["stdout"] == "top level\nin main\n"


def test_main_is_called_with_no_arguments(server: Server) -> None:
    script = "def main(*args, **kwargs):\n    return [len(args), len(kwargs)]\n"
    assert expect_success(server.execute(script))["result"] == [0, 0]


def test_main_without_parameters_is_callable(server: Server) -> None:
    assert expect_success(server.execute("def main():\n    return None\n"))["result"] is None


def test_dict_keys_follow_json_dumps(server: Server) -> None:
    script = 'def main():\n    return {3: "int", 2.5: "float", True: "bool", None: "none"}\n'
    result = expect_success(server.execute(script))["result"]
    assert result == {"3": "int", "2.5": "float", "true": "bool", "null": "none"}


def test_json_values_round_trip(server: Server) -> None:
    script = 'def main():\n    return (1, [2.5, {"a": None}], "s", True, False, -0.0, 0.1)\n'
    result = expect_success(server.execute(script))["result"]
    assert result[:6] == [1, [2.5, {"a": None}], "s", True, False, 0.0]
    assert math.copysign(1.0, result[5]) == -1.0
    assert result[6] == 0.1


def test_big_integers_come_back_exact(server: Server) -> None:
    script = 'def main():\n    return {"big": 2**100, "negative": -(3**70), "list": [10**30]}\n'
    answer = server.execute(script)
    body = expect_success(answer)
    assert body["result"] == {"big": 2**100, "negative": -(3**70), "list": [10**30]}
    assert str(2**100).encode() in answer.body


def test_unicode_stdout_and_result(server: Server) -> None:
    text = "héllo wörld ✓ 日本語 🎉"
    script = f"def main():\n    print({text!r})\n    return {text!r}\n"
    body = expect_success(server.execute(script))
    assert body["stdout"] == text + "\n"
    assert body["result"] == text


def test_invalid_utf8_stdout_is_decoded_with_replacement(server: Server) -> None:
    script = (
        "import sys\n\n"
        "def main():\n"
        '    sys.stdout.buffer.write(b"ok \\xff\\xfe end\\n")\n'
        "    sys.stdout.flush()\n"
        "    return 1\n"
    )
    body = expect_success(server.execute(script))
    assert body["stdout"] == "ok \ufffd\ufffd end\n"
    assert body["result"] == 1


def test_printing_a_result_does_not_forge_it(server: Server) -> None:
    script = (
        "def main():\n"
        "    print('{\"result\": 42}')\n"
        '    print(\'{"status": "ok"}\')\n'
        "    print(42)\n"
        "    return 7\n"
    )
    body = expect_success(server.execute(script))
    assert body["result"] == 7
    assert body["stdout"] == '{"result": 42}\n{"status": "ok"}\n42\n'


def test_background_child_does_not_delay_the_answer(server: Server) -> None:
    script = (
        "import os, time\n\n"
        "def main():\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        '    return "parent done"\n'
    )
    answer, elapsed = timed_execute(server, script)
    assert expect_success(answer)["result"] == "parent done"
    assert elapsed < WALL_LIMIT_S, elapsed


def test_numpy_and_pandas_work_in_the_sandbox(server: Server) -> None:
    script = (
        "import numpy as np\n"
        "import pandas as pd\n"
        "\n"
        "def main():\n"
        "    product = np.array([[1, 2], [3, 4]]) @ np.array([[5], [6]])\n"
        '    frame = pd.DataFrame({"x": [1, 2, 3], "y": [4.0, 5.0, 6.0]})\n'
        "    return {\n"
        '        "sum": int(np.arange(10).sum()),\n'
        '        "product": product.tolist(),\n'
        '        "mean": float(frame["y"].mean()),\n'
        '        "grouped": frame.assign(g=[0, 1, 0]).groupby("g")["x"].sum().tolist(),\n'
        "    }\n"
    )
    body = expect_success(server.execute(script))
    assert body["result"] == {"sum": 45, "product": [[17], [39]], "mean": 5.0, "grouped": [4, 2]}


# ---------------------------------------------------------------------------------------------
# Request validation
# ---------------------------------------------------------------------------------------------

VALID = "def main():\n    return 1\n"


@pytest.mark.parametrize(
    "raw_body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b'{"script": ', id="truncated-json"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"def main(): return 1"', id="bare-string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{}", id="script-missing"),
        pytest.param(b'{"script": ""}', id="script-empty"),
        pytest.param(b'{"script": 1}', id="script-number"),
        pytest.param(b'{"script": null}', id="script-null"),
        pytest.param(b'{"script": ["def main(): return 1"]}', id="script-list"),
        pytest.param(b'{"script": {"source": "def main(): return 1"}}', id="script-object"),
        pytest.param(b'{"script": "def main():\\n    return 1\\n\\u0000"}', id="script-nul"),
        pytest.param(b'{"script": "def main(): return 1 # \\ud800"}', id="lone-surrogate"),
        pytest.param(b'{"script": "def main(): return 1", "extra": 1}', id="unknown-field"),
        pytest.param(b'{"Script": "def main(): return 1"}', id="misspelt-field"),
    ],
)
def test_invalid_request(server: Server, raw_body: bytes) -> None:
    body = expect_error(post_raw(server, raw_body), "INVALID_REQUEST")
    assert body["stdout"] == ""
    assert_serving(server)


def test_unknown_field_is_rejected_even_next_to_a_valid_script(server: Server) -> None:
    expect_error(server.execute(VALID, sript="typo"), "INVALID_REQUEST")


def test_body_over_the_maximum_is_too_large(server: Server) -> None:
    payload = {"script": VALID + "#" * (BODY_CAP + 1000)}
    expect_error(post_json(server, payload), "PAYLOAD_TOO_LARGE")
    assert_serving(server)


def test_garbage_body_over_the_maximum_is_too_large(server: Server) -> None:
    expect_error(post_raw(server, b"x" * (BODY_CAP + 1)), "PAYLOAD_TOO_LARGE")


def test_script_over_its_cap_in_a_small_body_is_too_large(server: Server) -> None:
    script = VALID + "#" * SCRIPT_CAP
    assert len(json.dumps({"script": script})) < BODY_CAP
    expect_error(server.execute(script), "PAYLOAD_TOO_LARGE")


def test_script_cap_counts_utf8_bytes(server: Server) -> None:
    script = VALID + "# " + "€" * (SCRIPT_CAP // 3 + 100)  # fewer characters than the cap
    assert len(script) < SCRIPT_CAP < len(script.encode())
    assert len(json.dumps({"script": script})) < BODY_CAP
    expect_error(server.execute(script), "PAYLOAD_TOO_LARGE")


def test_script_exactly_at_its_cap_runs(server: Server) -> None:
    script = VALID + "#" * (SCRIPT_CAP - len(VALID))
    assert len(script.encode()) == SCRIPT_CAP
    assert expect_success(server.execute(script))["result"] == 1


def test_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    """A declared Content-Length over the maximum is answered without waiting for the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /execute HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n"
            b"\r\n"
            b'{"script": "'
        )
        conn.settimeout(5)
        head = conn.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head


# ---------------------------------------------------------------------------------------------
# Concurrency, admission control and availability
# ---------------------------------------------------------------------------------------------


def test_concurrent_requests_get_their_own_output(server: Server) -> None:
    def script(i: int) -> str:
        return (
            "import time\n\n"
            "def main():\n"
            "    started = time.time()\n"
            f'    print("request {i}")\n'
            "    time.sleep(0.2)\n"
            f'    print("request {i} done")\n'
            f'    return {{"id": {i}, "square": {i * i}, "window": [started, time.time()]}}\n'
        )

    count = 6
    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda i: server.execute(script(i)), range(count)))
    windows = []
    for i, answer in enumerate(answers):
        body = expect_success(answer)
        windows.append(body["result"].pop("window"))
        assert body["result"] == {"id": i, "square": i * i}
        assert body["stdout"] == f"request {i}\nrequest {i} done\n"
    # Both slots were busy at once at some point: the outputs really were produced side by side.
    overlapping = [
        (a, b) for a, b in itertools.combinations(windows, 2) if max(a[0], b[0]) < min(a[1], b[1])
    ]
    assert overlapping, f"no two executions overlapped: {windows}"


def test_busy_when_every_slot_and_the_queue_are_full(single_slot_server: Server) -> None:
    slow = (
        "import time\n\n"
        "def main():\n"
        "    started = time.time()\n"
        "    time.sleep(2)\n"
        '    return ["slow", started, time.time()]\n'
    )
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(single_slot_server.execute, slow)
        time.sleep(0.5)  # the slow request now holds the only slot (checked below)
        sent_at = time.time()
        refused = single_slot_server.execute(VALID)
        health = single_slot_server.health()
        answered_at = time.time()
        first_answer = first.result(timeout=30)
    label, started, ended = expect_success(first_answer)["result"]
    assert label == "slow"
    # The refusal came while the slow script was running, not before it started or after it.
    assert started < sent_at and answered_at < ended, (started, sent_at, answered_at, ended)
    busy = expect_error(refused, "BUSY")
    retry_after = header(refused, "Retry-After")
    assert retry_after is not None, refused.headers
    # a whole number of seconds (RFC 9110 delay-seconds), the same in the header and the body
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    assert busy["retry_after_s"] == int(retry_after), (busy, retry_after)
    assert health.status == 200, health.body  # /health answers while busy
    assert health.json()["ok"] is True
    assert_serving(single_slot_server)  # the slot was given back


def test_no_working_sandbox_is_unavailable(sandboxless_server: Server) -> None:
    expect_error(sandboxless_server.execute(VALID), "UNAVAILABLE")
    assert sandboxless_server.health().json()["ok"] is False


# ---------------------------------------------------------------------------------------------
# OpenAPI
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def openapi(server: Server) -> dict[str, Any]:
    answer = server.request("GET", "/schema/openapi.json")
    assert answer.status == 200, answer.body
    document = answer.json()
    assert isinstance(document, dict), answer.body
    return document


def test_openapi_documents_health(openapi: dict[str, Any]) -> None:
    assert "200" in openapi["paths"]["/health"]["get"]["responses"]


def test_openapi_documents_every_execute_status(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/execute"]["post"]["responses"]
    assert "200" in responses
    for code, status in ERROR_STATUS.items():
        assert str(status) in responses, f"status {status} is not documented"
        assert code in json.dumps(responses[str(status)]), f"{code} is not documented"


def test_openapi_documents_the_execute_request_body(openapi: dict[str, Any]) -> None:
    request_body = openapi["paths"]["/execute"]["post"].get("requestBody")
    assert request_body is not None, "POST /execute documents no request body"
    schema = resolve(request_body["content"]["application/json"]["schema"], openapi)
    assert "script" in schema["required"], schema
    assert resolve(schema["properties"]["script"], openapi)["type"] == "string", schema
    # The contract rejects unknown fields; a schema allowing them would contradict it.
    assert schema.get("additionalProperties") is False, schema


def test_multiprocessing_and_subprocesses_work_inside_the_sandbox(server: Server) -> None:
    """Data pipelines use process pools; the sandbox must allow them within its limits."""
    script = (
        "import multiprocessing, subprocess, sys\n"
        "def square(x):\n"
        "    return x * x\n"
        "def main():\n"
        "    with multiprocessing.Pool(2) as pool:\n"
        "        squares = pool.map(square, range(5))\n"
        "    child = subprocess.run([sys.executable, '-c', 'print(7)'], capture_output=True)\n"
        "    return [squares, child.stdout.decode()]\n"
    )
    answer = server.execute(script)

    assert answer.status == 200, answer.body
    assert answer.json()["result"] == [[0, 1, 4, 9, 16], "7\n"]
