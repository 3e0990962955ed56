"""API keys: who is admitted, how keys are configured, and that keys never show."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.auth import ApiKeys, bearer_token, parse_keys
from adapters.settings import Settings, SettingsError

BASE = {"SANDBOX_PYTHON": "/usr/bin/python3"}
keys = st.text(
    alphabet=st.characters(
        min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"]
    ),
    min_size=1,
    max_size=40,
).filter(lambda key: "," not in key and not key.startswith("#"))


def test_without_keys_everyone_is_admitted() -> None:
    open_door = ApiKeys()

    assert not open_door.required
    assert open_door.admits(None)
    assert open_door.admits_authorization(None)


@settings(max_examples=100, deadline=None)
@given(configured=st.lists(keys, min_size=1, max_size=4), offered=keys)
def test_a_key_is_admitted_exactly_when_it_was_configured(
    configured: list[str], offered: str
) -> None:
    door = ApiKeys(configured)

    assert door.admits(offered) == (offered in configured)
    assert door.admits_authorization(f"Bearer {offered}") == (offered in configured)
    assert all(door.admits(key) for key in configured)


@settings(max_examples=100, deadline=None)
@given(key=keys, suffix=keys)
def test_a_prefix_or_extension_of_a_key_is_refused(key: str, suffix: str) -> None:
    door = ApiKeys([key + suffix])

    assert not door.admits(key)
    assert not door.admits(key + suffix + suffix)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_only_the_bearer_scheme_carries_a_key(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_keys_never_appear_in_reprs() -> None:
    loaded = Settings.from_env({**BASE, "API_KEYS": "alpha-key-1, beta-key-2"})

    assert "alpha-key-1" not in repr(loaded)
    assert "alpha-key-1" not in repr(ApiKeys(loaded.api_keys))
    assert loaded.api_keys == ("alpha-key-1", "beta-key-2")


def test_keys_come_from_the_variable_and_the_file_together(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated 2026-11\nfile-key-1\n\n  file-key-2  \nalpha-key-1\n")

    loaded = Settings.from_env({**BASE, "API_KEYS": "alpha-key-1", "API_KEYS_FILE": str(key_file)})

    assert loaded.api_keys == ("alpha-key-1", "file-key-1", "file-key-2")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"API_KEYS": "has space"}, "API_KEYS is invalid: a key contains whitespace"),
        ({"API_KEYS_FILE": "/nonexistent/keys"}, "API_KEYS_FILE cannot be read"),
    ],
)
def test_unusable_key_configuration_stops_the_service(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment) as raised:
        Settings.from_env({**BASE, **env})

    assert "has space" not in str(raised.value)


def test_an_empty_key_file_is_a_mistake_not_an_open_door(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# nothing yet\n\n")

    with pytest.raises(SettingsError, match="holds no key"):
        Settings.from_env({**BASE, "API_KEYS_FILE": str(key_file)})


def test_a_file_line_with_inner_whitespace_is_refused_without_quoting_it(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("secret part-two\n")

    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**BASE, "API_KEYS_FILE": str(key_file)})

    assert "secret" not in str(raised.value)


def test_commas_separate_keys_in_the_variable_only() -> None:
    assert parse_keys("a,b, c") == ["a", "b", "c"]
    assert parse_keys("a,b\n", separators="") == ["a,b"]
