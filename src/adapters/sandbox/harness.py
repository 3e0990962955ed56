# The in-sandbox harness. It runs inside the sandbox as `python -I -S -X utf8 -c <this file +
# "_bootstrap()"> <script_fd> <channel_fd> <result_cap> [site_dir ...]` (one-shot runners), or
# as the first half of the warm zygote's program (zygote.py), so it may import only the
# standard library and nothing of the service, and it runs nothing when merely loaded.
# It loads the script as a module, calls main(), encodes
# the result strictly and writes ONE report to the channel fd: the execution's token line
# (the script file's first line, which the script never sees), a JSON header line, then for
# status "ok" the result's JSON text. Stdout is never parsed, so printing cannot forge a result.
#
# What the token does and does not stop: a script that prints a report, or finds the channel
# fd and writes one to it, does not know the token, so its report is ignored. But the script
# runs in this very process: one that reaches into the harness's frames or memory (for
# example `sys._getframe(1).f_locals["finish"](...)`) can have the harness write a report of
# its choosing, just as it chooses its own return value. The service therefore trusts a report
# no further than its content: it validates every field (domain/classify.py), and outside
# evidence (deadline, OOM, CPU, signals, caps) always overrides it.
#
# The script is hostile to the harness too: nothing the harness does after the script started
# may depend on the script's objects behaving (str() may raise, __class__ and a metaclass's
# __name__ may lie, a dict subclass's items() may raise) or on resources the script can use
# up (file descriptors: a spare one is reserved up front and released before a report is
# built). Every such failure costs at most that piece of the detail, never the report.
#
# Start-up time is the service's latency floor, so only built-in modules are imported up
# front: `json` would pull in `re` and `enum` (~7 ms), `traceback` ~11 ms (imported only to
# format an exception; the warm zygote preloads it); the C encoder behind json is used
# directly, with exactly the settings of json.dumps(value, allow_nan=False).
from __future__ import annotations

import _json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
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
TEXT_CAP = 8192  # UTF-8 bytes of each text field (exception, detail, traceback) of a report
HEADER_CAP = 32768  # bytes of the header line; the service refuses a longer one
NAME_CAP = 256  # UTF-8 bytes of an exception's type name
CUT = "\n... (cut)\n"
MIN_INT_DIGITS = 640  # the lowest limit sys.set_int_max_str_digits() accepts, 0 aside
INT_LIMIT_MESSAGE = "Exceeds the limit ("  # how int -> str refuses a number over the limit

# Taken before the script runs, which may replace them: the class's own name (a metaclass
# cannot lie about it), an exception's real traceback, SystemExit's real code.
_class_name = type.__dict__["__name__"].__get__
_traceback_of = BaseException.__dict__["__traceback__"].__get__
_exit_code_of = SystemExit.__dict__["code"].__get__
_set_int_max_str_digits = sys.set_int_max_str_digits
_spare_fd = -1  # reserved at start so that reporting never meets EMFILE; see _release_spare()


def _not_serializable(value: object) -> object:
    raise TypeError(f"Object of type {_type_name(type(value))} is not JSON serializable")


def _encoder(ensure_ascii: bool) -> Callable[[object, int], list[str]]:
    """json.dumps(value, allow_nan=False)'s C encoder, with the default separators."""
    return _json.make_encoder(
        {},  # markers: detects cycles ("Circular reference detected")
        _not_serializable,
        _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring,
        None,
        ": ",
        ", ",
        False,
        False,
        False,
    )


def _dumps(value: object) -> str:
    """json.dumps(value, allow_nan=False) with the default separators and ensure_ascii."""
    return "".join(_encoder(True)(value, 0))


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


def _reserve_spare() -> None:
    """Hold one descriptor for the harness: a script that opens files until EMFILE must not
    keep the harness from importing `traceback` or reading /proc afterwards."""
    global _spare_fd
    try:
        _spare_fd = os.dup(0)  # close-on-exec; costs a microsecond, no path lookup
    except OSError:
        _spare_fd = -1


def _release_spare() -> None:
    global _spare_fd
    if _spare_fd >= 0:
        try:  # noqa: SIM105  (contextlib would be one more import on the latency path)
            os.close(_spare_fd)
        except OSError:
            pass
        _spare_fd = -1


def _capped(text: str, cap: int = TEXT_CAP) -> str:
    """`text` as a plain str of at most `cap` UTF-8 bytes (lone surrogates escaped, a cut
    marked), whatever str subclass the script made it."""
    data = str.encode(text, "utf-8", "backslashreplace")
    if len(data) <= cap:
        return data.decode("utf-8")
    return data[: max(cap - len(CUT), 0)].decode("utf-8", "ignore") + CUT


def _type_name(kind: type) -> str:
    try:
        return _capped(_class_name(kind), NAME_CAP)
    except BaseException:
        return "<unnamed type>"


