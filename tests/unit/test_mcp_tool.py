"""The `run_python` tool with hand-written fakes: its definition from the server's limits, the
arguments through `/execute`'s validation, outcomes mapped to tool results, and the SDK's
in-memory client against the low-level server."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from adapters.mcp.tool import (
    LIBRARIES,
    TOOL_NAME,
    RunPython,
    build_server,
    describe,
    input_schema,
    outcome_result,
    request_from_arguments,
)
from application.execute import ExecuteScript
from application.slots import ExecutionSlots
from domain.limits import MIB, Limits
from domain.outcome import ErrorCode, Failure, Output, Success, Usage
from domain.request import ALLOWED_FIELDS, MIN_MEMORY_MB, RequestRejected
from tests.unit.fakes import FakeExecute, FakeMetrics, FakeSandbox, ok_report

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(wall_time_s=2.5, cpu_time_s=2.5, memory_bytes=300 * MIB, script_cap_bytes=1000)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "<script>", line 3, in main\n'
    "ZeroDivisionError: division by zero\n"
)


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), 10))


def success(result_json: str = '{"sum": 3}', **streams: Any) -> Success:
    return Success(
        result_json=result_json,
        output=Output(**{"stdout": "hi\n", **streams}),
        usage=Usage(wall_time_s=0.012, cpu_time_s=0.01, peak_memory_bytes=4_000_000),
        limits=LIMITS,
    )


def runtime_error() -> Failure:
    return Failure(
        code=ErrorCode.RUNTIME_ERROR,
        message="The script raised ZeroDivisionError: division by zero.",
        output=Output(stdout="before\n", stderr="warned\n"),
        usage=Usage(wall_time_s=0.01, cpu_time_s=0.01),
        details={"exception": "ZeroDivisionError", "traceback": TRACEBACK},
        limits=LIMITS,
    )


def text_of(result: types.CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, types.TextContent)
    return block.text


# --- the definition ---------------------------------------------------------------------------


def test_the_libraries_named_are_those_the_sandbox_installs() -> None:
    requirements = (ROOT / "requirements-sandbox.txt").read_text()
    names = [
        re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
        for line in requirements.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]

    assert sorted(names) == sorted(LIBRARIES)


def test_the_description_tells_what_succeeds_with_this_servers_limits() -> None:
    text = describe(LIMITS)

    for needed in ("def", "main()", "main(input)", "JSON", "numpy", "pandas", "no network"):
        assert needed in text, needed
    assert '__name__ == "__main__"' in text  # the habit that would silently skip main
    assert "2.5 s wall clock" in text
    assert "300 MB of memory" in text
    assert "up to 1000 bytes each" in text  # the script cap
    assert f"{LIMITS.stdout_cap_bytes} bytes" in text
    assert "BUSY" in text and "retry" in text


def test_the_schema_has_the_execute_fields_with_this_servers_ranges() -> None:
    schema = input_schema(LIMITS)

    assert set(schema["properties"]) == set(ALLOWED_FIELDS)
    assert schema["required"] == ["script"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["timeout_s"]["maximum"] == 2.5
    assert schema["properties"]["memory_mb"] == {
        **schema["properties"]["memory_mb"],
        "type": "integer",
        "minimum": MIN_MEMORY_MB,
        "maximum": 300,
    }
    assert "type" not in schema["properties"]["input"]  # any JSON value


def test_a_server_below_the_interpreters_minimum_memory_states_its_own_range() -> None:
    schema = input_schema(Limits(memory_bytes=8 * MIB))

    assert schema["properties"]["memory_mb"]["minimum"] == 8
    assert schema["properties"]["memory_mb"]["maximum"] == 8


# --- arguments -> the /execute request --------------------------------------------------------


def test_every_argument_reaches_the_request() -> None:
    request = request_from_arguments(
        {"script": "x", "input": {"a": [1, None]}, "stdin": "é\n", "timeout_s": 1, "memory_mb": 64},
        LIMITS,
    )

    assert request.script.source == "x"
    assert json.loads(request.input_json or "") == {"a": [1, None]}
    assert (request.stdin, request.timeout_s, request.memory_mb) == ("é\n", 1.0, 64)


@pytest.mark.parametrize(
    ("arguments", "field", "fragment"),
    [
        (None, "script", "'script' is required"),
        ({"stdin": "x"}, "script", "'script' is required"),
        ({"script": ""}, "script", "non-empty"),
        ({"script": "x", "timeout_s": 3}, "timeout_s", "at most 2.5"),
        ({"script": "x", "memory_mb": 8}, "memory_mb", "from 16 to 300"),
        ({"script": "x", "memory_mb": 16.5}, "memory_mb", "integer"),
        ({"script": "x", "inputs": 1}, "inputs", "Unknown field"),
        ({"script": "x", "input": float("nan")}, None, "NaN"),
    ],
)
def test_arguments_are_refused_as_execute_would_refuse_them(
    arguments: dict[str, Any] | None, field: str | None, fragment: str
) -> None:
    with pytest.raises(RequestRejected) as refused:
        request_from_arguments(arguments, LIMITS)

    assert refused.value.field == field
    assert fragment in refused.value.message
    assert not refused.value.too_large


def test_a_script_over_the_cap_is_too_large() -> None:
    with pytest.raises(RequestRejected) as refused:
        request_from_arguments({"script": "#" * 1001}, LIMITS)

    assert refused.value.too_large and refused.value.field == "script"


# --- outcomes -> tool results -----------------------------------------------------------------


def test_a_success_is_the_execute_body_with_a_readable_text() -> None:
    result = outcome_result(success('{"big": 1180591620717411303424}', stderr="w\n"))

    assert result.is_error is False
    body = result.structured_content
    assert body["result"] == {"big": 2**70}
    assert (body["stdout"], body["stderr"]) == ("hi\n", "w\n")
    assert body["usage"]["wall_time_ms"] == 12.0
    assert body["limits"] == LIMITS.as_public_dict()
    assert text_of(result) == 'result: {"big": 1180591620717411303424}\nstdout:\nhi\nstderr:\nw'


def test_an_integer_beyond_pythons_conversion_limit_stays_digits() -> None:
    digits = "7" * 5000  # the sandbox returns integers up to the result cap

    result = outcome_result(success(f'{{"n": {digits}, "small": 12}}'))

    assert result.structured_content["result"] == {"n": digits, "small": 12}
    assert digits in text_of(result)


def test_empty_and_truncated_streams_say_so() -> None:
    result = outcome_result(success("null", stdout="x" * 10, stdout_truncated=True))

    assert result.structured_content["stdout_truncated"] is True
    assert text_of(result) == "result: null\nstdout (cut at the cap):\nxxxxxxxxxx\nstderr: (empty)"


def test_a_runtime_error_is_a_tool_error_with_code_message_traceback_and_streams() -> None:
    result = outcome_result(runtime_error())

    assert result.is_error is True
    body = result.structured_content
    assert body["error"] == "RUNTIME_ERROR"
    assert body["exception"] == "ZeroDivisionError"
    assert body["traceback"] == TRACEBACK
    assert text_of(result) == (
        "RUNTIME_ERROR: The script raised ZeroDivisionError: division by zero.\n"
        f"traceback:\n{TRACEBACK.rstrip()}\n"
        "stdout:\nbefore\n"
        "stderr:\nwarned"
    )


def test_a_refused_request_shows_no_streams_it_never_had() -> None:
    failure = Failure(
        code=ErrorCode.UNAVAILABLE, message="No working sandbox is available.", limits=LIMITS
    )

    result = outcome_result(failure)

    assert result.is_error is True
    assert text_of(result) == "UNAVAILABLE: No working sandbox is available."


# --- the tool on the real use case (fake sandbox) --------------------------------------------


def test_busy_says_when_to_retry_and_runs_nothing() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox()
        slots = ExecutionSlots(1, 0)
        metrics = FakeMetrics()
        execute = ExecuteScript(
            sandbox=lambda: sandbox, slots=slots, limits=LIMITS, metrics=metrics, retry_after_s=3
        )
        await slots.acquire()  # another execution holds the only slot

        result = await RunPython(execute, LIMITS)({"script": "def main():\n    return 1"})

        assert result.is_error is True
        assert result.structured_content["error"] == "BUSY"
        assert result.structured_content["retry_after_s"] == 3
        assert "Retry after 3 s." in text_of(result)
        assert sandbox.jobs == []
        assert metrics.rejections == ["BUSY"]

    run(scenario)


def test_a_call_runs_the_validated_request_on_the_use_case() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report([1, 2], stdout=b"out\n"))
        execute = ExecuteScript(
            sandbox=lambda: sandbox,
            slots=ExecutionSlots(1, 0),
            limits=LIMITS,
            metrics=FakeMetrics(),
        )

        result = await RunPython(execute, LIMITS)(
            {"script": "def main(x):\n    return x", "input": [1, 2], "timeout_s": 1}
        )

        assert result.is_error is False
        assert result.structured_content["result"] == [1, 2]
        assert result.structured_content["stdout"] == "out\n"
        [job] = sandbox.jobs
        assert job.input_json == "[1, 2]"
        assert job.limits.wall_time_s == 1.0  # the lowered limit reached the sandbox

    run(scenario)


def test_refused_arguments_never_reach_the_use_case_and_are_counted() -> None:
    async def scenario() -> None:
        execute = FakeExecute(success())
        rejections: list[str] = []
        tool = RunPython(execute, LIMITS, observe_rejection=rejections.append)

        refused = await tool({"script": "x", "timeout_s": 99})
        too_large = await tool({"script": "#" * 1001})

        assert refused.structured_content["error"] == "INVALID_REQUEST"
        assert refused.structured_content["field"] == "timeout_s"
        assert text_of(refused).startswith("INVALID_REQUEST: 'timeout_s' must be")
        assert too_large.structured_content["error"] == "PAYLOAD_TOO_LARGE"
        assert execute.requests == []
        assert rejections == ["INVALID_REQUEST", "PAYLOAD_TOO_LARGE"]

    run(scenario)


# --- the SDK's in-memory client against the server ------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_client_lists_and_calls_the_tool(mode: str) -> None:
    async def scenario() -> None:
        execute = FakeExecute(success())
        server = build_server(RunPython(execute, LIMITS))
        async with Client(server, mode=mode) as client:
            [tool] = (await client.list_tools()).tools
            result = await client.call_tool(TOOL_NAME, {"script": "def main(): ..."})
            refused = await client.call_tool(TOOL_NAME, {"script": "x", "memory_mb": 0})
            with pytest.raises(MCPError, match="Unknown tool 'exec'"):
                await client.call_tool("exec", {"script": "x"})

        assert tool.name == TOOL_NAME
        assert tool.input_schema == input_schema(LIMITS)
        assert tool.annotations is not None and tool.annotations.open_world_hint is False
        assert result.is_error is False and result.structured_content["result"] == {"sum": 3}
        assert refused.is_error is True
        assert refused.structured_content["error"] == "INVALID_REQUEST"
        assert [r.script.source for r in execute.requests] == ["def main(): ..."]

    run(scenario)
