"""Log output: `LOG_FORMAT=text` (a line of `key=value` pairs after the message) or `json`
(one JSON object per line, python-json-logger). Extra fields of a record become keys."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
# uvicorn adds a colourised copy of its messages; it is noise in both formats.
IGNORED_EXTRAS = frozenset({"color_message"})
STANDARD_ATTRS = frozenset(RESERVED_ATTRS) | {"message", "asctime"} | IGNORED_EXTRAS
PLAIN_VALUE = re.compile(r"[\w.:/@+-]*")


def _value(value: Any) -> str:
    if isinstance(value, str) and PLAIN_VALUE.fullmatch(value) and value:
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value, separators=(",", ":"), default=str)


class KeyValueFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> <message> key=value ...` for the record's extra fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={_value(value)}"
            for key, value in record.__dict__.items()
            if key not in STANDARD_ATTRS
        ]
        if not extras:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {' '.join(extras)}{newline}{rest}"


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            timestamp="time",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, *IGNORED_EXTRAS],
        )
    if log_format == "text":
        return KeyValueFormatter()
    raise ValueError(f"unknown log format {log_format!r}; one of {', '.join(LOG_FORMATS)}")


def configure_logging(
    log_format: str, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """One handler on the root logger; uvicorn's and Litestar's loggers propagate to it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