def _describe(error: BaseException, name: str) -> str:
    """str(error), or a placeholder when the script's __str__ raises or returns garbage."""
    try:
        text = str(error)
        return _capped(text) if issubclass(type(text), str) else f"<unprintable {name}>"
    except BaseException:
        return f"<unprintable {name}>"


def _script_frames(tb: TracebackType | None, source: str) -> str:
    """The script's frames, formatted without any import (the fallback of _user_traceback)."""
    lines = source.splitlines()
    out = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SCRIPT_FILENAME:
            lineno = tb.tb_lineno or 0
            name = tb.tb_frame.f_code.co_name
            out.append(f'  File "{SCRIPT_FILENAME}", line {lineno}, in {name}\n')
            if 0 < lineno <= len(lines) and lines[lineno - 1].strip():
                out.append(f"    {lines[lineno - 1].strip()}\n")
        tb = tb.tb_next
    return "".join(["Traceback (most recent call last):\n", *out] if out else [])


def _user_traceback(error: BaseException, name: str, detail: str, source: str) -> str:
    """The traceback of the script's own frames; each part that the script's objects make
    fail falls back to a plainer form of it."""
    tb = _traceback_of(error)
    try:
        import linecache
        import traceback

        linecache.cache[SCRIPT_FILENAME] = (len(source), None, source.splitlines(True), "")
        frames = [f for f in traceback.extract_tb(tb) if f.filename == SCRIPT_FILENAME]
        lines = ["Traceback (most recent call last):\n"] if frames else []
        lines += traceback.StackSummary.from_list(frames).format()  # folds repeated frames
        stack = "".join(lines)
    except BaseException:  # traceback not importable (fds, memory): no carets, no folding
        stack = _script_frames(tb, source)
    try:
        last = "".join(traceback.format_exception_only(type(error), error))
    except BaseException:  # a hostile exception type or __notes__, or no traceback module
        last = f"{name}: {detail}\n" if detail else f"{name}\n"
    return _capped(stack + last)


def _exception_header(error: BaseException, source: str) -> dict[str, object]:
    _release_spare()
    kind = type(error)  # the real class: a __class__ property cannot lie to type()
    if issubclass(kind, MemoryError):
        return {"status": "memory_error"}
    name = _type_name(kind)
    detail = _describe(error, name)
    try:
        trace = _user_traceback(error, name, detail, source)
    except BaseException:
        trace = ""
    return {"status": "runtime_error", "exception": name, "detail": detail, "traceback": trace}


def _syntax_header(error: Exception) -> dict[str, object]:
    """The report of a script that does not compile. Besides SyntaxError, compile() raises
    RecursionError or MemoryError for source nested too deeply for its parser."""
    _release_spare()
    name = _type_name(type(error))
    if not isinstance(error, SyntaxError):  # compile()'s own exceptions: isinstance is safe
        said = _describe(error, name)
        detail = f"it is nested too deeply for the parser ({name})"
        if not isinstance(error, RecursionError | MemoryError):
            detail = said
        return {
            "status": "syntax_error",
            "exception": name,
            "detail": detail,
            "line": None,
            "traceback": f"{name}: {said}\n" if said else f"{name}\n",
        }
    lineno = error.lineno
    try:
        import traceback

        trace = "".join(traceback.format_exception_only(type(error), error))
    except BaseException:
        trace = f"{name}: {_describe(error, name)}\n"
    msg = error.msg
    return {
        "status": "syntax_error",
        "exception": name,
        "detail": _capped(msg) if type(msg) is str else "invalid syntax",
        "line": lineno if type(lineno) is int else None,
        "traceback": _capped(trace),
    }


def _header_line(header: dict[str, object]) -> bytes:
    """The header as one line of UTF-8 JSON within HEADER_CAP: text is written unescaped (an
    astral character costs 4 bytes, not 12), and where escapes still make the line too long,
    the text fields are cut shorter until it fits."""
    encode = _encoder(False)
    line = "".join(encode(header, 0)).encode("utf-8")
    cap = TEXT_CAP
    while len(line) > HEADER_CAP and cap > 64:
        cap //= 4
        for key, value in header.items():
            if key != "status" and type(value) is str:
                header[key] = _capped(value, cap)
        line = "".join(encode(header, 0)).encode("utf-8")
    return line


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


