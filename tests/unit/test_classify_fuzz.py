"""Property tests of domain.classify over explicitly generated sandbox reports."""

from __future__ import annotations

import json
import signal
from typing import Any

import attrs
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.classify import classify, parse_harness_report
from domain.limits import MIB, Limits
from domain.outcome import ErrorCode, Failure, Success, Usage
from domain.report import HarnessStatus, SandboxReport

FUZZ = settings(max_examples=200, deadline=None)

STATUS_VALUES = [status.value for status in HarnessStatus]
EXECUTION_CODES = {
    ErrorCode.NO_MAIN,
    ErrorCode.NON_JSON_RETURN,
    ErrorCode.SYNTAX_ERROR,
    ErrorCode.RUNTIME_ERROR,
    ErrorCode.TIMEOUT,
    ErrorCode.MEMORY_LIMIT,
    ErrorCode.OUTPUT_LIMIT,
    ErrorCode.EMPTY_OUTPUT,
}
HARNESS_FAILURE_CODES = {
    "no_main": ErrorCode.NO_MAIN,
    "non_json": ErrorCode.NON_JSON_RETURN,
    "syntax_error": ErrorCode.SYNTAX_ERROR,
    "runtime_error": ErrorCode.RUNTIME_ERROR,
    "memory_error": ErrorCode.MEMORY_LIMIT,
    "output_limit": ErrorCode.OUTPUT_LIMIT,
}

# --- strategies -----------------------------------------------------------------------------

loose_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
)
headers = st.fixed_dictionaries(
    {"status": st.one_of(st.sampled_from(STATUS_VALUES), loose_values)},
    optional={
        "detail": loose_values,
        "exception": loose_values,
        "traceback": loose_values,
        "line": loose_values,
        "size": loose_values,
    },
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value, allow_nan=False).encode()),
    st.binary(max_size=48),
)
channels = st.one_of(
    st.tuples(headers, bodies).map(lambda pair: json.dumps(pair[0]).encode() + b"\n" + pair[1]),
    st.binary(max_size=48),
)
signal_numbers = st.one_of(
    st.none(),
    st.sampled_from([signal.SIGKILL, signal.SIGXCPU, signal.SIGSEGV, signal.SIGTERM]),
    st.integers(-3, 300),
)
limits_strategy = st.fixed_dictionaries(
    {
        "wall_time_s": st.sampled_from([0.5, 1.0, 5.0]),
        "cpu_time_s": st.sampled_from([0.5, 1.0, 5.0]),
        "memory_bytes": st.sampled_from([MIB, 64 * MIB]),
        "result_cap_bytes": st.integers(1, 64),
    }
).map(lambda fields: Limits(**fields))
report_fields = st.fixed_dictionaries(
    {
        "exit_code": st.one_of(st.none(), st.integers(-255, 255)),
        "signal": signal_numbers,
        "timed_out": st.booleans(),
        "oom_killed": st.sampled_from([None, True, False]),
        "harness_report": channels,
        "harness_report_truncated": st.booleans(),
        "stdout": st.binary(max_size=48),
        "stdout_truncated": st.booleans(),
        "stderr": st.binary(max_size=24),
        "stderr_truncated": st.booleans(),
        "wall_time_s": st.floats(0, 20, allow_nan=False),
        "cpu_time_s": st.floats(0, 20, allow_nan=False),
        "peak_memory_bytes": st.one_of(st.none(), st.integers(0, 128 * MIB)),
        "sandbox_error": st.one_of(st.none(), st.text(max_size=16)),
    }
)
reports = report_fields.map(lambda fields: SandboxReport(**fields))


# --- a reference for "the report decides" ---------------------------------------------------


def harness_header(report: SandboxReport) -> tuple[dict[str, Any], bytes] | None:
    """The header and body when the harness report is usable at all (outside evidence aside)."""
    if report.sandbox_error is not None or report.harness_report_truncated:
        return None
    return parse_harness_report(report.harness_report)


def body_is_json(body: bytes) -> bool:
    try:
        json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return True


def report_decides(report: SandboxReport, limits: Limits) -> bool:
    """Whether the harness report alone decides the outcome (the module's rule 2)."""
    parsed = harness_header(report)
    if parsed is None:
        return False
    header, body = parsed
    if header["status"] != "ok" or len(body) > limits.result_cap_bytes:
        return True
    try:
        json.loads(body.decode("utf-8"))
    except RecursionError:
        return True
    except ValueError:
        return False
    return True


def expect_success(report: SandboxReport, limits: Limits) -> bool:
    parsed = harness_header(report)
    if parsed is None or parsed[0]["status"] != "ok":
        return False
    body = parsed[1]
    return len(body) <= limits.result_cap_bytes and body_is_json(body)


# --- properties -----------------------------------------------------------------------------


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_classify_is_total_and_success_means_a_well_formed_ok_report(
    report: SandboxReport, limits: Limits
) -> None:
    outcome = classify(report, limits)

    assert isinstance(outcome, Success | Failure)
    assert isinstance(outcome, Success) == expect_success(report, limits)
    if isinstance(outcome, Success):
        assert outcome.result_json.encode() == report.harness_report.partition(b"\n")[2]
    else:
        assert outcome.code in EXECUTION_CODES
        assert outcome.message.endswith(".")


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_output_and_usage_are_carried_through(report: SandboxReport, limits: Limits) -> None:
    outcome = classify(report, limits)

    assert outcome.output.stdout == report.stdout.decode("utf-8", errors="replace")
    assert outcome.output.stderr == report.stderr.decode("utf-8", errors="replace")
    assert outcome.output.stdout_truncated is report.stdout_truncated
    assert outcome.output.stderr_truncated is report.stderr_truncated
    assert outcome.usage == Usage(
        wall_time_s=report.wall_time_s,
        cpu_time_s=report.cpu_time_s,
        peak_memory_bytes=report.peak_memory_bytes,
    )


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_classify_is_deterministic(report: SandboxReport, limits: Limits) -> None:
    assert classify(report, limits) == classify(report, limits)


