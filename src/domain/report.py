"""What a sandbox run reported, before any interpretation.

The in-sandbox harness (src/adapters/sandbox/harness.py) writes one report on a dedicated file
descriptor: the execution's random token line, a JSON header line, then for status "ok" the
result's JSON text. A report without the token is not the harness's and is ignored.
The status names below are that protocol; the harness repeats them because it may import
nothing from the service (a unit test keeps the two in step).
"""

from __future__ import annotations

import enum

import attrs

# Bounds of a report's header, which the harness keeps and the service enforces: each text
# field (exception, detail, traceback) at most TEXT_CAP_BYTES of UTF-8, the header line at
# most HEADER_CAP_BYTES.
TEXT_CAP_BYTES = 8192
HEADER_CAP_BYTES = 32768


class HarnessStatus(enum.Enum):
    OK = "ok"
    NO_MAIN = "no_main"
    NON_JSON = "non_json"
    SYNTAX_ERROR = "syntax_error"
    RUNTIME_ERROR = "runtime_error"
    MEMORY_ERROR = "memory_error"
    OUTPUT_LIMIT = "output_limit"


@attrs.frozen(kw_only=True)
class SandboxReport:
    """Facts a runner observed about one execution, measured outside the sandbox where possible.

    - `exit_code` / `signal`: how the sandboxed process ended (at most one is set).
    - `timed_out`: the runner's wall-clock deadline fired and it killed the execution.
    - `oom_killed`: the kernel's OOM killer acted in the execution's cgroup (None: not knowable).
    - `cpu_limit_hit`: the runner knows the CPU-time rlimit ended the process (nsjail: a SIGKILL
      to the jail's init that neither the deadline nor the OOM killer sent can only be it).
    - `harness_report`: bytes read from the result channel (empty if nothing was written).
    - `report_token`: the token a genuine report starts with (empty: no token expected).
    - `sandbox_error`: the sandbox itself failed (could not start, setup error), in one line.
    """

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    oom_killed: bool | None = None
    cpu_limit_hit: bool = False
    harness_report: bytes = b""
    harness_report_truncated: bool = False
    report_token: bytes = b""
    stdout: bytes = b""
    stdout_truncated: bool = False
    stderr: bytes = b""
    stderr_truncated: bool = False
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0
    peak_memory_bytes: int | None = None
    sandbox_error: str | None = None
