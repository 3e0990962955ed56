"""`python -m entrypoints` / `safe-exec`: validate the configuration, then serve with uvicorn."""

from __future__ import annotations

import sys

import uvicorn

from adapters.logs import configure_logging
from adapters.settings import Settings, SettingsError
from entrypoints.app import create_app
from entrypoints.container import Container


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"safe-exec: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    container = Container()
    container.settings.override(settings)
    uvicorn.run(
        create_app(container),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,  # the app logs one line per request itself
        log_config=None,  # uvicorn's loggers propagate to configure_logging's handler
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
    )
    return 0
