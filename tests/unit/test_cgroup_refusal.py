"""A runner with cgroups never runs an execution without them: when its scope cannot be
created, the execution is refused with a clear sandbox error and nothing is started."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.sandbox.cgroups import CONTROLLERS, CgroupParent, CgroupV1Parent
from adapters.sandbox.nsjail import NsjailSandbox
from adapters.sandbox.rlimit import RlimitSandbox
from adapters.sandbox.runtime import SandboxRuntime, default_interpreter
from application.ports import SandboxJob
from domain.limits import MIB, Limits
from domain.request import Script

JOB = SandboxJob(
    script=Script("def main():\n    return 1\n"), limits=Limits(memory_bytes=64 * MIB), slot=0
)


def unusable_cgroups(tmp_path: Path) -> CgroupParent:
    """Cgroup directories under a parent that does not exist: every mkdir fails."""
    return CgroupV1Parent(
        dirs={c: tmp_path / "absent" / c / "safe-exec" for c in CONTROLLERS},
        mounts={c: tmp_path / "absent" / c for c in CONTROLLERS},
    )


def runtime() -> SandboxRuntime:
    return SandboxRuntime(python=default_interpreter())


def test_nsjail_refuses_to_run_without_its_cgroup(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # A "nsjail" that would leave a mark if it were ever started.
    fake = tmp_path / "nsjail"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    sandbox = NsjailSandbox(
        nsjail=str(fake), runtime=runtime(), uid_base=900000, cgroups=unusable_cgroups(tmp_path)
    )

    report = sandbox.run(JOB)

    assert report.sandbox_error is not None
    assert "cgroup could not be created" in report.sandbox_error
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the rlimit runner needs root")
def test_rlimit_refuses_to_run_without_its_cgroup(tmp_path: Path) -> None:
    sandbox = RlimitSandbox(
        runtime=runtime(), uid_base=900000, cgroups=unusable_cgroups(tmp_path), seccomp=None
    )

    report = sandbox.run(JOB)

    assert report.sandbox_error is not None
    assert "cgroup could not be created" in report.sandbox_error
    assert report.stdout == b"" and report.harness_report == b""
