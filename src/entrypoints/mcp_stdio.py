"""MCP over stdio (`safe-exec mcp`, or `python -m entrypoints.mcp_stdio`): for desktop agents
that start the server themselves and talk to it over its stdin and stdout.

The same sandbox, limits, slots and `run_python` tool as the HTTP service, configured by the
same environment variables. No API key is asked: the transport is a pipe between the agent and
a process it started as its own user, so whoever can write to it could run the process anyway.
Logs go to stderr; stdout carries only the protocol (while it serves, the SDK points fd 1 at
stderr, and sandboxes never inherit either stream)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from mcp.server.stdio import stdio_server

from adapters.logs import configure_logging
from adapters.mcp.tool import RunPython, build_server
from adapters.settings import Settings, SettingsError
from entrypoints.container import Container
from entrypoints.lifecycle import release, start_choosing

log = logging.getLogger("safe_exec.mcp")


def run_stdio(settings: Settings) -> int:
    """Serve MCP on stdin/stdout until the client closes stdin (or SIGTERM/SIGINT); 0 then."""
    configure_logging(settings.log_format)  # stderr: stdout is the protocol's
    container = Container()
    container.settings.override(settings)
    asyncio.run(_serve(container))
    return 0


async def _serve(container: Container) -> None:
    settings = container.settings()
    slots = container.slots()
    server = build_server(
        RunPython(
            container.execute(),
            settings.limits,
            observe_rejection=container.metrics().observe_rejection,
        )
    )
    serving = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        if serving is not None:
            loop.add_signal_handler(signum, serving.cancel)
    # Probing and warming the sandboxes takes about a second: the client's handshake is
    # answered meanwhile, and a tool call waits for it (as /execute does).
    choosing = start_choosing(container)
    try:
        async with stdio_server() as (read_stream, write_stream):
            log.info("serving MCP on stdio", extra={"tool": "run_python"})
            await server.run(read_stream, write_stream, server.create_initialization_options())
    except asyncio.CancelledError:
        log.info("stopping on a signal")
    finally:
        slots.close()
        await release(container, choosing, slots.wait_idle)


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"safe-exec: configuration error: {error}", file=sys.stderr)
        return 2
    return run_stdio(settings)


if __name__ == "__main__":
    sys.exit(main())
