"""The CPU limit holds for the execution as a whole (contract, Clarifications): processes
that each stay under the per-process limit are stopped when together they pass it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import MODES
from tests.integration.server import Server, running_server

SPINNERS = """
import os, time

def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

def main():
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            spin(0.9)  # under the 1 s limit of each process
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return "2.7 s of CPU under a 1 s limit"
"""


@pytest.fixture(scope="module", params=MODES)
def budget_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = {"WALL_TIME_S": "6", "CPU_TIME_S": "1"}
    with running_server(request.param, tmp_path_factory.mktemp("budget"), env) as server:
        yield server


def test_forked_processes_share_one_cpu_budget(budget_server: Server) -> None:
    started = time.monotonic()
    answer = budget_server.execute(SPINNERS)
    elapsed = time.monotonic() - started
    body = answer.json()

    verdict = (answer.status, body.get("error"), body.get("limit"))
    assert verdict == (400, "TIMEOUT", "cpu_time"), f"{budget_server.mode} {elapsed:.1f} s: {body}"
    assert body["usage"]["cpu_time_ms"] >= 1000, body
    # Stopped by the CPU budget, well before the 6 s wall limit (loaded machines included).
    assert elapsed < 5, f"{budget_server.mode}: answered after {elapsed:.1f} s"


def test_a_single_process_within_the_budget_is_untouched(budget_server: Server) -> None:
    answer = budget_server.execute(
        "import time\ndef main():\n"
        "    end = time.process_time() + 0.5\n"
        "    while time.process_time() < end:\n        pass\n    return 'ok'\n"
    )

    assert answer.status == 200 and answer.json()["result"] == "ok", answer.body
