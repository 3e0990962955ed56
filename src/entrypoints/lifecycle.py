"""Starting and stopping the sandboxes around a server's life, the same for every transport
(the HTTP app's lifespan, MCP over stdio)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from application.ports import Sandbox
from entrypoints.container import Container

log = logging.getLogger("safe_exec")


def start_choosing(container: Container) -> asyncio.Task[Sandbox | None]:
    """Probe the candidates and warm the chosen sandbox in the background: it takes about a
    second, during which requests wait for it (ActiveSandbox.wait) instead of failing."""
    settings = container.settings()
    return asyncio.create_task(
        asyncio.to_thread(
            container.active_sandbox().choose,
            container.candidates(),
            settings.limits,
            log.info,
            log.warning,
        )
    )


async def release(
    container: Container,
    choosing: asyncio.Task[Sandbox | None],
    idle: Callable[[], Awaitable[None]],
) -> None:
    """After admission has closed: wait (up to SHUTDOWN_GRACE_S) for `idle`, then stop every
    sandbox process and remove the service's cgroups."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(idle(), container.settings().shutdown_grace_s)
    with contextlib.suppress(Exception):
        await choosing  # a start-up still warming finishes before it is undone
    container.executor().shutdown(wait=False, cancel_futures=True)
    await asyncio.to_thread(container.active_sandbox().close)  # zygotes and their forks end
    cgroups = container.cgroups()
    if cgroups is not None:
        cgroups.remove()
