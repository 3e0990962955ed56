"""What the service learns about the request in progress, gathered for its one log line.

The HTTP adapter opens a record per request; code running for that request (the route, the
metrics adapter called by the use case) adds facts to it. Never the script, its input or its
output: only codes, names, durations and limits."""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

import attrs


@attrs.define
class RequestRecord:
    request_id: str
    code: str | None = None
    fields: dict[str, Any] = attrs.field(factory=dict)


_current: ContextVar[RequestRecord | None] = ContextVar("safe_exec_request", default=None)


def begin(request_id: str) -> tuple[RequestRecord, Token[RequestRecord | None]]:
    record = RequestRecord(request_id=request_id)
    return record, _current.set(record)


def end(token: Token[RequestRecord | None]) -> None:
    _current.reset(token)


def note(code: str | None = None, **fields: Any) -> None:
    """Add facts to the current request's record; a no-op outside a request."""
    record = _current.get()
    if record is None:
        return
    if code is not None:
        record.code = code
    record.fields.update(fields)


def current_id() -> str | None:
    record = _current.get()
    return record.request_id if record is not None else None
