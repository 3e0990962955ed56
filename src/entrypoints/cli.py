"""`python -m entrypoints` / `safe-exec`: validate the configuration, then serve with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn

from adapters.settings import Settings, SettingsError
from entrypoints.app import create_app
from entrypoints.container import Container


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"safe-exec: configuration error: {error}", file=sys.stderr)
        return 2
    container = Container()
    container.settings.override(settings)
    uvicorn.run(
        create_app(container),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
    )
    return 0
