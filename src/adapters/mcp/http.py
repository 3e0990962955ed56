"""MCP's streamable-HTTP transport, mounted in the service's Litestar app at `/mcp`.

Stateless and JSON-answered (`stateless=True`, `json_response=True`): every POST carries one
JSON-RPC message and gets one JSON answer, with no session to remember. A tool call needs
nothing from an earlier request (no sampling, no elicitation, no progress stream), so any
replica behind a load balancer can answer any request, and no proxy has to pass SSE through.

API keys are checked here, before the SDK sees the request: with keys configured, a request
without a valid `Authorization: Bearer <key>` gets the contract's `401 UNAUTHORIZED`, exactly as
`/execute` would answer it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Litestar, asgi
from litestar.enums import ScopeType
from litestar.handlers import ASGIRouteHandler
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from adapters import request_record
from adapters.auth import ApiKeys, bearer_token
from adapters.http.api import UNAUTHORIZED_HEADERS
from adapters.http.body import DRAIN_LIMIT_BYTES, BodyHeaders, discard_body
from adapters.http.render import rejection
from domain.limits import Limits
from domain.outcome import ErrorCode

MCP_PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UNAUTHORIZED_MESSAGE = "A valid API key is required: send it as 'Authorization: Bearer <key>'."


def transport_security(host: str) -> TransportSecuritySettings | None:
    """The SDK's own default: a server bound to loopback only answers requests addressed to
    loopback (a web page cannot reach it through DNS rebinding); one bound to a public address
    is reached under names it cannot know, and gets no Host check."""
    if host not in LOOPBACK_HOSTS:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            return value.decode("latin-1")
    return None


class McpHttpEndpoint:
    """The `/mcp` ASGI endpoint: the API-key gate, then the SDK's session manager, whose task
    group lives in the app's lifespan (`lifespan`)."""

    def __init__(
        self,
        server: Server[Any],
        *,
        limits: Limits,
        max_body_bytes: int,
        api_keys: ApiKeys | None = None,
        host: str = "0.0.0.0",
        observe_rejection: Callable[[str], None] = lambda _code: None,
        drain_limit_bytes: int = DRAIN_LIMIT_BYTES,
    ) -> None:
        self._keys = api_keys or ApiKeys()
        self._limits = limits
        self._observe_rejection = observe_rejection
        self._drain_limit_bytes = drain_limit_bytes
        # The SDK logs each stateless request at INFO ("Terminating session: None"); the
        # service's own line per request says what matters.
        logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
        self.manager = StreamableHTTPSessionManager(
            app=server,
            json_response=True,
            stateless=True,
            security_settings=transport_security(host),
            # The same cap as /execute's body: a script that fits one fits the other.
            max_request_body_size=max_body_bytes,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not self._keys.admits(
            bearer_token(_authorization(scope))
        ):
            await self._refuse(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)  # type: ignore[arg-type]

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = BodyHeaders.parse(scope["headers"])
        drained = await discard_body(receive, headers, self._drain_limit_bytes)
        self._observe_rejection(ErrorCode.UNAUTHORIZED.code)
        request_record.note(code=ErrorCode.UNAUTHORIZED.code)
        status, body, extra = rejection(ErrorCode.UNAUTHORIZED, UNAUTHORIZED_MESSAGE, self._limits)
        fields = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            **{name.lower(): value for name, value in {**extra, **UNAUTHORIZED_HEADERS}.items()},
            **({} if drained else {"connection": "close"}),
        }
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode(), value.encode()) for name, value in fields.items()],
        }
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": body,
            "more_body": False,
        }
        await send(start)
        await send(end)

    def route(self) -> ASGIRouteHandler:
        """The Litestar route: every method on `/mcp` reaches the endpoint (the SDK answers
        the methods MCP does not use)."""

        @asgi(MCP_PATH, copy_scope=True)
        async def mcp_route(scope: Scope, receive: Receive, send: Send) -> None:
            await self(scope, receive, send)

        return mcp_route
