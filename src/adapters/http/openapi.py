"""The OpenAPI description of the HTTP adapter: the request body the domain parses, and every
error code of the contract with an example body (Litestar documents neither on its own).
Schemas are inline: Litestar replaces `components.schemas` with the ones it generates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import (
    Example,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

from domain.outcome import ErrorCode
from domain.request import MIN_MEMORY_MB

JSON = "application/json"
_STR = Schema(type=OpenAPIType.STRING)
_USAGE = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "wall_time_ms": Schema(type=OpenAPIType.NUMBER),
        "cpu_time_ms": Schema(type=OpenAPIType.NUMBER),
        "peak_memory_bytes": Schema(
            one_of=[Schema(type=OpenAPIType.INTEGER), Schema(type=OpenAPIType.NULL)]
        ),
    },
)
_INT = Schema(type=OpenAPIType.INTEGER)
_NUM = Schema(type=OpenAPIType.NUMBER)
_LIMITS = Schema(
    type=OpenAPIType.OBJECT,
    description="The effective limits the execution ran under (version 2); on a refusal, "
    "the server's limits.",
    properties={
        "wall_time_s": _NUM,
        "cpu_time_s": _NUM,
        "memory_mb": _INT,
        "max_processes": _INT,
        "max_open_files": _INT,
        "tmp_size_mb": _INT,
        "stdout_cap_bytes": _INT,
        "result_cap_bytes": _INT,
        "script_cap_bytes": _INT,
    },
)
ERROR_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    description="Every failure: the code, one human sentence, and code-specific fields.",
    required=["error", "message"],
    properties={
        "error": Schema(type=OpenAPIType.STRING, enum=[code.code for code in ErrorCode]),
        "message": _STR,
        "stdout": _STR,
        "stderr": _STR,
        "stdout_truncated": Schema(type=OpenAPIType.BOOLEAN),
        "stderr_truncated": Schema(type=OpenAPIType.BOOLEAN),
        "exception": Schema(type=OpenAPIType.STRING, description="RUNTIME_ERROR, SYNTAX_ERROR"),
        "traceback": Schema(type=OpenAPIType.STRING, description="RUNTIME_ERROR, SYNTAX_ERROR"),
        "line": Schema(
            type=[OpenAPIType.INTEGER, OpenAPIType.NULL],
            description="SYNTAX_ERROR: the line, null when the script is nested too deeply",
        ),
        "limit": Schema(type=OpenAPIType.STRING, enum=["wall_time", "cpu_time"]),
        "field": Schema(type=OpenAPIType.STRING, description="INVALID_REQUEST"),
        "retry_after_s": Schema(type=OpenAPIType.INTEGER, description="BUSY"),
        "usage": _USAGE,
        "limits": _LIMITS,
    },
)
SUCCESS_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["result", "stdout"],
    properties={
        "result": Schema(description="main()'s return value, any JSON value"),
        "stdout": _STR,
        "stderr": _STR,
        "stdout_truncated": Schema(type=OpenAPIType.BOOLEAN),
        "stderr_truncated": Schema(type=OpenAPIType.BOOLEAN),
        "usage": _USAGE,
        "limits": _LIMITS,
    },
)

_USAGE_EXAMPLE = {"wall_time_ms": 40.5, "cpu_time_ms": 18.5, "peak_memory_bytes": 4186112}
_LIMITS_EXAMPLE = {
    "wall_time_s": 5.0,
    "cpu_time_s": 5.0,
    "memory_mb": 512,
    "max_processes": 32,
    "max_open_files": 64,
    "tmp_size_mb": 64,
    "stdout_cap_bytes": 1048576,
    "result_cap_bytes": 1048576,
    "script_cap_bytes": 262144,
}
_RAN = {"stdout": "", "stderr": "", "usage": _USAGE_EXAMPLE, "limits": _LIMITS_EXAMPLE}
_REFUSED = {"stdout": "", "stderr": ""}
ERROR_EXAMPLES: dict[ErrorCode, dict[str, Any]] = {
    ErrorCode.NO_MAIN: {
        "message": "The script defines no callable main(): 'main' is not defined.",
        **_RAN,
        "stdout": "123\n",
    },
    ErrorCode.NON_JSON_RETURN: {
        "message": "main() returned a value that is not strictly JSON-encodable: "
        "Object of type set is not JSON serializable.",
        **_RAN,
    },
    ErrorCode.SYNTAX_ERROR: {
        "message": "The script does not compile: invalid syntax (line 1).",
        **_RAN,
        "exception": "SyntaxError",
        "line": 1,
        "traceback": '  File "<script>", line 1\n    def main(:\n             ^\n'
        "SyntaxError: invalid syntax\n",
    },
    ErrorCode.RUNTIME_ERROR: {
        "message": "The script raised ZeroDivisionError: division by zero.",
        **_RAN,
        "exception": "ZeroDivisionError",
        "traceback": "Traceback (most recent call last):\n"
        '  File "<script>", line 2, in main\nZeroDivisionError: division by zero\n',
    },
    ErrorCode.TIMEOUT: {
        "message": "The script exceeded the wall-clock limit of 5 s.",
        **_RAN,
        "limit": "wall_time",
    },
    ErrorCode.MEMORY_LIMIT: {"message": "The script exceeded the memory limit of 512 MB.", **_RAN},
    ErrorCode.OUTPUT_LIMIT: {
        "message": "The result's JSON exceeds the cap of 1048576 bytes.",
        **_RAN,
    },
    ErrorCode.EMPTY_OUTPUT: {
        "message": "The script ended without reporting a result (exit status 3).",
        **_RAN,
    },
    ErrorCode.INVALID_REQUEST: {
        "message": "'script' is required.",
        **_REFUSED,
        "field": "script",
    },
    ErrorCode.PAYLOAD_TOO_LARGE: {
        "message": "The request body exceeds the maximum of 1048576 bytes.",
        **_REFUSED,
    },
    ErrorCode.BUSY: {
        "message": "Every execution slot and the queue are full; retry shortly.",
        **_REFUSED,
        "retry_after_s": 1,
    },
    ErrorCode.UNAVAILABLE: {"message": "The service is shutting down.", **_REFUSED},
    ErrorCode.NOT_FOUND: {"message": "There is no resource at /nope.", **_REFUSED},
    ErrorCode.METHOD_NOT_ALLOWED: {
        "message": "GET is not allowed on /execute; allowed: POST.",
        **_REFUSED,
    },
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: {
        "message": "The body must be sent as application/json (or a +json type); got 'text/plain'.",
        **_REFUSED,
    },
    ErrorCode.UNAUTHORIZED: {
        "message": "A valid API key is required: send it as 'Authorization: Bearer <key>'.",
        **_REFUSED,
    },
    ErrorCode.INTERNAL_ERROR: {
        "message": "The service failed unexpectedly (request id 0f3c...); nothing was run "
        "or its result was lost.",
        **_REFUSED,
    },
}
# Answers about the HTTP exchange itself, possible on any path.
EXCHANGE_CODES = (ErrorCode.NOT_FOUND, ErrorCode.METHOD_NOT_ALLOWED, ErrorCode.INTERNAL_ERROR)


def example_body(code: ErrorCode) -> dict[str, Any]:
    example = ERROR_EXAMPLES.get(code) or {"message": f"{code.code}.", **_REFUSED}
    return {"error": code.code, **example}


def error_response(description: str, codes: list[ErrorCode]) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=f"{description}: {', '.join(code.code for code in codes)}",
        content={
            JSON: OpenAPIMediaType(
                schema=ERROR_SCHEMA,
                examples={
                    code.code: Example(summary=code.code, value=example_body(code))
                    for code in codes
                },
            )
        },
    )


DEFAULT_RESPONSE = error_response("any other answer has the failure shape", list(EXCHANGE_CODES))

EXECUTE_REQUEST_BODY = RequestBody(
    required=True,
    description="Content-Type application/json (or +json). Unknown fields and duplicated keys "
    "are rejected with INVALID_REQUEST naming the field; so is a field outside its range.",
    content={
        JSON: OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "script": Schema(
                        type=OpenAPIType.STRING,
                        min_length=1,
                        description="Python source that defines main(); UTF-8, no NUL",
                    ),
                    "timeout_s": Schema(
                        type=OpenAPIType.NUMBER,
                        exclusive_minimum=0,
                        description="Version 2: wall-clock limit for this execution, at most "
                        "the server's (GET /health: limits.wall_time_s); the CPU limit is "
                        "lowered to it too",
                    ),
                    "memory_mb": Schema(
                        type=OpenAPIType.INTEGER,
                        minimum=MIN_MEMORY_MB,
                        description="Version 2: memory limit for this execution, at most the "
                        "server's (limits.memory_mb)",
                    ),
                    "stdin": Schema(
                        type=OpenAPIType.STRING,
                        description="Version 2: what the script reads from sys.stdin, capped "
                        "like the script; absent: empty",
                    ),
                    "input": Schema(
                        description="Version 2: any JSON value, passed as main(input); "
                        "absent: main() is called without an argument",
                    ),
                },
                required=["script"],
                additional_properties=False,
            ),
            examples={
                "hello": Example(
                    value={"script": 'def main():\n    print("hi")\n    return {"sum": 1 + 2}\n'}
                ),
                "input_and_limits": Example(
                    summary="version 2: input, stdin and lower limits",
                    value={
                        "script": "import sys\n\ndef main(numbers):\n"
                        "    return {'total': sum(numbers), 'line': sys.stdin.readline()}\n",
                        "input": [1, 2, 3],
                        "stdin": "first line\n",
                        "timeout_s": 2,
                        "memory_mb": 128,
                    },
                ),
            },
        )
    },
)


@dataclass
class DocumentedOperation(Operation):
    """Any route: adds the failure shape as the `default` answer (404, 405, 500)."""

    def __post_init__(self) -> None:
        self.responses = {**(self.responses or {}), "default": DEFAULT_RESPONSE}


@dataclass
class ExecuteOperation(Operation):
    """/execute, documented by hand: its body is parsed by the domain, not by Litestar."""

    def __post_init__(self) -> None:
        self.request_body = EXECUTE_REQUEST_BODY
        self.security = [{}, {"apiKey": []}]  # a key only where the operator configured keys
        by_status: dict[int, list[ErrorCode]] = {}
        for code in ErrorCode:
            if code is not ErrorCode.NOT_FOUND:
                by_status.setdefault(code.http_status, []).append(code)
        success = OpenAPIResponse(
            description="main() returned",
            content={
                JSON: OpenAPIMediaType(
                    schema=SUCCESS_SCHEMA,
                    examples={
                        "ok": Example(
                            value={
                                "result": {"sum": 3},
                                "stdout": "hi\n",
                                "stderr": "",
                                "usage": _USAGE_EXAMPLE,
                                "limits": _LIMITS_EXAMPLE,
                            }
                        )
                    },
                )
            },
        )
        self.responses = {
            "200": success,
            **{
                str(status): error_response("error", codes)
                for status, codes in sorted(by_status.items())
            },
            "default": DEFAULT_RESPONSE,
        }
