"""The rules that turn what a sandbox reported into the contract's outcome.

Order matters and is part of the contract:
1. a sandbox that could not run at all is EMPTY_OUTPUT;
2. evidence from outside the sandbox comes next, because a script can tamper with anything
   inside it: the wall-clock deadline, the OOM killer, CPU exhaustion;
3. then a complete, well-formed report carrying the execution's token decides, but only from
   a process that exited normally (the harness always exits 0 right after reporting);
4. otherwise: result channel over its cap is OUTPUT_LIMIT, a SIGKILL at the memory ceiling
   (when the OOM killer cannot be observed directly) is MEMORY_LIMIT, and anything else is
   EMPTY_OUTPUT naming how the process ended.
"""

from __future__ import annotations

import json
import math
import signal as signals
from typing import Any

from domain.limits import MIB, Limits
from domain.outcome import ErrorCode, Failure, Outcome, Output, Success, Usage
from domain.report import HEADER_CAP_BYTES, TEXT_CAP_BYTES, HarnessStatus, SandboxReport

# When the OOM killer cannot be observed (no cgroup), a SIGKILL with peak memory this close to
# the limit is attributed to memory: nothing else in the sandbox sends SIGKILL on its own.
MEMORY_KILL_THRESHOLD = 0.9


def decode_stream(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _output(report: SandboxReport) -> Output:
    return Output(
        stdout=decode_stream(report.stdout),
        stdout_truncated=report.stdout_truncated,
        stderr=decode_stream(report.stderr),
        stderr_truncated=report.stderr_truncated,
    )


def _usage(report: SandboxReport) -> Usage:
    return Usage(
        wall_time_s=report.wall_time_s,
        cpu_time_s=report.cpu_time_s,
        peak_memory_bytes=report.peak_memory_bytes,
    )


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _over_result_cap(limits: Limits) -> str:
    return f"main() returned more JSON than the result cap of {limits.result_cap_bytes} bytes."


def _format_seconds(value: float) -> str:
    return f"{value:g} s"


# What each status's header may carry besides "status" and the usage fields: field -> kind.
_TEXT, _COUNT, _LINE = "text", "count", "line"
_FIELDS: dict[HarnessStatus, dict[str, str]] = {
    HarnessStatus.OK: {},
    HarnessStatus.NO_MAIN: {"detail": _TEXT},
    HarnessStatus.NON_JSON: {"detail": _TEXT},
    HarnessStatus.SYNTAX_ERROR: {
        "exception": _TEXT,
        "detail": _TEXT,
        "line": _LINE,
        "traceback": _TEXT,
    },
    HarnessStatus.RUNTIME_ERROR: {"exception": _TEXT, "detail": _TEXT, "traceback": _TEXT},
    HarnessStatus.MEMORY_ERROR: {},
    HarnessStatus.OUTPUT_LIMIT: {"size": _COUNT},
}
_USAGE_FIELDS = {"cpu_s": "seconds", "hwm_kib": _COUNT}
MAX_HEADER_INT_DIGITS = 20  # every integer of a genuine header fits in 64 bits


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999, -1E400: no strict encoder writes them
        raise ValueError(f"{text} is not a finite number")
    return value


def _unconverted_int(text: str) -> int:
    """Validation only: an integer of any length is valid JSON and is never converted (that
    would be quadratic, and bound by sys.int_max_str_digits)."""
    return 0


def _header_int(text: str) -> int:
    if len(text) > MAX_HEADER_INT_DIGITS:
        raise ValueError("integer too long for a report header")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    header = dict(pairs)
    if len(header) != len(pairs):
        raise ValueError("a key is given twice")
    return header


def _valid_field(kind: str, value: Any) -> bool:
    if kind == _TEXT:
        return type(value) is str and len(value.encode("utf-8")) <= TEXT_CAP_BYTES
    if kind == _LINE:
        return value is None or (type(value) is int and value >= 0)
    if kind == _COUNT:
        return type(value) is int and value >= 0
    # seconds: finite by the parser
    return type(value) in (int, float) and value >= 0


def validate_header(header: Any) -> HarnessStatus | None:
    """The status of a header that is exactly what the harness writes, else None: a JSON
    object with a known status, only that status's fields and the usage fields, each of its
    type, texts within their byte cap."""
    if not isinstance(header, dict):
        return None
    raw_status = header.get("status")
    if type(raw_status) is not str:
        return None
    try:
        status = HarnessStatus(raw_status)
    except ValueError:
        return None
    allowed = {**_FIELDS[status], **_USAGE_FIELDS}
    for key, value in header.items():
        if key == "status":
            continue
        kind = allowed.get(key)
        if kind is None or not _valid_field(kind, value):
            return None
    return status


def valid_result_json(text: str) -> bool:
    """True when `text` is one strict JSON value: no NaN/Infinity constants, no number that
    overflows to infinity. Integers are checked for syntax only, never converted. Raises
    RecursionError for a value nested too deeply."""
    try:
        json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_unconverted_int,
        )
    except ValueError:
        return False
    return True


