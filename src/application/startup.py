"""Choosing the sandbox at start-up by running a real execution in each candidate."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence

import attrs

from application.ports import Sandbox, SandboxJob
from domain.classify import classify
from domain.limits import Limits
from domain.outcome import Success
from domain.request import Script

PROBE_SCRIPT = """\
import sys

try:
    import numpy, pandas
    libraries = "ok"
except Exception as error:
    libraries = f"{type(error).__name__}: {error}"

def main():
    print("probe")
    return {"python": list(sys.version_info[:2]), "libraries": libraries}
"""


# The probe imports numpy and pandas, in a cold interpreter for the one-shot runners: on a
# loaded host that can take seconds, and a short configured limit must not make a working
# runner look broken. The probe gets at least this long; scripts keep the configured limits.
PROBE_MIN_TIME_S = 10.0


def probe(sandbox: Sandbox, limits: Limits) -> tuple[str | None, str | None]:
    """Run the probe script; return (why the sandbox is unusable, a warning), each or None."""
    limits = attrs.evolve(
        limits,
        wall_time_s=max(limits.wall_time_s, PROBE_MIN_TIME_S),
        cpu_time_s=max(limits.cpu_time_s, PROBE_MIN_TIME_S),
    )
    try:
        report = sandbox.run(SandboxJob(script=Script(PROBE_SCRIPT), limits=limits, slot=0))
    except Exception as error:  # a broken adapter must not stop the service from starting
        return _one_line(f"{type(error).__name__}: {error}"), None
    outcome = classify(report, limits)
    if not isinstance(outcome, Success) or outcome.output.stdout != "probe\n":
        reason = outcome.message if not isinstance(outcome, Success) else "wrong stdout"
        stderr = outcome.output.stderr.strip().splitlines()
        return _one_line(reason + (f" (stderr: {stderr[-1]})" if stderr else "")), None
    result = json.loads(outcome.result_json)
    libraries = result.get("libraries") if isinstance(result, dict) else None
    if not isinstance(libraries, str):
        return f"unexpected probe result {_one_line(outcome.result_json)[:200]}", None
    warning = None if libraries == "ok" else f"numpy/pandas do not import: {libraries}"
    return None, warning


def _start(sandbox: Sandbox) -> tuple[str | None, None]:
    try:
        sandbox.start()
    except Exception as error:  # a sandbox that cannot start is a candidate that failed
        return _one_line(f"{type(error).__name__}: {error}"), None
    return None, None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def select_sandbox(
    candidates: Sequence[Sandbox],
    limits: Limits,
    log: Callable[[str], None],
    warn: Callable[[str], None] | None = None,
) -> Sandbox | None:
    """The first candidate whose probe succeeds, logging one line per rejected candidate
    (through `warn`, when given, so operators see them at a higher level)."""
    warn = warn or log
    for sandbox in candidates:
        problem, warning = _start(sandbox)
        if problem is None:
            problem, warning = probe(sandbox, limits)
        if problem is None:
            log(f"sandbox: using {sandbox.name} ({', '.join(sandbox.isolation)})")
            if warning:
                warn(f"sandbox: warning: {warning}")
            return sandbox
        sandbox.close()
        warn(f"sandbox: {sandbox.name} is unusable: {problem}")
    warn("sandbox: no working sandbox; /execute answers UNAVAILABLE")
    return None


class ActiveSandbox:
    """The sandbox chosen at start-up; None until chosen, or when none works.

    Choosing runs real executions (and may warm pre-started processes), so it happens in the
    background while the service already answers; `wait` lets requests wait for it."""

    POLL_S = 0.01

    def __init__(self) -> None:
        self._sandbox: Sandbox | None = None
        self._chosen = threading.Event()

    @property
    def chosen(self) -> bool:
        return self._chosen.is_set()

    def get(self) -> Sandbox | None:
        return self._sandbox

    async def wait(self) -> None:
        """Return once the choice is made (polling: only while the service is warming)."""
        while not self._chosen.is_set():
            await asyncio.sleep(self.POLL_S)

    def close(self) -> None:
        """Stop the chosen sandbox (its warm processes); /execute answers UNAVAILABLE after."""
        sandbox, self._sandbox = self._sandbox, None
        self._chosen.set()
        if sandbox is not None:
            sandbox.close()

    def choose(
        self,
        candidates: Sequence[Sandbox],
        limits: Limits,
        log: Callable[[str], None],
        warn: Callable[[str], None] | None = None,
    ) -> Sandbox | None:
        try:
            self._sandbox = select_sandbox(candidates, limits, log, warn)
        finally:
            self._chosen.set()
        return self._sandbox
