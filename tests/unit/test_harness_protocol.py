"""The in-sandbox harness and domain.report agree on the report protocol.

The harness may import nothing of the service, so it repeats the status names and caps; it is
read here with ast, never imported into the test process, and run for real as the one-shot
runners start it, to check that every report it writes passes the service's validation.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

from adapters.sandbox.protocol import job_payload
from application.ports import SandboxJob
from domain.classify import parse_harness_report
from domain.limits import Limits
from domain.report import HEADER_CAP_BYTES, TEXT_CAP_BYTES, HarnessStatus
from domain.request import Script

HARNESS = Path(__file__).resolve().parents[2] / "src" / "adapters" / "sandbox" / "harness.py"


def harness_tree() -> ast.Module:
    return ast.parse(HARNESS.read_text(encoding="utf-8"), filename=str(HARNESS))


def module_constant(name: str) -> object:
    """The literal value of a top-level `NAME = <literal>` in the harness."""
    for node in harness_tree().body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{HARNESS} assigns no top-level {name}")


def statuses_written(tree: ast.Module) -> set[str]:
    """Every status written as a literal `{"status": "<name>", ...}` in `tree`."""
    written: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "status"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    written.add(value.value)
    return written


def test_the_harness_declares_exactly_the_domain_statuses() -> None:
    statuses = module_constant("STATUSES")

    assert isinstance(statuses, tuple)
    assert len(set(statuses)) == len(statuses), "duplicate status names"
    assert set(statuses) == {status.value for status in HarnessStatus}


def test_every_status_the_harness_writes_is_declared() -> None:
    declared = module_constant("STATUSES")
    assert isinstance(declared, tuple)

    written = statuses_written(harness_tree())

    assert written, "found no status literal in the harness; the scan is broken"
    assert written <= set(declared)


def test_every_status_is_written_somewhere() -> None:
    expected = {status.value for status in HarnessStatus}

    assert statuses_written(harness_tree()) == expected


def test_the_canned_memory_report_parses_as_memory_error_after_the_token_line() -> None:
    memory_report = module_constant("MEMORY_REPORT")
    assert isinstance(memory_report, bytes)
    token = b"5f0c8a1e9b7d"

    parsed = parse_harness_report(token + b"\n" + memory_report, token)

    assert parsed == ({"status": HarnessStatus.MEMORY_ERROR.value}, b"")


def test_the_scan_finds_status_literals_in_synthetic_source() -> None:
    tree = ast.parse('x = {"status": "ok", "detail": 1}\ny = {"other": "no_main", **z}')

    assert statuses_written(tree) == {"ok"}


def test_the_harness_keeps_the_caps_the_service_enforces() -> None:
    assert module_constant("TEXT_CAP") == TEXT_CAP_BYTES
    assert module_constant("HEADER_CAP") == HEADER_CAP_BYTES


# --- the one-shot harness, run for real (no sandbox: what it writes is under test) -----------

TOKEN = b"5f0c8a1e9b7d"


@attrs.frozen
class Run:
    returncode: int
    channel: bytes
    stdout: bytes
    stderr: bytes

    def report(self) -> tuple[dict[str, Any], bytes]:
        parsed = parse_harness_report(self.channel, TOKEN)
        assert parsed is not None, self  # every report the harness writes passes validation
        return parsed


def run_harness(script: str, result_cap: int = 1 << 16, call: bytes = b"{}") -> Run:
    """The harness as the one-shot runners start it: python -I -S -X utf8 -c <harness>.
    `call` is the job's line of call details (adapters/sandbox/protocol.py)."""
    source = HARNESS.read_text(encoding="utf-8") + "\n_bootstrap()\n"
    script_r, script_w = os.pipe()
    channel_r, channel_w = os.pipe()
    job = TOKEN + b"\n" + call + b"\n" + script.encode()

    def feed() -> None:
        view = memoryview(job)
        while view:
            view = view[os.write(script_w, view) :]
        os.close(script_w)

    feeder = threading.Thread(target=feed)
    argv = [sys.executable, "-I", "-S", "-X", "utf8", "-c", source]
    with subprocess.Popen(
        [*argv, str(script_r), str(channel_w), str(result_cap)],
        pass_fds=(script_r, channel_w),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        os.close(script_r)
        os.close(channel_w)
        feeder.start()
        with os.fdopen(channel_r, "rb") as channel:
            raw = channel.read()
        stdout, stderr = proc.communicate(timeout=60)
        feeder.join()
    return Run(proc.returncode, raw, stdout, stderr)


def test_after_fd_exhaustion_the_traceback_is_still_formatted_in_full() -> None:
    script = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(7)[1]))\n"
        "HELD = []\n\n"
        "def main():\n"
        "    try:\n"
        "        while True:\n"
        "            HELD.append(open('/dev/null'))\n"
        "    except OSError:\n"
        "        pass\n"
        "    return 1 / (len(HELD) - len(HELD))\n"
    )

    header, _body = run_harness(script).report()

    assert header["status"] == "runtime_error", header
    assert header["detail"] == "division by zero", header
    # the carets come from the traceback module: it was imported after EMFILE
    assert "~~^~~" in header["traceback"], header
    assert header["hwm_kib"] > 0, header  # /proc/self/status was readable too


