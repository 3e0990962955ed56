"""`safe-exec` / `python -m entrypoints`: serve the API, run one script, check the sandboxes.

The commands reuse the service's own pieces, so the CLI and the API cannot drift apart: `run`
builds the same JSON body the API receives, validates it with `parse_execute_body`, runs it
through the `ExecuteScript` use case and the sandbox the service would choose, and prints the
body `render` gives the API's client."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import attrs
import click

from adapters.http.render import rejection, render
from adapters.settings import SANDBOX_MODES, Settings, SettingsError
from application.startup import probe
from domain.outcome import ErrorCode, Failure, Outcome
from domain.request import ExecuteRequest, RequestRejected, parse_execute_body

if TYPE_CHECKING:
    from application.ports import Sandbox
    from entrypoints.container import Container

# The web framework, the server and the container are imported where they are used, so that
# `--help`, `--version` and usage errors answer at once.

# Exit statuses (the epilog of `safe-exec --help` and the README list them).
EXIT_OK = 0
EXIT_FAILED = 1  # the script ran and failed: the JSON's "error" says how
EXIT_USAGE = 2  # bad arguments, an invalid request, a configuration error
EXIT_UNAVAILABLE = 3  # no working sandbox on this host
EXIT_INTERRUPTED = 130  # Ctrl+C or SIGTERM, after everything `run` started was stopped

# Codes that say the request itself was wrong (exit 2) or that nothing could run it (exit 3);
# every other error code is the script's own failure (exit 1).
REQUEST_CODES = frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE})
UNAVAILABLE_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.BUSY})

# `run` executes one script: a warm pool would start zygotes (two kinds with PRELOAD) only to
# use one process once, so SANDBOX=auto means the one-shot runners there, in auto's order.
RUN_MODES = {"auto": ("nsjail", "rlimit"), "compat": ("rlimit",)}
# Every runner, in the order SANDBOX=auto tries them (what `check` probes).
ALL_RUNNERS = tuple(mode for mode in SANDBOX_MODES if mode != "auto")

EXIT_STATUSES = """\
Exit status: 0 success; 1 the script failed (NO_MAIN, SYNTAX_ERROR, RUNTIME_ERROR, TIMEOUT,
MEMORY_LIMIT, OUTPUT_LIMIT, NON_JSON_RETURN, EMPTY_OUTPUT); 2 usage error, invalid request
(INVALID_REQUEST, PAYLOAD_TOO_LARGE) or configuration error; 3 no working sandbox
(UNAVAILABLE); 130 interrupted.

Configuration comes from the service's environment variables (WALL_TIME_S, MEMORY_MB,
SANDBOX, FORCE_COMPAT, ...; see the README)."""


def _package_version() -> str:
    try:
        return version("safe-exec")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        click.echo(f"safe-exec: configuration error: {error}", err=True)
        raise SystemExit(EXIT_USAGE) from None


def _serve(settings: Settings) -> int:
    """Serve the HTTP API until stopped (SIGTERM drains: see entrypoints/serve.py)."""
    from adapters.logs import configure_logging
    from entrypoints.container import Container
    from entrypoints.serve import serve as serve_http

    configure_logging(settings.log_format)
    container = Container()
    container.settings.override(settings)
    return serve_http(settings, container)


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_STATUSES,
)
@click.version_option(_package_version(), "-V", "--version", prog_name="safe-exec")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run untrusted Python in a sandbox: serve the HTTP API (the default), run one script,
    or check what the sandboxes guarantee on this host."""
    if ctx.invoked_subcommand is None:  # `safe-exec` alone serves, as the image runs it
        ctx.exit(_serve(_load_settings()))


@cli.command(epilog=EXIT_STATUSES)
@click.option("--host", help="Address to listen on (default: $HOST or 0.0.0.0).")
@click.option("--port", type=click.IntRange(1, 65535), help="TCP port (default: $PORT or 8080).")
def serve(host: str | None, port: int | None) -> NoReturn:
    """Serve the HTTP API (POST /execute, GET /health, GET /metrics)."""
    settings = _load_settings()
    settings = attrs.evolve(settings, host=host or settings.host, port=port or settings.port)
    raise SystemExit(_serve(settings))


