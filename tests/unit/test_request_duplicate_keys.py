"""A JSON object that names a key twice is ambiguous: INVALID_REQUEST (contract, Clarifications)."""

from __future__ import annotations

import pytest

from domain.limits import Limits
from domain.request import RequestRejected, parse_execute_body

LIMITS = Limits()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"script": "def main(): return 1", "script": "def main(): return 2"}',
        b'{"script": "def main(): return 1", "script": "def main(): return 1"}',
        b'{"script": "x", "extra": {"a": 1, "a": 2}}',
    ],
)
def test_a_duplicated_key_is_rejected(raw: bytes) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_execute_body(raw, LIMITS)

    assert not caught.value.too_large
    assert "more than once" in caught.value.message


def test_distinct_keys_in_nested_objects_are_fine() -> None:
    with pytest.raises(RequestRejected) as caught:  # unknown field, not a duplicate
        parse_execute_body(b'{"script": "x", "a": {"script": 1}}', LIMITS)

    assert caught.value.field == "a"


def test_a_plain_body_still_parses() -> None:
    parsed = parse_execute_body(b'{"script": "def main(): return 1"}', LIMITS)

    assert parsed.script.source == "def main(): return 1"