@pytest.mark.parametrize(
    "text", ["\U0001f600" * 5000, "\x01" * 20_000, "\ud800" * 5000, "é" * 9000]
)
def test_long_exception_texts_are_cut_in_bytes_and_the_report_stays_valid(text: str) -> None:
    script = f"TEXT = {text!r}\n\ndef main():\n    raise ValueError(TEXT)\n"

    header, _body = run_harness(script).report()

    assert header["status"] == "runtime_error", header
    for key in ("detail", "traceback"):
        assert len(header[key].encode()) <= TEXT_CAP_BYTES
        assert header[key].endswith("... (cut)\n"), header[key][-50:]


def test_a_huge_integer_is_encoded_exactly_under_the_scripts_lowest_digit_limit() -> None:
    script = "import sys\n\ndef main():\n    sys.set_int_max_str_digits(640)\n    return 10**5000\n"

    header, body = run_harness(script).report()

    assert header["status"] == "ok", header
    assert body == b"1" + b"0" * 5000


def test_an_integer_over_the_result_cap_is_refused_before_converting() -> None:
    header, _body = run_harness("def main():\n    return 10**200_000\n", 1000).report()

    assert header["status"] == "output_limit", header


def test_a_forked_child_raising_exits_1_and_returning_exits_0() -> None:
    script = (
        "import os\n\n"
        "def main():\n"
        "    if os.fork() == 0:\n"
        "        raise KeyError('child')\n"
        "    _, raised = os.wait()\n"
        "    if os.fork() == 0:\n"
        "        return 'child'\n"
        "    _, returned = os.wait()\n"
        "    return [os.waitstatus_to_exitcode(s) for s in (raised, returned)]\n"
    )

    run = run_harness(script)

    assert run.report() == ({"status": "ok", **cpu_and_memory(run)}, b"[1, 0]")
    assert run.stderr.decode().endswith("KeyError: 'child'\n"), run.stderr
    assert b"<string>" not in run.stderr


def cpu_and_memory(run: Run) -> dict[str, Any]:
    header = run.report()[0]
    return {"cpu_s": header["cpu_s"], "hwm_kib": header["hwm_kib"]}


def test_the_job_built_by_the_runners_gives_main_its_input_and_the_script_its_stdin() -> None:
    job = SandboxJob(
        script=Script("x"),
        limits=Limits(),
        stdin="line 1\nline 2\n",
        input_json='{"k": [1, 2**70]}'.replace("2**70", str(2**70)),
    )
    token_line, call, _script = job_payload(job, TOKEN).split(b"\n", 2)
    script = "import sys\ndef main(x):\n    return [x, input(), sys.stdin.read()]\n"

    run = run_harness(script, call=call)

    header, body = run.report()
    assert token_line == TOKEN
    assert header["status"] == "ok"
    assert json.loads(body) == [{"k": [1, 2**70]}, "line 1", "line 2\n"]
