"""The app factory: `create_app()` returns the Litestar application, fully wired."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
from litestar import Litestar

from adapters.http.api import build_app
from adapters.mcp.http import McpHttpEndpoint
from entrypoints.container import Container
from entrypoints.lifecycle import release, start_choosing

log = logging.getLogger("safe_exec")


@attrs.frozen
class Drain:
    """What the server loop (entrypoints.serve) needs to shut the app down as documented:
    `begin` makes /health answer 503 and new executions UNAVAILABLE while running ones go
    on; `idle` waits for those to end; `hurry` cuts every wait short (a second signal)."""

    begin: Callable[[], None]
    idle: Callable[[], Awaitable[None]]
    hurry: Callable[[], None]


def create_app(container: Container | None = None) -> Litestar:
    container = container or Container()
    settings = container.settings()
    active = container.active_sandbox()
    slots = container.slots()
    state = {"stopping": False}
    hurry = asyncio.Event()

    def begin_shutdown() -> None:
        state["stopping"] = True
        slots.close()

    async def idle_or_hurried() -> None:
        waits = [asyncio.ensure_future(slots.wait_idle()), asyncio.ensure_future(hurry.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        # Choosing runs real probe executions and warms zygotes: in the background, so that
        # /health answers at once.
        choosing = start_choosing(container)
        try:
            yield
        finally:
            begin_shutdown()
            await release(container, choosing, idle_or_hurried)

    def health() -> tuple[bool, dict[str, Any]]:
        sandbox = active.get()
        details: dict[str, Any] = {
            "sandbox": sandbox.name if sandbox is not None else None,
            "isolation": list(sandbox.isolation) if sandbox is not None else [],
            "slots": {"capacity": slots.capacity, "in_use": slots.in_use, "queued": slots.waiting},
            "limits": settings.limits.as_public_dict(),
            "auth_required": container.api_keys().required,
        }
        if state["stopping"]:
            return False, {**details, "reason": "shutting down"}
        if not active.chosen:  # /execute waits for the warm-up rather than failing
            return True, {**details, "warming": True}
        if sandbox is None:
            return False, {**details, "reason": "no working sandbox (see the service log)"}
        return True, details

    def standby_count() -> int:
        count = getattr(active.get(), "standby_count", None)  # only warm runners keep a pool
        return int(count()) if callable(count) else 0

    container.metrics().track_warm_pool(standby_count)
    # MCP is one more door to the same use case: the same ExecuteScript, slots and keys.
    mcp = McpHttpEndpoint(
        container.execute(),
        limits=settings.limits,
        max_body_bytes=settings.max_body_bytes,
        api_keys=container.api_keys(),
        host=settings.host,
        observe_rejection=container.metrics().observe_rejection,
    )
    app = build_app(
        execute=container.execute(),
        health=health,
        metrics_text=container.metrics().render,
        limits=settings.limits,
        max_body_bytes=settings.max_body_bytes,
        runner=container.runner_name(),
        observe_rejection=container.metrics().observe_rejection,
        api_keys=container.api_keys(),
        # MCP's lifespan wraps the service's: executions drain before its task group ends.
        lifespan=[mcp.lifespan, lifespan],
        extra_routes=[mcp.route()],
    )
    app.state.drain = Drain(begin=begin_shutdown, idle=idle_or_hurried, hurry=hurry.set)
    return app
