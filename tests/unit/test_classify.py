"""Exhaustive example-based tests of domain.classify: harness statuses, precedence, messages."""

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
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def channel(header: dict[str, Any], body: bytes = b"") -> bytes:
    """The bytes the harness writes on its result channel: a JSON header line, then a body."""
    return json.dumps(header).encode() + b"\n" + body


def ok(body: bytes = b"42") -> bytes:
    return channel({"status": "ok"}, body)


def run(limits: Limits = LIMITS, **fields: Any) -> Outcome:
    return classify(SandboxReport(**fields), limits)


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
    outcome = run(harness_report=channel({"status": status.value}, b"[1]"), exit_code=0)

    expected = STATUS_TO_CODE[status]
    if expected is None:
        assert succeeded(outcome).result_json == "[1]"
    else:
        failed(outcome, expected)


def test_ok_returns_the_body_text_exactly_with_stdout_and_usage() -> None:
    body = b'{"b": 1,  "a": [true, null, "\\u00e9"]}'

    outcome = succeeded(
        run(
            harness_report=ok(body),
            stdout=b"hello\n",
            stderr=b"warn\n",
            exit_code=0,
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

    assert succeeded(run(harness_report=ok(body))).result_json == body.decode()


def test_ok_body_exactly_at_the_result_cap_succeeds() -> None:
    limits = Limits(result_cap_bytes=10)
    body = b'"12345678"'
    assert len(body) == 10

    assert succeeded(run(limits, harness_report=ok(body))).result_json == body.decode()


def test_ok_body_over_the_result_cap_is_output_limit() -> None:
    limits = Limits(result_cap_bytes=10)
    body = b'"123456789"'

    outcome = failed(run(limits, harness_report=ok(body)), ErrorCode.OUTPUT_LIMIT)

    assert "11 bytes" in outcome.message
    assert "10 bytes" in outcome.message


def test_ok_body_over_the_cap_is_output_limit_even_when_it_is_not_json() -> None:
    limits = Limits(result_cap_bytes=4)

    failed(run(limits, harness_report=ok(b"not json at all")), ErrorCode.OUTPUT_LIMIT)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[1, 2", b"1 2", b"undefined", b'"\xff"', b"\xef\xbb\xbf1"],
    ids=["empty", "open-brace", "unclosed-list", "two-values", "word", "bad-utf8", "bom"],
)
def test_ok_with_an_invalid_json_body_is_a_malformed_report(body: bytes) -> None:
    outcome = failed(run(harness_report=ok(body), exit_code=0), ErrorCode.EMPTY_OUTPUT)

    assert outcome.message == (
        "The sandbox produced a malformed result: the process exited with status 0."
    )


def test_ok_with_a_body_nested_too_deeply_is_non_json_return() -> None:
    outcome = failed(run(harness_report=ok(DEEP_JSON)), ErrorCode.NON_JSON_RETURN)

    assert "nested too deeply" in outcome.message


@pytest.mark.xfail(
    strict=True,
    reason="bug: classify accepts json.loads' non-standard constants (NaN, Infinity) as a result",
)
@pytest.mark.parametrize("body", [b"NaN", b"Infinity", b"-Infinity", b"[1, NaN]"])
def test_ok_with_a_non_strict_json_body_is_not_a_success(body: bytes) -> None:
    # The harness encodes with allow_nan=False, so such a body is not what it writes; the
    # contract promises strictly JSON-encodable results.
    assert not isinstance(run(harness_report=ok(body)), Success)


def test_no_main_names_the_detail() -> None:
    report = channel({"status": "no_main", "detail": "'main' is a int"})

    outcome = failed(run(harness_report=report), ErrorCode.NO_MAIN)

    assert outcome.message == "The script defines no callable main(): 'main' is a int."


def test_no_main_without_detail_has_a_default() -> None:
    outcome = failed(run(harness_report=channel({"status": "no_main"})), ErrorCode.NO_MAIN)

    assert outcome.message == "The script defines no callable main(): not defined."


def test_non_json_names_the_reason() -> None:
    report = channel(
        {"status": "non_json", "detail": "Object of type set is not JSON serializable"}
    )

    outcome = failed(run(harness_report=report), ErrorCode.NON_JSON_RETURN)

    assert outcome.message == (
        "main() returned a value that is not strictly JSON-encodable: "
        "Object of type set is not JSON serializable."
    )


def test_syntax_error_names_the_line_and_carries_details() -> None:
    header = {
        "status": "syntax_error",
        "exception": "IndentationError",
        "detail": "unexpected indent",
        "line": 3,
        "traceback": "  File ...\nIndentationError: unexpected indent\n",
    }

    outcome = failed(run(harness_report=channel(header)), ErrorCode.SYNTAX_ERROR)

    assert outcome.message == "The script does not compile on line 3: unexpected indent."
    assert outcome.details == {
        "exception": "IndentationError",
        "line": 3,
        "traceback": "  File ...\nIndentationError: unexpected indent\n",
    }


@pytest.mark.parametrize("line", [None, True, "3", 3.0], ids=repr)
def test_syntax_error_without_an_integer_line_names_no_line(line: object) -> None:
    header = {"status": "syntax_error", "detail": "bad", "line": line}

    outcome = failed(run(harness_report=channel(header)), ErrorCode.SYNTAX_ERROR)

    assert outcome.message == "The script does not compile: bad."
    assert outcome.details["line"] is None


def test_syntax_error_defaults() -> None:
    outcome = failed(
        run(harness_report=channel({"status": "syntax_error"})), ErrorCode.SYNTAX_ERROR
    )

    assert outcome.message == "The script does not compile: invalid syntax."
    assert outcome.details == {"exception": "SyntaxError", "line": None, "traceback": ""}


def test_runtime_error_names_the_exception_and_carries_the_traceback() -> None:
    header = {
        "status": "runtime_error",
        "exception": "ValueError",
        "detail": "boom",
        "traceback": "Traceback (most recent call last):\nValueError: boom\n",
    }

    outcome = failed(run(harness_report=channel(header)), ErrorCode.RUNTIME_ERROR)

    assert outcome.message == "The script raised ValueError: boom."
    assert outcome.details == {
        "exception": "ValueError",
        "traceback": "Traceback (most recent call last):\nValueError: boom\n",
    }


def test_runtime_error_without_detail_names_only_the_exception() -> None:
    header = {"status": "runtime_error", "exception": "SystemExit", "detail": ""}

    outcome = failed(run(harness_report=channel(header)), ErrorCode.RUNTIME_ERROR)

    assert outcome.message == "The script raised SystemExit."


def test_non_string_header_fields_fall_back_to_defaults() -> None:
    header = {"status": "runtime_error", "exception": 7, "detail": ["x"], "traceback": {"a": 1}}

    outcome = failed(run(harness_report=channel(header)), ErrorCode.RUNTIME_ERROR)

    assert outcome.message == "The script raised Exception."
    assert outcome.details == {"exception": "Exception", "traceback": ""}


def test_memory_error_names_the_limit_in_mib() -> None:
    limits = Limits(memory_bytes=128 * MIB)

    outcome = failed(
        run(limits, harness_report=channel({"status": "memory_error"})), ErrorCode.MEMORY_LIMIT
    )

    assert "128 MiB" in outcome.message


def test_output_limit_names_the_result_cap() -> None:
    limits = Limits(result_cap_bytes=1000)
    report = channel({"status": "output_limit", "size": 5000})

    outcome = failed(run(limits, harness_report=report), ErrorCode.OUTPUT_LIMIT)

    assert "1000 bytes" in outcome.message


def test_a_non_ok_status_ignores_its_body() -> None:
    report = channel({"status": "no_main"}, b"this is not json")

    failed(run(harness_report=report), ErrorCode.NO_MAIN)


# --- precedence -----------------------------------------------------------------------------

# Outside evidence that, without a valid report, would each decide something else.
EVIDENCE: dict[str, dict[str, Any]] = {
    "timed_out": {"timed_out": True},
    "oom_killed": {"oom_killed": True},
    "sigkill_at_memory_limit": {"signal": signal.SIGKILL, "peak_memory_bytes": LIMITS.memory_bytes},
    "sigxcpu": {"signal": signal.SIGXCPU, "cpu_time_s": LIMITS.cpu_time_s},
    "sigsegv": {"signal": signal.SIGSEGV},
    "exit_code": {"exit_code": 1},
    "stdout_truncated": {"stdout_truncated": True, "stderr_truncated": True},
}


@pytest.mark.parametrize("evidence", list(EVIDENCE.values()), ids=list(EVIDENCE))
def test_sandbox_error_comes_first(evidence: dict[str, Any]) -> None:
    outcome = failed(
        run(harness_report=ok(), sandbox_error="nsjail: cannot mount /proc", **evidence),
        ErrorCode.EMPTY_OUTPUT,
    )

    assert outcome.message == "The sandbox failed: nsjail: cannot mount /proc."


def test_sandbox_error_comes_before_a_truncated_channel() -> None:
    outcome = run(harness_report=ok(), harness_report_truncated=True, sandbox_error="setup failed")

    failed(outcome, ErrorCode.EMPTY_OUTPUT)


@pytest.mark.parametrize("evidence", list(EVIDENCE.values()), ids=list(EVIDENCE))
def test_a_valid_ok_report_wins_over_outside_evidence(evidence: dict[str, Any]) -> None:
    assert succeeded(run(harness_report=ok(b"[1]"), **evidence)).result_json == "[1]"


@pytest.mark.parametrize("evidence", list(EVIDENCE.values()), ids=list(EVIDENCE))
def test_a_valid_failure_report_wins_over_outside_evidence(evidence: dict[str, Any]) -> None:
    report = channel({"status": "runtime_error", "exception": "KeyError", "detail": "'x'"})

    failed(run(harness_report=report, **evidence), ErrorCode.RUNTIME_ERROR)


@pytest.mark.parametrize("evidence", list(EVIDENCE.values()), ids=list(EVIDENCE))
def test_a_truncated_channel_is_output_limit(evidence: dict[str, Any]) -> None:
    # Even bytes that would parse as a valid report are not trusted once the channel was cut.
    outcome = run(harness_report=ok(b"[1, 2"), harness_report_truncated=True, **evidence)

    assert "result cap" in failed(outcome, ErrorCode.OUTPUT_LIMIT).message


def test_a_truncated_channel_is_output_limit_even_if_the_prefix_parses() -> None:
    failed(run(harness_report=ok(b"1"), harness_report_truncated=True), ErrorCode.OUTPUT_LIMIT)


def test_timed_out_without_a_report_is_a_wall_clock_timeout() -> None:
    limits = Limits(wall_time_s=2.5)

    outcome = failed(run(limits, timed_out=True, signal=signal.SIGKILL), ErrorCode.TIMEOUT)

    assert outcome.details == {"limit": "wall_time"}
    assert "wall-clock limit of 2.5 s" in outcome.message


def test_timed_out_comes_before_oom_and_cpu_evidence() -> None:
    outcome = run(
        timed_out=True,
        oom_killed=True,
        signal=signal.SIGXCPU,
        cpu_time_s=LIMITS.cpu_time_s,
        peak_memory_bytes=LIMITS.memory_bytes,
    )

    assert failed(outcome, ErrorCode.TIMEOUT).details == {"limit": "wall_time"}


@pytest.mark.parametrize(
    "report",
    [b"", b"garbage", ok(b"{"), channel({"status": "nope"})],
    ids=["empty", "garbage", "ok-invalid-body", "unknown-status"],
)
def test_without_a_valid_report_the_outside_evidence_decides(report: bytes) -> None:
    failed(run(harness_report=report, timed_out=True), ErrorCode.TIMEOUT)


def test_oom_killed_is_memory_limit() -> None:
    limits = Limits(memory_bytes=64 * MIB)

    outcome = failed(run(limits, oom_killed=True, signal=signal.SIGKILL), ErrorCode.MEMORY_LIMIT)

    assert "64 MiB" in outcome.message


def test_oom_killed_comes_before_cpu_exhaustion() -> None:
    outcome = run(oom_killed=True, signal=signal.SIGXCPU, cpu_time_s=LIMITS.cpu_time_s)

    failed(outcome, ErrorCode.MEMORY_LIMIT)


def test_sigxcpu_is_a_cpu_timeout_whatever_the_measured_cpu_time() -> None:
    limits = Limits(cpu_time_s=1.5)

    outcome = failed(run(limits, signal=signal.SIGXCPU, cpu_time_s=0.1), ErrorCode.TIMEOUT)

    assert outcome.details == {"limit": "cpu_time"}
    assert "CPU time limit of 1.5 s" in outcome.message


@pytest.mark.parametrize("cpu_time_s", [5.0, 5.01, 60.0])
def test_sigkill_with_cpu_at_or_over_the_limit_is_a_cpu_timeout(cpu_time_s: float) -> None:
    outcome = run(signal=signal.SIGKILL, cpu_time_s=cpu_time_s, oom_killed=False)

    assert failed(outcome, ErrorCode.TIMEOUT).details == {"limit": "cpu_time"}


def test_sigkill_with_cpu_under_the_limit_is_not_a_timeout() -> None:
    outcome = run(signal=signal.SIGKILL, cpu_time_s=4.99, oom_killed=False)

    failed(outcome, ErrorCode.EMPTY_OUTPUT)


def test_cpu_over_the_limit_without_a_kill_signal_is_not_a_timeout() -> None:
    failed(run(exit_code=1, cpu_time_s=60.0), ErrorCode.EMPTY_OUTPUT)
    failed(run(signal=signal.SIGSEGV, cpu_time_s=60.0), ErrorCode.EMPTY_OUTPUT)


def test_cpu_exhaustion_comes_before_the_memory_kill_heuristic() -> None:
    outcome = run(
        signal=signal.SIGKILL, cpu_time_s=LIMITS.cpu_time_s, peak_memory_bytes=LIMITS.memory_bytes
    )

    assert failed(outcome, ErrorCode.TIMEOUT).details == {"limit": "cpu_time"}


MEMORY_LIMITS = Limits(memory_bytes=100 * MIB)
THRESHOLD_BYTES = int(MEMORY_KILL_THRESHOLD * MEMORY_LIMITS.memory_bytes)
assert MEMORY_KILL_THRESHOLD * MEMORY_LIMITS.memory_bytes == THRESHOLD_BYTES  # exact, no rounding


@pytest.mark.parametrize("peak", [THRESHOLD_BYTES, THRESHOLD_BYTES + 1, 200 * MIB])
def test_sigkill_near_the_memory_limit_with_oom_unknown_is_memory_limit(peak: int) -> None:
    outcome = run(MEMORY_LIMITS, signal=signal.SIGKILL, oom_killed=None, peak_memory_bytes=peak)

    assert "100 MiB" in failed(outcome, ErrorCode.MEMORY_LIMIT).message


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


@pytest.mark.parametrize("report", [b"garbage", b'{"status": "ok"}', channel({"x": 1})])
def test_empty_output_with_unusable_report_bytes_names_the_exit(report: bytes) -> None:
    outcome = failed(run(harness_report=report, exit_code=0), ErrorCode.EMPTY_OUTPUT)

    assert outcome.message.startswith("The sandbox produced ")
    assert outcome.message.endswith(": the process exited with status 0.")


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
    header = {"status": status.value, "extra": [1]}

    assert parse_harness_report(channel(header)) == (header, b"")


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


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_report_is_empty_output(raw: bytes) -> None:
    outcome = failed(run(harness_report=raw, exit_code=0), ErrorCode.EMPTY_OUTPUT)

    assert "exited with status 0" in outcome.message


# --- streams --------------------------------------------------------------------------------


def test_decode_stream_replaces_invalid_utf8() -> None:
    assert decode_stream(b"caf\xc3\xa9 \xff\xfe!") == "caf\u00e9 \ufffd\ufffd!"


def test_a_multibyte_character_cut_by_the_cap_is_replaced() -> None:
    outcome = succeeded(run(harness_report=ok(), stdout="é".encode()[:1], stdout_truncated=True))

    assert outcome.output.stdout == "\ufffd"


@pytest.mark.parametrize(
    "report",
    [ok(), channel({"status": "runtime_error"}), b""],
    ids=["success", "harness-failure", "no-report"],
)
def test_streams_are_decoded_with_replacement_on_every_outcome(report: bytes) -> None:
    outcome = run(harness_report=report, stdout=b"out\xff", stderr=b"\xfeerr")

    assert outcome.output.stdout == "out\ufffd"
    assert outcome.output.stderr == "\ufffderr"


@pytest.mark.parametrize("stdout_truncated", [False, True])
@pytest.mark.parametrize("stderr_truncated", [False, True])
@pytest.mark.parametrize("report", [ok(), b""], ids=["success", "no-report"])
def test_truncation_flags_are_carried_through(
    report: bytes, stdout_truncated: bool, stderr_truncated: bool
) -> None:
    outcome = run(
        harness_report=report,
        stdout_truncated=stdout_truncated,
        stderr_truncated=stderr_truncated,
    )

    assert outcome.output.stdout_truncated is stdout_truncated
    assert outcome.output.stderr_truncated is stderr_truncated


def test_truncated_stdout_alone_is_not_an_error() -> None:
    outcome = succeeded(run(harness_report=ok(b"1"), stdout=b"x" * 10, stdout_truncated=True))

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
}


def test_the_http_table_covers_every_error_code() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)


@pytest.mark.parametrize(
    ("code", "http_status"), list(HTTP_STATUS.items()), ids=[code.name for code in HTTP_STATUS]
)
def test_each_error_code_has_its_contract_http_status(code: ErrorCode, http_status: int) -> None:
    assert code.http_status == http_status
    assert code.code == code.name
