"""The configuration contract: every variable parsed, validated, and explained when wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sandbox.lease import RANGE_STRIDE, UID_BASE_MAX
from adapters.settings import (
    VARIABLES,
    Settings,
    SettingsError,
    available_cpus,
    cgroup_cpu_quota,
)
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
    assert loaded.max_concurrency == available_cpus()
    assert loaded.queue_size == 4 * loaded.max_concurrency
    assert loaded.shutdown_grace_s == 7
    assert (loaded.header_timeout_s, loaded.body_timeout_s) == (10, 30)


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
        HEADER_TIMEOUT_S="2.5",
        BODY_TIMEOUT_S="7",
        MAX_CONNECTIONS="40",
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
    assert (loaded.header_timeout_s, loaded.body_timeout_s, loaded.max_connections) == (2.5, 7, 40)


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
        ("MAX_CONCURRENCY", str(RANGE_STRIDE)),  # slots would spill into the next uid range
        ("SANDBOX_UID_BASE", "1"),  # slot 0 would be uid 1, and its uid sweep a host daemon's
        ("SANDBOX_UID_BASE", "0"),
        ("SANDBOX_UID_BASE", "65535"),
        ("SANDBOX_UID_BASE", str(UID_BASE_MAX + 1)),  # the ranges tried would pass 2**31
        ("SANDBOX_UID_BASE", str(2**32 - 1)),
        ("QUEUE_SIZE", "-1"),
        ("SHUTDOWN_GRACE_S", "0"),
        ("HEADER_TIMEOUT_S", "0"),
        ("HEADER_TIMEOUT_S", "inf"),
        ("BODY_TIMEOUT_S", "-1"),
        ("MAX_CONNECTIONS", "0"),
        ("MAX_CONNECTIONS", "many"),
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


@pytest.mark.parametrize("base", ["65536", "900000", str(UID_BASE_MAX)])
def test_uid_bases_that_keep_every_leased_range_in_bounds_are_accepted(base: str) -> None:
    assert load(SANDBOX_UID_BASE=base).uid_base == int(base)


def test_the_largest_concurrency_fits_in_one_uid_range() -> None:
    assert load(MAX_CONCURRENCY=str(RANGE_STRIDE - 1)).max_concurrency == RANGE_STRIDE - 1


def test_the_default_concurrency_is_the_cpus_this_process_may_use() -> None:
    loaded = Settings.from_env(BASE, cpus=lambda: 3)

    assert (loaded.max_concurrency, loaded.queue_size) == (3, 12)


def test_a_set_concurrency_does_not_ask_for_the_cpus() -> None:
    def cpus() -> int:
        raise AssertionError("asked for the CPUs although MAX_CONCURRENCY is set")

    assert Settings.from_env({**BASE, "MAX_CONCURRENCY": "5"}, cpus=cpus).max_concurrency == 5


@pytest.mark.parametrize(
    ("open_files", "expected"),
    [
        (20000, 1024),  # capped: each connection may hold a body of MAX_BODY_BYTES
        (1024, 1024 - 64 - 4 * 4),  # what the descriptors leave after the service's own
        (300, 300 - 64 - 4 * 4),
        (60, 16),  # a tiny limit still serves a few
    ],
)
def test_the_default_connection_bound_follows_the_descriptor_limit(
    open_files: int, expected: int
) -> None:
    env = {**BASE, "MAX_CONCURRENCY": "4"}

    assert Settings.from_env(env, open_files=lambda: open_files).max_connections == expected


def test_a_connection_bound_past_the_descriptor_limit_is_refused() -> None:
    env = {**BASE, "MAX_CONCURRENCY": "4", "MAX_CONNECTIONS": "1000"}

    with pytest.raises(SettingsError, match=r"MAX_CONNECTIONS=1000 .* is 1024, so at most 944"):
        Settings.from_env(env, open_files=lambda: 1024)
    assert Settings.from_env({**env, "MAX_CONNECTIONS": "944"}, open_files=lambda: 1024)


# A fake cgroup tree: /proc/self/cgroup's lines and the files under the cgroup mount.
def fake_cgroups(tmp_path: Path, proc_lines: list[str], files: dict[str, str]) -> Path:
    for name, content in files.items():
        (tmp_path / "cg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cg" / name).write_text(content)
    (tmp_path / "cg").mkdir(exist_ok=True)
    (tmp_path / "proc-cgroup").write_text("".join(line + "\n" for line in proc_lines))
    return tmp_path


def quota_of(tmp_path: Path, proc_lines: list[str], files: dict[str, str]) -> float | None:
    fake_cgroups(tmp_path, proc_lines, files)
    return cgroup_cpu_quota(tmp_path / "cg", tmp_path / "proc-cgroup")


V2 = {"cgroup.controllers": "cpu memory pids\n"}


@pytest.mark.parametrize(
    ("proc_lines", "files", "expected"),
    [
        # cgroup v2: cpu.max is "<quota> <period>" or "max <period>"
        (["0::/"], {**V2, "cpu.max": "150000 100000\n"}, 1.5),
        (["0::/"], {**V2, "cpu.max": "max 100000\n"}, None),
        (["0::/"], V2, None),
        # v2, the process in a nested group: the tightest quota along the path counts
        (
            ["0::/pod/app"],
            {**V2, "pod/cpu.max": "50000 100000", "pod/app/cpu.max": "max 100000"},
            0.5,
        ),
        (
            ["0::/pod/app"],
            {**V2, "pod/cpu.max": "400000 100000", "pod/app/cpu.max": "200000 100000"},
            2.0,
        ),
        # v2 in a container that sees only its own group at the mount's root
        (["0::/kubepods/pod1/ctr"], {**V2, "cpu.max": "250000 100000"}, 2.5),
        # the hybrid layout: v2 under unified/, no quota there
        (["1:cpu:/", "0::/"], {"cpu/cpu.cfs_quota_us": "-1", "unified/x": ""}, None),
        # cgroup v1: cfs_quota_us / cfs_period_us, -1 meaning no quota
        (
            ["4:memory:/x", "2:cpu,cpuacct:/docker/abc"],
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            3.0,
        ),
        (
            ["2:cpu,cpuacct:/docker/abc"],
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            None,
        ),
        # v1 with only a `cpu` mount (no combined name) and the quota at the visible root
        (
            ["3:cpu,cpuacct:/docker/abc"],
            {"cpu/cpu.cfs_quota_us": "20000", "cpu/cpu.cfs_period_us": "100000"},
            0.2,
        ),
        # garbage and missing files are "no quota", never an error
        (["0::/"], {**V2, "cpu.max": "lots\n"}, None),
        (["garbage"], {}, None),
    ],
)
def test_the_cgroup_cpu_quota_is_read_from_v1_and_v2_trees(
    tmp_path: Path, proc_lines: list[str], files: dict[str, str], expected: float | None
) -> None:
    assert quota_of(tmp_path, proc_lines, files) == expected


def test_no_proc_cgroup_file_is_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("50000 100000", 1),  # half a CPU still runs one execution
        ("100000 100000", 1),
        ("100001 100000", 2),  # rounded up
        ("max 100000", None),  # no quota: the affinity mask alone
        (f"{100000 * 4096} 100000", None),  # a quota above the CPUs: the affinity mask
    ],
)
def test_available_cpus_is_the_affinity_mask_capped_by_the_quota_rounded_up(
    tmp_path: Path, cpu_max: str, expected: int | None
) -> None:
    fake_cgroups(tmp_path, ["0::/"], {**V2, "cpu.max": cpu_max})
    affinity = len(os.sched_getaffinity(0))

    cpus = available_cpus(tmp_path / "cg", tmp_path / "proc-cgroup")

    assert cpus == (affinity if expected is None else min(affinity, expected))


def test_available_cpus_follows_the_affinity_mask_not_the_host(tmp_path: Path) -> None:
    """Run in a child restricted to one CPU, so the test's own affinity is left alone."""
    fake_cgroups(tmp_path, ["0::/"], V2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            cpus = available_cpus(tmp_path / "cg", tmp_path / "proc-cgroup")
            os._exit(0 if cpus == 1 else 1)
        finally:
            os._exit(2)
    _pid, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0


def test_namespaces_can_be_turned_off_and_nothing_else() -> None:
    assert load().namespaces == "auto"
    assert load(SANDBOX_NAMESPACES="off").namespaces == "off"
    with pytest.raises(SettingsError, match="SANDBOX_NAMESPACES must be auto or off"):
        load(SANDBOX_NAMESPACES="no")
