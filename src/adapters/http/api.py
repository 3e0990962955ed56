"""Routes of the HTTP adapter. Request parsing and outcomes come from the domain; this module
only moves bytes and gives every answer, Litestar's own included, the contract's shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from adapters import request_record
from adapters.auth import ApiKeys
from adapters.http.body import (
    DRAIN_LIMIT_BYTES,
    BodyHeaders,
    BodyTooLarge,
    ClientGone,
    discard_body,
    is_json_media_type,
    read_body,
)
from adapters.http.openapi import DocumentedOperation, ExecuteOperation
from adapters.http.playground import playground_routes
from adapters.http.render import rejection, render
from adapters.http.request_log import RequestLog
from domain.limits import Limits
from domain.outcome import ErrorCode, Failure, Outcome
from domain.request import ExecuteRequest, RequestRejected, parse_execute_body

log = logging.getLogger("safe_exec.http")
JSON = "application/json"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CLOSE = {"Connection": "close"}
CONTRACT_VERSION = "2.0.0"  # the OpenAPI document's info.version: the contract's version
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="safe-exec"'}


def _json_response(status: int, body: bytes, headers: Mapping[str, str]) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=JSON, headers=dict(headers))


def _answer(
    code: ErrorCode,
    message: str,
    headers: Mapping[str, str] = {},
    limits: Limits | None = None,
) -> Response[bytes]:
    request_record.note(code=code.code)
    status, body, extra = rejection(code, message, limits)
    return _json_response(status, body, {**extra, **headers})


def _exchange_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar's own errors (routing, a bug in a handler) in the contract's failure shape."""
    path = request.scope["path"][:200]
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _answer(ErrorCode.NOT_FOUND, f"There is no resource at {path}.")
    if status == 405:
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        allowed = headers.get("allow", "")
        message = f"{request.method} is not allowed on {path}; allowed: {allowed}."
        return _answer(ErrorCode.METHOD_NOT_ALLOWED, message, headers)
    if status == 413:
        return _answer(ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large.")
    if isinstance(exc, HTTPException) and status < 500:
        return _answer(ErrorCode.INVALID_REQUEST, f"Invalid request: {exc.detail}.")
    log.error("unexpected error", exc_info=exc, extra={"request_id": request_record.current_id()})
    return _answer(
        ErrorCode.INTERNAL_ERROR,
        f"The service failed unexpectedly (request id {request_record.current_id()}).",
    )


def build_app(
    *,
    execute: Callable[[ExecuteRequest], Awaitable[Outcome]],
    health: Callable[[], tuple[bool, dict[str, Any]]],
    metrics_text: Callable[[], bytes | str],
    limits: Limits,
    max_body_bytes: int,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
    runner: Callable[[], str | None] = lambda: None,
    observe_rejection: Callable[[str], None] = lambda _code: None,
    drain_limit_bytes: int = DRAIN_LIMIT_BYTES,
    api_keys: ApiKeys | None = None,
    extra_routes: Sequence[BaseRouteHandler] = (),
) -> Litestar:
    keys = api_keys or ApiKeys()

    def refuse(
        code: ErrorCode, message: str, *, drained: bool = True, headers: Mapping[str, str] = {}
    ) -> Response[bytes]:
        observe_rejection(code.code)
        return _answer(code, message, {**headers, **({} if drained else CLOSE)}, limits)

    @get("/health", sync_to_thread=False, operation_class=DocumentedOperation)
    def health_route() -> Response[dict[str, Any]]:
        ok, details = health()
        if ok:
            request_record.note(code="OK")
            return Response(content={"ok": True, **details})
        reason = details.get("reason", "unavailable")
        request_record.note(code=ErrorCode.UNAVAILABLE.code)
        return Response(
            content={
                "ok": False,
                "error": ErrorCode.UNAVAILABLE.code,
                "message": f"The service is unavailable: {reason}.",
                **details,
            },
            status_code=ErrorCode.UNAVAILABLE.http_status,
        )

    @post("/execute", operation_class=ExecuteOperation, request_max_body_size=None)
    async def execute_route(request: Request[Any, Any, Any]) -> Response[bytes]:
        headers = BodyHeaders.parse(request.scope["headers"])
        if not keys.admits_authorization(request.headers.get("authorization")):
            drained = await discard_body(request.receive, headers, drain_limit_bytes)
            return refuse(
                ErrorCode.UNAUTHORIZED,
                "A valid API key is required: send it as 'Authorization: Bearer <key>'.",
                drained=drained,
                headers=UNAUTHORIZED_HEADERS,
            )
        if not is_json_media_type(headers.content_type):
            drained = await discard_body(request.receive, headers, drain_limit_bytes)
            return refuse(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                "The body must be JSON sent as Content-Type application/json (or a +json "
                f"type); got {headers.content_type or 'none'!r}.",
                drained=drained,
            )
        try:
            body = await read_body(request.receive, headers, max_body_bytes, drain_limit_bytes)
        except BodyTooLarge as too_large:
            return refuse(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"The request body exceeds the maximum of {max_body_bytes} bytes.",
                drained=too_large.drained,
            )
        except ClientGone:
            return refuse(
                ErrorCode.INVALID_REQUEST,
                "The client disconnected before sending the whole body.",
                drained=False,
            )
        try:
            parsed = parse_execute_body(body, limits)
        except RequestRejected as rejected:
            code = ErrorCode.PAYLOAD_TOO_LARGE if rejected.too_large else ErrorCode.INVALID_REQUEST
            details = {"field": rejected.field} if rejected.field else {}
            observe_rejection(code.code)
            request_record.note(code=code.code)
            return _json_response(*rejection(code, rejected.message, limits, **details))
        outcome = await execute(parsed)
        _note_outcome(outcome, runner())
        return _json_response(*render(outcome))

    @get(
        "/metrics",
        sync_to_thread=False,
        media_type=PROMETHEUS_TEXT,
        operation_class=DocumentedOperation,
    )
    def metrics_route() -> bytes | str:
        return metrics_text()

    app = Litestar(
        route_handlers=[
            health_route,
            execute_route,
            metrics_route,
            *playground_routes(),
            *extra_routes,
        ],
        exception_handlers={Exception: _exchange_error},
        lifespan=list(lifespan),
        openapi_config=OpenAPIConfig(
            title="safe-exec",
            version=CONTRACT_VERSION,
            description="Runs untrusted Python in a sandbox. Contract: shared/contract.md "
            "version 2 (version 1 requests are valid version 2 requests). With API keys "
            "configured, /execute needs 'Authorization: Bearer <key>'; /health stays open.",
            security=[],
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="Only when the operator configures API_KEYS or API_KEYS_FILE",
                    )
                }
            ),
        ),
        logging_config=None,
        debug=False,
    )
    # Outside routing and Litestar's exception handling, so every request is logged once.
    app.asgi_handler = RequestLog(app.asgi_handler, log)
    return app


def _note_outcome(outcome: Outcome, runner: str | None) -> None:
    """The execution's facts for the request's log line (never the script or its output)."""
    fields: dict[str, Any] = {"runner": runner}
    if outcome.limits is not None:
        fields["limits"] = outcome.limits.as_public_dict()
    if outcome.usage is not None:
        fields["wall_ms"] = round(outcome.usage.wall_time_s * 1000, 1)
        fields["cpu_ms"] = round(outcome.usage.cpu_time_s * 1000, 1)
    code = outcome.code.code if isinstance(outcome, Failure) else "OK"
    request_record.note(code=code, **fields)
