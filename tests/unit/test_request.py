"""Example-based tests of domain.request.parse_execute_body: the POST /execute validation."""

from __future__ import annotations

import json

import pytest

from domain.limits import Limits
from domain.request import ExecuteRequest, RequestRejected, Script, parse_execute_body

LIMITS = Limits()
SCRIPT = "def main():\n    return 1\n"


def body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def rejected(raw: bytes, limits: Limits = LIMITS) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        parse_execute_body(raw, limits)
    error = caught.value
    assert error.message
    assert str(error) == error.message
    return error


# --- accepted -------------------------------------------------------------------------------


def test_a_valid_body_gives_the_script() -> None:
    request = parse_execute_body(body({"script": SCRIPT}), LIMITS)

    assert request == ExecuteRequest(script=Script(SCRIPT))
    assert request.script.source == SCRIPT


@pytest.mark.parametrize(
    "raw",
    [
        b'  {"script": "x = 1"}\n',
        '{"script": "x = \'\u00e9\u6f22\U0001f600\'"}'.encode(),
        b'{"script": "x = \'\\u00e9\\ud83d\\ude00\'"}',
    ],
    ids=["whitespace", "utf8-text", "escaped-pair"],
)
def test_valid_bodies_in_various_spellings_are_accepted(raw: bytes) -> None:
    request = parse_execute_body(raw, LIMITS)

    assert request.script.source == json.loads(raw)["script"]


def test_a_script_of_whitespace_is_not_empty() -> None:
    assert parse_execute_body(body({"script": " \n"}), LIMITS).script.source == " \n"


def test_a_script_exactly_at_the_cap_is_accepted() -> None:
    limits = Limits(script_cap_bytes=6)

    request = parse_execute_body(body({"script": "\u00e9\u00e9\u00e9"}), limits)  # 6 bytes

    assert request.script.size_bytes == 6


# --- too large ------------------------------------------------------------------------------


def test_a_script_over_the_cap_is_too_large() -> None:
    error = rejected(body({"script": "x" * 11}), Limits(script_cap_bytes=10))

    assert error.too_large is True
    assert error.field == "script"
    assert "11 bytes" in error.message
    assert "10" in error.message


def test_the_cap_counts_utf8_bytes_not_characters() -> None:
    error = rejected(body({"script": "\u00e9\u00e9\u00e9"}), Limits(script_cap_bytes=5))

    assert error.too_large is True


# --- invalid --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"script=x",
        b"{",
        b'{"script": "x"',
        b"{'script': 'x'}",
        b'{"script": "x"} trailing',
        b'{"script": "\xff"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "empty",
        "blank",
        "form",
        "open-brace",
        "unclosed",
        "single-quotes",
        "trailing",
        "bad-utf8",
        "too-deep",
    ],
)
def test_a_body_that_is_not_json_is_rejected(raw: bytes) -> None:
    error = rejected(raw)

    assert error.message == "The body is not valid JSON."
    assert error.too_large is False


@pytest.mark.parametrize("payload", [[], ["script"], "script", 1, None, True])
def test_a_body_that_is_not_an_object_is_rejected(payload: object) -> None:
    error = rejected(body(payload))

    assert "JSON object" in error.message
    assert error.too_large is False


def test_a_missing_script_is_rejected() -> None:
    error = rejected(b"{}")

    assert error.message == "'script' is required."
    assert error.field == "script"
    assert error.too_large is False


def test_an_empty_script_is_rejected() -> None:
    error = rejected(body({"script": ""}))

    assert error.message == "'script' must be a non-empty string."
    assert error.field == "script"


@pytest.mark.parametrize("value", [0, 1, 1.5, [], ["print(1)"], {}, None, True, False], ids=repr)
def test_a_script_that_is_not_a_string_is_rejected(value: object) -> None:
    error = rejected(body({"script": value}))

    assert error.message == "'script' must be a string."
    assert error.field == "script"
    assert error.too_large is False


@pytest.mark.parametrize("raw", [b'{"script": "a\\u0000b"}', b'{"script": "\\u0000"}'])
def test_a_script_with_nul_is_rejected(raw: bytes) -> None:
    error = rejected(raw)

    assert "NUL" in error.message
    assert error.field == "script"


@pytest.mark.parametrize(
    "raw",
    [b'{"script": "\\ud800"}', b'{"script": "x\\udfff"}', b'{"script": "\xed\xa0\x80"}'],
    ids=["high-escape", "low-escape", "encoded-surrogate"],
)
def test_a_script_with_a_lone_surrogate_is_rejected(raw: bytes) -> None:
    error = rejected(raw)

    assert "surrogate" in error.message
    assert error.field == "script"


def test_a_lone_surrogate_is_rejected_even_when_over_the_cap() -> None:
    error = rejected(b'{"script": "\\ud800' + b"x" * 20 + b'"}', Limits(script_cap_bytes=4))

    assert error.too_large is False


def test_an_unknown_field_is_rejected_and_named() -> None:
    error = rejected(body({"script": SCRIPT, "timeout": 5}))

    assert error.field == "timeout"
    assert "'timeout'" in error.message
    assert error.too_large is False


def test_several_unknown_fields_are_all_named() -> None:
    error = rejected(body({"script": SCRIPT, "zeta": 1, "alpha": 2}))

    assert error.field == "alpha"
    assert "'alpha'" in error.message
    assert "'zeta'" in error.message


def test_an_unknown_field_is_reported_before_a_missing_script() -> None:
    error = rejected(body({"scirpt": SCRIPT}))

    assert error.field == "scirpt"


def test_a_field_differing_only_in_case_is_unknown() -> None:
    assert rejected(body({"Script": SCRIPT})).field == "Script"


# --- Script ---------------------------------------------------------------------------------


def test_script_size_is_in_utf8_bytes() -> None:
    assert Script("\u00e9\U0001f600").size_bytes == 6


def test_script_validates_on_construction() -> None:
    with pytest.raises(RequestRejected):
        Script("")
