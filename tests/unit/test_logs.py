"""LOG_FORMAT: text (key=value after the message) or json (one object per line)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from adapters.logs import configure_logging, formatter
from adapters.settings import Settings, SettingsError


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("safe_exec.http", logging.INFO, __file__, 1, "request", None, None)
    rec.__dict__.update(extra)
    return rec


def test_text_puts_extra_fields_after_the_message() -> None:
    line = formatter("text").format(
        record(request_id="r-1", status=200, duration_ms=1.5, limits={"memory_mb": 512})
    )

    assert line.endswith(
        "INFO safe_exec.http request "
        'request_id=r-1 status=200 duration_ms=1.5 limits={"memory_mb":512}'
    )


def test_text_quotes_values_with_spaces() -> None:
    assert formatter("text").format(record(path="/a b")).endswith('path="/a b"')


def test_json_is_one_object_with_the_extra_fields() -> None:
    line = formatter("json").format(record(request_id="r-1", code="OK", limits={"a": 1}))

    fields = json.loads(line)
    assert fields["message"] == "request"
    assert fields["level"] == "INFO"
    assert fields["logger"] == "safe_exec.http"
    assert fields["request_id"] == "r-1"
    assert fields["limits"] == {"a": 1}
    assert "time" in fields
    assert "\n" not in line


def test_uvicorn_colour_copies_are_dropped() -> None:
    assert "color_message" not in formatter("json").format(record(color_message="x"))
    assert "color_message" not in formatter("text").format(record(color_message="x"))


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        formatter("xml")


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
def test_configure_logging_routes_every_logger_to_one_handler() -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)

    logging.getLogger("uvicorn.error").info("started")

    assert json.loads(stream.getvalue())["message"] == "started"
    assert len(logging.getLogger().handlers) == 1


def test_log_format_defaults_to_text() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"LOG_FORMAT": "json"}).log_format == "json"


def test_a_bad_log_format_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})
