"""Service configuration from environment variables, validated once at start-up."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from adapters.logs import LOG_FORMATS
from adapters.sandbox.runtime import default_interpreter
from domain.limits import KIB, MIB, Limits

T = TypeVar("T")
# Runner names; auto tries them in this order. FORCE_COMPAT=1 means "compat": the rlimit pair.
SANDBOX_MODES = ("auto", "nsjail-warm", "nsjail", "rlimit-warm", "rlimit")
COMPAT_MODE = "compat"
DEFAULT_SITE = "/opt/safe-exec/sandbox-site"


class SettingsError(ValueError):
    """A configuration value is unusable; the message names the variable and the value."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError
    return value


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def _log_format(text: str) -> str:
    if text not in LOG_FORMATS:
        raise ValueError
    return text


def _module_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not all(part.isidentifier() for name in names for part in name.split(".")):
        raise ValueError
    return names


def _mode(text: str) -> str:
    if text not in SANDBOX_MODES:
        raise ValueError
    return text


# variable -> (parser, default, what a valid value is)
VARIABLES: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "HOST": (str, "0.0.0.0", "an address to listen on"),
    "PORT": (_port, "8080", "a TCP port 1-65535"),
    "SANDBOX": (_mode, "auto", "one of " + ", ".join(SANDBOX_MODES)),
    "PRELOAD": (_module_list, "numpy,pandas", "comma-separated module names (may be empty)"),
    "FORCE_COMPAT": (_flag, "0", "1 or 0"),
    "WALL_TIME_S": (_positive_float, "5", "seconds > 0"),
    "CPU_TIME_S": (_positive_float, "", "seconds > 0 (default: WALL_TIME_S)"),
    "MEMORY_MB": (_positive_int, "512", "an integer > 0"),
    "MAX_PROCESSES": (_positive_int, "32", "an integer > 0"),
    "MAX_OPEN_FILES": (_positive_int, "64", "an integer > 0"),
    "TMP_SIZE_MB": (_positive_int, "64", "an integer > 0"),
    "STDOUT_CAP_BYTES": (_positive_int, str(1 * MIB), "an integer > 0"),
    "STDERR_CAP_BYTES": (_positive_int, str(64 * KIB), "an integer > 0"),
    "RESULT_CAP_BYTES": (_positive_int, str(1 * MIB), "an integer > 0"),
    "MAX_SCRIPT_BYTES": (_positive_int, str(256 * KIB), "an integer > 0"),
    "MAX_BODY_BYTES": (_positive_int, str(1 * MIB), "an integer > 0"),
    "MAX_CONCURRENCY": (_positive_int, "", "an integer > 0 (default: number of CPUs)"),
    "QUEUE_SIZE": (_non_negative_int, "", "an integer >= 0 (default: 4 x MAX_CONCURRENCY)"),
    "SANDBOX_UID_BASE": (_positive_int, "900000", "an integer > 0"),
    "SANDBOX_PYTHON": (str, "", "an interpreter path"),
    "SANDBOX_SITE": (str, DEFAULT_SITE, "a directory of sandbox libraries"),
    "SHUTDOWN_GRACE_S": (_positive_float, "", "seconds > 0 (default: WALL_TIME_S + 2)"),
    "LOG_FORMAT": (_log_format, "text", "one of text, json"),
}


@attrs.frozen(kw_only=True)
class Settings:
    host: str
    port: int
    sandbox_mode: str
    limits: Limits
    max_body_bytes: int
    max_concurrency: int
    queue_size: int
    uid_base: int
    sandbox_python: str
    sandbox_site: str
    shutdown_grace_s: float
    log_format: str = "text"
    preload: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str, fallback: T | None = None) -> Any:
            parse, default, valid = VARIABLES[name]
            raw = env.get(name, default)
            if raw == "" and fallback is not None:
                return fallback
            try:
                return parse(raw.strip())
            except ValueError:
                raise SettingsError(f"{name} must be {valid}; got {raw!r}") from None

        wall = get("WALL_TIME_S")
        concurrency = get("MAX_CONCURRENCY", os.cpu_count() or 1)
        mode = COMPAT_MODE if get("FORCE_COMPAT") else get("SANDBOX")
        limit_values = dict(
            wall_time_s=wall,
            cpu_time_s=get("CPU_TIME_S", wall),
            memory_bytes=get("MEMORY_MB") * MIB,
            max_processes=get("MAX_PROCESSES"),
            max_open_files=get("MAX_OPEN_FILES"),
            tmp_size_bytes=get("TMP_SIZE_MB") * MIB,
            stdout_cap_bytes=get("STDOUT_CAP_BYTES"),
            stderr_cap_bytes=get("STDERR_CAP_BYTES"),
            result_cap_bytes=get("RESULT_CAP_BYTES"),
            script_cap_bytes=get("MAX_SCRIPT_BYTES"),
        )
        try:
            limits = Limits(**limit_values)
        except (TypeError, ValueError) as error:
            raise SettingsError(str(error)) from None
        if limits.max_open_files < 16:
            raise SettingsError("MAX_OPEN_FILES must be at least 16 for Python to start")
        return cls(
            host=get("HOST"),
            port=get("PORT"),
            sandbox_mode=mode,
            limits=limits,
            max_body_bytes=get("MAX_BODY_BYTES"),
            max_concurrency=concurrency,
            queue_size=get("QUEUE_SIZE", 4 * concurrency),
            uid_base=get("SANDBOX_UID_BASE"),
            sandbox_python=get("SANDBOX_PYTHON") or default_interpreter(),
            sandbox_site=get("SANDBOX_SITE"),
            shutdown_grace_s=get("SHUTDOWN_GRACE_S", wall + 2),
            log_format=get("LOG_FORMAT"),
            preload=get("PRELOAD"),
        )
