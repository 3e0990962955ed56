"""Resource limits that one execution runs under."""

from __future__ import annotations

import math

import attrs
from attrs import validators as v

KIB = 1024
MIB = 1024 * KIB


def _positive_number(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _not_bool(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be an integer, got {value!r}")


_positive_int = [v.instance_of(int), _not_bool, v.gt(0)]


CPU_ACCOUNTING_SLACK = 0.9


@attrs.frozen(kw_only=True)
class Limits:
    """Every bound one execution is held to. Defaults are the documented service defaults."""

    wall_time_s: float = attrs.field(default=5.0, validator=_positive_number)
    cpu_time_s: float = attrs.field(default=5.0, validator=_positive_number)
    memory_bytes: int = attrs.field(default=512 * MIB, validator=_positive_int)
    max_processes: int = attrs.field(default=32, validator=_positive_int)
    max_open_files: int = attrs.field(default=64, validator=_positive_int)
    tmp_size_bytes: int = attrs.field(default=64 * MIB, validator=_positive_int)
    stdout_cap_bytes: int = attrs.field(default=1 * MIB, validator=_positive_int)
    stderr_cap_bytes: int = attrs.field(default=64 * KIB, validator=_positive_int)
    result_cap_bytes: int = attrs.field(default=1 * MIB, validator=_positive_int)
    script_cap_bytes: int = attrs.field(default=256 * KIB, validator=_positive_int)

    @property
    def cpu_limit_whole_seconds(self) -> int:
        """RLIMIT_CPU counts whole seconds; round up so a 1.5 s limit is not cut to 1 s."""
        whole = int(self.cpu_time_s)
        return whole if whole == self.cpu_time_s else whole + 1

    def cpu_limit_reached(self, cpu_s: float) -> bool:
        """Whether a measured CPU time is at the CPU limit, within the kernel's accounting
        granularity: a process killed by RLIMIT_CPU can report a few percent less."""
        return cpu_s >= CPU_ACCOUNTING_SLACK * self.cpu_time_s

    def as_public_dict(self) -> dict[str, float | int]:
        """The effective limits as clients see them (documented in the README)."""
        return {
            "wall_time_s": self.wall_time_s,
            "cpu_time_s": self.cpu_time_s,
            "memory_mb": self.memory_bytes // MIB,
            "max_processes": self.max_processes,
            "max_open_files": self.max_open_files,
            "tmp_size_mb": self.tmp_size_bytes // MIB,
            "stdout_cap_bytes": self.stdout_cap_bytes,
            "result_cap_bytes": self.result_cap_bytes,
            "script_cap_bytes": self.script_cap_bytes,
        }
