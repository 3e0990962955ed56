"""The command line: configuration errors stop the service with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.server import ROOT


@pytest.mark.parametrize(
    ("name", "value"), [("WALL_TIME_S", "abc"), ("PORT", "70000"), ("SANDBOX", "docker")]
)
def test_a_bad_setting_stops_the_service_with_one_clear_line(name: str, value: str) -> None:
    env = {**os.environ, name: value}
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert name in lines[0]
    assert repr(value) in lines[0]
