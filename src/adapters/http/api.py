"""Routes of the HTTP adapter. Request parsing and outcomes come from the domain; this module
only moves bytes and maps Litestar's own errors onto the contract's codes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

from adapters.http.render import rejection, render
from domain.limits import Limits
from domain.outcome import ErrorCode, Failure, Outcome
from domain.request import ExecuteRequest, RequestRejected, parse_execute_body

log = logging.getLogger("safe_exec.http")
JSON = "application/json"
ERROR_CODES_BY_STATUS = {
    status: [c.code for c in ErrorCode if c.http_status == status]
    for status in sorted({c.http_status for c in ErrorCode})
}


def _json_response(status: int, body: bytes, headers: Mapping[str, str]) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=JSON, headers=dict(headers))


EXECUTE_REQUEST_BODY = RequestBody(
    required=True,
    description="Exactly one field; unknown fields are rejected with INVALID_REQUEST.",
    content={
        JSON: OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "script": Schema(
                        type=OpenAPIType.STRING,
                        min_length=1,
                        description="Python source that defines main(); UTF-8, no NUL",
                    )
                },
                required=["script"],
                additional_properties=False,
            )
        )
    },
)


@dataclass
class ExecuteOperation(Operation):
    """The /execute operation documented by hand: its body is parsed by the domain, not by
    Litestar, so Litestar would document no body at all; the schema is stated here."""

    def __post_init__(self) -> None:
        self.request_body = EXECUTE_REQUEST_BODY
        described = {
            200: "main() returned: {result, stdout, stderr, usage}",
            **{
                status: f"error body {{error, message, stdout, ...}}; error is one of {codes}"
                for status, codes in ERROR_CODES_BY_STATUS.items()
            },
        }
        self.responses = {
            str(status): OpenAPIResponse(
                description=text,
                content={JSON: OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT))},
            )
            for status, text in described.items()
        }


def _log_execution(outcome: Outcome) -> None:
    """One line per execution for operators (there is no access log)."""
    code = outcome.code.code if isinstance(outcome, Failure) else "OK"
    usage = outcome.usage
    if usage is None:
        log.info("execute: %s", code)
    else:
        log.info(
            "execute: %s wall=%.0fms cpu=%.0fms",
            code,
            usage.wall_time_s * 1000,
            usage.cpu_time_s * 1000,
        )


def build_app(
    *,
    execute: Callable[[ExecuteRequest], Awaitable[Outcome]],
    health: Callable[[], tuple[bool, dict[str, Any]]],
    metrics_text: Callable[[], str],
    limits: Limits,
    max_body_bytes: int,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
) -> Litestar:
    @get("/health", sync_to_thread=False)
    def health_route() -> Response[dict[str, Any]]:
        ok, details = health()
        return Response(content={"ok": ok, **details}, status_code=200 if ok else 503)

    @post("/execute", operation_class=ExecuteOperation, request_max_body_size=max_body_bytes)
    async def execute_route(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await request.body()
        try:
            parsed = parse_execute_body(body, limits)
        except RequestRejected as rejected:
            code = ErrorCode.PAYLOAD_TOO_LARGE if rejected.too_large else ErrorCode.INVALID_REQUEST
            details = {"field": rejected.field} if rejected.field else {}
            return _json_response(*rejection(code, rejected.message, **details))
        outcome = await execute(parsed)
        _log_execution(outcome)
        return _json_response(*render(outcome))

    @get("/metrics", sync_to_thread=False, media_type="text/plain; version=0.0.4")
    def metrics_route() -> str:
        return metrics_text()

    def too_large(_request: Request[Any, Any, Any], _exc: Exception) -> Response[bytes]:
        return _json_response(
            *rejection(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"The request body exceeds the maximum of {max_body_bytes} bytes.",
            )
        )

    def bad_request(_request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        detail = exc.detail if isinstance(exc, HTTPException) else "bad request"
        return _json_response(*rejection(ErrorCode.INVALID_REQUEST, f"Invalid request: {detail}."))

    return Litestar(
        route_handlers=[health_route, execute_route, metrics_route],
        exception_handlers={413: too_large, 400: bad_request},
        lifespan=list(lifespan),
        openapi_config=OpenAPIConfig(
            title="safe-exec",
            version="1.0.0",
            description="Runs untrusted Python in a sandbox. Contract: shared/contract.md v1.",
        ),
        debug=False,
    )
