"""Property tests of domain.request.parse_execute_body over explicitly generated bodies."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.limits import MIB, Limits
from domain.request import (
    ALLOWED_FIELDS,
    MIN_MEMORY_MB,
    ExecuteRequest,
    RequestRejected,
    parse_execute_body,
)

FUZZ = settings(max_examples=200, deadline=None)
LIMITS = Limits(script_cap_bytes=64)
UNCAPPED = Limits(script_cap_bytes=10**9)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
# Any string, with NUL, lone surrogates and multi-byte characters made common.
any_text = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\u00e9"]),
    ),
    max_size=80,
)
script_values = st.one_of(any_text, json_values)
payloads = st.dictionaries(
    keys=st.one_of(
        st.sampled_from(["script", "Script", "timeout_s", "memory_mb", "stdin", "input"]),
        st.text(max_size=6),
    ),
    values=script_values,
    max_size=3,
)
valid_sources = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=200,
)


def parse_or_rejection(raw: bytes, limits: Limits) -> ExecuteRequest | RequestRejected:
    try:
        return parse_execute_body(raw, limits)
    except RequestRejected as error:
        return error


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def acceptable(payload: dict[str, object], limits: Limits) -> bool:
    """The contract's rules, restated: a non-empty NUL-free UTF-8 `script` within the cap,
    only the version 2 fields besides it, each within its documented range."""
    if "script" not in payload or not set(payload) <= set(ALLOWED_FIELDS):
        return False
    script = payload["script"]
    if not isinstance(script, str) or script == "" or "\x00" in script or not _utf8(script):
        return False
    if len(script.encode("utf-8")) > limits.script_cap_bytes:
        return False
    timeout = payload.get("timeout_s", 1)
    if not _number(timeout) or not 0 < timeout <= limits.wall_time_s:  # type: ignore[operator]
        return False
    memory = payload.get("memory_mb", MIN_MEMORY_MB)
    if not isinstance(memory, int) or isinstance(memory, bool):
        return False
    if not MIN_MEMORY_MB <= memory <= limits.memory_bytes // MIB:
        return False
    stdin = payload.get("stdin", "")
    if not isinstance(stdin, str) or not _utf8(stdin):
        return False
    return len(stdin.encode("utf-8")) <= limits.script_cap_bytes


@FUZZ
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_are_parsed_or_rejected(raw: bytes) -> None:
    outcome = parse_or_rejection(raw, LIMITS)

    assert isinstance(outcome, ExecuteRequest | RequestRejected)
    if isinstance(outcome, RequestRejected):
        assert outcome.message


@FUZZ
@given(prefix=st.sampled_from([b'{"script": "', b'{"script": ', b"[", b"{"]), tail=st.binary())
def test_bytes_that_start_like_a_request_are_parsed_or_rejected(prefix: bytes, tail: bytes) -> None:
    assert isinstance(parse_or_rejection(prefix + tail, LIMITS), ExecuteRequest | RequestRejected)


@FUZZ
@given(payload=payloads, ensure_ascii=st.booleans())
def test_arbitrary_objects_are_accepted_exactly_when_the_contract_allows(
    payload: dict[str, object], ensure_ascii: bool
) -> None:
    raw = json.dumps(payload, ensure_ascii=ensure_ascii).encode("utf-8", errors="surrogatepass")

    outcome = parse_or_rejection(raw, LIMITS)

    try:
        raw.decode("utf-8")
        utf8_body = True
    except UnicodeDecodeError:  # a lone surrogate written raw (ensure_ascii=False)
        utf8_body = False
    if acceptable(payload, LIMITS) and utf8_body:
        assert isinstance(outcome, ExecuteRequest)
        assert outcome.script.source == payload["script"]
    else:
        assert isinstance(outcome, RequestRejected)
        assert outcome.message
        assert outcome.field in {*payload, "script", None}


@FUZZ
@given(script=any_text, cap=st.integers(1, 100))
def test_too_large_means_exactly_a_valid_script_over_the_cap(script: str, cap: int) -> None:
    valid = acceptable({"script": script}, UNCAPPED)
    over_cap = valid and len(script.encode("utf-8")) > cap

    outcome = parse_or_rejection(
        json.dumps({"script": script}).encode(), Limits(script_cap_bytes=cap)
    )

    if valid and not over_cap:
        assert isinstance(outcome, ExecuteRequest)
    else:
        assert isinstance(outcome, RequestRejected)
        assert outcome.too_large is over_cap


@FUZZ
@given(source=valid_sources, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 2]))
def test_a_valid_script_round_trips_exactly(
    source: str, ensure_ascii: bool, indent: int | None
) -> None:
    raw = json.dumps({"script": source}, ensure_ascii=ensure_ascii, indent=indent).encode()

    request = parse_execute_body(raw, Limits(script_cap_bytes=len(source.encode())))

    assert request.script.source == source
    assert request.script.size_bytes == len(source.encode("utf-8"))
