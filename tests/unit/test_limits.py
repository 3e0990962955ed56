"""Tests of domain.limits.Limits: validation, CPU rounding and the public view."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest

from domain.limits import KIB, MIB, Limits

NUMBER_FIELDS = ["wall_time_s", "cpu_time_s"]
INT_FIELDS = [
    "memory_bytes",
    "max_processes",
    "max_open_files",
    "tmp_size_bytes",
    "stdout_cap_bytes",
    "stderr_cap_bytes",
    "result_cap_bytes",
    "script_cap_bytes",
]


def limits_with(field: str, value: object) -> Limits:
    overrides: dict[str, Any] = {field: value}
    return Limits(**overrides)


def test_the_fields_under_test_are_all_the_fields() -> None:
    assert {field.name for field in attrs.fields(Limits)} == {*NUMBER_FIELDS, *INT_FIELDS}


def test_defaults_are_the_documented_service_defaults() -> None:
    limits = Limits()

    assert limits.wall_time_s == 5.0
    assert limits.cpu_time_s == 5.0
    assert limits.memory_bytes == 512 * MIB
    assert limits.max_processes == 32
    assert limits.max_open_files == 64
    assert limits.tmp_size_bytes == 64 * MIB
    assert limits.stdout_cap_bytes == 1 * MIB
    assert limits.stderr_cap_bytes == 64 * KIB
    assert limits.result_cap_bytes == 1 * MIB
    assert limits.script_cap_bytes == 256 * KIB


@pytest.mark.parametrize("field", NUMBER_FIELDS)
@pytest.mark.parametrize("value", [0.001, 1, 2.5, 3600])
def test_time_limits_accept_positive_ints_and_floats(field: str, value: float) -> None:
    assert getattr(limits_with(field, value), field) == value


@pytest.mark.parametrize("field", NUMBER_FIELDS)
@pytest.mark.parametrize(
    "value", [0, 0.0, -0.0, -1, -0.5, math.nan, True, False, "5", None, [5]], ids=repr
)
def test_time_limits_reject_non_positive_bool_and_wrong_types(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        limits_with(field, value)


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", [1, 4096])
def test_integer_limits_accept_positive_ints(field: str, value: int) -> None:
    assert getattr(limits_with(field, value), field) == value


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", [0, -1])
def test_integer_limits_reject_non_positive_values(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        limits_with(field, value)


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", [1.0, 1.5, "10", None, b"1"], ids=repr)
def test_integer_limits_reject_wrong_types(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=field):
        limits_with(field, value)


@pytest.mark.parametrize("field", INT_FIELDS)
def test_integer_limits_reject_bool(field: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        limits_with(field, True)


def test_limits_are_immutable() -> None:
    limits = Limits()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        limits.wall_time_s = 1.0  # type: ignore[misc]


def test_limits_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Limits(5.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("cpu_time_s", "whole"),
    [(1, 1), (1.0, 1), (1.5, 2), (0.001, 1), (0.999, 1), (2.0001, 3), (5.0, 5), (7, 7)],
)
def test_cpu_limit_whole_seconds_rounds_up(cpu_time_s: float, whole: int) -> None:
    limits = Limits(cpu_time_s=cpu_time_s)

    assert limits.cpu_limit_whole_seconds == whole
    assert isinstance(limits.cpu_limit_whole_seconds, int)


def test_as_public_dict_has_the_documented_keys_and_units() -> None:
    limits = Limits(
        wall_time_s=2.5,
        cpu_time_s=1.5,
        memory_bytes=256 * MIB,
        max_processes=8,
        max_open_files=32,
        tmp_size_bytes=16 * MIB,
        stdout_cap_bytes=1000,
        stderr_cap_bytes=2000,
        result_cap_bytes=3000,
        script_cap_bytes=4000,
    )

    assert limits.as_public_dict() == {
        "wall_time_s": 2.5,
        "cpu_time_s": 1.5,
        "memory_mb": 256,
        "max_processes": 8,
        "max_open_files": 32,
        "tmp_size_mb": 16,
        "stdout_cap_bytes": 1000,
        "result_cap_bytes": 3000,
        "script_cap_bytes": 4000,
    }


def test_as_public_dict_does_not_expose_internal_caps() -> None:
    assert "stderr_cap_bytes" not in Limits().as_public_dict()


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_time_limits_must_be_finite(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Limits(cpu_time_s=value)


def test_cpu_limit_reached_allows_for_the_kernels_accounting_only() -> None:
    limits = Limits(cpu_time_s=2)

    assert limits.cpu_limit_reached(2.0)
    assert limits.cpu_limit_reached(1.85)  # killed by RLIMIT_CPU, reported a little short
    assert not limits.cpu_limit_reached(1.5)
    assert not limits.cpu_limit_reached(0.01)  # e.g. a script that ends itself with status 137
