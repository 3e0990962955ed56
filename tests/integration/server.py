"""A real safe-exec server for tests: uvicorn over real HTTP, in a PID namespace of its own.

`unshare --pid --fork --mount-proc --kill-child` means a sandbox regression that lets a
script's kill(-1) loose can only hit processes inside that namespace, never the test session,
and that every process of the server dies with it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[2]

# Short limits keep TIMEOUT cases cheap; small caps make OUTPUT_LIMIT cases cheap.
TEST_ENV = {
    "HOST": "127.0.0.1",
    "WALL_TIME_S": "2",
    "CPU_TIME_S": "2",
    "MEMORY_MB": "256",
    "STDOUT_CAP_BYTES": "65536",
    "STDERR_CAP_BYTES": "16384",
    "RESULT_CAP_BYTES": "65536",
    "MAX_SCRIPT_BYTES": "32768",
    "MAX_BODY_BYTES": "131072",
    "MAX_CONCURRENCY": "2",
    "QUEUE_SIZE": "8",
    "SHUTDOWN_GRACE_S": "3",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.define
class Server:
    mode: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def family(self) -> str:
        """ "nsjail" or "rlimit", warm or one-shot: what the jail is built with."""
        return self.mode.split("-")[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> HttpAnswer:
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpAnswer(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as error:
            return HttpAnswer(error.code, dict(error.headers), error.read())

    def execute(self, script: str, timeout: float = 30, **fields: Any) -> HttpAnswer:
        payload = json.dumps({"script": script, **fields}).encode()
        return self.request(
            "POST", "/execute", payload, {"Content-Type": "application/json"}, timeout
        )

    def health(self) -> HttpAnswer:
        return self.request("GET", "/health", timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def service_pid(self) -> int:
        """The service's own process: `unshare`'s child (PID 1 of the namespace) when it runs
        under unshare, else the process started."""
        pid = self.process.pid
        if Path(f"/proc/{pid}/comm").read_text().strip() != "unshare":
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0])

    def signal_service(self, sig: int) -> None:
        """Signals the service process alone, as an orchestrator stopping it does."""
        os.kill(self.service_pid(), sig)


def start_server(mode: str, tmp_dir: Path, extra_env: Mapping[str, str] | None = None) -> Server:
    port = free_port()
    env = {**os.environ, **TEST_ENV, "SANDBOX": mode, "PORT": str(port), **(extra_env or {})}
    env.pop("FORCE_COMPAT", None)
    log_path = tmp_dir / f"server-{mode}-{port}.log"
    argv = [sys.executable, "-m", "entrypoints"]
    if shutil.which("unshare") and os.geteuid() == 0:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(mode=mode, port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        with contextlib.suppress(OSError, ValueError):
            if not server.health().json().get("warming"):  # the sandbox is chosen and warm
                return server
        time.sleep(0.05)
    stop_server(server)
    raise RuntimeError(f"server was not ready within 90 s:\n{server.log()}")


def stop_server(server: Server) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, 15)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, 9)
        server.process.wait(timeout=15)


@contextlib.contextmanager
def running_server(
    mode: str, tmp_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    server = start_server(mode, tmp_dir, extra_env)
    try:
        yield server
    finally:
        stop_server(server)