# ----------------------------------------------------------------------------------- run


def _json_number(text: str) -> Any:
    """A flag's value as the JSON number it spells, else the text itself: the request's
    validation then rejects it with the API's own message."""
    with contextlib.suppress(ValueError):
        value = json.loads(text, parse_constant=lambda name: name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    return text


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise ValueError(f"the key {duplicated[0]!r} appears more than once")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


READABLE = click.Path(exists=True, dir_okay=False, allow_dash=True)


def _parse_input(text: str) -> Any:
    """`--input` parsed as strictly as the API parses a body."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise click.BadParameter(f"not valid JSON ({error})", param_hint="--input") from None


def _read_text(path: str, option: str) -> str:
    """A file's text ('-': standard input). Bytes that are not UTF-8 become lone surrogates,
    which the request's validation refuses with the API's message ("not valid UTF-8")."""
    try:
        with click.open_file(path, "rb") as stream:
            data: bytes = stream.read()
    except OSError as error:
        raise click.BadParameter(f"cannot read {path!r}: {error}", param_hint=option) from None
    return data.decode("utf-8", errors="surrogateescape")


@contextlib.contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM stops `run` the way Ctrl+C does, so both clean up what it started."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """A second Ctrl+C must not cut the clean-up short and leave zygotes or cgroups behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _kill_children() -> None:
    """SIGKILL this process's children: after an interrupt, a one-shot runner's execution
    would otherwise run on to its wall-clock limit. The runner's own thread then sees it end
    and removes its tree and cgroup as after any kill. Each child is held by a pidfd and
    checked to still be ours, so a recycled pid is never signalled."""
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fd = os.pidfd_open(int(entry.name))
            try:
                stat = Path(entry.path, "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)


def _wait_for(worker: threading.Thread) -> None:
    """Start `worker` and wait for it. Starting sandboxes happens in a worker thread so that
    Ctrl+C reaches the main thread at once; the clean-up then waits for the worker, since a
    runner half-way through starting cannot be stopped safely (the service's shutdown waits
    for its start-up the same way)."""
    worker.start()
    while worker.is_alive():
        worker.join(0.05)


def _candidates(container: Container, modes: Sequence[str]) -> list[Sandbox]:
    providers: dict[str, Callable[[], Sandbox]] = {
        "nsjail-warm": container.nsjail_warm,
        "nsjail": container.nsjail,
        "rlimit-warm": container.rlimit_warm,
        "rlimit": container.rlimit,
    }
    return [providers[mode]() for mode in modes]


def _run_modes(sandbox_mode: str) -> tuple[str, ...]:
    return RUN_MODES.get(sandbox_mode, (sandbox_mode,))


def _stderr_line(text: str) -> None:
    click.echo(f"safe-exec: {text}", err=True)


def execute_once(
    settings: Settings, request: ExecuteRequest, log: Callable[[str], None]
) -> Outcome:
    """Choose a sandbox as the service does, run one request through the use case, and stop
    everything that was started (zygotes, executions, cgroups), whatever happens."""
    from entrypoints.container import Container

    settings = attrs.evolve(settings, max_concurrency=1, queue_size=0)
    container = Container()
    container.settings.override(settings)
    active = container.active_sandbox()
    candidates = _candidates(container, _run_modes(settings.sandbox_mode))
    chooser = threading.Thread(
        target=active.choose,
        args=(candidates, settings.limits, log, _stderr_line),
        name="choose-sandbox",
        daemon=True,
    )
    interrupted = False
    try:
        _wait_for(chooser)
        return asyncio.run(container.execute()(request))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        with _uninterruptible():
            if chooser.ident is not None:  # a choice under way finishes before it is undone
                chooser.join()
            active.close()  # a warm runner's zygotes, and an execution forked from them
            if interrupted:
                _kill_children()  # a one-shot runner's execution
            container.executor().shutdown(wait=True, cancel_futures=True)
            cgroups = container.cgroups()
            if cgroups is not None:
                cgroups.remove()


def exit_status(outcome: Outcome) -> int:
    if not isinstance(outcome, Failure):
        return EXIT_OK
    if outcome.code in REQUEST_CODES:
        return EXIT_USAGE
    if outcome.code in UNAVAILABLE_CODES:
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


def _print_body(body: bytes, pretty: bool) -> None:
    if pretty:  # Python's ints are exact and its floats round-trip: nothing is altered
        click.echo(json.dumps(json.loads(body), indent=2))
    else:
        click.echo(body.decode())


@cli.command(epilog=EXIT_STATUSES, short_help="Run one script and print the API's JSON answer.")
@click.argument("script", type=READABLE, metavar="FILE|-")
@click.option("--input", "input_text", metavar="JSON", help="Call main(input) with this JSON.")
@click.option("--stdin", "stdin_file", type=READABLE, metavar="FILE|-", help="The script's stdin.")
@click.option(
    "--timeout", metavar="SECONDS", help="Wall-clock limit, at most the server's WALL_TIME_S."
)
@click.option("--memory", metavar="MB", help="Memory limit, at most the server's MEMORY_MB.")
@click.option("--pretty", is_flag=True, help="Indent the JSON answer.")
@click.option("-v", "--verbose", is_flag=True, help="Say which sandbox runs the script.")
def run(
    *,
    script: str,
    input_text: str | None,
    stdin_file: str | None,
    timeout: str | None,
    memory: str | None,
    pretty: bool,
    verbose: bool,
) -> NoReturn:
    """Run one script in the sandbox, as POST /execute does, and print the API's JSON answer.

    FILE is a Python file defining main(), or - for standard input. Limits come from the
    environment (WALL_TIME_S, MEMORY_MB, ...); --timeout and --memory can only lower them.
    SANDBOX=auto uses the one-shot runners (nsjail, then rlimit): one script gains nothing
    from a warm pool; set SANDBOX to a runner's name to use that one."""
    if script == "-" and stdin_file == "-":
        raise click.UsageError("FILE and --stdin cannot both be '-' (standard input).")
    settings = _load_settings()
    body: dict[str, Any] = {"script": _read_text(script, "FILE")}
    if input_text is not None:
        body["input"] = _parse_input(input_text)
    if stdin_file is not None:
        body["stdin"] = _read_text(stdin_file, "--stdin")
    if timeout is not None:
        body["timeout_s"] = _json_number(timeout)
    if memory is not None:
        body["memory_mb"] = _json_number(memory)
    try:
        request = parse_execute_body(json.dumps(body).encode(), settings.limits)
    except RequestRejected as rejected:
        code = ErrorCode.PAYLOAD_TOO_LARGE if rejected.too_large else ErrorCode.INVALID_REQUEST
        details = {"field": rejected.field} if rejected.field else {}
        _status, answer, _headers = rejection(code, rejected.message, settings.limits, **details)
        _print_body(answer, pretty)
        raise SystemExit(EXIT_USAGE) from None
    log = _stderr_line if verbose else (lambda _line: None)
    try:
        with _interrupts_as_keyboard_interrupt():
            outcome = execute_once(settings, request, log)
    except KeyboardInterrupt:
        _stderr_line("interrupted; everything the run started was stopped")
        raise SystemExit(EXIT_INTERRUPTED) from None
    _status, answer, _headers = render(outcome)
    _print_body(answer, pretty)
    raise SystemExit(exit_status(outcome))


# --------------------------------------------------------------------------------- check


@attrs.frozen
class RunnerCheck:
    name: str
    usable: bool
    reason: str | None
    warning: str | None
    isolation: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "usable": self.usable,
            "reason": self.reason,
            "warning": self.warning,
            "isolation": list(self.isolation),
        }


def check_runner(sandbox: Sandbox, settings: Settings) -> RunnerCheck:
    """Start the runner and run the service's start-up probe in it; always stop it after."""
    reason = warning = None
    try:
        sandbox.start()
        reason, warning = probe(sandbox, settings.limits)
    except Exception as error:  # a runner that cannot start is a runner that is unusable
        reason = " ".join(f"{type(error).__name__}: {error}".split())
    finally:
        sandbox.close()
    return RunnerCheck(sandbox.name, reason is None, reason, warning, tuple(sandbox.isolation))


def check_all(settings: Settings) -> tuple[list[RunnerCheck], str | None]:
    """Every runner's check, and the runner the configured SANDBOX mode would use (the first
    usable one of the container's candidates, as at start-up) or None."""
    from entrypoints.container import Container

    settings = attrs.evolve(settings, max_concurrency=1, queue_size=0)
    container = Container()
    container.settings.override(settings)
    checks: list[RunnerCheck] = []
    stop = threading.Event()

    def check_each() -> None:
        for sandbox in _candidates(container, ALL_RUNNERS):
            if stop.is_set():
                return
            checks.append(check_runner(sandbox, settings))

    worker = threading.Thread(target=check_each, name="check-sandboxes", daemon=True)
    try:
        with _interrupts_as_keyboard_interrupt():
            _wait_for(worker)
    except KeyboardInterrupt:
        stop.set()  # the runner being checked is stopped; the others are never started
        raise
    finally:
        with _uninterruptible():
            if worker.ident is not None:
                worker.join()
            cgroups = container.cgroups()
            if cgroups is not None:
                cgroups.remove()
    usable = {check.name for check in checks if check.usable}
    configured = [sandbox.name for sandbox in container.candidates()]
    return checks, next((name for name in configured if name in usable), None)


@cli.command(epilog=EXIT_STATUSES, short_help="Probe the sandboxes: what each guarantees here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(as_json: bool) -> NoReturn:
    """Probe every sandbox runner on this host and say what each guarantees.

    Each runner is started and runs the service's start-up probe. The answer names the runner
    the configured SANDBOX mode would use (as /health does) and the limits applied. Exit 0
    when that mode has a working runner, 3 when it has none."""
    settings = _load_settings()
    try:
        checks, chosen = check_all(settings)
    except KeyboardInterrupt:
        _stderr_line("interrupted; every runner started was stopped")
        raise SystemExit(EXIT_INTERRUPTED) from None
    limits = settings.limits.as_public_dict()
    if as_json:
        report = {
            "ok": chosen is not None,
            "mode": settings.sandbox_mode,
            "sandbox": chosen,
            "runners": [c.as_dict() for c in checks],
            "limits": limits,
        }
        click.echo(json.dumps(report, indent=2))
    else:
        for c in checks:
            state = "usable" if c.usable else f"unusable: {c.reason}"
            click.echo(f"{c.name:<12} {state}")
            click.echo(f"{'':<12} isolation: {', '.join(c.isolation) or '-'}")
            if c.warning:
                click.echo(f"{'':<12} warning: {c.warning}")
        click.echo("limits: " + ", ".join(f"{key}={value}" for key, value in limits.items()))
        compat = settings.sandbox_mode == "compat"
        mode = "FORCE_COMPAT=1" if compat else f"SANDBOX={settings.sandbox_mode}"
        click.echo(f"{mode}: the service uses {chosen or 'nothing: no runner works'}")
    raise SystemExit(EXIT_OK if chosen is not None else EXIT_UNAVAILABLE)


# ----------------------------------------------------------------------------------- mcp


@cli.command()
def mcp() -> NoReturn:
    """Serve the run_python tool over MCP stdio for desktop agents.

    Speaks the Model Context Protocol on standard input and output; configure it in an agent
    as the command `safe-exec mcp`. Limits and sandbox come from the environment."""
    try:
        module = importlib.import_module("entrypoints.mcp_stdio")
        run_stdio = cast(Callable[[Settings], int], module.run_stdio)
    except (ImportError, AttributeError) as error:
        _stderr_line(f"the MCP server is not available in this installation ({error})")
        raise SystemExit(EXIT_USAGE) from None
    raise SystemExit(run_stdio(_load_settings()))


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: the exit status of the command."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="safe-exec")
    except SystemExit as done:
        code = done.code
        if code is None:
            return EXIT_OK
        if isinstance(code, int):
            return code
        click.echo(code, err=True)
        return EXIT_FAILED
