"""Exhaustive example-based tests of domain.classify: harness statuses, precedence, messages.

The precedence under test is the one in domain/classify.py's docstring:
1. sandbox_error; 2. outside evidence (wall clock, OOM killer, CPU); 3. a well-formed report
with the execution's token from a process that exited 0; 4. truncated channel, SIGKILL at the
memory ceiling, else EMPTY_OUTPUT naming how the process ended.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from domain.classify import MEMORY_KILL_THRESHOLD, classify, decode_stream, parse_harness_report
from domain.limits import MIB, Limits
from domain.outcome import ErrorCode, Failure, Outcome, Output, Success, Usage
from domain.report import HarnessStatus, SandboxReport

LIMITS = Limits()
TOKEN = b"5f0c8a1e9b7d"
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def channel(header: dict[str, Any], body: bytes = b"", token: bytes = b"") -> bytes:
    """What the harness writes on its result channel: [token line,] JSON header line, body."""
    prefix = token + b"\n" if token else b""
    return prefix + json.dumps(header).encode() + b"\n" + body


def ok(body: bytes = b"42") -> bytes:
    return channel({"status": "ok"}, body)


def run(limits: Limits = LIMITS, **fields: Any) -> Outcome:
    return classify(SandboxReport(**fields), limits)


def reported(raw: bytes, limits: Limits = LIMITS, **fields: Any) -> Outcome:
    """Classify a run whose process exited with status 0 after writing `raw` on the channel."""
    return run(limits, **{"exit_code": 0, "harness_report": raw, **fields})


def failed(outcome: Outcome, code: ErrorCode) -> Failure:
    assert isinstance(outcome, Failure), outcome
    assert outcome.code is code, outcome
    return outcome


def succeeded(outcome: Outcome) -> Success:
    assert isinstance(outcome, Success), outcome
    return outcome


# --- every harness status -------------------------------------------------------------------

STATUS_TO_CODE: dict[HarnessStatus, ErrorCode | None] = {
    HarnessStatus.OK: None,
    HarnessStatus.NO_MAIN: ErrorCode.NO_MAIN,
    HarnessStatus.NON_JSON: ErrorCode.NON_JSON_RETURN,
    HarnessStatus.SYNTAX_ERROR: ErrorCode.SYNTAX_ERROR,
    HarnessStatus.RUNTIME_ERROR: ErrorCode.RUNTIME_ERROR,
    HarnessStatus.MEMORY_ERROR: ErrorCode.MEMORY_LIMIT,
    HarnessStatus.OUTPUT_LIMIT: ErrorCode.OUTPUT_LIMIT,
}


def test_the_status_table_covers_every_harness_status() -> None:
    assert set(STATUS_TO_CODE) == set(HarnessStatus)


@pytest.mark.parametrize("status", list(HarnessStatus), ids=lambda s: s.value)
def test_each_bare_status_maps_to_its_outcome(status: HarnessStatus) -> None:
    outcome = reported(channel({"status": status.value}, b"[1]"))

    expected = STATUS_TO_CODE[status]
    if expected is None:
        assert succeeded(outcome).result_json == "[1]"
    else:
        failed(outcome, expected)


def test_ok_returns_the_body_text_exactly_with_stdout_and_usage() -> None:
    body = b'{"b": 1,  "a": [true, null, "\\u00e9"]}'

    outcome = succeeded(
        reported(
            ok(body),
            stdout=b"hello\n",
            stderr=b"warn\n",
            wall_time_s=0.25,
            cpu_time_s=0.125,
            peak_memory_bytes=12_345,
        )
    )

    assert outcome.result_json == body.decode()
    assert outcome.output == Output(stdout="hello\n", stderr="warn\n")
    assert outcome.usage == Usage(wall_time_s=0.25, cpu_time_s=0.125, peak_memory_bytes=12_345)


def test_ok_body_may_contain_newlines() -> None:
    body = b"[\n  1,\n  2\n]"

    assert succeeded(reported(ok(body))).result_json == body.decode()


def test_ok_body_exactly_at_the_result_cap_succeeds() -> None:
    limits = Limits(result_cap_bytes=10)
    body = b'"12345678"'
    assert len(body) == 10

    assert succeeded(reported(ok(body), limits)).result_json == body.decode()


def test_ok_body_over_the_result_cap_is_output_limit() -> None:
    limits = Limits(result_cap_bytes=10)
    body = b'"123456789"'

    outcome = failed(reported(ok(body), limits), ErrorCode.OUTPUT_LIMIT)

    assert "11 bytes" in outcome.message
    assert "10 bytes" in outcome.message


def test_ok_body_over_the_cap_is_output_limit_even_when_it_is_not_json() -> None:
    failed(reported(ok(b"not json at all"), Limits(result_cap_bytes=4)), ErrorCode.OUTPUT_LIMIT)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[1, 2", b"1 2", b"undefined", b'"\xff"', b"\xef\xbb\xbf1"],
    ids=["empty", "open-brace", "unclosed-list", "two-values", "word", "bad-utf8", "bom"],
)
def test_ok_with_an_invalid_json_body_is_not_a_valid_report(body: bytes) -> None:
    outcome = failed(reported(ok(body)), ErrorCode.EMPTY_OUTPUT)

    assert outcome.message == (
        "The sandbox produced no valid result: the process exited with status 0 "
        "after an unrecognised report."
    )


def test_ok_with_a_body_nested_too_deeply_is_non_json_return() -> None:
    outcome = failed(reported(ok(DEEP_JSON)), ErrorCode.NON_JSON_RETURN)

    assert "nested too deeply" in outcome.message


@pytest.mark.parametrize("body", [b"NaN", b"Infinity", b"-Infinity", b"[1, NaN]"])
def test_ok_with_a_non_strict_json_body_is_not_a_success(body: bytes) -> None:
    # The harness encodes with allow_nan=False, so such a body is not what it writes; the
    # contract promises strictly JSON-encodable results.
    assert not isinstance(reported(ok(body)), Success)


def test_no_main_names_the_detail() -> None:
    outcome = failed(
        reported(channel({"status": "no_main", "detail": "'main' is a int"})), ErrorCode.NO_MAIN
    )

    assert outcome.message == "The script defines no callable main(): 'main' is a int."


def test_no_main_without_detail_has_a_default() -> None:
    outcome = failed(reported(channel({"status": "no_main"})), ErrorCode.NO_MAIN)

    assert outcome.message == "The script defines no callable main(): not defined."


def test_non_json_names_the_reason() -> None:
    detail = "Object of type set is not JSON serializable"

    outcome = failed(
        reported(channel({"status": "non_json", "detail": detail})), ErrorCode.NON_JSON_RETURN
    )

    assert (
        outcome.message == f"main() returned a value that is not strictly JSON-encodable: {detail}."
    )


def test_syntax_error_names_the_line_and_carries_details() -> None:
    header = {
        "status": "syntax_error",
        "exception": "IndentationError",
        "detail": "unexpected indent",
        "line": 3,
        "traceback": "  File ...\nIndentationError: unexpected indent\n",
    }

    outcome = failed(reported(channel(header)), ErrorCode.SYNTAX_ERROR)

    assert outcome.message == "The script does not compile on line 3: unexpected indent."
    assert outcome.details == {
        "exception": "IndentationError",
        "line": 3,
        "traceback": "  File ...\nIndentationError: unexpected indent\n",
    }


def test_syntax_error_without_a_line_names_no_line() -> None:
    header = {"status": "syntax_error", "detail": "bad", "line": None}

    outcome = failed(reported(channel(header)), ErrorCode.SYNTAX_ERROR)

    assert outcome.message == "The script does not compile: bad."
    assert outcome.details["line"] is None


@pytest.mark.parametrize("line", [True, "3", 3.0, -1], ids=repr)
def test_syntax_error_with_a_line_that_is_no_line_number_is_not_a_genuine_report(
    line: object,
) -> None:
    header = {"status": "syntax_error", "detail": "bad", "line": line}

    failed(reported(channel(header)), ErrorCode.EMPTY_OUTPUT)


def test_syntax_error_defaults() -> None:
    outcome = failed(reported(channel({"status": "syntax_error"})), ErrorCode.SYNTAX_ERROR)

    assert outcome.message == "The script does not compile: invalid syntax."
    assert outcome.details == {"exception": "SyntaxError", "line": None, "traceback": ""}


def test_runtime_error_names_the_exception_and_carries_the_traceback() -> None:
    header = {
        "status": "runtime_error",
        "exception": "ValueError",
        "detail": "boom",
        "traceback": "Traceback (most recent call last):\nValueError: boom\n",
    }

    outcome = failed(reported(channel(header)), ErrorCode.RUNTIME_ERROR)

    assert outcome.message == "The script raised ValueError: boom."
    assert outcome.details == {
        "exception": "ValueError",
        "traceback": "Traceback (most recent call last):\nValueError: boom\n",
    }


def test_runtime_error_without_detail_names_only_the_exception() -> None:
    header = {"status": "runtime_error", "exception": "SystemExit", "detail": ""}

    outcome = failed(reported(channel(header)), ErrorCode.RUNTIME_ERROR)

    assert outcome.message == "The script raised SystemExit."


@pytest.mark.parametrize("field", ["exception", "detail", "traceback"])
@pytest.mark.parametrize("value", [7, ["x"], {"a": 1}, None, True], ids=repr)
def test_non_string_text_fields_make_the_report_not_genuine(field: str, value: object) -> None:
    header = {"status": "runtime_error", "exception": "E", "detail": "d", "traceback": "t"}

    outcome = failed(reported(channel({**header, field: value})), ErrorCode.EMPTY_OUTPUT)

    assert "unrecognised report" in outcome.message


def test_memory_error_names_the_limit_in_mib() -> None:
    limits = Limits(memory_bytes=128 * MIB)

    outcome = failed(reported(channel({"status": "memory_error"}), limits), ErrorCode.MEMORY_LIMIT)

    assert "128 MiB" in outcome.message


def test_output_limit_names_the_result_cap() -> None:
    limits = Limits(result_cap_bytes=1000)
    report = channel({"status": "output_limit", "size": 5000})

    outcome = failed(reported(report, limits), ErrorCode.OUTPUT_LIMIT)

    assert "1000 bytes" in outcome.message


def test_a_non_ok_status_ignores_its_body() -> None:
    failed(reported(channel({"status": "no_main"}, b"this is not json")), ErrorCode.NO_MAIN)


# --- the report token -----------------------------------------------------------------------


def test_a_report_with_the_token_decides() -> None:
    raw = channel({"status": "ok"}, b"[1]", token=TOKEN)

    assert succeeded(reported(raw, report_token=TOKEN)).result_json == "[1]"


@pytest.mark.parametrize(
    "raw",
    [
        channel({"status": "ok"}, b"[1]"),
        channel({"status": "ok"}, b"[1]", token=b"0000deadbeef"),
        channel({"status": "ok"}, b"[1]", token=TOKEN + b"x"),
        channel({"status": "ok"}, b"[1]", token=TOKEN[:-1]),
        b" " + channel({"status": "ok"}, b"[1]", token=TOKEN),
        TOKEN + b"\n",
        TOKEN,
    ],
    ids=["no-token", "other-token", "longer", "shorter", "leading-space", "only-token", "no-nl"],
)
def test_a_report_without_the_exact_token_line_is_ignored(raw: bytes) -> None:
    outcome = failed(reported(raw, report_token=TOKEN), ErrorCode.EMPTY_OUTPUT)

    assert outcome.message == (
        "The sandbox produced no valid result: the process exited with status 0 "
        "after an unrecognised report."
    )


def test_a_forged_report_without_the_token_cannot_hide_a_timeout() -> None:
    raw = channel({"status": "ok"}, b"[1]")

    failed(reported(raw, report_token=TOKEN, timed_out=True), ErrorCode.TIMEOUT)


def test_parse_strips_the_token_line() -> None:
    raw = channel({"status": "ok"}, b"[1]", token=TOKEN)

    assert parse_harness_report(raw, TOKEN) == ({"status": "ok"}, b"[1]")


def test_parse_without_a_token_reads_the_header_from_the_first_line() -> None:
    raw = channel({"status": "ok"}, b"[1]", token=TOKEN)

    assert parse_harness_report(raw) is None  # the token line is not a JSON header
    assert parse_harness_report(channel({"status": "ok"}, b"[1]")) == ({"status": "ok"}, b"[1]")


# --- precedence -----------------------------------------------------------------------------

VALID_REPORTS: dict[str, bytes] = {
    "ok": ok(b"[1]"),
    "runtime-error": channel({"status": "runtime_error", "exception": "KeyError"}),
    "memory-error": channel({"status": "memory_error"}),
}


@pytest.mark.parametrize(
    "fields",
    [
        {"harness_report": ok(), "exit_code": 0},
        {"harness_report": ok(), "harness_report_truncated": True, "exit_code": 0},
        {"timed_out": True, "signal": signal.SIGKILL},
        {"oom_killed": True, "signal": signal.SIGKILL},
        {"signal": signal.SIGXCPU, "cpu_time_s": 60.0},
        {"signal": signal.SIGKILL, "peak_memory_bytes": LIMITS.memory_bytes},
        {"exit_code": 1},
    ],
    ids=["report", "truncated", "timed-out", "oom", "sigxcpu", "memory-kill", "exit-1"],
)
def test_sandbox_error_comes_first(fields: dict[str, Any]) -> None:
    outcome = failed(
        run(sandbox_error="nsjail: cannot mount /proc", **fields), ErrorCode.EMPTY_OUTPUT
    )

    assert outcome.message == "The sandbox failed: nsjail: cannot mount /proc."


# Outside evidence that decides before any report is looked at.
OUTSIDE_EVIDENCE: dict[str, tuple[dict[str, Any], ErrorCode, str | None]] = {
    "timed-out-exit-0": ({"timed_out": True}, ErrorCode.TIMEOUT, "wall_time"),
    "timed-out-killed": (
        {"timed_out": True, "exit_code": None, "signal": signal.SIGKILL},
        ErrorCode.TIMEOUT,
        "wall_time",
    ),
    "oom-exit-0": ({"oom_killed": True}, ErrorCode.MEMORY_LIMIT, None),
    "oom-killed": (
        {"oom_killed": True, "exit_code": None, "signal": signal.SIGKILL},
        ErrorCode.MEMORY_LIMIT,
        None,
    ),
    "sigxcpu": ({"exit_code": None, "signal": signal.SIGXCPU}, ErrorCode.TIMEOUT, "cpu_time"),
    "sigkill-cpu-exhausted": (
        {"exit_code": None, "signal": signal.SIGKILL, "cpu_time_s": LIMITS.cpu_time_s},
        ErrorCode.TIMEOUT,
        "cpu_time",
    ),
}


@pytest.mark.parametrize("raw", list(VALID_REPORTS.values()), ids=list(VALID_REPORTS))
@pytest.mark.parametrize(
    ("fields", "code", "limit"), list(OUTSIDE_EVIDENCE.values()), ids=list(OUTSIDE_EVIDENCE)
)
def test_outside_evidence_wins_over_any_report(
    raw: bytes, fields: dict[str, Any], code: ErrorCode, limit: str | None
) -> None:
    outcome = failed(reported(raw, **fields), code)

    if limit is not None:
        assert outcome.details == {"limit": limit}


@pytest.mark.parametrize(
    ("fields", "code", "limit"), list(OUTSIDE_EVIDENCE.values()), ids=list(OUTSIDE_EVIDENCE)
)
def test_outside_evidence_wins_over_a_truncated_channel(
    fields: dict[str, Any], code: ErrorCode, limit: str | None
) -> None:
    failed(reported(ok(b"[1, 2"), harness_report_truncated=True, **fields), code)


def test_a_wall_clock_timeout_names_the_limit() -> None:
    outcome = failed(run(Limits(wall_time_s=2.5), timed_out=True), ErrorCode.TIMEOUT)

    assert outcome.details == {"limit": "wall_time"}
    assert outcome.message == "The script exceeded the wall-clock limit of 2.5 s."


def test_timed_out_comes_before_oom_and_cpu_evidence() -> None:
    outcome = run(
        timed_out=True,
        oom_killed=True,
        signal=signal.SIGXCPU,
        cpu_time_s=LIMITS.cpu_time_s,
        peak_memory_bytes=LIMITS.memory_bytes,
    )

    assert failed(outcome, ErrorCode.TIMEOUT).details == {"limit": "wall_time"}


def test_oom_killed_names_the_limit() -> None:
    outcome = run(Limits(memory_bytes=64 * MIB), oom_killed=True, signal=signal.SIGKILL)

    assert "64 MiB" in failed(outcome, ErrorCode.MEMORY_LIMIT).message


def test_oom_killed_comes_before_cpu_exhaustion() -> None:
    outcome = run(oom_killed=True, signal=signal.SIGXCPU, cpu_time_s=LIMITS.cpu_time_s)

    failed(outcome, ErrorCode.MEMORY_LIMIT)


def test_sigxcpu_is_a_cpu_timeout_whatever_the_measured_cpu_time() -> None:
    limits = Limits(cpu_time_s=1.5)

    outcome = failed(run(limits, signal=signal.SIGXCPU, cpu_time_s=0.1), ErrorCode.TIMEOUT)

    assert outcome.details == {"limit": "cpu_time"}
    assert outcome.message == "The script exceeded the CPU time limit of 1.5 s."


@pytest.mark.parametrize("cpu_time_s", [5.0, 5.01, 60.0])
def test_sigkill_with_cpu_at_or_over_the_limit_is_a_cpu_timeout(cpu_time_s: float) -> None:
    outcome = run(signal=signal.SIGKILL, cpu_time_s=cpu_time_s, oom_killed=False)

    assert failed(outcome, ErrorCode.TIMEOUT).details == {"limit": "cpu_time"}


def test_sigkill_with_cpu_under_the_limit_is_not_a_timeout() -> None:
    failed(run(signal=signal.SIGKILL, cpu_time_s=4.99, oom_killed=False), ErrorCode.EMPTY_OUTPUT)


def test_cpu_over_the_limit_without_a_kill_signal_is_not_a_timeout() -> None:
    failed(run(exit_code=1, cpu_time_s=60.0), ErrorCode.EMPTY_OUTPUT)
    failed(run(signal=signal.SIGSEGV, cpu_time_s=60.0), ErrorCode.EMPTY_OUTPUT)


def test_cpu_exhaustion_comes_before_the_memory_kill_heuristic() -> None:
    outcome = run(
        signal=signal.SIGKILL, cpu_time_s=LIMITS.cpu_time_s, peak_memory_bytes=LIMITS.memory_bytes
    )

    assert failed(outcome, ErrorCode.TIMEOUT).details == {"limit": "cpu_time"}


# Evidence that does not outrank a report from a process that exited 0.
INSIDE_EVIDENCE: dict[str, dict[str, Any]] = {
    "cpu-over-limit-no-signal": {"cpu_time_s": 60.0},
    "peak-at-memory-limit": {"peak_memory_bytes": LIMITS.memory_bytes, "oom_killed": None},
    "oom-known-false": {"oom_killed": False},
    "slow-wall-clock": {"wall_time_s": 60.0},
    "streams-truncated": {"stdout_truncated": True, "stderr_truncated": True},
}


@pytest.mark.parametrize("fields", list(INSIDE_EVIDENCE.values()), ids=list(INSIDE_EVIDENCE))
def test_a_report_from_a_normal_exit_wins_over_other_evidence(fields: dict[str, Any]) -> None:
    assert succeeded(reported(ok(b"[1]"), **fields)).result_json == "[1]"
    failed(reported(VALID_REPORTS["runtime-error"], **fields), ErrorCode.RUNTIME_ERROR)


@pytest.mark.parametrize(
    ("fields", "how"),
    [
        ({"exit_code": 1}, "the process exited with status 1"),
        ({"exit_code": -1}, "the process exited with status -1"),
        ({"exit_code": None}, "the process ended"),
        ({"exit_code": None, "signal": signal.SIGSEGV}, "the process was killed by SIGSEGV"),
        ({"exit_code": None, "signal": signal.SIGTERM}, "the process was killed by SIGTERM"),
        ({"exit_code": None, "signal": signal.SIGKILL}, "the process was killed by SIGKILL"),
        ({"exit_code": 0, "signal": signal.SIGABRT}, "the process was killed by SIGABRT"),
    ],
    ids=["exit-1", "exit-negative", "unknown-end", "sigsegv", "sigterm", "sigkill", "both-set"],
)
def test_a_report_counts_only_from_a_process_that_exited_0(
    fields: dict[str, Any], how: str
) -> None:
    for raw in VALID_REPORTS.values():
        outcome = failed(reported(raw, **fields), ErrorCode.EMPTY_OUTPUT)

        assert outcome.message == (
            f"The sandbox produced no valid result: {how} after an unrecognised report."
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"exit_code": 0},
        {"exit_code": 1},
        {"exit_code": None, "signal": signal.SIGSEGV},
        {"exit_code": None, "signal": signal.SIGKILL, "peak_memory_bytes": LIMITS.memory_bytes},
    ],
    ids=["exit-0", "exit-1", "sigsegv", "sigkill-at-memory-limit"],
)
def test_a_truncated_channel_is_output_limit(fields: dict[str, Any]) -> None:
    outcome = run(harness_report=ok(b"[1, 2"), harness_report_truncated=True, **fields)

    assert "result cap" in failed(outcome, ErrorCode.OUTPUT_LIMIT).message


def test_a_truncated_channel_is_output_limit_even_if_the_prefix_parses() -> None:
    failed(reported(ok(b"1"), harness_report_truncated=True), ErrorCode.OUTPUT_LIMIT)


MEMORY_LIMITS = Limits(memory_bytes=100 * MIB)
THRESHOLD_BYTES = int(MEMORY_KILL_THRESHOLD * MEMORY_LIMITS.memory_bytes)
assert MEMORY_KILL_THRESHOLD * MEMORY_LIMITS.memory_bytes == THRESHOLD_BYTES  # exact, no rounding


@pytest.mark.parametrize("peak", [THRESHOLD_BYTES, THRESHOLD_BYTES + 1, 200 * MIB])
@pytest.mark.parametrize("raw", [b"", ok(b"[1]")], ids=["no-report", "with-report"])
def test_sigkill_near_the_memory_limit_with_oom_unknown_is_memory_limit(
    peak: int, raw: bytes
) -> None:
    outcome = run(
        MEMORY_LIMITS,
        harness_report=raw,
        signal=signal.SIGKILL,
        oom_killed=None,
        peak_memory_bytes=peak,
    )

    assert "100 MiB" in failed(outcome, ErrorCode.MEMORY_LIMIT).message


@pytest.mark.parametrize(
    ("percent", "code"),
    [(89, ErrorCode.EMPTY_OUTPUT), (90, ErrorCode.MEMORY_LIMIT), (100, ErrorCode.MEMORY_LIMIT)],
)
def test_the_memory_kill_heuristic_starts_at_ninety_percent(percent: int, code: ErrorCode) -> None:
    peak = MEMORY_LIMITS.memory_bytes * percent // 100

    failed(run(MEMORY_LIMITS, signal=signal.SIGKILL, peak_memory_bytes=peak), code)


@pytest.mark.parametrize(
    "fields",
    [
        {"signal": signal.SIGKILL, "oom_killed": None, "peak_memory_bytes": THRESHOLD_BYTES - 1},
        {"signal": signal.SIGKILL, "oom_killed": None, "peak_memory_bytes": None},
        {"signal": signal.SIGKILL, "oom_killed": False, "peak_memory_bytes": 100 * MIB},
        {"signal": signal.SIGSEGV, "oom_killed": None, "peak_memory_bytes": 100 * MIB},
        {"exit_code": 137, "oom_killed": None, "peak_memory_bytes": 100 * MIB},
    ],
    ids=["just-below", "peak-unknown", "oom-known-false", "other-signal", "exit-137"],
)
def test_the_memory_kill_heuristic_needs_all_its_conditions(fields: dict[str, Any]) -> None:
    failed(run(MEMORY_LIMITS, **fields), ErrorCode.EMPTY_OUTPUT)


# --- EMPTY_OUTPUT messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "how"),
    [
        ({"exit_code": 0}, "the process exited with status 0"),
        ({"exit_code": 3}, "the process exited with status 3"),
        ({"signal": signal.SIGSEGV}, "the process was killed by SIGSEGV"),
        ({"signal": signal.SIGKILL}, "the process was killed by SIGKILL"),
        ({"signal": 250}, "the process was killed by signal 250"),
        ({"signal": signal.SIGTERM, "exit_code": 1}, "the process was killed by SIGTERM"),
        ({}, "the process ended"),
    ],
)
def test_empty_output_names_how_the_process_ended(fields: dict[str, Any], how: str) -> None:
    outcome = failed(run(**fields), ErrorCode.EMPTY_OUTPUT)

    assert outcome.message == f"The sandbox produced no result: {how} before main() returned."


@pytest.mark.parametrize("raw", [b"garbage", b'{"status": "ok"}', channel({"x": 1}), ok(b"{")])
def test_empty_output_with_unusable_report_bytes_says_so(raw: bytes) -> None:
    outcome = failed(reported(raw, exit_code=4), ErrorCode.EMPTY_OUTPUT)

    assert outcome.message == (
        "The sandbox produced no valid result: the process exited with status 4 "
        "after an unrecognised report."
    )


def test_empty_output_has_usage_and_output() -> None:
    outcome = failed(
        run(exit_code=0, stdout=b"partial", wall_time_s=1.0, cpu_time_s=0.5),
        ErrorCode.EMPTY_OUTPUT,
    )

    assert outcome.output.stdout == "partial"
    assert outcome.usage == Usage(wall_time_s=1.0, cpu_time_s=0.5, peak_memory_bytes=None)


# --- parse_harness_report -------------------------------------------------------------------


def test_parse_splits_header_and_body_at_the_first_newline() -> None:
    assert parse_harness_report(b'{"status": "ok"}\n[1,\n2]\n') == ({"status": "ok"}, b"[1,\n2]\n")


@pytest.mark.parametrize("status", list(HarnessStatus), ids=lambda s: s.value)
def test_parse_accepts_every_status(status: HarnessStatus) -> None:
    header = {"status": status.value, "cpu_s": 0.25, "hwm_kib": 9000}

    assert parse_harness_report(channel(header)) == (header, b"")
    assert parse_harness_report(channel(header, token=TOKEN), TOKEN) == (header, b"")


@pytest.mark.parametrize("status", list(HarnessStatus), ids=lambda s: s.value)
def test_parse_refuses_a_field_the_status_does_not_carry(status: HarnessStatus) -> None:
    header = {"status": status.value, "extra": [1]}

    assert parse_harness_report(channel(header)) is None


MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "no-newline": b'{"status": "ok"}',
    "not-json": b"status: ok\n42",
    "empty-header": b"\n42",
    "list-header": b'["ok"]\n42',
    "string-header": b'"ok"\n42',
    "number-header": b"1\n42",
    "null-header": b"null\n42",
    "missing-status": b'{"detail": "x"}\n',
    "unknown-status": b'{"status": "great"}\n',
    "status-wrong-case": b'{"status": "OK"}\n42',
    "status-null": b'{"status": null}\n',
    "status-number": b'{"status": 1}\n',
    "status-list": b'{"status": ["ok"]}\n',
    "status-object": b'{"status": {"ok": true}}\n',
    "invalid-utf8": b'{"status": "ok\xff"}\n42',
    "nested-too-deeply": DEEP_JSON + b"\n42",
    "huge-integer": b'{"status": "ok", "n": ' + b"9" * 5000 + b"}\n42",
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_parse_rejects_malformed_reports(raw: bytes) -> None:
    assert parse_harness_report(raw) is None
    assert parse_harness_report(TOKEN + b"\n" + raw, TOKEN) is None


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_report_is_empty_output(raw: bytes) -> None:
    outcome = failed(reported(raw), ErrorCode.EMPTY_OUTPUT)

    assert "exited with status 0" in outcome.message


# --- streams --------------------------------------------------------------------------------


def test_decode_stream_replaces_invalid_utf8() -> None:
    assert decode_stream(b"caf\xc3\xa9 \xff\xfe!") == "caf\u00e9 \ufffd\ufffd!"


def test_a_multibyte_character_cut_by_the_cap_is_replaced() -> None:
    outcome = succeeded(reported(ok(), stdout="é".encode()[:1], stdout_truncated=True))

    assert outcome.output.stdout == "\ufffd"


@pytest.mark.parametrize(
    "fields",
    [
        {"harness_report": ok(), "exit_code": 0},
        {"harness_report": channel({"status": "runtime_error"}), "exit_code": 0},
        {"timed_out": True},
        {"exit_code": 1},
    ],
    ids=["success", "harness-failure", "timeout", "no-report"],
)
def test_streams_are_decoded_with_replacement_on_every_outcome(fields: dict[str, Any]) -> None:
    outcome = run(stdout=b"out\xff", stderr=b"\xfeerr", **fields)

    assert outcome.output.stdout == "out\ufffd"
    assert outcome.output.stderr == "\ufffderr"


@pytest.mark.parametrize("stdout_truncated", [False, True])
@pytest.mark.parametrize("stderr_truncated", [False, True])
@pytest.mark.parametrize("raw", [ok(), b""], ids=["success", "no-report"])
def test_truncation_flags_are_carried_through(
    raw: bytes, stdout_truncated: bool, stderr_truncated: bool
) -> None:
    outcome = reported(raw, stdout_truncated=stdout_truncated, stderr_truncated=stderr_truncated)

    assert outcome.output.stdout_truncated is stdout_truncated
    assert outcome.output.stderr_truncated is stderr_truncated


def test_truncated_stdout_alone_is_not_an_error() -> None:
    outcome = succeeded(reported(ok(b"1"), stdout=b"x" * 10, stdout_truncated=True))

    assert outcome.output == Output(stdout="x" * 10, stdout_truncated=True)


# --- error codes ----------------------------------------------------------------------------

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.NO_MAIN: 400,
    ErrorCode.NON_JSON_RETURN: 400,
    ErrorCode.SYNTAX_ERROR: 400,
    ErrorCode.RUNTIME_ERROR: 400,
    ErrorCode.TIMEOUT: 400,
    ErrorCode.MEMORY_LIMIT: 400,
    ErrorCode.OUTPUT_LIMIT: 400,
    ErrorCode.EMPTY_OUTPUT: 500,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.BUSY: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.UNAUTHORIZED: 401,
}


def test_the_http_table_covers_every_error_code() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)


@pytest.mark.parametrize(
    ("code", "http_status"), list(HTTP_STATUS.items()), ids=[code.name for code in HTTP_STATUS]
)
def test_each_error_code_has_its_contract_http_status(code: ErrorCode, http_status: int) -> None:
    assert code.http_status == http_status
    assert code.code == code.name


def test_a_runner_that_knows_the_cpu_limit_ended_the_process_gets_timeout() -> None:
    # nsjail: the script is PID 1 of its namespace, so an unexplained SIGKILL is RLIMIT_CPU's
    # even when the measured CPU time falls a little short of the limit.
    report = SandboxReport(signal=signal.SIGKILL, cpu_limit_hit=True, cpu_time_s=0.8)

    outcome = failed(classify(report, LIMITS), ErrorCode.TIMEOUT)

    assert outcome.details["limit"] == "cpu_time"


def test_a_sigkill_short_of_the_cpu_limit_without_runner_evidence_is_empty_output() -> None:
    report = SandboxReport(signal=signal.SIGKILL, cpu_time_s=0.8 * LIMITS.cpu_time_s)

    failed(classify(report, LIMITS), ErrorCode.EMPTY_OUTPUT)