def _write_stderr(text: str) -> None:
    data = str.encode(text, "utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(2, data) :]
    except OSError:
        pass


def _child_exit(error: BaseException, source: str) -> NoReturn:
    """An exception escaped main() (or the top level) in a process the script forked: end it
    as Python would end a process, so the script's own parent sees the failure. SystemExit
    exits with its code; anything else prints the script's traceback and exits 1."""
    _flush_streams()
    status = 1
    if issubclass(type(error), SystemExit):
        try:
            code = _exit_code_of(error)
            if code is None:
                status = 0
            elif type(code) is int:
                status = code & 0xFF
            else:
                _write_stderr(_describe(SystemExit(code), "SystemExit") + "\n")
        except BaseException:
            pass
    else:
        header = _exception_header(error, source)
        trace = header.get("traceback")
        _write_stderr(trace if type(trace) is str and trace else "MemoryError\n")
    os._exit(status)


def _reporter(channel: int, token: bytes) -> Reporter:
    """The one way to write the report. The per-execution token, which the script is never
    given in any file, argument or global, marks the report as the harness's own: a report
    the script prints or writes to the channel itself is ignored. It does not stop a script
    that reaches this closure through the harness's frames from calling it with a report of
    its choosing (see the top of this file)."""

    def report(header: dict[str, object], body: bytes = b"") -> NoReturn:
        _flush_streams()
        if os.getpid() != _harness_pid:  # a forked child returned through main(): not the result
            os._exit(0)
        _release_spare()
        # process_time() is exact for this process; children are counted to the clock tick.
        children = os.times()
        header["cpu_s"] = time.process_time() + children.children_user + children.children_system
        header["hwm_kib"] = _peak_rss_kib()
        view = memoryview(token + b"\n" + _header_line(header) + b"\n" + body)
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


def _encode_result(finish: Reporter, value: object, result_cap: int) -> bytes:
    """main()'s value as strict JSON (ASCII), or a report of why it cannot be returned."""
    # Integers come back exact whatever limit the script set: any number of digits that fits
    # the result cap is converted, and a longer one is refused before the (quadratic) work.
    _set_int_max_str_digits(max(result_cap, MIN_INT_DIGITS))
    try:
        # ensure_ascii escapes lone surrogates too, so the text is always ASCII.
        return _dumps(value).encode("ascii")
    except MemoryError:
        raise
    except RecursionError:
        finish({"status": "non_json", "detail": "the value is nested too deeply"})
    except BaseException as error:
        name = _type_name(type(error))
        detail = _describe(error, name)
        if type(error) is ValueError and detail.startswith(INT_LIMIT_MESSAGE):
            finish({"status": "output_limit"})
        finish({"status": "non_json", "detail": detail})


def _run(finish: Reporter, source: str, result_cap: int, call_line: bytes) -> None:
    args = _prepare_call(call_line)  # inside execute()'s MemoryError guard
    try:
        code = compile(source, SCRIPT_FILENAME, "exec", dont_inherit=True)
    except Exception as error:  # SyntaxError, ValueError; RecursionError, MemoryError (depth)
        finish(_syntax_header(error))
    module = type(sys)(MODULE_NAME)
    sys.modules[MODULE_NAME] = module  # dataclasses, pickle and typing look modules up here
    try:
        exec(code, module.__dict__)
        main = module.__dict__.get("main")
        if main is None:
            finish({"status": "no_main", "detail": "'main' is not defined"})
        if not callable(main):
            finish({"status": "no_main", "detail": f"'main' is a {_type_name(type(main))}"})
        value = main(*args)
    except BaseException as error:
        if os.getpid() != _harness_pid:
            _child_exit(error, source)
        finish(_exception_header(error, source))
    encoded = _encode_result(finish, value, result_cap)
    if len(encoded) > result_cap:
        finish({"status": "output_limit", "size": len(encoded)})
    finish({"status": "ok"}, encoded)


_harness_pid = 0  # the process that runs the script; set by execute()


def _prepare_call(call_line: bytes) -> tuple[object, ...]:
    """Give the script its standard input and return main()'s arguments (protocol.py)."""
    if call_line == b"{}":  # the common case pays for no json import
        return ()
    import json

    call = json.loads(call_line)
    if "stdin" in call:
        _feed_stdin(call["stdin"].encode("utf-8"))
    return (call["input"],) if "input" in call else ()


def _feed_stdin(data: bytes) -> None:
    """Put `data` behind fd 0 as an in-memory file: the script's children inherit it like a
    real stdin, and no writer process or pipe buffer limit is involved."""
    fd = os.memfd_create("stdin", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)
    if sys.stdin is None:  # fd 0 was closed when the interpreter started
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115


def execute(job: bytes, channel: int, result_cap: int) -> NoReturn:
    """Run `job` (the token line, then the script) in this process and report; never returns."""
    global _harness_pid
    _harness_pid = os.getpid()
    _reserve_spare()
    token, _newline, rest = job.partition(b"\n")
    call_line, _newline, script = rest.partition(b"\n")
    memory_report = token + b"\n" + MEMORY_REPORT
    sys.argv = [SCRIPT_FILENAME]
    # Line-buffered, so what was printed before a kill (timeout, memory) still reaches the
    # service; full buffering would lose up to 8 KiB, unbuffered would cost a write per call.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        _run(_reporter(channel, token), script.decode("utf-8"), result_cap, call_line)
    except MemoryError:
        if os.getpid() != _harness_pid:  # a forked child: never the execution's report
            _write_stderr("MemoryError\n")
            os._exit(1)
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
