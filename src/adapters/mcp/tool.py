"""The `run_python` tool: its definition, a call turned into the use case's request, and the
outcome turned into a tool result.

The arguments are the `/execute` body: they are re-encoded as JSON and validated by
`parse_execute_body`, so a tool call is refused exactly where a request would be, with the same
one-sentence reasons. The result's structured content is the `/execute` answer's JSON body;
failures are tool errors (`isError: true`) whose text starts with the contract's code, so a
model reads what went wrong and can fix its script."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from adapters import request_record
from adapters.http.render import failure_response, render
from domain.limits import MIB, Limits
from domain.outcome import ErrorCode, Failure, Outcome
from domain.request import MIN_MEMORY_MB, ExecuteRequest, RequestRejected, parse_execute_body

TOOL_NAME = "run_python"
SERVER_NAME = "safe-exec"
# What a script can import besides the standard library: requirements-sandbox.txt's packages
# (a unit test keeps the two in step).
LIBRARIES = ("numpy", "pandas")
EMPTY = "(empty)"

Execute = Callable[[ExecuteRequest], Awaitable[Outcome]]


def _seconds(value: float) -> str:
    return f"{value:g} s"


def describe(limits: Limits, libraries: Sequence[str] = LIBRARIES) -> str:
    """What a model needs to write a script that succeeds, with this server's actual limits.
    One line per point: clients show it as it is, and models read it whole."""
    importable = ", ".join(["the Python standard library", *libraries])
    memory_mb = limits.memory_bytes // MIB
    lines = [
        "Run a Python script in an isolated sandbox and get back what its main() returned.",
        "",
        "How to write the script:",
        "- Define a function main(). The script's top level runs first, as a module named "
        "'script' (so an `if __name__ == \"__main__\":` block does NOT run); then main is "
        "called: main() with no arguments, or main(input) when you pass `input` (any JSON value, "
        "decoded: dict, list, str, int, float, bool or None).",
        "- main() must return a JSON-encodable value: dict with string keys, list, tuple, str, "
        "int, finite float, bool or None, nested freely. Sets, bytes, NaN/Infinity, datetimes, "
        "numpy scalars and arrays and pandas objects are NOT JSON: convert them first (int(x), "
        'float(x), arr.tolist(), df.to_dict("records"), str(d)). The value comes back as '
        "`result`.",
        "- print() output comes back as `stdout`, separately from the result; stderr as "
        "`stderr`. sys.stdin reads the `stdin` argument (empty when omitted).",
        f"- Importable: {importable}. Nothing else can be installed. There is no network "
        f"(no HTTP, no DNS). Only /tmp is writable ({limits.tmp_size_bytes // MIB} MB). Every "
        "call starts fresh: nothing persists between calls.",
        "",
        f"Limits per call: {_seconds(limits.wall_time_s)} wall clock and "
        f"{_seconds(limits.cpu_time_s)} CPU time (timeout_s may lower them); {memory_mb} MB of "
        f"memory (memory_mb may lower it, down to {min(MIN_MEMORY_MB, memory_mb)}); "
        f"{limits.max_processes} processes; script and stdin up to {limits.script_cap_bytes} "
        f"bytes each; stdout up to {limits.stdout_cap_bytes} bytes (cut beyond, with "
        f"stdout_truncated); result up to {limits.result_cap_bytes} bytes of JSON.",
        "",
        "On failure the call returns an error whose text starts with a code and one sentence: "
        "NO_MAIN (define main), NON_JSON_RETURN (convert the value), SYNTAX_ERROR and "
        "RUNTIME_ERROR (with a traceback of your code), TIMEOUT, MEMORY_LIMIT, OUTPUT_LIMIT, "
        "INVALID_REQUEST (an argument is out of range), BUSY (the server is at capacity: retry "
        "after the seconds it says), UNAVAILABLE, EMPTY_OUTPUT (the process died without a "
        "result, e.g. os._exit).",
    ]
    return "\n".join(lines)


def input_schema(limits: Limits) -> dict[str, Any]:
    """The `/execute` request's fields, with this server's ranges."""
    memory_max = limits.memory_bytes // MIB
    return {
        "type": "object",
        "properties": {
            "script": {
                "type": "string",
                "minLength": 1,
                "description": "Python source that defines main().",
            },
            "input": {
                "description": "Any JSON value, passed as main(input). Omit it to call main().",
            },
            "stdin": {
                "type": "string",
                "description": "Text the script reads from sys.stdin (default: empty).",
            },
            "timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": limits.wall_time_s,
                "description": "Wall-clock limit in seconds for this call "
                f"(default and maximum: {limits.wall_time_s:g}).",
            },
            "memory_mb": {
                "type": "integer",
                "minimum": min(MIN_MEMORY_MB, memory_max),
                "maximum": memory_max,
                "description": f"Memory limit in MB for this call (default and maximum: "
                f"{memory_max}).",
            },
        },
        "required": ["script"],
        "additionalProperties": False,
    }


# What a success carries (the /execute body); failures are tool errors and are not checked.
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "result": {"description": "main()'s return value."},
        "stdout": {"type": "string"},
        "stderr": {"type": "string"},
        "stdout_truncated": {"type": "boolean"},
        "stderr_truncated": {"type": "boolean"},
        "usage": {"type": "object"},
        "limits": {"type": "object"},
    },
    "required": ["result", "stdout", "stderr"],
}


def tool_definition(limits: Limits, libraries: Sequence[str] = LIBRARIES) -> types.Tool:
    return types.Tool(
        name=TOOL_NAME,
        title="Run Python",
        description=describe(limits, libraries),
        input_schema=input_schema(limits),
        output_schema=OUTPUT_SCHEMA,
        # Nothing it does outlives the call and it reaches no network.
        annotations=types.ToolAnnotations(
            title="Run Python", read_only_hint=True, open_world_hint=False
        ),
    )


def request_from_arguments(arguments: Mapping[str, Any] | None, limits: Limits) -> ExecuteRequest:
    """The arguments as an `/execute` body, through the same validation; RequestRejected if not
    valid. JSON-RPC already decoded them, so encoding them again cannot fail except for values
    JSON has no spelling for (NaN) or nesting beyond the stack, which the parser then refuses."""
    try:
        body = json.dumps(dict(arguments or {})).encode()
    except (TypeError, ValueError, RecursionError):
        raise RequestRejected("The arguments are not a JSON object this tool accepts.") from None
    return parse_execute_body(body, limits)


def _stream(name: str, text: str, truncated: bool) -> str:
    if not text:
        return f"{name}: {EMPTY}"
    note = " (cut at the cap)" if truncated else ""
    return f"{name}{note}:\n{text.removesuffix(chr(10))}"


def render_text(body: Mapping[str, Any]) -> str:
    """A person's (and a model's) reading of an `/execute` body: what main() returned or the
    error, then the traceback where there is one, then the streams."""
    if "error" in body:
        lines = [f"{body['error']}: {body.get('message', '')}"]
        if "retry_after_s" in body:
            lines.append(f"Retry after {body['retry_after_s']} s.")
        if "field" in body:
            lines.append(f"field: {body['field']}")
        if body.get("traceback"):
            lines.append(f"traceback:\n{str(body['traceback']).removesuffix(chr(10))}")
    else:
        lines = [f"result: {json.dumps(body['result'], ensure_ascii=False)}"]
    # Streams of a script that ran; a refused call (no usage) has none to show.
    if "usage" in body or body.get("stdout") or body.get("stderr"):
        lines.append(_stream("stdout", body.get("stdout", ""), bool(body.get("stdout_truncated"))))
        lines.append(_stream("stderr", body.get("stderr", ""), bool(body.get("stderr_truncated"))))
    return "\n".join(lines)


def _int(digits: str) -> int | str:
    """An integer of the body. The sandbox returns integers of any length up to the result
    cap; beyond Python's default conversion limit (4300 digits) the digits stay a string
    rather than fail the whole answer (`/execute` passes the text through untouched)."""
    try:
        return int(digits)
    except ValueError:
        return digits


def tool_result(body: bytes, is_error: bool) -> types.CallToolResult:
    """A tool result from an `/execute` JSON body: the body as structured content, its reading
    as text."""
    structured = json.loads(body, parse_int=_int)
    return types.CallToolResult(
        content=[types.TextContent(text=render_text(structured))],
        structured_content=structured,
        is_error=is_error,
    )


def outcome_result(outcome: Outcome) -> types.CallToolResult:
    _status, body, _headers = render(outcome)
    return tool_result(body, isinstance(outcome, Failure))


def rejection_result(rejected: RequestRejected, limits: Limits) -> types.CallToolResult:
    code = ErrorCode.PAYLOAD_TOO_LARGE if rejected.too_large else ErrorCode.INVALID_REQUEST
    details = {"field": rejected.field} if rejected.field else {}
    failure = Failure(code=code, message=rejected.message, details=details, limits=limits)
    _status, body, _headers = failure_response(failure)
    return tool_result(body, True)


class RunPython:
    """The tool bound to the use case: one call validates, executes and maps the answer."""

    def __init__(
        self,
        execute: Execute,
        limits: Limits,
        *,
        libraries: Sequence[str] = LIBRARIES,
        observe_rejection: Callable[[str], None] = lambda _code: None,
    ) -> None:
        self._execute = execute
        self._limits = limits
        self._observe_rejection = observe_rejection
        self.definition = tool_definition(limits, libraries)

    async def __call__(self, arguments: Mapping[str, Any] | None) -> types.CallToolResult:
        try:
            request = request_from_arguments(arguments, self._limits)
        except RequestRejected as rejected:
            result = rejection_result(rejected, self._limits)
            self._observe_rejection(result.structured_content["error"])
            request_record.note(code=result.structured_content["error"], tool=TOOL_NAME)
            return result
        outcome = await self._execute(request)
        code = outcome.code.code if isinstance(outcome, Failure) else "OK"
        request_record.note(code=code, tool=TOOL_NAME)
        return outcome_result(outcome)


def _version() -> str:
    try:
        return metadata.version("safe-exec")
    except metadata.PackageNotFoundError:
        return ""


def build_server(tool: RunPython) -> Server[Any]:
    """A low-level MCP server offering the one tool (the low-level API lets the tool's schema
    and result be exactly the `/execute` request and answer)."""

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.definition])

    async def call_tool(
        _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name != TOOL_NAME:
            raise MCPError(
                types.INVALID_PARAMS,
                f"Unknown tool {params.name!r}; this server has one tool, {TOOL_NAME!r}.",
            )
        return await tool(params.arguments)

    return Server(
        SERVER_NAME,
        version=_version(),
        instructions=f"safe-exec runs Python scripts in a sandbox: call {TOOL_NAME} with a "
        "script that defines main() and returns JSON.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
