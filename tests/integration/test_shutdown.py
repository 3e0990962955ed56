"""Stopping the service as an orchestrator does (SIGTERM to its process): it drains as
documented. /health and new executions answer 503 UNAVAILABLE, on a kept-alive connection and on
new ones, while the running execution finishes; then the process exits with status 0. A second
signal stops it at once."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.integration.server import HttpAnswer, Server, running_server

WAIT_S = 20  # a bound on every wait below, far above what each should take
SLEEPER = "import time\n\ndef main():\n    time.sleep({seconds})\n    return 'slept'\n"
QUICK = json.dumps({"script": "def main():\n    return 1\n"}).encode()
JSON = {"Content-Type": "application/json"}


def wait_until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def start_sleeper(server: Server, seconds: float) -> concurrent.futures.Future[HttpAnswer]:
    """An execution in flight: submitted, and seen running in a slot by /health."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    running = pool.submit(server.execute, SLEEPER.format(seconds=seconds), WAIT_S + seconds)
    pool.shutdown(wait=False)
    wait_until(lambda: server.health().json()["slots"]["in_use"] == 1, "the execution runs")
    return running


def exit_status(server: Server) -> int:
    try:
        return server.process.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the service did not exit:\n{server.log()}") from None


def namespace_processes(pid: int) -> list[int]:
    """The processes sharing `pid`'s PID namespace (its sandboxes, zygotes, helpers)."""
    namespace = Path(f"/proc/{pid}/ns/pid").readlink()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns/pid").readlink() == namespace:
                    found.append(int(entry.name))
            except OSError:
                continue  # ended meanwhile
    return found


def test_sigterm_drains_then_exits_cleanly(tmp_path: Path) -> None:
    env = {"WALL_TIME_S": "5", "CPU_TIME_S": "5", "SHUTDOWN_GRACE_S": "8"}
    with running_server("nsjail-warm", tmp_path, env) as server:
        in_namespace = namespace_processes(server.service_pid())
        running = start_sleeper(server, 2.5)
        kept_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT_S)
        kept_alive.request("GET", "/health")  # opened just before: uvicorn's idle limit is 5 s
        first = kept_alive.getresponse()
        first.read()
        assert first.status == 200

        server.signal_service(signal.SIGTERM)
        health = wait_until(lambda: (h := server.health()).status == 503 and h, "/health 503")
        fresh = server.request("POST", "/execute", QUICK, JSON)
        kept_alive.request("POST", "/execute", QUICK, JSON)
        reused = kept_alive.getresponse()
        reused_body = json.loads(reused.read())
        finished = running.result(timeout=WAIT_S)
        status = exit_status(server)

        assert health.json()["reason"] == "shutting down"
        assert health.json()["error"] == "UNAVAILABLE"
        assert fresh.status == 503
        assert fresh.json()["error"] == "UNAVAILABLE"
        assert "shutting down" in fresh.json()["message"]
        assert (reused.status, reused_body["error"]) == (503, "UNAVAILABLE")
        assert (finished.status, finished.json()["result"]) == (200, "slept")
        assert status == 0, server.log()
        log = server.log()
        assert "SIGTERM: draining" in log
        assert "Application shutdown complete." in log  # the sandboxes were closed by the app
        assert len(in_namespace) > 1  # the warm pool lived in the namespace ...
        assert not any(Path(f"/proc/{pid}").exists() for pid in in_namespace)  # ... and ended


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    # The grace and the execution far exceed the wait allowed for the exit below.
    env = {"WALL_TIME_S": "60", "CPU_TIME_S": "60", "SHUTDOWN_GRACE_S": "60"}
    with running_server("nsjail-warm", tmp_path, env) as server:
        running = start_sleeper(server, 50)

        server.signal_service(signal.SIGTERM)
        wait_until(lambda: server.health().status == 503, "/health 503")
        server.signal_service(signal.SIGINT)
        status = exit_status(server)

        assert status == 0, server.log()
        assert "SIGINT again: stopping now" in server.log()
        assert "Application shutdown complete." in server.log()
        try:
            answer = running.result(timeout=WAIT_S)
        except OSError:
            pass  # the connection ended with the server: no answer is also an end
        else:
            assert answer.status != 200, answer


def test_an_idle_service_stops_on_sigterm_without_waiting_for_the_grace(tmp_path: Path) -> None:
    env = {"SHUTDOWN_GRACE_S": "60"}
    with running_server("nsjail-warm", tmp_path, env) as server:
        server.signal_service(signal.SIGTERM)

        assert exit_status(server) == 0, server.log()
        assert "Application shutdown complete." in server.log()