@FUZZ
@given(fields=report_fields, error=st.text(max_size=16), limits=limits_strategy)
def test_a_sandbox_error_is_always_empty_output(
    fields: dict[str, Any], error: str, limits: Limits
) -> None:
    outcome = classify(SandboxReport(**{**fields, "sandbox_error": error}), limits)

    assert isinstance(outcome, Failure)
    assert outcome.code is ErrorCode.EMPTY_OUTPUT
    assert outcome.message == f"The sandbox failed: {error}."


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_a_valid_failure_header_decides_whatever_the_evidence(
    report: SandboxReport, limits: Limits
) -> None:
    parsed = harness_header(report)
    outcome = classify(report, limits)

    if parsed is not None and parsed[0]["status"] != "ok":
        assert isinstance(outcome, Failure)
        assert outcome.code is HARNESS_FAILURE_CODES[parsed[0]["status"]]


evidence = st.fixed_dictionaries(
    {
        "exit_code": st.one_of(st.none(), st.integers(-255, 255)),
        "signal": signal_numbers,
        "timed_out": st.booleans(),
        "oom_killed": st.sampled_from([None, True, False]),
        "cpu_time_s": st.floats(0, 20, allow_nan=False),
        "peak_memory_bytes": st.one_of(st.none(), st.integers(0, 128 * MIB)),
    }
)


def verdict(outcome: Success | Failure) -> str:
    return outcome.result_json if isinstance(outcome, Success) else outcome.code.code


# Well-formed reports as the harness writes them: a known status, and JSON text as the body.
deciding_channels = st.tuples(
    st.fixed_dictionaries(
        {"status": st.sampled_from(STATUS_VALUES)},
        optional={"detail": loose_values, "exception": loose_values, "line": loose_values},
    ),
    json_values.map(lambda value: json.dumps(value, allow_nan=False).encode()),
).map(lambda pair: json.dumps(pair[0]).encode() + b"\n" + pair[1])


@FUZZ
@given(fields=report_fields, channel=deciding_channels, other=evidence, limits=limits_strategy)
def test_a_deciding_report_wins_over_any_outside_evidence(
    fields: dict[str, Any], channel: bytes, other: dict[str, Any], limits: Limits
) -> None:
    report = SandboxReport(
        **{
            **fields,
            "harness_report": channel,
            "harness_report_truncated": False,
            "sandbox_error": None,
        }
    )
    assert report_decides(report, limits)

    changed = attrs.evolve(report, **other)

    assert verdict(classify(changed, limits)) == verdict(classify(report, limits))


@FUZZ
@given(fields=report_fields, limits=limits_strategy)
def test_a_truncated_channel_is_output_limit(fields: dict[str, Any], limits: Limits) -> None:
    report = SandboxReport(**{**fields, "harness_report_truncated": True, "sandbox_error": None})

    outcome = classify(report, limits)

    assert isinstance(outcome, Failure)
    assert outcome.code is ErrorCode.OUTPUT_LIMIT


@FUZZ
@given(fields=report_fields, limits=limits_strategy)
def test_timed_out_without_a_deciding_report_is_timeout(
    fields: dict[str, Any], limits: Limits
) -> None:
    report = SandboxReport(
        **{**fields, "timed_out": True, "harness_report_truncated": False, "sandbox_error": None}
    )
    assume(not report_decides(report, limits))

    outcome = classify(report, limits)

    assert isinstance(outcome, Failure)
    assert outcome.code is ErrorCode.TIMEOUT
    assert outcome.details == {"limit": "wall_time"}


@FUZZ
@given(fields=report_fields, limits=limits_strategy)
def test_without_report_or_kill_evidence_the_outcome_is_empty_output(
    fields: dict[str, Any], limits: Limits
) -> None:
    report = SandboxReport(
        **{
            **fields,
            "harness_report": b"",
            "harness_report_truncated": False,
            "sandbox_error": None,
            "timed_out": False,
            "oom_killed": False,
        }
    )

    outcome = classify(report, limits)

    assert isinstance(outcome, Failure)
    if report.signal in (signal.SIGKILL, signal.SIGXCPU):
        assert outcome.code in {ErrorCode.TIMEOUT, ErrorCode.EMPTY_OUTPUT}
    else:
        assert outcome.code is ErrorCode.EMPTY_OUTPUT
        assert outcome.message.startswith("The sandbox produced no result: ")


@FUZZ
@given(raw=st.one_of(channels, st.binary(max_size=96)))
def test_parse_harness_report_is_total_and_splits_at_the_first_newline(raw: bytes) -> None:
    parsed = parse_harness_report(raw)

    if parsed is not None:
        header, body = parsed
        assert isinstance(header, dict)
        assert header["status"] in STATUS_VALUES
        header_line, _, rest = raw.partition(b"\n")
        assert rest == body
        assert json.loads(header_line) == header
