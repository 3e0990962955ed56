"""Contract version 2 through real HTTP and every sandbox mode: `input`, `stdin`, `timeout_s`,
`memory_mb`, the effective `limits` in every response, and API keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import TEST_ENV, Server, running_server

SERVER_WALL_S = float(TEST_ENV["WALL_TIME_S"])
SERVER_MEMORY_MB = int(TEST_ENV["MEMORY_MB"])
KEY = "k-7f3a9c1e5d2b8046"
OTHER_KEY = "k-0000000000000000"


def test_input_is_passed_to_main_exactly(server: Server) -> None:
    value = {"n": [1, 2.5, None, True, "é\u2028"], "big": 2**70, "nested": {"a": []}}
    answer = server.execute(
        "def main(x):\n    return {'got': x, 'type': type(x).__name__}", input=value
    )

    assert answer.status == 200, answer.body
    assert answer.json()["result"] == {"got": value, "type": "dict"}


@pytest.mark.parametrize("value", [None, 0, "", [], False])
def test_a_falsy_input_is_still_passed(server: Server, value: object) -> None:
    answer = server.execute("def main(x):\n    return [x]", input=value)

    assert answer.status == 200, answer.body
    assert answer.json()["result"] == [value]


def test_without_input_main_is_called_without_an_argument(server: Server) -> None:
    answer = server.execute("def main(*args):\n    return len(args)")

    assert answer.json()["result"] == 0


def test_input_given_to_a_main_without_parameters_is_a_runtime_error(server: Server) -> None:
    answer = server.execute("def main():\n    return 1", input=5)

    assert answer.status == 400
    body = answer.json()
    assert body["error"] == "RUNTIME_ERROR"
    assert body["exception"] == "TypeError"
    assert "positional argument" in body["message"]


def test_stdin_is_what_the_script_reads(server: Server) -> None:
    script = (
        "import sys\n"
        "first = input()\n"
        "def main():\n"
        "    return [first, sys.stdin.readline(), sys.stdin.read()]\n"
    )
    answer = server.execute(script, stdin="line one\nline two\nrest é\n")

    assert answer.status == 200, answer.body
    assert answer.json()["result"] == ["line one", "line two\n", "rest é\n"]


def test_a_child_process_inherits_stdin(server: Server) -> None:
    script = (
        "import os\n"
        "def main():\n"
        "    r, w = os.pipe()\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os.write(w, os.read(0, 100))\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
        "    return os.read(r, 100).decode()\n"
    )
    answer = server.execute(script, stdin="from the parent's stdin")

    assert answer.status == 200, answer.body
    assert answer.json()["result"] == "from the parent's stdin"


def test_without_stdin_the_script_reads_end_of_file(server: Server) -> None:
    answer = server.execute("import sys\ndef main():\n    return sys.stdin.read()")

    assert answer.json()["result"] == ""


def test_stdin_over_the_script_cap_is_refused_before_running(server: Server) -> None:
    cap = int(TEST_ENV["MAX_SCRIPT_BYTES"])
    answer = server.execute("def main():\n    return 1", stdin="x" * (cap + 1))

    assert answer.status == 413
    assert answer.json()["error"] == "PAYLOAD_TOO_LARGE"
    assert answer.json()["field"] == "stdin"


def test_a_lower_timeout_ends_the_execution_at_that_limit(server: Server) -> None:
    answer = server.execute("import time\ndef main():\n    time.sleep(10)", timeout_s=0.5)

    body = answer.json()
    assert body["error"] == "TIMEOUT", body
    assert body["limit"] == "wall_time"
    assert "0.5 s" in body["message"]
    assert body["limits"]["wall_time_s"] == 0.5
    assert body["limits"]["cpu_time_s"] == 0.5
    # the answer comes at the requested limit, far below the server's own
    assert body["usage"]["wall_time_ms"] < SERVER_WALL_S * 1000


def test_a_lower_timeout_also_bounds_cpu(server: Server) -> None:
    answer = server.execute("def main():\n    while True:\n        pass", timeout_s=0.6)

    body = answer.json()
    assert body["error"] == "TIMEOUT", body
    assert body["usage"]["cpu_time_ms"] < SERVER_WALL_S * 1000


def test_a_lower_memory_limit_is_enforced(server: Server) -> None:
    script = "def main():\n    return len(bytearray(96 * 1024 * 1024))"
    within = server.execute(script)
    lowered = server.execute(script, memory_mb=48)

    assert within.status == 200, within.body
    assert within.json()["limits"]["memory_mb"] == SERVER_MEMORY_MB
    assert lowered.status == 400
    assert lowered.json()["error"] == "MEMORY_LIMIT", lowered.body
    assert lowered.json()["limits"]["memory_mb"] == 48


def test_every_execution_answer_carries_the_effective_limits(server: Server) -> None:
    health_limits = server.health().json()["limits"]
    answers = [
        server.execute("def main():\n    return 1"),
        server.execute("def main(:"),
        server.execute("x = 1"),
        server.execute("def main():\n    return 1", timeout_s=1, memory_mb=64),
    ]

    for answer in answers[:3]:
        assert answer.json()["limits"] == health_limits, answer.body
    assert answers[3].json()["limits"] == {
        **health_limits,
        "wall_time_s": 1.0,
        "cpu_time_s": 1.0,
        "memory_mb": 64,
    }


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"timeout_s": 0}, "timeout_s", "> 0"),
        ({"timeout_s": -1}, "timeout_s", "> 0"),
        ({"timeout_s": SERVER_WALL_S + 0.5}, "timeout_s", f"at most {SERVER_WALL_S:g}"),
        ({"timeout_s": "1"}, "timeout_s", "number"),
        ({"timeout_s": True}, "timeout_s", "number"),
        ({"memory_mb": 0}, "memory_mb", f"to {SERVER_MEMORY_MB}"),
        ({"memory_mb": SERVER_MEMORY_MB + 1}, "memory_mb", f"to {SERVER_MEMORY_MB}"),
        ({"memory_mb": 64.0}, "memory_mb", "integer"),
        ({"memory_mb": 8}, "memory_mb", "from 16"),
        ({"stdin": 5}, "stdin", "string"),
        ({"stdin": None}, "stdin", "string"),
        ({"input_": 1}, "input_", "Unknown"),
    ],
)
def test_out_of_range_fields_are_refused_naming_the_field_and_range(
    server: Server, fields: dict[str, object], field: str, fragment: str
) -> None:
    answer = server.execute("def main():\n    return 1", **fields)

    assert answer.status == 400
    body = answer.json()
    assert body["error"] == "INVALID_REQUEST"
    assert body["field"] == field
    assert fragment in body["message"]
    assert body["limits"]["wall_time_s"] == SERVER_WALL_S


def test_non_json_constants_in_input_are_refused(server: Server) -> None:
    raw = b'{"script": "def main(x):\\n    return 1", "input": NaN}'
    answer = server.request("POST", "/execute", raw, {"Content-Type": "application/json"})

    assert answer.status == 400
    assert answer.json()["error"] == "INVALID_REQUEST"
    assert "NaN" in answer.json()["message"]


# --- API keys ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A warm server whose keys come from both API_KEYS and API_KEYS_FILE."""
    directory = tmp_path_factory.mktemp("keyed")
    key_file = Path(directory) / "keys"
    key_file.write_text(f"# operators' keys\n{OTHER_KEY}\n\n")
    env = {"API_KEYS": KEY, "API_KEYS_FILE": str(key_file)}
    with running_server("nsjail-warm", directory, env) as srv:
        yield srv


