"""`run_python` over MCP with the SDK's own client, against real servers: streamable HTTP at
`/mcp` of a real uvicorn server (both protocol eras), and stdio through the stdio entry point
started as a subprocess. The same scripts as `/execute`, the same codes, the same keys and the
same slots."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.integration.server import ROOT, TEST_ENV, Server, running_server

MODE = "nsjail-warm"  # what SANDBOX=auto picks; the adapter does not depend on the runner
KEY = "k-mcp-5e1f0c2a9b7d4836"
SERVER_WALL_S = float(TEST_ENV["WALL_TIME_S"])
SCRIPT_CAP = int(TEST_ENV["MAX_SCRIPT_BYTES"])
RESULT_CAP = int(TEST_ENV["RESULT_CAP_BYTES"])
CALL_TIMEOUT_S = 60
FIELDS = {"script", "input", "stdin", "timeout_s", "memory_mb"}


def pid_namespace(argv: list[str]) -> list[str]:
    """As the HTTP servers under test: in a PID namespace of their own when we are root."""
    if shutil.which("unshare") and os.geteuid() == 0:
        return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
    return argv


STDIO_ARGV = pid_namespace([sys.executable, "-m", "entrypoints.mcp_stdio"])


def stdio_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **TEST_ENV, "SANDBOX": MODE, **(extra or {})}
    env.pop("FORCE_COMPAT", None)
    return env


# --- an SDK client that synchronous tests can share -----------------------------------------


ClientFactory = Callable[[], contextlib.AbstractAsyncContextManager[Client]]


class SyncClient:
    """An SDK `Client` connected once, on an event loop of its own (a thread), so that
    synchronous tests can share it. The connection is entered and left in one task, as the
    SDK's task groups require; calls come from other tasks, as concurrent requests do."""

    def __init__(self, connect: ClientFactory) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stop = asyncio.Event()
        self._client: Client | None = None
        ready: Future[None] = Future()
        self._held = asyncio.run_coroutine_threadsafe(self._hold(connect, ready), self._loop)
        try:
            ready.result(CALL_TIMEOUT_S)
        except BaseException:
            self._shut_loop()
            raise

    async def _hold(self, connect: ClientFactory, ready: Future[None]) -> None:
        try:
            async with connect() as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error)
            raise

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_S)

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    def list_tools(self) -> types.ListToolsResult:
        return self._run(self.client.list_tools())  # type: ignore[no-any-return]

    def call(self, arguments: dict[str, Any], name: str = "run_python") -> types.CallToolResult:
        return self._run(self.client.call_tool(name, arguments))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._held.result(CALL_TIMEOUT_S)
        finally:
            self._shut_loop()

    def _shut_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def http_connector(
    url: str,
    *,
    key: str | None = None,
    mode: str = "auto",
    statuses: list[int] | None = None,
) -> ClientFactory:
    """Streamable HTTP with the SDK's transport over an HTTP client carrying the key; every
    HTTP status the server answered is appended to `statuses`."""

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with (
            httpx2.AsyncClient(
                headers=headers,
                timeout=CALL_TIMEOUT_S,
                event_hooks={"response": [record]},
            ) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            yield client

    return connect


def stdio_connector(env: Mapping[str, str]) -> ClientFactory:
    params = StdioServerParameters(
        command=STDIO_ARGV[0], args=STDIO_ARGV[1:], env=dict(env), cwd=str(ROOT)
    )

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[Client]:
        async with Client(stdio_client(params)) as client:
            yield client

    return connect


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A warm server with an API key: /mcp needs it as /execute does."""
    with running_server(MODE, tmp_path_factory.mktemp("mcp"), {"API_KEYS": KEY}) as srv:
        yield srv


@pytest.fixture(scope="module", params=["http", "http-legacy", "stdio"])
def mcp(request: pytest.FixtureRequest) -> Iterator[SyncClient]:
    """One connected client per transport: streamable HTTP in the 2026 era (the client's
    `auto` negotiation), in the handshake era (`initialize`, what most clients speak today),
    and stdio; the stdio server has API_KEYS set too, and needs none of them."""
    if request.param == "stdio":
        connect = stdio_connector(stdio_env({"API_KEYS": KEY}))
    else:
        srv = request.getfixturevalue("keyed")
        mode = "legacy" if request.param == "http-legacy" else "auto"
        connect = http_connector(f"{srv.url}/mcp", key=KEY, mode=mode)
    client = SyncClient(connect)
    yield client
    client.close()


def text_of(result: types.CallToolResult) -> str:
    assert len(result.content) == 1, result
    block = result.content[0]
    assert isinstance(block, types.TextContent), block
    return block.text


def expect_error(result: types.CallToolResult, code: str) -> dict[str, Any]:
    """A tool error (not a protocol error) naming the code, in its structured content and at
    the start of its text, with the one-sentence message a model can act on."""
    body = result.structured_content
    assert result.is_error is True, result
    assert isinstance(body, dict), result
    assert body["error"] == code, body
    assert text_of(result).startswith(f"{code}: {body['message']}"), text_of(result)
    return body


# --- the tool ---------------------------------------------------------------------------------


def test_the_tool_is_listed_with_the_execute_fields_and_real_limits(mcp: SyncClient) -> None:
    tools = mcp.list_tools().tools

    assert [tool.name for tool in tools] == ["run_python"]
    tool = tools[0]
    schema = tool.input_schema
    assert set(schema["properties"]) == FIELDS
    assert schema["required"] == ["script"]
    assert schema["properties"]["timeout_s"]["maximum"] == SERVER_WALL_S
    assert schema["properties"]["memory_mb"]["maximum"] == int(TEST_ENV["MEMORY_MB"])
    description = tool.description or ""
    for needed in ("main()", "main(input)", "JSON", "numpy", "pandas", "no network"):
        assert needed in description, needed
    # this server's limits, read at start-up, not the defaults
    assert f"{SERVER_WALL_S:g} s wall clock" in description
    assert f"{TEST_ENV['MEMORY_MB']} MB of memory" in description


def test_a_script_runs_and_returns_result_stdout_and_stderr(mcp: SyncClient) -> None:
    script = (
        "import sys\n"
        "def main():\n"
        "    print('hi')\n"
        "    print('warn', file=sys.stderr)\n"
        "    return {'sum': 1 + 2}\n"
    )

    result = mcp.call({"script": script})

    assert result.is_error is False, result
    body = result.structured_content
    assert body["result"] == {"sum": 3}
    assert body["stdout"] == "hi\n"
    assert body["stderr"] == "warn\n"
    assert body["limits"]["wall_time_s"] == SERVER_WALL_S
    text = text_of(result)
    assert text.startswith('result: {"sum": 3}'), text
    assert "stdout:\nhi" in text and "stderr:\nwarn" in text


def test_input_and_stdin_are_passed_through(mcp: SyncClient) -> None:
    value = {"n": [1, 2.5, None, True, "é"], "big": 2**70}
    script = "import sys\ndef main(x):\n    return {'got': x, 'stdin': sys.stdin.read()}\n"

    result = mcp.call({"script": script, "input": value, "stdin": "line one\nrest é\n"})

    assert result.is_error is False, result
    assert result.structured_content["result"] == {"got": value, "stdin": "line one\nrest é\n"}


def test_a_lower_timeout_and_memory_are_the_effective_limits(mcp: SyncClient) -> None:
    result = mcp.call({"script": "def main():\n    return 1", "timeout_s": 1, "memory_mb": 64})

    assert result.is_error is False, result
    limits = result.structured_content["limits"]
    assert (limits["wall_time_s"], limits["cpu_time_s"], limits["memory_mb"]) == (1, 1, 64)


ERROR_CASES = [
    pytest.param({"script": "print('top')\nx = 1"}, "NO_MAIN", id="no-main"),
    pytest.param({"script": "def main():\n    return {1, 2}"}, "NON_JSON_RETURN", id="set"),
    pytest.param({"script": "def main(:\n    return 1"}, "SYNTAX_ERROR", id="syntax"),
    pytest.param(
        {"script": "def main():\n    print('before')\n    return 1 / 0"},
        "RUNTIME_ERROR",
        id="runtime",
    ),
    pytest.param(
        {"script": "def main():\n    while True:\n        pass", "timeout_s": 0.5},
        "TIMEOUT",
        id="timeout",
    ),
    pytest.param(
        {"script": "def main():\n    return len(bytearray(96 * 1024 * 1024))", "memory_mb": 48},
        "MEMORY_LIMIT",
        id="memory",
    ),
    pytest.param(
        {"script": f"def main():\n    return 'x' * {RESULT_CAP + 1}"}, "OUTPUT_LIMIT", id="output"
    ),
    pytest.param({"script": "import os\ndef main():\n    os._exit(3)"}, "EMPTY_OUTPUT", id="exit"),
    pytest.param(
        {"script": "def main():\n    return 1", "timeout_s": SERVER_WALL_S + 8},
        "INVALID_REQUEST",
        id="timeout-above-max",
    ),
    pytest.param(
        {"script": "def main():\n    return 1", "memory_mb": 8}, "INVALID_REQUEST", id="memory-8"
    ),
    pytest.param(
        {"script": "def main():\n    return 1", "inputs": 1}, "INVALID_REQUEST", id="typo"
    ),
    pytest.param({"stdin": "no script"}, "INVALID_REQUEST", id="no-script"),
    pytest.param({"script": "#" * (SCRIPT_CAP + 1)}, "PAYLOAD_TOO_LARGE", id="too-large"),
]


@pytest.mark.parametrize(("arguments", "code"), ERROR_CASES)
def test_each_failure_is_a_tool_error_carrying_its_code(
    mcp: SyncClient, arguments: dict[str, Any], code: str
) -> None:
    body = expect_error(mcp.call(arguments), code)

    assert "limits" in body
    ran = code not in ("INVALID_REQUEST", "PAYLOAD_TOO_LARGE")
    assert ("usage" in body) is ran, body  # refused arguments run nothing


def test_a_runtime_error_carries_the_traceback_and_the_stdout_before_it(mcp: SyncClient) -> None:
    script = "def main():\n    print('before')\n    return 1 / 0"

    result = mcp.call({"script": script})

    body = expect_error(result, "RUNTIME_ERROR")
    assert body["exception"] == "ZeroDivisionError"
    assert 'File "<script>", line 3, in main' in body["traceback"]
    assert body["stdout"] == "before\n"
    text = text_of(result)
    assert "traceback:\nTraceback (most recent call last):" in text
    assert "ZeroDivisionError: division by zero" in text
    assert "stdout:\nbefore" in text


def test_a_syntax_error_names_the_line_and_carries_the_traceback(mcp: SyncClient) -> None:
    result = mcp.call({"script": "x = 1\ndef main(:\n    return 1"})

    body = expect_error(result, "SYNTAX_ERROR")
    assert body["line"] == 2
    assert "line 2" in body["message"]
    assert "SyntaxError" in body["traceback"]
    assert "traceback:\n" in text_of(result)


def test_out_of_range_arguments_name_the_field_and_the_range(mcp: SyncClient) -> None:
    result = mcp.call({"script": "def main():\n    return 1", "timeout_s": SERVER_WALL_S + 8})

    body = expect_error(result, "INVALID_REQUEST")
    assert body["field"] == "timeout_s"
    assert f"at most {SERVER_WALL_S:g}" in body["message"]


def test_an_unknown_tool_is_a_protocol_error(mcp: SyncClient) -> None:
    with pytest.raises(Exception, match="Unknown tool 'python'"):
        mcp.call({"script": "def main():\n    return 1"}, name="python")


# --- HTTP: keys, contract answers around /mcp --------------------------------------------------


def raw_mcp_post(srv: Server, headers: Mapping[str, str]) -> Any:
    """A tools/call JSON-RPC request sent with plain urllib: what reaches the server without
    any client logic in between."""
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"script": "def main():\n    return 1"}},
    }
    return srv.request(
        "POST",
        "/mcp",
        json.dumps(message).encode(),
        {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        | dict(headers),
    )


@pytest.mark.parametrize(
    "authorization", [None, f"Bearer {KEY}x", f"Basic {KEY}", KEY, "Bearer"], ids=str
)
def test_without_a_valid_key_mcp_is_refused_before_any_mcp_processing(
    keyed: Server, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    answer = raw_mcp_post(keyed, headers)

    assert answer.status == 401, answer.body
    body = answer.json()
    assert body["error"] == "UNAUTHORIZED", body  # the contract's shape, not JSON-RPC's
    assert "jsonrpc" not in body and "result" not in body
    headers = {name.lower(): value for name, value in answer.headers.items()}
    assert headers.get("www-authenticate", "").startswith("Bearer"), headers


@pytest.mark.parametrize("key", [None, f"{KEY}x"], ids=["no-key", "wrong-key"])
def test_the_sdk_client_without_the_key_cannot_connect(keyed: Server, key: str | None) -> None:
    statuses: list[int] = []
    connect = http_connector(f"{keyed.url}/mcp", key=key, statuses=statuses)

    with pytest.raises(Exception):  # noqa: B017 (the SDK's error type is not the point)
        SyncClient(connect)

    assert statuses and set(statuses) == {401}, statuses


def test_the_sdk_client_with_the_key_is_admitted(keyed: Server) -> None:
    statuses: list[int] = []
    client = SyncClient(http_connector(f"{keyed.url}/mcp", key=KEY, statuses=statuses))
    try:
        result = client.call({"script": "def main():\n    return 'ran'"})
    finally:
        client.close()

    assert result.structured_content["result"] == "ran"
    assert 401 not in statuses, statuses


def test_other_paths_keep_the_contract_answers_and_requests_are_logged(keyed: Server) -> None:
    missing = keyed.request("GET", "/mcp-not-here")
    wrong_method = keyed.request("GET", "/execute")
    raw_mcp_post(keyed, {"Authorization": f"Bearer {KEY}"})

    assert (missing.status, missing.json()["error"]) == (404, "NOT_FOUND")
    assert (wrong_method.status, wrong_method.json()["error"]) == (405, "METHOD_NOT_ALLOWED")
    log = keyed.log()
    assert "path=/mcp status=200 code=OK" in log and "tool=run_python" in log
    assert "path=/mcp status=401 code=UNAUTHORIZED" in log
    assert KEY not in log


# --- BUSY: the same slots as /execute ---------------------------------------------------------


@pytest.fixture(scope="module")
def single_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One slot and no queue (no keys): an MCP call while /execute holds the slot is BUSY."""
    env = {"MAX_CONCURRENCY": "1", "QUEUE_SIZE": "0", "WALL_TIME_S": "10", "CPU_TIME_S": "2"}
    with running_server(MODE, tmp_path_factory.mktemp("mcp-busy"), env) as srv:
        yield srv


def wait_for_slot_in_use(srv: Server, deadline_s: float = 10) -> None:
    deadline = time.monotonic() + deadline_s
    while srv.health().json()["slots"]["in_use"] < 1:
        assert time.monotonic() < deadline, "the slow execution never took the slot"
        time.sleep(0.02)


def test_an_mcp_call_while_execute_holds_the_only_slot_is_busy(single_slot: Server) -> None:
    slow = (
        "import time\n"
        "def main():\n"
        "    started = time.time()\n"
        "    time.sleep(3)\n"
        "    return [started, time.time()]\n"
    )
    client = SyncClient(http_connector(f"{single_slot.url}/mcp"))
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(single_slot.execute, slow)
            wait_for_slot_in_use(single_slot)
            time.sleep(1)  # for the script to start (3 s long): the windows below prove it had
            sent_at = time.time()
            refused = client.call({"script": "def main():\n    return 1"})
            answered_at = time.time()
            held = first.result(timeout=30)
        after = client.call({"script": "def main():\n    return 'free again'"})
    finally:
        client.close()

    started, ended = held.json()["result"]
    # The refusal came while the slow script was running (its own clock), not before or after.
    assert started < sent_at and answered_at < ended, (started, sent_at, answered_at, ended)
    body = expect_error(refused, "BUSY")
    assert isinstance(body["retry_after_s"], int) and body["retry_after_s"] >= 1
    assert f"Retry after {body['retry_after_s']} s." in text_of(refused)
    assert "usage" not in body  # nothing ran
    assert after.structured_content["result"] == "free again"  # the slot was given back


# --- stdio: the protocol owns stdout, and the process ends with its client ----------------------


def test_stdio_stdout_carries_only_protocol_and_the_server_exits_on_end_of_input() -> None:
    """Plain pipes, no SDK: every line the server writes is JSON-RPC (a script's prints travel
    inside the result), and closing stdin (how a client ends a stdio server) ends the process
    with status 0."""
    call = {"script": "print('x' * 100)\ndef main():\n    return 7"}
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "run_python", "arguments": call},
        },
    ]
    proc = subprocess.Popen(
        STDIO_ARGV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=stdio_env(),
        cwd=ROOT,
        start_new_session=True,
    )
    watchdog = threading.Timer(60, proc.kill)  # a hung server fails the test, not the session
    watchdog.start()
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages).encode())
        proc.stdin.flush()
        lines = [proc.stdout.readline(), proc.stdout.readline()]  # the two answers
        proc.stdin.close()  # the client is done
        lines += proc.stdout.read().splitlines()  # anything else before the exit
        returncode = proc.wait()
        stderr = proc.stderr.read()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    answers = [json.loads(line) for line in lines]  # every line parses
    assert all(answer.get("jsonrpc") == "2.0" for answer in answers), lines
    by_id = {answer["id"]: answer for answer in answers}
    assert set(by_id) == {1, 2}, lines
    assert by_id[1]["result"]["serverInfo"]["name"] == "safe-exec", lines
    result = by_id[2]["result"]
    assert result["structuredContent"]["result"] == 7, result
    assert result["structuredContent"]["stdout"] == "x" * 100 + "\n"
    assert returncode == 0, stderr.decode()
    assert b"serving MCP on stdio" in stderr  # the logs go to stderr


def test_stdio_refuses_a_bad_configuration_on_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints.mcp_stdio"],
        input=b"",
        capture_output=True,
        env=stdio_env({"WALL_TIME_S": "soon"}),
        cwd=ROOT,
        timeout=30,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == b""
    assert b"WALL_TIME_S" in done.stderr
