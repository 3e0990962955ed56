"""The configuration contract: every variable parsed, validated, and explained when wrong."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.settings import VARIABLES, Settings, SettingsError
from domain.limits import MIB

BASE = {"SANDBOX_PYTHON": "/usr/bin/python3"}  # keeps the tests off the filesystem probe


def load(**env: str) -> Settings:
    return Settings.from_env({**BASE, **env})


def test_defaults_are_the_documented_ones() -> None:
    loaded = load()

    assert (loaded.host, loaded.port, loaded.sandbox_mode) == ("0.0.0.0", 8080, "auto")
    assert loaded.limits.wall_time_s == 5
    assert loaded.limits.cpu_time_s == 5
    assert loaded.limits.memory_bytes == 512 * MIB
    assert loaded.limits.stdout_cap_bytes == MIB
    assert loaded.limits.script_cap_bytes == 256 * 1024
    assert loaded.max_concurrency == (os.cpu_count() or 1)
    assert loaded.queue_size == 4 * loaded.max_concurrency
    assert loaded.shutdown_grace_s == 7


def test_every_variable_is_read() -> None:
    loaded = load(
        HOST="127.0.0.1",
        PORT="9000",
        SANDBOX="nsjail",
        WALL_TIME_S="2.5",
        CPU_TIME_S="1",
        MEMORY_MB="300",
        MAX_PROCESSES="8",
        MAX_OPEN_FILES="32",
        TMP_SIZE_MB="16",
        STDOUT_CAP_BYTES="100",
        STDERR_CAP_BYTES="50",
        RESULT_CAP_BYTES="200",
        MAX_SCRIPT_BYTES="300",
        MAX_BODY_BYTES="400",
        MAX_CONCURRENCY="3",
        QUEUE_SIZE="0",
        SANDBOX_UID_BASE="123456",
        SANDBOX_SITE="/srv/site",
        SHUTDOWN_GRACE_S="9",
    )

    limits = loaded.limits
    assert (loaded.host, loaded.port, loaded.sandbox_mode) == ("127.0.0.1", 9000, "nsjail")
    assert (limits.wall_time_s, limits.cpu_time_s, limits.memory_bytes) == (2.5, 1, 300 * MIB)
    assert (limits.max_processes, limits.max_open_files, limits.tmp_size_bytes) == (8, 32, 16 * MIB)
    assert (limits.stdout_cap_bytes, limits.stderr_cap_bytes) == (100, 50)
    assert (limits.result_cap_bytes, limits.script_cap_bytes, loaded.max_body_bytes) == (
        200,
        300,
        400,
    )
    assert (loaded.max_concurrency, loaded.queue_size, loaded.uid_base) == (3, 0, 123456)
    assert (loaded.sandbox_site, loaded.shutdown_grace_s) == ("/srv/site", 9)


@pytest.mark.parametrize("flag", ["1", "true", "yes", "on", "TRUE"])
def test_force_compat_means_the_rlimit_runners(flag: str) -> None:
    assert load(FORCE_COMPAT=flag, SANDBOX="nsjail").sandbox_mode == "compat"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "http"),
        ("SANDBOX", "docker"),
        ("FORCE_COMPAT", "maybe"),
        ("WALL_TIME_S", "0"),
        ("WALL_TIME_S", "-1"),
        ("WALL_TIME_S", "inf"),
        ("WALL_TIME_S", "nan"),
        ("CPU_TIME_S", "abc"),
        ("MEMORY_MB", "1.5"),
        ("MEMORY_MB", "0"),
        ("MAX_PROCESSES", "-3"),
        ("STDOUT_CAP_BYTES", "lots"),
        ("MAX_CONCURRENCY", "0"),
        ("QUEUE_SIZE", "-1"),
        ("SHUTDOWN_GRACE_S", "0"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load(**{name: value})

    assert name in str(raised.value)
    assert repr(value) in str(raised.value)


def test_too_few_open_files_for_python_is_refused() -> None:
    with pytest.raises(SettingsError, match="MAX_OPEN_FILES"):
        load(MAX_OPEN_FILES="8")


NUMERIC = sorted(
    name
    for name, (_parse, default, _valid) in VARIABLES.items()
    if name.endswith(("_S", "_MB", "_BYTES"))
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(NUMERIC),
    value=st.one_of(
        st.text(max_size=12),
        st.integers(min_value=-(10**6), max_value=10**6).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    ),
)
def test_numeric_variables_either_load_or_explain(name: str, value: str) -> None:
    try:
        loaded = load(**{name: value})
    except SettingsError as error:
        assert name in str(error)
    else:
        assert loaded.limits.wall_time_s > 0
        assert loaded.max_body_bytes > 0