def _post(srv: Server, headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, object]]:
    body = json.dumps({"script": "def main():\n    return 'ran'"}).encode()
    answer = srv.request("POST", "/execute", body, {"Content-Type": "application/json", **headers})
    return answer.status, answer.headers, answer.json()


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Bearer {KEY}x", f"Basic {KEY}", KEY, "Bearer", f"Bearer {KEY[:-1]}"],
)
def test_a_missing_or_wrong_key_is_refused_and_nothing_runs(
    keyed: Server, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    status, response_headers, body = _post(keyed, headers)

    assert status == 401
    assert body["error"] == "UNAUTHORIZED"
    assert "Bearer" in str(body["message"])
    assert response_headers.get("www-authenticate", "").startswith("Bearer")
    assert "result" not in body and "usage" not in body  # refused before any execution


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
def test_a_configured_key_is_admitted(keyed: Server, key: str) -> None:
    status, _headers, body = _post(keyed, {"Authorization": f"bearer  {key}"})

    assert status == 200, body
    assert body["result"] == "ran"


def test_health_stays_open_and_keys_never_reach_the_log(keyed: Server) -> None:
    health = keyed.health()

    assert health.status == 200
    assert health.json()["auth_required"] is True
    _post(keyed, {"Authorization": f"Bearer {KEY}"})
    _post(keyed, {"Authorization": f"Bearer {KEY}x"})
    log = keyed.log()
    assert KEY not in log and OTHER_KEY not in log
