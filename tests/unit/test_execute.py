"""Tests of the ExecuteScript use case and of start-up sandbox selection, with fakes.

Each async test runs its own event loop with asyncio.run (no pytest-asyncio).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import attrs
import pytest

from application.execute import ExecuteScript
from application.ports import Sandbox
from application.slots import ExecutionSlots
from application.startup import PROBE_MIN_TIME_S, PROBE_SCRIPT, ActiveSandbox, probe, select_sandbox
from domain.classify import classify
from domain.limits import MIB, Limits
from domain.outcome import ErrorCode, Failure, Success
from domain.report import SandboxReport
from domain.request import ExecuteRequest, Script
from tests.unit.fakes import FakeMetrics, FakeSandbox, harness_channel, ok_report

T = TypeVar("T")
HANG_GUARD_S = 10  # fails a broken implementation instead of hanging the suite
LIMITS = Limits(wall_time_s=2.0, cpu_time_s=1.5, memory_bytes=128 * MIB)
REQUEST = ExecuteRequest(script=Script("def main():\n    return 42\n"))


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), HANG_GUARD_S))


class Service:
    """An ExecuteScript wired to fakes; build it inside the event loop that uses it."""

    def __init__(
        self,
        sandbox: Sandbox | None,
        *,
        capacity: int = 1,
        queue_size: int = 0,
        retry_after_s: int = 1,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.slots = ExecutionSlots(capacity, queue_size)
        self.metrics = FakeMetrics()
        self.execute = ExecuteScript(
            sandbox=lambda: sandbox,
            slots=self.slots,
            limits=LIMITS,
            metrics=self.metrics,
            executor=executor,
            retry_after_s=retry_after_s,
        )


def failure(outcome: object, code: ErrorCode) -> Failure:
    assert isinstance(outcome, Failure), outcome
    assert outcome.code is code, outcome
    return outcome


# --- ExecuteScript --------------------------------------------------------------------------


def test_a_successful_run_returns_the_result_and_stdout() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report({"answer": 42}, stdout=b"hi\n"))
        service = Service(sandbox)

        outcome = await service.execute(REQUEST)

        assert isinstance(outcome, Success)
        assert outcome.result_json == '{"answer": 42}'
        assert outcome.output.stdout == "hi\n"

    run(scenario)


REPORTS: dict[str, SandboxReport] = {
    "ok": ok_report([1, 2]),
    "runtime-error": SandboxReport(
        exit_code=0,
        harness_report=harness_channel({"status": "runtime_error", "exception": "ValueError"}),
        stdout=b"before\n",
    ),
    "syntax-error": SandboxReport(
        harness_report=harness_channel({"status": "syntax_error", "line": 1})
    ),
    "timeout": SandboxReport(timed_out=True, signal=signal.SIGKILL, wall_time_s=2.1),
    "cpu": SandboxReport(signal=signal.SIGXCPU, cpu_time_s=2.0),
    "oom": SandboxReport(oom_killed=True, signal=signal.SIGKILL),
    "truncated": SandboxReport(
        harness_report=b'{"status": "ok"}\n[1,', harness_report_truncated=True
    ),
    "no-report": SandboxReport(exit_code=3, stdout=b"\xff"),
    "sandbox-error": SandboxReport(sandbox_error="cannot start"),
}


@pytest.mark.parametrize("report", list(REPORTS.values()), ids=list(REPORTS))
def test_every_report_is_classified_under_the_service_limits(report: SandboxReport) -> None:
    async def scenario() -> None:
        service = Service(FakeSandbox(report))

        outcome = await service.execute(REQUEST)

        assert outcome == attrs.evolve(classify(report, LIMITS), limits=LIMITS)
        [(observed, queued_s)] = service.metrics.executions
        assert observed == outcome
        assert queued_s < 0.5  # a free slot: nothing to wait for
        assert service.metrics.rejections == []

    run(scenario)


def test_the_job_carries_the_script_the_service_limits_and_a_free_slot() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report(1))
        service = Service(sandbox, capacity=2)
        held = await service.slots.acquire()

        await service.execute(REQUEST)

        [job] = sandbox.jobs
        assert job.script == REQUEST.script
        assert job.limits == LIMITS
        assert job.slot == 1 - held

    run(scenario)


def test_the_slot_is_released_after_the_run() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report(1), ok_report(2))
        service = Service(sandbox, capacity=1)

        await service.execute(REQUEST)
        assert service.slots.in_use == 0
        await service.execute(REQUEST)  # would be BUSY if the first run kept its slot

        assert [job.slot for job in sandbox.jobs] == [0, 0]
        assert service.slots.in_use == 0

    run(scenario)


def test_a_sandbox_that_raises_gives_empty_output_and_releases_the_slot() -> None:
    async def scenario() -> None:
        service = Service(FakeSandbox(RuntimeError("adapter bug")))

        outcome = failure(await service.execute(REQUEST), ErrorCode.EMPTY_OUTPUT)

        assert outcome.message == "The sandbox failed: RuntimeError: adapter bug."
        assert service.slots.in_use == 0
        assert [observed for observed, _ in service.metrics.executions] == [outcome]
        assert service.metrics.rejections == []

    run(scenario)


def test_the_slot_is_held_while_the_sandbox_runs() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report(1), hold=True)
        service = Service(sandbox)

        task = asyncio.create_task(service.execute(REQUEST))
        assert await asyncio.to_thread(sandbox.started.wait, HANG_GUARD_S)
        assert service.slots.in_use == 1

        sandbox.release()
        assert isinstance(await task, Success)
        assert service.slots.in_use == 0

    run(scenario)


def test_a_caller_that_goes_away_keeps_the_slot_until_the_run_ends() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report(1), hold=True)
        service = Service(sandbox)
        task = asyncio.create_task(service.execute(REQUEST))
        assert await asyncio.to_thread(sandbox.started.wait, HANG_GUARD_S)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert service.slots.in_use == 1

        sandbox.release()
        await service.slots.wait_idle()
        assert service.slots.in_use == 0

    run(scenario)


def test_a_queued_request_runs_when_a_slot_frees() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report(7))
        service = Service(sandbox, capacity=1, queue_size=1)
        held = await service.slots.acquire()

        task = asyncio.create_task(service.execute(REQUEST))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not task.done()
        assert sandbox.jobs == []

        service.slots.release(held)
        outcome = await task

        assert isinstance(outcome, Success)
        [(observed, queued_s)] = service.metrics.executions
        assert observed == outcome
        assert queued_s >= 0

    run(scenario)


def test_unavailable_when_there_is_no_working_sandbox() -> None:
    async def scenario() -> None:
        service = Service(None)

        outcome = failure(await service.execute(REQUEST), ErrorCode.UNAVAILABLE)

        assert outcome.message
        assert service.slots.in_use == 0
        assert service.metrics.rejections == ["UNAVAILABLE"]
        assert service.metrics.executions == []

    run(scenario)


def test_the_sandbox_provider_is_asked_on_every_request() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report(1))
        answers: list[Sandbox | None] = [None, sandbox]
        slots = ExecutionSlots(1, 0)
        execute = ExecuteScript(
            sandbox=lambda: answers.pop(0), slots=slots, limits=LIMITS, metrics=FakeMetrics()
        )

        failure(await execute(REQUEST), ErrorCode.UNAVAILABLE)
        assert isinstance(await execute(REQUEST), Success)

    run(scenario)


@pytest.mark.parametrize("retry_after_s", [1, 7])
def test_busy_when_slots_and_queue_are_full(retry_after_s: int) -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox()
        service = Service(sandbox, capacity=1, queue_size=0, retry_after_s=retry_after_s)
        await service.slots.acquire()

        outcome = failure(await service.execute(REQUEST), ErrorCode.BUSY)

        assert outcome.details == {"retry_after_s": retry_after_s}
        assert outcome.message
        assert sandbox.jobs == []
        assert service.metrics.rejections == ["BUSY"]
        assert service.metrics.executions == []

    run(scenario)


def test_unavailable_after_the_slots_are_closed() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox()
        service = Service(sandbox)
        service.slots.close()

        outcome = failure(await service.execute(REQUEST), ErrorCode.UNAVAILABLE)

        assert "shutting down" in outcome.message
        assert sandbox.jobs == []
        assert service.metrics.rejections == ["UNAVAILABLE"]

    run(scenario)


def test_a_queued_request_is_unavailable_when_the_slots_close() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox()
        service = Service(sandbox, capacity=1, queue_size=1)
        await service.slots.acquire()
        task = asyncio.create_task(service.execute(REQUEST))
        for _ in range(10):
            await asyncio.sleep(0)

        service.slots.close()

        failure(await task, ErrorCode.UNAVAILABLE)
        assert sandbox.jobs == []

    run(scenario)


def test_the_given_executor_runs_the_sandbox() -> None:
    async def scenario() -> None:
        sandbox = FakeSandbox(ok_report(1))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="given-executor") as executor:
            await Service(sandbox, executor=executor).execute(REQUEST)

        [thread_name] = sandbox.threads
        assert thread_name.startswith("given-executor")

    run(scenario)


# --- start-up: probe and select_sandbox -----------------------------------------------------

PROBE_OK = ok_report({"python": [3, 11], "libraries": "ok"}, stdout=b"probe\n")


def test_probe_runs_the_probe_script_in_slot_zero_with_time_for_a_cold_import() -> None:
    sandbox = FakeSandbox(PROBE_OK)

    assert probe(sandbox, LIMITS) == (None, None)
    [job] = sandbox.jobs
    assert job.script == Script(PROBE_SCRIPT)
    # a short configured limit is raised to the floor for the probe only; the rest is kept
    assert job.limits == attrs.evolve(
        LIMITS, wall_time_s=PROBE_MIN_TIME_S, cpu_time_s=PROBE_MIN_TIME_S
    )
    assert job.slot == 0


def test_a_probe_under_a_long_configured_limit_keeps_it() -> None:
    sandbox = FakeSandbox(PROBE_OK)
    long = attrs.evolve(LIMITS, wall_time_s=30.0, cpu_time_s=20.0)

    probe(sandbox, long)

    assert sandbox.jobs[0].limits == long


def test_probe_warns_when_the_libraries_do_not_import() -> None:
    report = ok_report(
        {"python": [3, 11], "libraries": "ModuleNotFoundError: No module named 'numpy'"},
        stdout=b"probe\n",
    )

    problem, warning = probe(FakeSandbox(report), LIMITS)

    assert problem is None
    assert warning == "numpy/pandas do not import: ModuleNotFoundError: No module named 'numpy'"


def test_probe_rejects_a_run_with_the_wrong_stdout() -> None:
    report = ok_report({"python": [3, 11], "libraries": "ok"}, stdout=b"something else\n")

    assert probe(FakeSandbox(report), LIMITS) == ("wrong stdout", None)


def test_probe_rejects_a_failed_run_with_the_last_stderr_line() -> None:
    report = SandboxReport(exit_code=1, stderr=b"Traceback ...\nImportError: no encodings\n")

    problem, warning = probe(FakeSandbox(report), LIMITS)

    assert problem == (
        "The sandbox produced no result: the process exited with status 1 before main() "
        "returned. (stderr: ImportError: no encodings)"
    )
    assert warning is None


def test_probe_rejects_a_sandbox_error() -> None:
    problem, _ = probe(FakeSandbox(SandboxReport(sandbox_error="nsjail not found")), LIMITS)

    assert problem == "The sandbox failed: nsjail not found."


def test_probe_survives_an_exception_in_the_sandbox() -> None:
    problem, warning = probe(FakeSandbox(OSError("exec format error")), LIMITS)

    assert problem == "OSError: exec format error"
    assert warning is None


def test_select_sandbox_takes_the_first_working_candidate() -> None:
    broken = FakeSandbox(SandboxReport(sandbox_error="no user namespaces"), name="nsjail")
    working = FakeSandbox(PROBE_OK, name="rlimit")
    spare = FakeSandbox(PROBE_OK, name="spare")
    lines: list[str] = []

    chosen = select_sandbox([broken, working, spare], LIMITS, lines.append)

    assert chosen is working
    assert spare.jobs == []
    assert lines == [
        "sandbox: nsjail is unusable: The sandbox failed: no user namespaces.",
        "sandbox: using rlimit (fake)",
    ]


def test_select_sandbox_sends_problems_to_the_warning_channel() -> None:
    broken = FakeSandbox(SandboxReport(sandbox_error="no user namespaces"), name="nsjail")
    info: list[str] = []
    warnings: list[str] = []

    chosen = select_sandbox([broken], LIMITS, info.append, warnings.append)

    assert chosen is None
    assert info == []
    assert warnings == [
        "sandbox: nsjail is unusable: The sandbox failed: no user namespaces.",
        "sandbox: no working sandbox; /execute answers UNAVAILABLE",
    ]


def test_select_sandbox_logs_the_probe_warning() -> None:
    report = ok_report({"python": [3, 11], "libraries": "ImportError: x"}, stdout=b"probe\n")
    lines: list[str] = []

    chosen = select_sandbox([FakeSandbox(report, name="rlimit")], LIMITS, lines.append)

    assert chosen is not None
    assert lines == [
        "sandbox: using rlimit (fake)",
        "sandbox: warning: numpy/pandas do not import: ImportError: x",
    ]


def test_select_sandbox_survives_a_raising_candidate() -> None:
    raising = FakeSandbox(RuntimeError("boom"), name="nsjail")
    working = FakeSandbox(PROBE_OK, name="rlimit")
    lines: list[str] = []

    assert select_sandbox([raising, working], LIMITS, lines.append) is working
    assert lines[0] == "sandbox: nsjail is unusable: RuntimeError: boom"


def test_select_sandbox_returns_none_when_every_candidate_fails() -> None:
    candidates = [
        FakeSandbox(RuntimeError("boom"), name="nsjail"),
        FakeSandbox(SandboxReport(signal=signal.SIGSEGV), name="rlimit"),
        FakeSandbox(ok_report({"libraries": "ok"}, stdout=b""), name="odd"),
    ]
    lines: list[str] = []

    assert select_sandbox(candidates, LIMITS, lines.append) is None
    assert [line.split(" is unusable: ")[0] for line in lines[:3]] == [
        "sandbox: nsjail",
        "sandbox: rlimit",
        "sandbox: odd",
    ]
    assert lines[3] == "sandbox: no working sandbox; /execute answers UNAVAILABLE"
    assert len(lines) == 4
    assert all("\n" not in line for line in lines)


def test_select_sandbox_with_no_candidates_returns_none() -> None:
    lines: list[str] = []

    assert select_sandbox([], LIMITS, lines.append) is None
    assert lines == ["sandbox: no working sandbox; /execute answers UNAVAILABLE"]


def test_active_sandbox_is_empty_until_chosen() -> None:
    active = ActiveSandbox()

    assert active.get() is None
    assert active.chosen is False


def test_active_sandbox_holds_the_selected_candidate() -> None:
    working = FakeSandbox(PROBE_OK, name="rlimit")
    active = ActiveSandbox()
    lines: list[str] = []

    assert active.choose([working], LIMITS, lines.append) is working
    assert active.get() is working
    assert active.chosen is True


def test_active_sandbox_is_chosen_but_empty_when_nothing_works() -> None:
    active = ActiveSandbox()
    lines: list[str] = []

    assert active.choose([FakeSandbox(OSError("nope"))], LIMITS, lines.append) is None
    assert active.get() is None
    assert active.chosen is True
