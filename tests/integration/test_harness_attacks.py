"""Attacks on the in-sandbox harness and on the report it writes, over real HTTP, per mode.

Each test sends a script that attacks one part of the harness (compiling, encoding the result,
formatting an exception, reporting from a forked child, reporting after fd exhaustion) or that
forges a report, and asserts the specific answer: its code and the fields at stake. Nothing is
mocked: the `server` fixture runs a real server per sandbox mode.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from tests.integration.server import TEST_ENV, HttpAnswer, Server
from tests.integration.test_contract import (
    assert_serving,
    assert_user_frames_only,
    expect_error,
    expect_success,
)

RESULT_CAP = int(TEST_ENV["RESULT_CAP_BYTES"])
TEXT_CAP_BYTES = 8192


def script(source: str) -> str:
    return textwrap.dedent(source).lstrip()


def exact_json(answer: HttpAnswer) -> Any:
    """The body with integers kept as their digits (this process's digit limit applies too)."""
    return json.loads(answer.body, parse_int=str)


def assert_no_harness_frames(text: str) -> None:
    for mark in ('File "<string>"', "_bootstrap", "in _run", "in execute", "harness"):
        assert mark not in text, text


# --- 1. compile() fails with RecursionError or MemoryError ------------------------------------


@pytest.mark.parametrize(
    ("source", "exception"),
    [
        ("x = a" + ".b" * 10_000 + "\ndef main():\n    return 1\n", "RecursionError"),
        ("x = " + "-" * 10_000 + "1\ndef main():\n    return 1\n", "MemoryError"),
    ],
    ids=["attribute-chain", "unary-chain"],
)
def test_source_too_deep_to_compile_is_a_syntax_error(
    server: Server, source: str, exception: str
) -> None:
    body = expect_error(server.execute(source), "SYNTAX_ERROR")

    assert body["exception"] == exception, body
    assert body["line"] is None, body
    assert "nested too deeply" in body["message"], body
    assert body["traceback"].startswith(f"{exception}"), body
    assert body["stderr"] == "", body
    assert_no_harness_frames(body["traceback"])


# --- 2. integers and non-finite numbers ------------------------------------------------------


def test_a_huge_integer_comes_back_exact(server: Server) -> None:
    answer = server.execute("def main():\n    return [10**5000, -(10**4400), 7]\n")

    assert answer.status == 200, answer.body  # parsed below: json here would refuse 5000 digits
    assert exact_json(answer)["result"] == ["1" + "0" * 5000, "-1" + "0" * 4400, "7"]


@pytest.mark.parametrize("digits", [0, 640])
def test_the_scripts_digit_limit_breaks_neither_the_harness_nor_the_service(
    server: Server, digits: int
) -> None:
    source = script(f"""
        import sys
        sys.set_int_max_str_digits({digits})

        def main():
            sys.set_int_max_str_digits({digits})
            return {{"n": 10**5000, "m": 10**700}}
    """)
    answer = server.execute(source)

    assert answer.status == 200, answer.body
    assert exact_json(answer)["result"] == {"n": "1" + "0" * 5000, "m": "1" + "0" * 700}
    assert_serving(server)


def test_an_integer_longer_than_the_result_cap_is_output_limit(server: Server) -> None:
    answer = server.execute(f"def main():\n    return 10**{RESULT_CAP + 10}\n")

    expect_error(answer, "OUTPUT_LIMIT")


# --- 3. forged reports and byte caps ---------------------------------------------------------

# Digs the token and the channel out of the harness's frames and writes a report of its own.
FORGE = """
import json, os, sys

def forge(header, body):
    frame = sys._getframe()
    while frame is not None and not {"token", "channel"} <= frame.f_locals.keys():
        frame = frame.f_back
    token, channel = frame.f_locals["token"], frame.f_locals["channel"]
    os.write(channel, token + b"\\n" + header + b"\\n" + body)
    os._exit(0)

def main():
    forge(HEADER, BODY)
"""


def forged(header: str, body: bytes = b"") -> str:
    """A script that forges the report: `header` is a Python expression of its bytes."""
    return f"import json\n\nHEADER = {header}\nBODY = {body!r}\n" + FORGE


@pytest.mark.parametrize("number", [b"1e999", b"-1E400"])
def test_a_forged_result_with_a_non_finite_number_is_refused(server: Server, number: bytes) -> None:
    answer = server.execute(forged('b\'{"status": "ok"}\'', b"[" + number + b", 7]"))

    body = expect_error(answer, "EMPTY_OUTPUT")
    assert "unrecognised report" in body["message"], body
    assert b"Infinity" not in answer.body


@pytest.mark.parametrize(
    "header",
    [
        'json.dumps({"status": "runtime_error", "exception": "E", "detail": "x" * 40_000})',
        'json.dumps({"status": "runtime_error", "detail": "\\U0001f600" * 2049})',
        'json.dumps({"status": "runtime_error", "exception": 7})',
        'json.dumps({"status": "finished"})',
        'json.dumps({"status": "ok", "hwm_kib": True})',
        '\'{"status": "ok", "status": "ok"}\'',
    ],
    ids=["40k-detail", "8k-plus-astral", "typed-wrong", "unknown-status", "bool", "dup-key"],
)
def test_a_forged_header_the_harness_never_writes_is_refused(server: Server, header: str) -> None:
    answer = server.execute(forged(f"({header}).encode()", b"1"))

    body = expect_error(answer, "EMPTY_OUTPUT")
    assert "unrecognised report" in body["message"], body
    assert len(answer.body) < 20_000


def test_a_forged_header_of_300_000_characters_overflows_the_channel(server: Server) -> None:
    header = 'json.dumps({"status": "runtime_error", "detail": "x" * 300_000}).encode()'

    answer = server.execute(forged(header, b""))

    expect_error(answer, "OUTPUT_LIMIT")
    assert len(answer.body) < 20_000


def test_a_report_forged_through_the_harness_is_capped_like_any_other(server: Server) -> None:
    # Reaching the harness's frames lets a script choose its report (see harness.py), but the
    # harness still writes it within the caps.
    source = script("""
        import sys

        def main():
            sys._getframe(1).f_locals["finish"](
                {"status": "runtime_error", "exception": "E", "detail": "x" * 300_000}
            )
    """)
    body = expect_error(server.execute(source), "RUNTIME_ERROR")

    assert body["exception"] == "E"
    assert 0 < len(body["message"].encode()) <= TEXT_CAP_BYTES + 100, len(body["message"])


@pytest.mark.parametrize(
    "text",
    ['"\\U0001f600" * 3000', '"\\x01" * 9000', '"\\ud800" * 3000'],
    ids=["astral", "control", "surrogate"],
)
def test_a_long_exception_text_is_cut_in_bytes_and_never_output_limit(
    server: Server, text: str
) -> None:
    source = f"TEXT = {text}\n\ndef main():\n    raise ValueError(TEXT)\n"

    body = expect_error(server.execute(source), "RUNTIME_ERROR")

    assert body["exception"] == "ValueError", body
    assert len(body["traceback"].encode("utf-8", "surrogatepass")) <= TEXT_CAP_BYTES
    assert body["traceback"].endswith("... (cut)\n"), body["traceback"][-200:]
    assert_user_frames_only(body["traceback"])


# --- 4. an exception in a forked child -------------------------------------------------------

FORK_CHILDREN = """
import os

def child(action):
    pid = os.fork()
    if pid == 0:
        return True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

def main():
    codes = []
    for action in ("raise", "return", "exit7", "exit0"):
        code = child(action)
        if code is True:  # in the child
            if action == "raise":
                raise KeyError("from the child")
            if action == "exit7":
                raise SystemExit(7)
            if action == "exit0":
                raise SystemExit(0)
            return "child result"
        codes.append(code)
    return codes
"""


def test_a_forked_child_that_raises_exits_1_with_its_traceback(server: Server) -> None:
    body = expect_success(server.execute(FORK_CHILDREN))

    assert body["result"] == [1, 0, 7, 0], body
    stderr = body["stderr"]
    assert "KeyError: 'from the child'" in stderr, stderr
    assert_user_frames_only(stderr)


# --- 5. hostile exceptions and values --------------------------------------------------------

HOSTILE_NAME = """
class Lying(type):
    __name__ = property(lambda cls: b"not a str")

class Boom(Exception, metaclass=Lying):
    pass

def main():
    raise Boom("metaclass")
"""
HOSTILE_CLASS = """
class Boom(Exception):
    @property
    def __class__(self):
        raise RuntimeError("no class for you")

def main():
    raise Boom("class property")
"""
HOSTILE_ITEMS = """
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")

class Mapping(dict):
    def items(self):
        raise Unprintable()

def main():
    return Mapping(a=1)
"""
HOSTILE_STR = """
class Unprintable(Exception):
    def __str__(self):
        raise Unprintable()

def main():
    raise Unprintable()
"""


@pytest.mark.parametrize(
    ("source", "detail"),
    [(HOSTILE_NAME, "metaclass"), (HOSTILE_CLASS, "class property"), (HOSTILE_STR, None)],
    ids=["metaclass-name", "class-property", "str-raises"],
)
def test_a_hostile_exception_is_a_runtime_error_with_user_frames_only(
    server: Server, source: str, detail: str | None
) -> None:
    body = expect_error(server.execute(source), "RUNTIME_ERROR")

    expected_name = "Unprintable" if detail is None else "Boom"
    assert body["exception"] == expected_name, body
    if detail is not None:
        assert detail in body["message"], body
    assert_user_frames_only(body["traceback"])
    assert body["stderr"] == "", body


def test_a_dict_whose_items_raise_an_unprintable_exception_is_non_json(server: Server) -> None:
    body = expect_error(server.execute(HOSTILE_ITEMS), "NON_JSON_RETURN")

    assert "Unprintable" in body["message"], body
    assert body["stderr"] == "", body
    assert_serving(server)


# --- 6. fd exhaustion ------------------------------------------------------------------------

FD_EXHAUSTION = """
import errno

HELD = []

def main():
    try:
        while True:
            HELD.append(open("/dev/null"))
    except OSError as error:
        assert error.errno == errno.EMFILE, error
    raise ValueError(f"after EMFILE with {len(HELD)} files")
"""


def test_the_detail_survives_fd_exhaustion(server: Server) -> None:
    body = expect_error(server.execute(FD_EXHAUSTION), "RUNTIME_ERROR")

    assert body["exception"] == "ValueError", body
    assert "after EMFILE with" in body["message"], body
    assert "in main\n    raise ValueError(" in body["traceback"], body
    assert_user_frames_only(body["traceback"])
