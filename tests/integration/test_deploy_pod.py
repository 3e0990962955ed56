"""deploy/k8s's Deployments, run as a pod would run them: no cluster here, so the real server
gets what the manifest gives its container, as far as this host can reproduce it.

- the environment of the manifest (PORT and HOST moved to a free loopback port, the API key
  file to a stand-in, as the Secret's mount would give it);
- the capability bounding set of the manifest (`privileged`: every capability);
- readOnlyRootFilesystem: the root read-only but for /tmp and /run (the emptyDir volumes);
- a read-only cgroupfs, as an unprivileged container gets it;
- an unprivileged container's /proc: some paths masked and /proc/sys read-only, as container
  runtimes do unless privileged.

Not reproduced: the runtime's seccomp and AppArmor profiles (the manifest turns both off for
compat; privileged has none), the pod's cgroup limits, the kubelet's probes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.server import ROOT, Server, free_port, stop_server

K8S = ROOT / "deploy" / "k8s"
KEY = "pod-test-key-0123456789abcdef"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")),
    reason="needs root, unshare and setpriv to give the server a container's view",
)

# Runs in fresh mount and PID namespaces, then execs the server ("$@").
CONTAINER_VIEW = r"""
set -e
mount --make-rprivate /
mount --bind /tmp /tmp            # emptyDir volumes: writable
mount --bind /run /run
mount -o remount,bind,ro /        # readOnlyRootFilesystem
for m in $(findmnt -rn -t cgroup,cgroup2 -o TARGET); do mount -o remount,bind,ro "$m"; done
if [ "$MASK_PROC" = 1 ]; then     # what runtimes do to an unprivileged container's /proc
  for f in /proc/keys /proc/timer_list /proc/kcore /proc/sched_debug; do
    if [ -e "$f" ]; then mount --bind /dev/null "$f"; fi
  done
  if [ -d /proc/acpi ]; then mount -t tmpfs -o ro tmpfs /proc/acpi; fi
  mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
fi
unset MASK_PROC
exec setpriv --bounding-set="$BOUNDING" --inh-caps=-all -- "$@"
"""


def _container(variant: str) -> dict[str, Any]:
    with (K8S / variant / "deployment.yaml").open() as handle:
        deployment = yaml.safe_load(handle)
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def _bounding_set(security: dict[str, Any]) -> str:
    if security.get("privileged"):
        return "+all"
    added = security.get("capabilities", {}).get("add", [])
    return ",".join(["-all", *(f"+{cap.lower()}" for cap in added)])


@contextlib.contextmanager
def pod(variant: str, tmp_path: Path, security: dict[str, Any] | None = None) -> Iterator[Server]:
    container = _container(variant)
    security = container["securityContext"] if security is None else security
    keys = tmp_path / "api-keys"
    keys.write_text(KEY + "\n")
    keys.chmod(0o400)
    port = free_port()
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    env.update(HOST="127.0.0.1", PORT=str(port), API_KEYS_FILE=str(keys))
    # A uid range no other test uses: with the cgroupfs read-only, a cgroup directory left on
    # this host by another server of the same range would make every runner unusable.
    env["SANDBOX_UID_BASE"] = "1500000"
    env = {
        "PATH": os.environ["PATH"],
        **{k: v for k, v in os.environ.items() if k in ("SANDBOX_SITE", "SANDBOX_PYTHON")},
        **env,
        "BOUNDING": _bounding_set(security),
        "MASK_PROC": "0" if security.get("privileged") else "1",
    }
    argv = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child"]
    argv += ["sh", "-c", CONTAINER_VIEW, "sh", sys.executable, "-m", "entrypoints"]
    log_path = tmp_path / f"pod-{variant}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(mode=variant, port=port, process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, f"the server exited:\n{server.log()}"
            assert time.monotonic() < deadline, f"not up within 90 s:\n{server.log()}"
            with contextlib.suppress(OSError, ValueError):
                if not server.health().json().get("warming"):
                    break
            time.sleep(0.05)
        yield server
    finally:
        stop_server(server)


def _run(server: Server, script: str) -> Any:
    answer = server.request(
        "POST",
        "/execute",
        json.dumps({"script": script}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    assert answer.status == 200, (answer.status, answer.body, server.log())
    return answer.json()["result"]


@pytest.mark.parametrize(
    ("variant", "runner"), [("compat", "rlimit-warm"), ("nsjail", "nsjail-warm")]
)
def test_each_variant_runs_its_warm_sandbox_with_what_the_manifest_grants(
    variant: str, runner: str, tmp_path: Path
) -> None:
    with pod(variant, tmp_path) as server:
        health = server.health()
        assert health.status == 200, server.log()
        assert health.json()["sandbox"] == runner, server.log()
        assert _run(server, "def main():\n    return 1 + 1\n") == 2
        assert (
            _run(
                server, "import pandas\ndef main():\n    return int(pandas.Series([1, 2]).sum())\n"
            )
            == 3
        )


def test_nsjail_cannot_start_unprivileged_behind_a_masked_proc(tmp_path: Path) -> None:
    """Why the nsjail variant is privileged: with compat's capabilities (CAP_SYS_ADMIN
    included) and a runtime's masked /proc, nsjail cannot mount /proc in its user namespace,
    so no sandbox works and /health says so (the pod would never become ready)."""
    unprivileged = _container("compat")["securityContext"]
    with pod("nsjail", tmp_path, security=unprivileged) as server:
        health = server.health()
        assert health.status == 503
        assert health.json()["sandbox"] is None
        assert "nsjail-warm is unusable" in server.log()
