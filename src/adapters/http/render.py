"""Turning domain outcomes into the contract's JSON bodies (shared/contract.md)."""

from __future__ import annotations

import json
from typing import Any

from domain.limits import Limits
from domain.outcome import ErrorCode, Failure, Outcome, Output, Success, Usage


def _usage(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return {}
    return {
        "usage": {
            "wall_time_ms": round(usage.wall_time_s * 1000, 1),
            "cpu_time_ms": round(usage.cpu_time_s * 1000, 1),
            "peak_memory_bytes": usage.peak_memory_bytes,
        }
    }


def _streams(output: Output) -> dict[str, Any]:
    fields: dict[str, Any] = {"stdout": output.stdout, "stderr": output.stderr}
    if output.stdout_truncated:
        fields["stdout_truncated"] = True
    if output.stderr_truncated:
        fields["stderr_truncated"] = True
    return fields


def _limits(limits: Limits | None) -> dict[str, Any]:
    return {} if limits is None else {"limits": limits.as_public_dict()}


def render(outcome: Outcome) -> tuple[int, bytes, dict[str, str]]:
    """(HTTP status, JSON body, extra headers) for one outcome.

    A success's result is spliced in as the JSON text the sandbox produced, so values that a
    re-encoding would alter (integers beyond 64 bits, float spellings) reach the client as
    json.dumps wrote them."""
    if isinstance(outcome, Success):
        rest = json.dumps(
            {**_streams(outcome.output), **_usage(outcome.usage), **_limits(outcome.limits)}
        )
        return 200, f'{{"result": {outcome.result_json}, {rest[1:]}'.encode(), {}
    return failure_response(outcome)


def failure_response(failure: Failure) -> tuple[int, bytes, dict[str, str]]:
    body: dict[str, Any] = {"error": failure.code.code, "message": failure.message}
    body.update(_streams(failure.output))
    body.update({k: v for k, v in failure.details.items() if k != "retry_after_s"})
    body.update(_usage(failure.usage))
    body.update(_limits(failure.limits))
    headers: dict[str, str] = {}
    if failure.code is ErrorCode.BUSY:
        retry_after = int(failure.details.get("retry_after_s", 1))
        body["retry_after_s"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return failure.code.http_status, json.dumps(body).encode(), headers


def rejection(
    code: ErrorCode, message: str, limits: Limits | None = None, **details: Any
) -> tuple[int, bytes, dict[str, str]]:
    return failure_response(Failure(code=code, message=message, details=details, limits=limits))
