"""The service trusts a harness report no further than its content (domain/classify.py).

A script can make the harness write a report of its choosing (see harness.py), so every
report is validated: a known status with only its own fields, each of its type, texts within
their cap in UTF-8 bytes, a bounded header line, finite numbers only; and outside evidence
always wins over it.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.classify import classify, parse_harness_report, valid_result_json
from domain.limits import Limits
from domain.outcome import ErrorCode, Failure, Success
from domain.report import HEADER_CAP_BYTES, TEXT_CAP_BYTES, HarnessStatus, SandboxReport

TOKEN = b"5f0c8a1e9b7d"
LIMITS = Limits()
FUZZ = settings(max_examples=150, deadline=None)
NON_FINITE = ["1e999", "-1E400", "NaN", "Infinity", "-Infinity", "1.5e309"]


def line(header: dict[str, Any]) -> bytes:
    return json.dumps(header, ensure_ascii=False).encode("utf-8")


def report(header_line: bytes, body: bytes = b"", **fields: Any) -> SandboxReport:
    raw = TOKEN + b"\n" + header_line + b"\n" + body
    return SandboxReport(exit_code=0, harness_report=raw, report_token=TOKEN, **fields)


@contextmanager
def int_digit_limit(digits: int) -> Iterator[None]:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(digits)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


# --- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_result_with_a_non_finite_number_is_not_a_genuine_report(number: str) -> None:
    body = f"[{number}, 7]".encode()

    outcome = classify(report(line({"status": "ok"}), body), LIMITS)

    assert isinstance(outcome, Failure), outcome
    assert outcome.code is ErrorCode.EMPTY_OUTPUT
    assert not valid_result_json(body.decode())


@pytest.mark.parametrize("digits", [640, 4300])
def test_a_huge_integer_result_passes_exact_whatever_the_digit_limit(digits: int) -> None:
    text = "1" + "0" * 5000  # 10**5000, more digits than the default limit converts
    with int_digit_limit(digits):
        outcome = classify(report(line({"status": "ok"}), f"[{text}, -{text}]".encode()), LIMITS)

    assert isinstance(outcome, Success), outcome
    assert outcome.result_json == f"[{text}, -{text}]"


# --- headers ---------------------------------------------------------------------------------


def runtime_error(**fields: Any) -> dict[str, Any]:
    return {"status": "runtime_error", "exception": "E", "detail": "d", "traceback": "t", **fields}


@pytest.mark.parametrize("field", ["exception", "detail", "traceback"])
def test_text_fields_are_capped_in_utf8_bytes(field: str) -> None:
    at_cap = "\U0001f600" * (TEXT_CAP_BYTES // 4)  # 2048 characters, 8192 bytes
    over = at_cap + "x"

    accepted = classify(report(line(runtime_error(**{field: at_cap}))), LIMITS)
    refused = classify(report(line(runtime_error(**{field: over}))), LIMITS)

    assert isinstance(accepted, Failure) and accepted.code is ErrorCode.RUNTIME_ERROR, accepted
    assert isinstance(refused, Failure) and refused.code is ErrorCode.EMPTY_OUTPUT, refused


def test_a_header_of_300_000_characters_does_not_pass() -> None:
    header = line(runtime_error(detail="x" * 300_000))

    outcome = classify(report(header), LIMITS)

    assert isinstance(outcome, Failure) and outcome.code is ErrorCode.EMPTY_OUTPUT, outcome
    assert "x" * 1000 not in outcome.message


def test_the_header_line_is_bounded_even_when_every_field_is_within_its_cap() -> None:
    escaped = json.dumps(runtime_error(detail="\x01" * TEXT_CAP_BYTES, traceback="\x02" * 8000))
    assert len(escaped) > HEADER_CAP_BYTES

    assert parse_harness_report(TOKEN + b"\n" + escaped.encode() + b"\n", TOKEN) is None


@pytest.mark.parametrize(
    "header_text",
    [
        '{"status": "ok", "status": "ok"}',  # a key twice
        '{"status": "finished"}',  # unknown status
        '{"status": 1}',
        '{"status": "ok", "cpu_s": true}',
        '{"status": "ok", "hwm_kib": -1}',
        '{"status": "ok", "hwm_kib": 1.5}',
        '{"status": "ok", "hwm_kib": 123456789012345678901234567890}',
        '{"status": "output_limit", "size": "9"}',
        '["status", "ok"]',
        '"ok"',
    ],
)
def test_headers_the_harness_never_writes_are_refused(header_text: str) -> None:
    assert parse_harness_report(TOKEN + b"\n" + header_text.encode() + b"\n", TOKEN) is None


def test_a_header_that_is_not_utf8_is_refused() -> None:
    header = json.dumps({"status": "ok"}).encode("utf-16")

    assert parse_harness_report(TOKEN + b"\n" + header + b"\n", TOKEN) is None


# --- properties ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)
headers = st.fixed_dictionaries(
    {"status": st.sampled_from([status.value for status in HarnessStatus])},
    optional={key: json_values for key in ("exception", "detail", "traceback", "line", "size")},
)


def with_non_finite(value: Any, number: str) -> str:
    """`value` as JSON with one non-finite number put in: as an extra key, or in a list."""
    text = json.dumps(value)
    if isinstance(value, dict):
        return text[:-1] + (", " if value else "") + f'"cpu_s": {number}' + "}"
    return f"[{text}, {number}]"


@FUZZ
@given(header=headers, number=st.sampled_from(NON_FINITE))
def test_any_header_with_a_non_finite_number_is_rejected(
    header: dict[str, Any], number: str
) -> None:
    header_text = with_non_finite(header, number)

    assert parse_harness_report(TOKEN + b"\n" + header_text.encode() + b"\n", TOKEN) is None


@FUZZ
@given(value=json_values, number=st.sampled_from(NON_FINITE))
def test_any_result_with_a_non_finite_number_is_never_a_success(value: Any, number: str) -> None:
    body = with_non_finite(value, number).encode()

    assert not isinstance(classify(report(line({"status": "ok"}), body), LIMITS), Success)


@FUZZ
@given(value=json_values)
def test_every_strict_json_result_within_the_cap_succeeds_verbatim(value: Any) -> None:
    body = json.dumps(value, allow_nan=False)

    outcome = classify(report(line({"status": "ok"}), body.encode()), LIMITS)

    assert isinstance(outcome, Success) and outcome.result_json == body, outcome


EVIDENCE = st.one_of(
    st.fixed_dictionaries({"timed_out": st.just(True)}),
    st.fixed_dictionaries({"oom_killed": st.just(True)}),
    st.fixed_dictionaries({"cpu_limit_hit": st.just(True)}),
    st.fixed_dictionaries(
        {"signal": st.sampled_from([signal.SIGKILL, signal.SIGXCPU, signal.SIGSEGV])}
    ),
    st.fixed_dictionaries({"exit_code": st.integers(1, 255)}),
    st.fixed_dictionaries({"sandbox_error": st.text(min_size=1, max_size=8)}),
    st.fixed_dictionaries({"harness_report_truncated": st.just(True)}),
)


@FUZZ
@given(value=json_values, evidence=EVIDENCE)
def test_adding_outside_evidence_never_yields_success(value: Any, evidence: dict[str, Any]) -> None:
    genuine = report(line({"status": "ok"}), json.dumps(value).encode())
    assert isinstance(classify(genuine, LIMITS), Success)

    outcome = classify(attrs.evolve(genuine, **evidence), LIMITS)

    assert isinstance(outcome, Failure), outcome
