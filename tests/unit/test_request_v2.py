"""Contract version 2's request fields: parsing, ranges, and the effective limits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.limits import MIB, Limits
from domain.request import MIN_MEMORY_MB, RequestRejected, parse_execute_body

SERVER = Limits(wall_time_s=5.0, cpu_time_s=4.0, memory_bytes=512 * MIB, script_cap_bytes=100)
SCRIPT = "def main(x=None):\n    return x"


def parse(**fields: object) -> object:
    return parse_execute_body(json.dumps({"script": SCRIPT, **fields}).encode(), SERVER)


def test_absent_fields_leave_the_server_limits_and_no_input_or_stdin() -> None:
    request = parse_execute_body(json.dumps({"script": SCRIPT}).encode(), SERVER)

    assert request.limits_within(SERVER) == SERVER
    assert request.stdin is None
    assert request.input_json is None


def test_input_null_is_an_input_not_an_absence() -> None:
    request = parse_execute_body(b'{"script": "x", "input": null}', SERVER)

    assert request.input_json == "null"


def test_input_keeps_big_integers_and_unicode_exactly() -> None:
    request = parse_execute_body(
        b'{"script": "x", "input": [123456789012345678901234567890, "\\u00e9"]}', SERVER
    )

    assert request.input_json is not None
    assert json.loads(request.input_json) == [123456789012345678901234567890, "é"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_input_is_refused(literal: bytes) -> None:
    with pytest.raises(RequestRejected):
        parse_execute_body(b'{"script": "x", "input": [' + literal + b"]}", SERVER)


@pytest.mark.parametrize(
    ("timeout", "expected_wall", "expected_cpu"),
    [(5, 5.0, 4.0), (4.5, 4.5, 4.0), (2, 2.0, 2.0), (0.01, 0.01, 0.01)],
)
def test_a_timeout_lowers_the_wall_limit_and_caps_cpu_at_it(
    timeout: float, expected_wall: float, expected_cpu: float
) -> None:
    request = parse_execute_body(json.dumps({"script": "x", "timeout_s": timeout}).encode(), SERVER)

    effective = request.limits_within(SERVER)

    assert (effective.wall_time_s, effective.cpu_time_s) == (expected_wall, expected_cpu)
    assert effective.memory_bytes == SERVER.memory_bytes


def test_the_memory_range_is_the_minimum_to_the_server_maximum() -> None:
    lowest = parse_execute_body(
        json.dumps({"script": "x", "memory_mb": MIN_MEMORY_MB}).encode(), SERVER
    )
    highest = parse_execute_body(json.dumps({"script": "x", "memory_mb": 512}).encode(), SERVER)

    assert lowest.limits_within(SERVER).memory_bytes == MIN_MEMORY_MB * MIB
    assert highest.limits_within(SERVER).memory_bytes == 512 * MIB
    for outside in (MIN_MEMORY_MB - 1, 513):
        with pytest.raises(RequestRejected) as raised:
            parse_execute_body(json.dumps({"script": "x", "memory_mb": outside}).encode(), SERVER)
        assert raised.value.field == "memory_mb"
        assert f"from {MIN_MEMORY_MB} to 512" in raised.value.message


@settings(max_examples=200, deadline=None)
@given(
    timeout=st.one_of(st.none(), st.floats(0.001, 50), st.integers(-3, 50)),
    memory=st.one_of(st.none(), st.integers(-5, 2000)),
)
def test_a_request_never_raises_a_limit_above_the_server(
    timeout: float | None, memory: int | None
) -> None:
    fields = {k: v for k, v in {"timeout_s": timeout, "memory_mb": memory}.items() if v is not None}
    try:
        request = parse_execute_body(json.dumps({"script": "x", **fields}).encode(), SERVER)
    except RequestRejected as rejected:
        assert rejected.field in fields
        return

    effective = request.limits_within(SERVER)

    assert effective.wall_time_s <= SERVER.wall_time_s
    assert effective.cpu_time_s <= SERVER.cpu_time_s
    assert effective.cpu_time_s <= effective.wall_time_s
    assert effective.memory_bytes <= SERVER.memory_bytes
    # everything a request cannot set is the server's
    assert effective.max_processes == SERVER.max_processes
    assert effective.stdout_cap_bytes == SERVER.stdout_cap_bytes


@settings(max_examples=100, deadline=None)
@given(stdin=st.text(max_size=120))
def test_stdin_is_kept_exactly_up_to_the_cap_and_refused_as_too_large_beyond(stdin: str) -> None:
    body = json.dumps({"script": "x", "stdin": stdin}).encode()
    try:
        request = parse_execute_body(body, SERVER)
    except RequestRejected as rejected:
        assert rejected.field == "stdin"
        encodable = all(not 0xD800 <= ord(ch) <= 0xDFFF for ch in stdin)
        assert rejected.too_large == encodable
        assert not encodable or len(stdin.encode()) > SERVER.script_cap_bytes
        return
    assert request.stdin == stdin
    assert len(stdin.encode()) <= SERVER.script_cap_bytes
