"""`python -m entrypoints` / `safe-exec`: validate the configuration, then serve."""

from __future__ import annotations

import sys

from adapters.logs import configure_logging
from adapters.settings import Settings, SettingsError
from entrypoints.container import Container
from entrypoints.serve import serve


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"safe-exec: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    container = Container()
    container.settings.override(settings)
    return serve(settings, container)
