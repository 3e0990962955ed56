"""The validation contract of `POST /execute`: from raw body bytes to a validated request."""

from __future__ import annotations

import json
from typing import Any, TypeGuard

import attrs

from domain.limits import Limits


class RequestRejected(Exception):
    """The request cannot be executed: INVALID_REQUEST, or PAYLOAD_TOO_LARGE if `too_large`."""

    def __init__(self, message: str, *, field: str | None = None, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.too_large = too_large


def _validate_source(_inst: object, _attr: attrs.Attribute[str], source: str) -> None:
    if not isinstance(source, str):
        raise RequestRejected("'script' must be a string.", field="script")
    if source == "":
        raise RequestRejected("'script' must be a non-empty string.", field="script")
    if "\x00" in source:
        raise RequestRejected("'script' must not contain NUL characters.", field="script")
    try:
        source.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestRejected(
            "'script' is not valid UTF-8 (it has a lone surrogate).", field="script"
        ) from None


@attrs.frozen
class Script:
    """Python source that is a candidate for execution: a non-empty UTF-8 string with no NUL."""

    source: str = attrs.field(validator=_validate_source)

    @property
    def size_bytes(self) -> int:
        return len(self.source.encode("utf-8"))


MIB = 1024 * 1024


@attrs.frozen(kw_only=True)
class ExecuteRequest:
    """A validated request. Contract v2's optional fields are None when absent: `input_json`
    is the JSON text of `input` (main is called with it), `stdin` the script's standard input,
    and `timeout_s` / `memory_mb` lower the server's limits for this execution."""

    script: Script
    timeout_s: float | None = None
    memory_mb: int | None = None
    stdin: str | None = None
    input_json: str | None = None

    def limits_within(self, server: Limits) -> Limits:
        """The effective limits: the server's, lowered where the request asks. A shorter
        wall-clock limit lowers the CPU limit with it, since CPU time beyond the wall limit
        could only come from parallel processes the client did not want to wait for."""
        changes: dict[str, Any] = {}
        if self.timeout_s is not None:
            changes["wall_time_s"] = self.timeout_s
            changes["cpu_time_s"] = min(server.cpu_time_s, self.timeout_s)
        if self.memory_mb is not None:
            changes["memory_bytes"] = self.memory_mb * MIB
        return attrs.evolve(server, **changes) if changes else server


ALLOWED_FIELDS = ("script", "timeout_s", "memory_mb", "stdin", "input")
# Below this an interpreter cannot start its standard library; a smaller request would only
# ever fail, so it is refused with the range instead.
MIN_MEMORY_MB = 16


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object hook: a key given twice is ambiguous, so the request is rejected."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RequestRejected(f"The key {key!r} appears more than once in a JSON object.")
            seen.add(key)
    return obj


def _no_constants(name: str) -> Any:
    """json.loads accepts NaN and Infinity, which are not JSON: refuse them."""
    raise RequestRejected(f"The body is not valid JSON ({name} is not a JSON value).")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timeout(value: object, limits: Limits) -> float:
    maximum = limits.wall_time_s
    if not _is_number(value) or not 0 < value <= maximum:
        raise RequestRejected(
            f"'timeout_s' must be a number > 0 and at most {maximum:g} (seconds); got {value!r}.",
            field="timeout_s",
        )
    return float(value)


def _memory(value: object, limits: Limits) -> int:
    maximum = limits.memory_bytes // MIB
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= maximum:
        raise RequestRejected(
            f"'memory_mb' must be an integer from {min(MIN_MEMORY_MB, maximum)} to {maximum}; "
            f"got {value!r}.",
            field="memory_mb",
        )
    if value < MIN_MEMORY_MB <= maximum:
        raise RequestRejected(
            f"'memory_mb' must be an integer from {MIN_MEMORY_MB} to {maximum} (below "
            f"{MIN_MEMORY_MB} MB Python cannot start); got {value!r}.",
            field="memory_mb",
        )
    return value


def _stdin(value: object, limits: Limits) -> str:
    if not isinstance(value, str):
        raise RequestRejected("'stdin' must be a string.", field="stdin")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise RequestRejected(
            "'stdin' is not valid UTF-8 (it has a lone surrogate).", field="stdin"
        ) from None
    if size > limits.script_cap_bytes:
        raise RequestRejected(
            f"'stdin' is {size} bytes; the maximum is {limits.script_cap_bytes}.",
            field="stdin",
            too_large=True,
        )
    return value


def _input(value: object) -> str:
    try:
        # ASCII: the text travels as is on a line of the harness protocol (no raw newline,
        # no lone surrogate to encode)
        return json.dumps(value, allow_nan=False)
    except (ValueError, RecursionError):  # 1e999 parses to inf; nesting beyond the stack
        raise RequestRejected(
            "'input' must be a JSON value with finite numbers and moderate nesting.",
            field="input",
        ) from None


def parse_execute_body(body: bytes, limits: Limits) -> ExecuteRequest:
    """Parse and validate a request body, raising RequestRejected with a one-sentence reason.
    `limits` are the server's: the script and stdin caps, and the most a request may ask."""
    try:
        payload: Any = json.loads(
            body, object_pairs_hook=_unique_keys, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestRejected("The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise RequestRejected('The body must be a JSON object like {"script": "..."}.')
    unknown = sorted(set(payload) - set(ALLOWED_FIELDS))
    if unknown:
        raise RequestRejected(
            f"Unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
            f"{', '.join(map(repr, ALLOWED_FIELDS))}.",
            field=unknown[0],
        )
    if "script" not in payload:
        raise RequestRejected("'script' is required.", field="script")
    script = Script(payload["script"])
    if script.size_bytes > limits.script_cap_bytes:
        raise RequestRejected(
            f"'script' is {script.size_bytes} bytes; the maximum is {limits.script_cap_bytes}.",
            field="script",
            too_large=True,
        )
    return ExecuteRequest(
        script=script,
        timeout_s=_timeout(payload["timeout_s"], limits) if "timeout_s" in payload else None,
        memory_mb=_memory(payload["memory_mb"], limits) if "memory_mb" in payload else None,
        stdin=_stdin(payload["stdin"], limits) if "stdin" in payload else None,
        input_json=_input(payload["input"]) if "input" in payload else None,
    )
