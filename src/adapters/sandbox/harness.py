# The in-sandbox harness. It runs inside the sandbox as `python -I -S -X utf8 -c <this file +
# "_bootstrap()"> <script_fd> <channel_fd> <result_cap> [site_dir ...]` (one-shot runners), or
# as the first half of the warm zygote's program (zygote.py), so it may import only the
# standard library and nothing of the service, and it runs nothing when merely loaded.
# It loads the script as a module, calls main(), encodes
# the result strictly and writes ONE report to the channel fd: the execution's token line
# (the script file's first line, which the script never sees), a JSON header line, then for
# status "ok" the result's JSON text. Stdout is never parsed, so printing cannot forge a result.
#
# Start-up time is the service's latency floor, so only built-in modules are imported up
# front: `json` would pull in `re` and `enum` (~7 ms); the C encoder behind it is used
# directly, with exactly the settings of json.dumps(value, allow_nan=False).
from __future__ import annotations

import _json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    Reporter = Callable[..., NoReturn]

SCRIPT_FILENAME = "<script>"
MODULE_NAME = "script"
STATUSES = (
    "ok",
    "no_main",
    "non_json",
    "syntax_error",
    "runtime_error",
    "memory_error",
    "output_limit",
)
MEMORY_REPORT = b'{"status": "memory_error"}\n'
HIGH_FD = 1000
TEXT_CAP = 8192  # characters of exception detail and traceback kept in a report


def _not_serializable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(value: object) -> str:
    """json.dumps(value, allow_nan=False) with the default separators and ensure_ascii."""
    encoder = _json.make_encoder(
        {},  # markers: detects cycles ("Circular reference detected")
        _not_serializable,
        _json.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        False,
    )
    return "".join(encoder(value, 0))


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _hide_channel(fd: int) -> int:
    # Move the channel to a high, close-on-exec fd so the script's children never inherit it
    # and the script cannot write to it by guessing a small number.
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    high = min(HIGH_FD, soft - 1) if soft != resource.RLIM_INFINITY else HIGH_FD
    if high <= fd:
        return fd
    os.dup2(fd, high, inheritable=False)
    os.close(fd)
    return high


def _capped(text: str) -> str:
    return text if len(text) <= TEXT_CAP else text[: TEXT_CAP - 15] + "\n... (cut)\n"


def _user_traceback(error: BaseException, source: str) -> str:
    import linecache
    import traceback

    linecache.cache[SCRIPT_FILENAME] = (len(source), None, source.splitlines(True), "")
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == SCRIPT_FILENAME]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.StackSummary.from_list(frames).format()  # folds repeated frames
    lines += traceback.format_exception_only(type(error), error)
    return _capped("".join(lines))


def _exception_header(error: BaseException, source: str) -> dict[str, object]:
    if isinstance(error, MemoryError):
        return {"status": "memory_error"}
    try:
        detail = _capped(str(error))
        trace = _user_traceback(error, source)
    except BaseException:  # a hostile __str__ must not cost the report
        detail, trace = "<unprintable exception>", ""
    return {
        "status": "runtime_error",
        "exception": type(error).__name__,
        "detail": detail,
        "traceback": trace,
    }


def _syntax_header(error: Exception) -> dict[str, object]:
    import traceback

    return {
        "status": "syntax_error",
        "exception": type(error).__name__,
        "detail": error.msg if isinstance(error, SyntaxError) else str(error),
        "line": error.lineno if isinstance(error, SyntaxError) else None,
        "traceback": _capped("".join(traceback.format_exception_only(type(error), error))),
    }


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            pass


def _peak_rss_kib() -> int:
    """This process's RSS high-water mark (VmHWM), 0 where /proc cannot tell."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _reporter(channel: int, token: bytes) -> Reporter:
    """The one way to write the report. The per-execution token, which the script never
    sees in any file, argument or global, marks the report as the harness's own: a script
    that finds the channel fd and writes to it cannot produce a report the service accepts."""

    def report(header: dict[str, object], body: bytes = b"") -> NoReturn:
        _flush_streams()
        if os.getpid() != _harness_pid:  # a forked child returned through main(): not the result
            os._exit(0)
        # process_time() is exact for this process; children are counted to the clock tick.
        children = os.times()
        header["cpu_s"] = time.process_time() + children.children_user + children.children_system
        header["hwm_kib"] = _peak_rss_kib()
        view = memoryview(token + b"\n" + _dumps(header).encode() + b"\n" + body)
        while view:
            view = view[os.write(channel, view) :]
        # Closing the streams now tells the service that the report is whole and nothing more
        # will come from this process, a millisecond before its exit would.
        for fd in (channel, 1, 2):
            try:  # noqa: SIM105  (contextlib would be one more import on the latency path)
                os.close(fd)
            except OSError:
                pass
        os._exit(0)

    return report


def _run(finish: Reporter, source: str, result_cap: int) -> None:
    try:
        code = compile(source, SCRIPT_FILENAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        finish(_syntax_header(error))
    module = type(sys)(MODULE_NAME)
    sys.modules[MODULE_NAME] = module  # dataclasses, pickle and typing look modules up here
    try:
        exec(code, module.__dict__)
        main = module.__dict__.get("main")
        if main is None:
            finish({"status": "no_main", "detail": "'main' is not defined"})
        if not callable(main):
            kind = type(main).__name__
            finish({"status": "no_main", "detail": f"'main' is a {kind}"})
        value = main()
    except BaseException as error:
        finish(_exception_header(error, source))
    try:
        # ensure_ascii escapes lone surrogates too, so the text is always ASCII.
        encoded = _dumps(value).encode("ascii")
    except MemoryError:
        raise
    except RecursionError:
        finish({"status": "non_json", "detail": "the value is nested too deeply"})
    except BaseException as error:
        finish({"status": "non_json", "detail": _capped(str(error))})
    if len(encoded) > result_cap:
        finish({"status": "output_limit", "size": len(encoded)})
    finish({"status": "ok"}, encoded)


_harness_pid = 0  # the process that runs the script; set by execute()


def execute(job: bytes, channel: int, result_cap: int) -> NoReturn:
    """Run `job` (the token line, then the script) in this process and report; never returns."""
    global _harness_pid
    _harness_pid = os.getpid()
    token, _newline, script = job.partition(b"\n")
    memory_report = token + b"\n" + MEMORY_REPORT
    sys.argv = [SCRIPT_FILENAME]
    # Line-buffered, so what was printed before a kill (timeout, memory) still reaches the
    # service; full buffering would lose up to 8 KiB, unbuffered would cost a write per call.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        _run(_reporter(channel, token), script.decode("utf-8"), result_cap)
    except MemoryError:
        try:
            os.write(channel, memory_report)
        finally:
            os._exit(0)
    os._exit(0)  # unreachable: every path through _run reports and exits


def _bootstrap() -> None:
    script_fd, channel_fd, result_cap = (int(arg) for arg in sys.argv[1:4])
    sys.path[:0] = [path for path in sys.argv[4:] if path]
    channel = _hide_channel(channel_fd)
    execute(_read_all(script_fd), channel, result_cap)