def parse_harness_report(raw: bytes, token: bytes = b"") -> tuple[dict[str, Any], bytes] | None:
    """Split a report into its validated header and its body; None when it is missing,
    malformed, does not start with the execution's token line, or its header is not exactly
    what the harness writes (see validate_header). The body is validated by the caller."""
    if token:
        if not raw.startswith(token + b"\n"):
            return None
        raw = raw[len(token) + 1 :]
    header_line, newline, body = raw.partition(b"\n")
    if not newline or len(header_line) > HEADER_CAP_BYTES:
        return None
    try:
        header = json.loads(
            header_line.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_header_int,
            object_pairs_hook=_unique_keys,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if validate_header(header) is None:
        return None
    return header, body


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not strict JSON")


def _text(header: dict[str, Any], key: str, default: str = "") -> str:
    value = header.get(key, default)
    return value if isinstance(value, str) else default


def _from_harness(
    header: dict[str, Any], body: bytes, limits: Limits, output: Output, usage: Usage
) -> Outcome | None:
    status = HarnessStatus(header["status"])

    def failure(code: ErrorCode, message: str, **details: Any) -> Failure:
        return Failure(code=code, message=message, output=output, usage=usage, details=details)

    if status is HarnessStatus.OK:
        if len(body) > limits.result_cap_bytes:
            return failure(
                ErrorCode.OUTPUT_LIMIT,
                f"main() returned {len(body)} bytes of JSON; the result cap is "
                f"{limits.result_cap_bytes} bytes.",
            )
        try:
            text = body.decode("utf-8")
            if not valid_result_json(text):
                return None  # not what the harness writes: the report is malformed
        except RecursionError:
            return failure(ErrorCode.NON_JSON_RETURN, "main() returned a value nested too deeply.")
        except UnicodeDecodeError:
            return None
        return Success(result_json=text, output=output, usage=usage)
    if status is HarnessStatus.NO_MAIN:
        return failure(
            ErrorCode.NO_MAIN,
            f"The script defines no callable main(): {_text(header, 'detail', 'not defined')}.",
        )
    if status is HarnessStatus.NON_JSON:
        reason = _text(header, "detail", "not JSON-encodable")
        return failure(
            ErrorCode.NON_JSON_RETURN,
            f"main() returned a value that is not strictly JSON-encodable: {reason}.",
        )
    if status is HarnessStatus.SYNTAX_ERROR:
        line = header.get("line")
        line = line if isinstance(line, int) and not isinstance(line, bool) else None
        where = f" on line {line}" if line is not None else ""
        detail = _text(header, "detail", "invalid syntax")
        return failure(
            ErrorCode.SYNTAX_ERROR,
            f"The script does not compile{where}: {detail}.",
            exception=_text(header, "exception", "SyntaxError"),
            line=line,
            traceback=_text(header, "traceback"),
        )
    if status is HarnessStatus.RUNTIME_ERROR:
        exception = _text(header, "exception", "Exception")
        detail = _text(header, "detail")
        return failure(
            ErrorCode.RUNTIME_ERROR,
            f"The script raised {exception}" + (f": {detail}" if detail else "") + ".",
            exception=exception,
            traceback=_text(header, "traceback"),
        )
    if status is HarnessStatus.MEMORY_ERROR:
        return failure(
            ErrorCode.MEMORY_LIMIT,
            f"The script ran out of memory (MemoryError) under the "
            f"{limits.memory_bytes // MIB} MiB limit.",
        )
    # HarnessStatus.OUTPUT_LIMIT
    return failure(ErrorCode.OUTPUT_LIMIT, _over_result_cap(limits))


def classify(report: SandboxReport, limits: Limits) -> Outcome:
    """Decide the contract outcome of one execution from what the sandbox reported."""
    output = _output(report)
    usage = _usage(report)

    def failure(code: ErrorCode, message: str, **details: Any) -> Failure:
        return Failure(code=code, message=message, output=output, usage=usage, details=details)

    if report.sandbox_error is not None:
        return failure(ErrorCode.EMPTY_OUTPUT, f"The sandbox failed: {report.sandbox_error}.")
    if report.timed_out:
        return failure(
            ErrorCode.TIMEOUT,
            f"The script exceeded the wall-clock limit of {_format_seconds(limits.wall_time_s)}.",
            limit="wall_time",
        )
    if report.oom_killed:
        return failure(
            ErrorCode.MEMORY_LIMIT,
            f"The script was killed for exceeding the memory limit of "
            f"{limits.memory_bytes // MIB} MiB.",
        )
    cpu_exhausted = report.cpu_time_s >= limits.cpu_time_s and report.signal in (
        signals.SIGKILL,
        signals.SIGXCPU,
    )
    if report.cpu_limit_hit or report.signal == signals.SIGXCPU or cpu_exhausted:
        return failure(
            ErrorCode.TIMEOUT,
            f"The script exceeded the CPU time limit of {_format_seconds(limits.cpu_time_s)}.",
            limit="cpu_time",
        )

    exited_normally = report.signal is None and report.exit_code == 0
    if exited_normally and not report.harness_report_truncated:
        parsed = parse_harness_report(report.harness_report, report.report_token)
        if parsed is not None:
            decided = _from_harness(*parsed, limits=limits, output=output, usage=usage)
            if decided is not None:
                return decided

    if report.harness_report_truncated:
        return failure(ErrorCode.OUTPUT_LIMIT, _over_result_cap(limits))
    if (
        report.signal == signals.SIGKILL
        and report.oom_killed is None
        and report.peak_memory_bytes is not None
        and report.peak_memory_bytes >= MEMORY_KILL_THRESHOLD * limits.memory_bytes
    ):
        return failure(
            ErrorCode.MEMORY_LIMIT,
            f"The script was killed at the memory limit of {limits.memory_bytes // MIB} MiB.",
        )
    return failure(ErrorCode.EMPTY_OUTPUT, _no_report_message(report))


def _no_report_message(report: SandboxReport) -> str:
    if report.signal is not None:
        how = f"the process was killed by {_signal_name(report.signal)}"
    elif report.exit_code is not None:
        how = f"the process exited with status {report.exit_code}"
    else:
        how = "the process ended"
    if report.harness_report:
        return f"The sandbox produced no valid result: {how} after an unrecognised report."
    return f"The sandbox produced no result: {how} before main() returned."
