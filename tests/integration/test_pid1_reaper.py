"""When the service is PID 1 (a container without an init), its orphan reaper reaps every
zombie whose parent is PID 1. The runners' own short-lived helper forks (the namespace probe,
the uid sweep) are children of PID 1 too: the reaper must leave them to the wait that expects
them, or a probe reads as "no namespaces" and a sweep raises mid clean-up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)

PROGRAM = """
import json, os, sys, threading
sys.path.insert(0, "src")
from adapters.sandbox.process import reap_orphans
from adapters.sandbox.rlimit import kill_uid, namespaces_available

assert os.getpid() == 1, os.getpid()
stop = threading.Event()

def reaper():
    while not stop.is_set():
        reap_orphans()

thread = threading.Thread(target=reaper)
thread.start()
probes = {"available": 0, "unavailable": 0, "ChildProcessError": 0}
sweeps = {"done": 0, "ChildProcessError": 0}
try:
    for _ in range(ROUNDS):
        try:
            probes["available" if namespaces_available() else "unavailable"] += 1
        except ChildProcessError:
            probes["ChildProcessError"] += 1
        try:
            kill_uid(UID)
            sweeps["done"] += 1
        except ChildProcessError:
            sweeps["ChildProcessError"] += 1
finally:
    stop.set()
    thread.join()
print(json.dumps({"probes": probes, "sweeps": sweeps}))
"""


def test_the_pid1_reaper_never_takes_a_runner_helper_from_its_wait() -> None:
    rounds, uid = 80, 2_000_000_001
    program = PROGRAM.replace("ROUNDS", str(rounds)).replace("UID", str(uid))
    done = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            sys.executable,
            "-c",
            program,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["probes"] == {"available": rounds, "unavailable": 0, "ChildProcessError": 0}
    assert counts["sweeps"] == {"done": rounds, "ChildProcessError": 0}
