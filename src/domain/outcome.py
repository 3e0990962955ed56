"""What an execution ended in: a success, or one of the contract's error codes."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from domain.limits import Limits


class ErrorCode(enum.Enum):
    """The contract's error codes, each with its HTTP status (shared/contract.md, versions 1-2)."""

    NO_MAIN = ("NO_MAIN", 400)
    NON_JSON_RETURN = ("NON_JSON_RETURN", 400)
    SYNTAX_ERROR = ("SYNTAX_ERROR", 400)
    RUNTIME_ERROR = ("RUNTIME_ERROR", 400)
    TIMEOUT = ("TIMEOUT", 400)
    MEMORY_LIMIT = ("MEMORY_LIMIT", 400)
    OUTPUT_LIMIT = ("OUTPUT_LIMIT", 400)
    EMPTY_OUTPUT = ("EMPTY_OUTPUT", 500)
    INVALID_REQUEST = ("INVALID_REQUEST", 400)
    PAYLOAD_TOO_LARGE = ("PAYLOAD_TOO_LARGE", 413)
    BUSY = ("BUSY", 429)
    UNAVAILABLE = ("UNAVAILABLE", 503)
    # Version 2: API keys, when the operator configures them.
    UNAUTHORIZED = ("UNAUTHORIZED", 401)
    # Clarifications (every version): answers about the HTTP exchange itself.
    NOT_FOUND = ("NOT_FOUND", 404)
    METHOD_NOT_ALLOWED = ("METHOD_NOT_ALLOWED", 405)
    UNSUPPORTED_MEDIA_TYPE = ("UNSUPPORTED_MEDIA_TYPE", 415)
    INTERNAL_ERROR = ("INTERNAL_ERROR", 500)

    def __init__(self, code: str, http_status: int) -> None:
        self.code = code
        self.http_status = http_status


@attrs.frozen(kw_only=True)
class Usage:
    """What one execution consumed, as measured from outside the sandbox."""

    wall_time_s: float
    cpu_time_s: float
    peak_memory_bytes: int | None = None


@attrs.frozen(kw_only=True)
class Output:
    """The text streams an execution produced, already cut at their caps."""

    stdout: str = ""
    stdout_truncated: bool = False
    stderr: str = ""
    stderr_truncated: bool = False


@attrs.frozen(kw_only=True)
class Success:
    """main() returned a strictly JSON-encodable value; `result_json` is its encoding."""

    result_json: str
    output: Output
    usage: Usage
    limits: Limits | None = None  # the effective limits it ran under


@attrs.frozen(kw_only=True)
class Failure:
    """The execution ended in one of the contract's error codes.

    `details` holds code-specific fields (exception type, traceback, line) for the response body.
    """

    code: ErrorCode
    message: str
    output: Output = attrs.field(factory=Output)
    usage: Usage | None = None
    details: dict[str, Any] = attrs.field(factory=dict)
    limits: Limits | None = None  # the effective limits (for a rejection: the server's)


Outcome = Success | Failure
