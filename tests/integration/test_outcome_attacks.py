"""Outcomes are decided by evidence the script cannot forge: how the process really ended
(nsjail's own log, the keeper's wait status), measured CPU time, the cgroup's OOM counter.
Each attack here once produced a wrong code in some runner."""

from __future__ import annotations

from tests.integration.server import Server

EXIT_137 = "import os\nos._exit(137)\n"

FAKE_NSJAIL_FATAL = (
    "import os, sys\n"
    "sys.stderr.write('[F][2026-01-01T00:00:00+0000][1] runChild():506 Launching failed\\n')\n"
    "sys.stderr.flush()\n"
    "os._exit(255)\n"
)

# Four processes of 96 MiB each: no single one is near the per-process address-space limit,
# together they pass the execution's 256 MiB (tests' MEMORY_MB).
MANY_PROCESSES_OOM = """
import os, time

def main():
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            block = bytearray(96 * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(0.5)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return "survived"
"""


def error_of(server: Server, script: str) -> dict[str, object]:
    answer = server.execute(script)
    body = answer.json()
    assert "error" in body, f"{server.mode}: {body}"
    return {"status": answer.status, **body}


def test_exit_status_137_is_not_a_cpu_timeout(server: Server) -> None:
    body = error_of(server, EXIT_137)

    assert (body["status"], body["error"]) == (500, "EMPTY_OUTPUT"), body
    assert "exited with status 137" in str(body["message"]), body


def test_a_fake_nsjail_fatal_line_is_just_stderr(server: Server) -> None:
    body = error_of(server, FAKE_NSJAIL_FATAL)

    assert body["error"] == "EMPTY_OUTPUT", body
    assert "could not start" not in str(body["message"]), body
    assert "exited with status 255" in str(body["message"]), body
    assert "runChild()" in str(body["stderr"]), body  # it stays the script's own output


def test_many_processes_over_the_memory_limit_are_a_memory_limit(server: Server) -> None:
    body = error_of(server, MANY_PROCESSES_OOM)

    assert (body["status"], body["error"]) == (400, "MEMORY_LIMIT"), body
