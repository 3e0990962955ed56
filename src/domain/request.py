"""The validation contract of `POST /execute`: from raw body bytes to a validated request."""

from __future__ import annotations

import json
from typing import Any

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


@attrs.frozen(kw_only=True)
class ExecuteRequest:
    script: Script


ALLOWED_FIELDS = frozenset({"script"})


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


def parse_execute_body(body: bytes, limits: Limits) -> ExecuteRequest:
    """Parse and validate a request body, raising RequestRejected with a one-sentence reason."""
    try:
        payload: Any = json.loads(body, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestRejected("The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise RequestRejected('The body must be a JSON object like {"script": "..."}.')
    unknown = sorted(set(payload) - ALLOWED_FIELDS)
    if unknown:
        raise RequestRejected(
            f"Unknown field(s) {', '.join(map(repr, unknown))}; the only field is 'script'.",
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
    return ExecuteRequest(script=script)
