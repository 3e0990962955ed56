"""MCP's streamable-HTTP transport, mounted in the service's Litestar app at `/mcp`.

Stateless and JSON-answered (`stateless=True`, `json_response=True`): every POST carries one
JSON-RPC message and gets one JSON answer, with no session to remember. A tool call needs
nothing from an earlier request (no sampling, no elicitation, no progress stream), so any
replica behind a load balancer can answer any request, and no proxy has to pass SSE through.

API keys are checked here, before the SDK sees the request: with keys configured, a request
without a valid `Authorization: Bearer <key>` gets the contract's `401 UNAUTHORIZED`, exactly as
`/execute` would answer it.

The SDK is loaded on the first `/mcp` request, in a worker thread: importing it costs about a
second of CPU, three times the rest of the service, which a service that never sees an MCP
client does not pay, at start-up or in competition with its first executions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from litestar import Litestar, asgi
from litestar.enums import ScopeType
from litestar.handlers import ASGIRouteHandler
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from adapters import request_record
from adapters.auth import ApiKeys, bearer_token
from adapters.http.api import UNAUTHORIZED_HEADERS
from adapters.http.body import DRAIN_LIMIT_BYTES, BodyHeaders, discard_body
from adapters.http.render import rejection
from domain.limits import Limits
from domain.outcome import ErrorCode, Outcome
from domain.request import ExecuteRequest

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

log = logging.getLogger("safe_exec.mcp")
MCP_PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
Execute = Callable[[ExecuteRequest], Awaitable[Outcome]]
UNAUTHORIZED_MESSAGE = "A valid API key is required: send it as 'Authorization: Bearer <key>'."


def transport_security(host: str) -> TransportSecuritySettings | None:
    """The SDK's own default: a server bound to loopback only answers requests addressed to
    loopback (a web page cannot reach it through DNS rebinding); one bound to a public address
    is reached under names it cannot know, and gets no Host check."""
    if host not in LOOPBACK_HOSTS:
        return None
    from mcp.server.transport_security import TransportSecuritySettings

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
    """The `/mcp` ASGI endpoint: the API-key gate, then the SDK's session manager. The manager's
    task group runs in a task of the app's lifespan (`lifespan`), from the first request to
    shutdown.

    Calls run the `run_python` tool on `execute`, the use case `/execute` runs."""

    def __init__(
        self,
        execute: Execute,
        *,
        limits: Limits,
        max_body_bytes: int,
        api_keys: ApiKeys | None = None,
        host: str = "0.0.0.0",
        observe_rejection: Callable[[str], None] = lambda _code: None,
        drain_limit_bytes: int = DRAIN_LIMIT_BYTES,
    ) -> None:
        self._execute = execute
        self._keys = api_keys or ApiKeys()
        self._limits = limits
        self._max_body_bytes = max_body_bytes
        self._host = host
        self._observe_rejection = observe_rejection
        self._drain_limit_bytes = drain_limit_bytes
        self._manager: StreamableHTTPSessionManager | None = None
        self._wake = asyncio.Event()  # the first /mcp request, or shutdown
        self._settled = asyncio.Event()  # the manager runs, or could not be started
        self._stopping = asyncio.Event()

    def _load(self) -> StreamableHTTPSessionManager:
        """The SDK's session manager around the tool's server (run in a worker thread)."""
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        from adapters.mcp.tool import RunPython, build_server

        tool = RunPython(self._execute, self._limits, observe_rejection=self._observe_rejection)

        # The SDK logs each stateless request at INFO ("Terminating session: None"); the
        # service's own line per request says what matters.
        logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
        return StreamableHTTPSessionManager(
            app=build_server(tool),
            json_response=True,
            stateless=True,
            security_settings=transport_security(self._host),
            # The same cap as /execute's body: a script that fits one fits the other.
            max_request_body_size=self._max_body_bytes,
        )

    async def _run_manager(self) -> None:
        """Once MCP is wanted, load the SDK, then hold the manager's task group open until
        shutdown (anyio wants it entered and left in one task)."""
        await self._wake.wait()
        try:
            if self._stopping.is_set():
                return
            manager = await asyncio.to_thread(self._load)
            async with manager.run():
                self._manager = manager
                self._settled.set()
                log.info("MCP ready", extra={"path": MCP_PATH})
                await self._stopping.wait()
        except Exception:
            log.exception("MCP could not be started; /mcp answers UNAVAILABLE")
        finally:
            self._manager = None
            self._settled.set()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        running = asyncio.create_task(self._run_manager())
        try:
            yield
        finally:
            self._stopping.set()
            self._wake.set()
            await running

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not self._keys.admits(
            bearer_token(_authorization(scope))
        ):
            self._observe_rejection(ErrorCode.UNAUTHORIZED.code)
            await self._refuse(
                ErrorCode.UNAUTHORIZED, UNAUTHORIZED_MESSAGE, scope, receive, send, auth=True
            )
            return
        self._wake.set()
        await self._settled.wait()
        manager = self._manager
        if manager is None:
            message = "MCP is not available on this instance (see the service log)."
            await self._refuse(ErrorCode.UNAVAILABLE, message, scope, receive, send)
            return
        await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]

    async def _refuse(
        self,
        code: ErrorCode,
        message: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        auth: bool = False,
    ) -> None:
        """The contract's failure answer, after reading what the client sends of its body
        (as /execute does; a body too large to drain closes the connection instead)."""
        drained = await discard_body(
            receive, BodyHeaders.parse(scope["headers"]), self._drain_limit_bytes
        )
        request_record.note(code=code.code)
        status, body, extra = rejection(code, message, self._limits)
        fields = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            **{name.lower(): value for name, value in extra.items()},
            **({"www-authenticate": UNAUTHORIZED_HEADERS["WWW-Authenticate"]} if auth else {}),
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
