"""Property tests of domain.classify over explicitly generated sandbox reports.

The oracle `expected_verdict` restates the precedence in domain/classify.py's docstring.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.classify import classify, parse_harness_report
from domain.limits import MIB, Limits
from domain.outcome import ErrorCode, Failure, Outcome, Success, Usage
from domain.report import HarnessStatus, SandboxReport

FUZZ = settings(max_examples=200, deadline=None)

TOKEN = b"5f0c8a1e9b7d"
SUCCESS = "success"
STATUS_VALUES = [status.value for status in HarnessStatus]
HARNESS_FAILURE_CODES = {
    "no_main": ErrorCode.NO_MAIN,
    "non_json": ErrorCode.NON_JSON_RETURN,
    "syntax_error": ErrorCode.SYNTAX_ERROR,
    "runtime_error": ErrorCode.RUNTIME_ERROR,
    "memory_error": ErrorCode.MEMORY_LIMIT,
    "output_limit": ErrorCode.OUTPUT_LIMIT,
}
EXECUTION_CODES = {
    *HARNESS_FAILURE_CODES.values(),
    ErrorCode.TIMEOUT,
    ErrorCode.EMPTY_OUTPUT,
}

# --- strategies -----------------------------------------------------------------------------


def limits_from(fields: dict[str, Any]) -> Limits:
    return Limits(**fields)


def report_from(fields: dict[str, Any]) -> SandboxReport:
    return SandboxReport(**fields)


loose_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
)
optional_header_fields = {
    "detail": loose_values,
    "exception": loose_values,
    "traceback": loose_values,
    "line": loose_values,
    "size": loose_values,
}
# Headers as the harness writes them (each status with its own fields, typed, and the usage
# fields), and headers with any status and any fields at all.
texts = st.text(max_size=12)
usage_fields = {"cpu_s": st.floats(0, 10), "hwm_kib": st.integers(0, 1 << 40)}
GENUINE_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "ok": {},
    "no_main": {"detail": texts},
    "non_json": {"detail": texts},
    "syntax_error": {
        "exception": texts,
        "detail": texts,
        "line": st.one_of(st.none(), st.integers(0, 10_000)),
        "traceback": texts,
    },
    "runtime_error": {"exception": texts, "detail": texts, "traceback": texts},
    "memory_error": {},
    "output_limit": {"size": st.integers(0, 1 << 40)},
}
known_headers = st.sampled_from(STATUS_VALUES).flatmap(
    lambda status: st.fixed_dictionaries(
        {"status": st.just(status)}, optional={**GENUINE_FIELDS[status], **usage_fields}
    )
)
any_headers = st.fixed_dictionaries(
    {"status": st.one_of(st.sampled_from(STATUS_VALUES), loose_values)},
    optional=optional_header_fields,
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
json_bodies = json_values.map(lambda value: json.dumps(value, allow_nan=False).encode())
bodies = st.one_of(json_bodies, st.binary(max_size=48))


def join_channel(parts: tuple[bytes, dict[str, Any], bytes]) -> bytes:
    token_line, header, body = parts
    return token_line + json.dumps(header).encode() + b"\n" + body


token_lines = st.sampled_from([TOKEN + b"\n", b"", b"0000deadbeef\n"])
channels = st.one_of(
    st.tuples(token_lines, any_headers, bodies).map(join_channel),
    st.binary(max_size=48),
)
# Reports the harness could have written for this execution: right token, known status, JSON.
genuine_channels = st.tuples(st.just(TOKEN + b"\n"), known_headers, json_bodies).map(join_channel)
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
).map(limits_from)

EVIDENCE_FIELDS = {
    "exit_code": st.one_of(st.just(0), st.none(), st.integers(-255, 255)),
    "signal": signal_numbers,
    "timed_out": st.booleans(),
    "oom_killed": st.sampled_from([None, True, False]),
    "cpu_time_s": st.floats(0, 20, allow_nan=False),
    "peak_memory_bytes": st.one_of(st.none(), st.integers(0, 128 * MIB)),
}
REPORT_FIELDS = {
    **EVIDENCE_FIELDS,
    "harness_report": st.one_of(channels, genuine_channels),
    "harness_report_truncated": st.booleans(),
    "report_token": st.sampled_from([b"", TOKEN]),
    "stdout": st.binary(max_size=48),
    "stdout_truncated": st.booleans(),
    "stderr": st.binary(max_size=24),
    "stderr_truncated": st.booleans(),
    "wall_time_s": st.floats(0, 20, allow_nan=False),
    "sandbox_error": st.one_of(st.none(), st.text(max_size=16)),
}
# Runs that ended normally with no outside evidence, so that the report gets to decide.
CLEAN_FIELDS = {
    **REPORT_FIELDS,
    "exit_code": st.just(0),
    "signal": st.none(),
    "timed_out": st.just(False),
    "oom_killed": st.sampled_from([None, False]),
    "harness_report": st.one_of(genuine_channels, channels),
    "harness_report_truncated": st.just(False),
    "report_token": st.just(TOKEN),
    "sandbox_error": st.none(),
}
report_fields = st.fixed_dictionaries(REPORT_FIELDS)
evidence = st.fixed_dictionaries(EVIDENCE_FIELDS)
reports = st.one_of(
    report_fields.map(report_from),
    st.fixed_dictionaries(CLEAN_FIELDS).map(report_from),
)


# --- the oracle -----------------------------------------------------------------------------


def report_verdict(report: SandboxReport, limits: Limits) -> ErrorCode | str | None:
    """What the harness report decides on its own: a code, SUCCESS, or None for nothing."""
    if report.signal is not None or report.exit_code != 0 or report.harness_report_truncated:
        return None
    parsed = parse_harness_report(report.harness_report, report.report_token)
    if parsed is None:
        return None
    header, body = parsed
    if header["status"] != "ok":
        return HARNESS_FAILURE_CODES[header["status"]]
    if len(body) > limits.result_cap_bytes:
        return ErrorCode.OUTPUT_LIMIT
    try:
        json.loads(body.decode("utf-8"))
    except RecursionError:
        return ErrorCode.NON_JSON_RETURN
    except ValueError:
        return None
    return SUCCESS


def outside_verdict(report: SandboxReport, limits: Limits) -> ErrorCode | None:
    """What the evidence from outside the sandbox decides before any report is read."""
    if report.sandbox_error is not None:
        return ErrorCode.EMPTY_OUTPUT
    if report.timed_out:
        return ErrorCode.TIMEOUT
    if report.oom_killed:
        return ErrorCode.MEMORY_LIMIT
    if report.signal == signal.SIGXCPU or (
        report.signal == signal.SIGKILL and report.cpu_time_s >= limits.cpu_time_s
    ):
        return ErrorCode.TIMEOUT
    return None


def expected_verdict(report: SandboxReport, limits: Limits) -> ErrorCode | str:
    decided = outside_verdict(report, limits) or report_verdict(report, limits)
    if decided is not None:
        return decided
    if report.harness_report_truncated:
        return ErrorCode.OUTPUT_LIMIT
    if (
        report.signal == signal.SIGKILL
        and report.oom_killed is None
        and report.peak_memory_bytes is not None
        and report.peak_memory_bytes >= 0.9 * limits.memory_bytes
    ):
        return ErrorCode.MEMORY_LIMIT
    return ErrorCode.EMPTY_OUTPUT


def verdict(outcome: Outcome) -> ErrorCode | str:
    return SUCCESS if isinstance(outcome, Success) else outcome.code


# --- properties -----------------------------------------------------------------------------


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_classify_is_total_and_follows_the_documented_order(
    report: SandboxReport, limits: Limits
) -> None:
    outcome = classify(report, limits)

    assert isinstance(outcome, Success | Failure)
    assert verdict(outcome) == expected_verdict(report, limits)
    if isinstance(outcome, Failure):
        assert outcome.code in EXECUTION_CODES
        assert outcome.message.endswith(".")


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_success_only_from_a_well_formed_ok_report_within_the_cap(
    report: SandboxReport, limits: Limits
) -> None:
    outcome = classify(report, limits)

    if isinstance(outcome, Success):
        assert report.sandbox_error is None
        assert report.exit_code == 0
        assert report.signal is None
        assert not report.timed_out
        assert not report.oom_killed
        assert not report.harness_report_truncated
        parsed = parse_harness_report(report.harness_report, report.report_token)
        assert parsed is not None
        header, body = parsed
        assert header["status"] == "ok"
        assert len(body) <= limits.result_cap_bytes
        assert outcome.result_json.encode() == body
        json.loads(outcome.result_json)


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
@given(report=reports, error=st.text(max_size=16), limits=limits_strategy)
def test_a_sandbox_error_is_always_empty_output(
    report: SandboxReport, error: str, limits: Limits
) -> None:
    outcome = classify(attrs.evolve(report, sandbox_error=error), limits)

    assert isinstance(outcome, Failure)
    assert outcome.code is ErrorCode.EMPTY_OUTPUT
    assert outcome.message == f"The sandbox failed: {error}."


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_timed_out_is_always_a_wall_clock_timeout(report: SandboxReport, limits: Limits) -> None:
    outcome = classify(attrs.evolve(report, timed_out=True, sandbox_error=None), limits)

    assert isinstance(outcome, Failure)
    assert outcome.code is ErrorCode.TIMEOUT
    assert outcome.details == {"limit": "wall_time"}


@FUZZ
@given(
    fields=st.fixed_dictionaries(CLEAN_FIELDS),
    channel=genuine_channels,
    other=evidence,
    limits=limits_strategy,
)
def test_a_genuine_report_decides_unless_outside_evidence_or_an_abnormal_end_says_otherwise(
    fields: dict[str, Any], channel: bytes, other: dict[str, Any], limits: Limits
) -> None:
    report = SandboxReport(**{**fields, "harness_report": channel})
    decided = report_verdict(report, limits)
    assert decided is not None  # a genuine report from a normal exit always decides
    assert verdict(classify(report, limits)) == decided

    changed = attrs.evolve(report, **other)
    outcome = classify(changed, limits)

    outside = outside_verdict(changed, limits)
    if outside is not None:
        assert verdict(outcome) == outside
    elif changed.exit_code == 0 and changed.signal is None:
        assert verdict(outcome) == decided
    else:
        assert not isinstance(outcome, Success)


@FUZZ
@given(report=reports, limits=limits_strategy)
def test_a_report_without_the_token_counts_as_no_report(
    report: SandboxReport, limits: Limits
) -> None:
    raw = report.harness_report
    while raw.startswith(TOKEN + b"\n"):
        raw = raw[len(TOKEN) + 1 :]
    tokenless = attrs.evolve(report, harness_report=raw, report_token=TOKEN)

    silent = attrs.evolve(tokenless, harness_report=b"")

    assert verdict(classify(tokenless, limits)) == verdict(classify(silent, limits))


@FUZZ
@given(raw=st.one_of(channels, genuine_channels, st.binary(max_size=96)))
def test_parse_harness_report_is_total_and_splits_at_the_first_newline(raw: bytes) -> None:
    parsed = parse_harness_report(raw)

    if parsed is not None:
        header, body = parsed
        assert isinstance(header, dict)
        assert header["status"] in STATUS_VALUES
        header_line, _, rest = raw.partition(b"\n")
        assert rest == body
        assert json.loads(header_line) == header


@FUZZ
@given(raw=st.one_of(channels, genuine_channels, st.binary(max_size=96)))
def test_parse_with_a_token_is_parse_of_what_follows_the_token_line(raw: bytes) -> None:
    parsed = parse_harness_report(raw, TOKEN)

    if raw.startswith(TOKEN + b"\n"):
        assert parsed == parse_harness_report(raw[len(TOKEN) + 1 :])
    else:
        assert parsed is None
