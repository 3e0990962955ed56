"""Service configuration from environment variables, validated once at start-up."""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from adapters.auth import parse_keys
from adapters.logs import LOG_FORMATS
from adapters.sandbox.lease import RANGE_STRIDE, UID_BASE_MAX, UID_BASE_MIN
from adapters.sandbox.runtime import default_interpreter
from domain.limits import KIB, MIB, Limits

T = TypeVar("T")
# Runner names; auto tries them in this order. FORCE_COMPAT=1 means "compat": the rlimit pair.
SANDBOX_MODES = ("auto", "nsjail-warm", "nsjail", "rlimit-warm", "rlimit")
COMPAT_MODE = "compat"
DEFAULT_SITE = "/opt/safe-exec/sandbox-site"
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


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


def _concurrency(text: str) -> int:
    """Slots get consecutive uids from the leased base: they must fit in one leased range."""
    value = int(text)
    if not 0 < value < RANGE_STRIDE:
        raise ValueError
    return value


def _uid_base(text: str) -> int:
    value = int(text)
    if not UID_BASE_MIN <= value <= UID_BASE_MAX:
        raise ValueError
    return value


def _namespaces(text: str) -> str:
    """auto: use namespaces where the kernel allows them; off: the rlimit runners' degraded
    mode, forced (for hosts that refuse them unpredictably, and for its tests)."""
    if text not in ("auto", "off"):
        raise ValueError
    return text


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


def _cgroup_v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()
        value = int(quota) / int(period) if quota != "max" else None
    except (OSError, ValueError):
        return None
    return value if value is not None and value > 0 else None


def cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPUs' worth of time a cgroup CPU quota allows this process (the tightest along its
    cgroup and the ancestors that are visible), or None when no quota is set.

    `proc_cgroup` lists the process's cgroups as /proc/self/cgroup does: `0::/path` on cgroup v2
    (cpu.max under `root`), `N:cpu,cpuacct:/path` on v1 (cpu.cfs_quota_us / cpu.cfs_period_us
    under `root/<controllers>`)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _number, _sep, rest = line.partition(":")
        controllers, _sep, path = rest.partition(":")
        names = controllers.split(",")
        if controllers == "":
            mount, read = root, _cgroup_v2_quota
            if not (root / "cgroup.controllers").exists():
                mount = root / "unified"  # the hybrid layout
        elif "cpu" in names:
            mount, read = root / controllers, _cgroup_v1_quota
            if not mount.is_dir():
                mount = root / "cpu"
        else:
            continue
        directory = mount / path.lstrip("/")
        while True:  # a container often sees only its own group at the mount's root
            quota = read(directory)
            if quota is not None:
                quotas.append(quota)
            if directory == mount or mount not in directory.parents:
                break
            directory = directory.parent
    return min(quotas) if quotas else None


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota rounded
    up (os.cpu_count() counts the host's CPUs and ignores both)."""
    cpus = len(os.sched_getaffinity(0)) or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


# Descriptors the service keeps for itself besides client connections: the listener, logs,
# the interpreter's own, and per execution slot its pipes, pidfds and zygote sockets.
FD_RESERVE_BASE = 64
FD_RESERVE_PER_SLOT = 4
MAX_CONNECTIONS_DEFAULT_CAP = 1024  # each may hold a body of up to MAX_BODY_BYTES in memory


def open_files_limit() -> int:
    """This process's soft RLIMIT_NOFILE (what accept() runs into), unlimited as a large number."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


# variable -> (parser, default, what a valid value is)
VARIABLES: dict[str, tuple[Callable[[str], Any], str, str]] = {
    "HOST": (str, "0.0.0.0", "an address to listen on"),
    "PORT": (_port, "8080", "a TCP port 1-65535"),
    "SANDBOX": (_mode, "auto", "one of " + ", ".join(SANDBOX_MODES)),
    "PRELOAD": (_module_list, "numpy,pandas", "comma-separated module names (may be empty)"),
    "FORCE_COMPAT": (_flag, "0", "1 or 0"),
    "SANDBOX_NAMESPACES": (_namespaces, "auto", "auto or off"),
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
    "MAX_CONCURRENCY": (
        _concurrency,
        "",
        f"an integer 1-{RANGE_STRIDE - 1} (default: the CPUs this process may use)",
    ),
    "QUEUE_SIZE": (_non_negative_int, "", "an integer >= 0 (default: 4 x MAX_CONCURRENCY)"),
    "SANDBOX_UID_BASE": (_uid_base, "900000", f"an integer {UID_BASE_MIN}-{UID_BASE_MAX}"),
    "SANDBOX_PYTHON": (str, "", "an interpreter path"),
    "SANDBOX_SITE": (str, DEFAULT_SITE, "a directory of sandbox libraries"),
    "SHUTDOWN_GRACE_S": (_positive_float, "", "seconds > 0 (default: WALL_TIME_S + 2)"),
    "HEADER_TIMEOUT_S": (_positive_float, "10", "seconds > 0"),
    "BODY_TIMEOUT_S": (_positive_float, "30", "seconds > 0"),
    "MAX_CONNECTIONS": (
        _positive_int,
        "",
        "an integer > 0 that leaves descriptors for the service (default: from ulimit -n)",
    ),
    "LOG_FORMAT": (_log_format, "text", "one of text, json"),
    "API_KEYS": (str, "", "comma-separated keys without whitespace (empty: no keys required)"),
    "API_KEYS_FILE": (str, "", "a readable file of keys, one per line ('#' comments)"),
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
    api_keys: tuple[str, ...] = attrs.field(default=(), repr=False)  # secrets: never shown
    namespaces: str = "auto"
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 256

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        cpus: Callable[[], int] = available_cpus,
        open_files: Callable[[], int] = open_files_limit,
    ) -> Settings:
        """The settings from `environ` (default: the process's); `cpus` gives the default
        MAX_CONCURRENCY, `open_files` the descriptor limit MAX_CONNECTIONS must fit in."""
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
        # 0 stands for "not set": the parser refuses 0 itself, so cpus() is asked only when needed
        concurrency = get("MAX_CONCURRENCY", 0) or min(cpus(), RANGE_STRIDE - 1)
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
        # Past the descriptor limit accept() fails and the bound would never apply.
        spare_fds = open_files() - FD_RESERVE_BASE - FD_RESERVE_PER_SLOT * concurrency
        connections = get("MAX_CONNECTIONS", 0)
        if connections and connections > spare_fds:
            raise SettingsError(
                f"MAX_CONNECTIONS={connections} leaves too few descriptors: the limit "
                f"(ulimit -n) is {open_files()}, so at most {max(spare_fds, 0)} fit; raise it"
            )
        connections = connections or max(16, min(MAX_CONNECTIONS_DEFAULT_CAP, spare_fds))
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
            api_keys=_api_keys(get("API_KEYS"), get("API_KEYS_FILE")),
            namespaces=get("SANDBOX_NAMESPACES"),
            header_timeout_s=get("HEADER_TIMEOUT_S"),
            body_timeout_s=get("BODY_TIMEOUT_S"),
            max_connections=connections,
        )


def _api_keys(listed: str, file: str) -> tuple[str, ...]:
    """The keys of API_KEYS and API_KEYS_FILE together. The error never quotes a key."""
    try:
        keys = parse_keys(listed)
    except ValueError as error:
        raise SettingsError(f"API_KEYS is invalid: {error}") from None
    if file:
        try:
            keys += parse_keys(Path(file).read_text(encoding="utf-8"), separators="")
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"API_KEYS_FILE cannot be read: {error}") from None
        except ValueError as error:
            raise SettingsError(f"API_KEYS_FILE is invalid: {error}") from None
        if not keys:
            raise SettingsError(f"API_KEYS_FILE {file!r} holds no key")
    return tuple(dict.fromkeys(keys))
