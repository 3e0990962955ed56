"""The playground (`GET /`) in a real headless browser against a real server.

Every test fails on any JavaScript error, any console error and any asset that does not load.
One console line is the browser's and expected: Chromium logs "Failed to load resource: the
server responded with a status of 4xx/5xx" for every fetch answered with an error status, and
the contract answers /execute's failures (NO_MAIN 400, EMPTY_OUTPUT 500, ...) that way; those
lines are allowed for /execute only."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import attrs
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Response,
    expect,
    sync_playwright,
)

from adapters.settings import VARIABLES
from tests.integration.browser import CHROMIUM, launch
from tests.integration.server import ROOT, Server, running_server, start_server, stop_server

RUN_TIMEOUT_MS = 30_000  # an answer, TIMEOUT's 2 s included, on a loaded 2-core machine
API_ERROR_LINE = "Failed to load resource: the server responded with a status of"
KEY = "playground-test-key-7f3a"


@attrs.define(slots=False)  # Playwright tags bound-method listeners with attributes
class Watch:
    """What went wrong in a page: JS errors, console errors, assets that did not load."""

    problems: list[str] = attrs.field(factory=list)
    allowed: list[re.Pattern[str]] = attrs.field(factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type not in ("error", "warning"):
            return
        url = message.location.get("url", "")
        if message.text.startswith(API_ERROR_LINE) and url.endswith("/execute"):
            return
        if any(pattern.search(message.text) for pattern in self.allowed):
            return
        self.problems.append(f"console {message.type}: {message.text} ({url})")

    def response(self, response: Response) -> None:
        if response.status >= 400 and not response.url.endswith("/execute"):
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def attach(self, page: Page) -> None:
        page.on("console", self.console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("response", self.response)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("auto", tmp_path_factory.mktemp("playground")) as srv:
        yield srv


@pytest.fixture
def watch() -> Iterator[Watch]:
    watch = Watch()
    yield watch
    assert watch.problems == [], "the page reported problems"


def open_page(
    browser: Browser, srv: Server, watch: Watch, width: int = 1280, height: int = 900
) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watch.attach(page)
    page.goto(srv.url + "/")
    expect(page.locator("#service")).to_have_text(re.compile(r"^Service: ready"))
    return page


def run_example(page: Page, example: str) -> None:
    page.click(f"button[data-example={example}]")
    expect(page.locator("#answer")).to_have_attribute("data-state", "idle")
    page.click("#run")
    finished(page)


def finished(page: Page) -> None:
    expect(page.locator("#answer")).to_have_attribute(
        "data-state", re.compile("^(done|error)$"), timeout=RUN_TIMEOUT_MS
    )


def facts(page: Page, selector: str) -> dict[str, str]:
    """A definition list as a person reads it: label -> value."""
    pairs: list[list[str]] = page.eval_on_selector_all(
        f"{selector} dt",
        "dts => dts.map(dt => [dt.textContent, dt.nextElementSibling.textContent])",
    )
    return dict((name, value) for name, value in pairs)


def assert_usage_shown(page: Page) -> None:
    expect(page.locator("#usage-block")).to_be_visible()
    usage = facts(page, "#usage")
    assert re.fullmatch(r"\d+(\.\d+)? (ms|s)", usage["Wall time"]), usage
    assert re.fullmatch(r"\d+(\.\d+)? (ms|s)", usage["CPU time"]), usage
    assert re.fullmatch(r"\d+(\.\d+)? (B|KiB|MiB)", usage["Peak memory"]), usage


def assert_limits_shown(page: Page) -> None:
    expect(page.locator("#limits-block")).to_be_visible()
    limits = facts(page, "#limits")
    assert limits["Wall time"] == "2 s", limits  # TEST_ENV's WALL_TIME_S
    assert limits["Memory"] == "256 MiB", limits  # TEST_ENV's MEMORY_MB


# ---- serving --------------------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_served_with_a_strict_policy_and_runs_no_inline_code(service: Server) -> None:
    answer = service.request("GET", "/")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["x-content-type-options"] == "nosniff"
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in answer.headers["content-security-policy"].split(";")
    }
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in answer.headers["content-security-policy"]

    parser = _Tags()
    parser.feed(answer.body.decode())
    scripts = [attributes for tag, attributes in parser.tags if tag == "script"]
    assert scripts and all(attributes.get("src") for attributes in scripts)
    assets = [a["src"] for a in scripts] + [
        a["href"] for tag, a in parser.tags if tag == "link" and a.get("href")
    ]
    for tag, attributes in parser.tags:
        assert "style" not in attributes, tag
        assert not any(name.startswith("on") for name in attributes), tag
    for asset in assets:
        assert asset is not None and asset.startswith("/static/"), asset  # no CDN
        served = service.request("GET", asset)
        assert served.status == 200, asset
        assert served.headers["x-content-type-options"] == "nosniff", asset
        expected = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
        assert served.headers["content-type"].startswith(expected[asset.rsplit(".", 1)[1]])


def test_the_page_keeps_the_contract_for_unknown_paths_and_stays_out_of_the_schema(
    service: Server,
) -> None:
    missing = service.request("GET", "/static/no-such-file.js")
    assert missing.status == 404
    assert missing.json()["error"] == "NOT_FOUND"
    escaping = service.request("GET", "/static/../playground.py")
    assert escaping.status == 404
    assert escaping.json()["error"] == "NOT_FOUND"
    posted = service.request("POST", "/", b"{}", {"Content-Type": "application/json"})
    assert posted.status == 405
    assert posted.json()["error"] == "METHOD_NOT_ALLOWED"
    paths = service.request("GET", "/schema/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


def test_the_package_data_ships_every_file_of_the_page() -> None:
    """A non-editable install carries only what pyproject's package-data globs match."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["adapters.http"]
    package = ROOT / "src" / "adapters" / "http"
    shipped = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    files = {path for path in (package / "static").rglob("*") if path.is_file()}
    assert files - shipped == set()
    assert package / "static" / "vendor" / "codemirror" / "LICENSE" in shipped


# ---- a person using it ----------------------------------------------------------------------


def test_the_page_loads_with_an_editor_and_the_service_limits(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    expect(page).to_have_title("safe-exec playground")
    health = service.health().json()
    expect(page.locator("#service")).to_have_text(f"Service: ready, sandbox {health['sandbox']}.")
    # Line numbers and Python highlighting, on the default script.
    expect(page.locator(".CodeMirror-linenumber", has_text=re.compile("^1$"))).to_be_visible()
    expect(page.locator(".CodeMirror .cm-keyword", has_text="def")).to_be_visible()
    expect(page.locator(".CodeMirror .cm-string").first).to_be_visible()
    expect(page.locator("#run")).to_be_enabled()
    expect(page.locator("#limits-source")).to_have_text("(the service's, from /health)")
    assert_limits_shown(page)


EXAMPLES: dict[str, dict[str, Any]] = {
    "happy": {"state": "done", "result": ['"sum": 45', '"squares": [']},
    "no-main": {"state": "error", "code": "NO_MAIN", "stdout": "123"},
    "non-json": {"state": "error", "code": "NON_JSON_RETURN", "message": "set"},
    "empty-output": {"state": "error", "code": "EMPTY_OUTPUT", "message": "no result"},
    "timeout": {"state": "error", "code": "TIMEOUT", "message": "limit of 2 s"},
    "runtime-error": {
        "state": "error",
        "code": "RUNTIME_ERROR",
        "stdout": "dividing...",
        "traceback": ["line 2, in ratio", "ZeroDivisionError: division by zero"],
    },
    "input-stdin": {
        "state": "done",
        "result": ['"total": 31', '"largest": 9', '"first line"', '"second line"'],
        "stdout": "read 2 lines from stdin",
    },
    "pandas": {"state": "done", "result": ['"team": "a"', '"sum": 13'], "stdout": "count"},
}


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_each_example_runs_and_its_answer_is_laid_out(
    browser: Browser, service: Server, watch: Watch, example: str
) -> None:
    want = EXAMPLES[example]
    page = open_page(browser, service, watch)
    run_example(page, example)

    expect(page.locator("#answer")).to_have_attribute("data-state", want["state"])
    if want["state"] == "done":
        expect(page.locator("#status")).to_have_text("Done: main() returned (HTTP 200).")
        expect(page.locator("#error-block")).to_be_hidden()
        for fragment in want["result"]:
            expect(page.locator("#result")).to_contain_text(fragment)
    else:
        expect(page.locator("#result-block")).to_be_hidden()
        expect(page.locator("#error-code")).to_have_text(want["code"])
        expect(page.locator("#status")).to_contain_text(f"Failed with {want['code']}")
        expect(page.locator("#error-message")).to_contain_text(want.get("message", ""))
        expect(page.locator("#error-message")).not_to_be_empty()
    if "stdout" in want:
        expect(page.locator("#stdout")).to_contain_text(want["stdout"])
    if "traceback" in want:
        for fragment in want["traceback"]:
            expect(page.locator("#traceback")).to_contain_text(fragment)
    else:
        expect(page.locator("#traceback-block")).to_be_hidden()
    expect(page.locator("#stdout-block")).to_be_visible()
    expect(page.locator("#stderr-block")).to_be_visible()
    assert_usage_shown(page)
    assert_limits_shown(page)


def test_the_happy_path_shows_stdout_and_stderr_apart(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    run_example(page, "happy")
    expect(page.locator("#stdout")).to_have_text("hello from the sandbox\n")
    expect(page.locator("#stderr")).to_have_text("stderr is captured separately\n")


def test_ctrl_enter_runs_what_was_typed_and_big_integers_stay_exact(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    page.click(".CodeMirror-code")
    page.keyboard.press("Control+A")
    page.keyboard.type("def main(): return [2 ** 64 + 1, 1.0]")
    page.keyboard.press("Control+Enter")
    finished(page)

    expect(page.locator("#answer")).to_have_attribute("data-state", "done")
    # Python's integers and float spellings, not JavaScript's doubles (18446744073709552000, 1).
    expect(page.locator("#result")).to_have_text("[\n  18446744073709551617,\n  1.0\n]")
    expect(page.locator(".CodeMirror-line")).to_have_count(1)  # the shortcut added no newline
    expect(page.locator("#stdout")).to_have_text("(empty)")


def test_the_keyboard_alone_can_indent_leave_the_editor_and_run(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    page.click("button[data-example=no-main]")
    page.click(".CodeMirror-code")
    page.keyboard.press("Control+End")
    page.keyboard.press("Tab")
    expect(page.locator(".CodeMirror-line").last).to_have_text("    ")  # Tab indents
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "run"
    page.keyboard.press("Enter")
    finished(page)
    expect(page.locator("#error-code")).to_have_text("NO_MAIN")


def test_a_script_over_the_size_cap_is_refused_clearly(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    page.click(".CodeMirror-code")
    page.keyboard.press("Control+A")
    # One line (as one paste): 36 KB > TEST_ENV's MAX_SCRIPT_BYTES.
    page.keyboard.insert_text("x = '" + "a" * 36_000 + "'")
    page.click("#run")
    finished(page)
    expect(page.locator("#error-code")).to_have_text("PAYLOAD_TOO_LARGE")
    expect(page.locator("#status")).to_have_text(
        "Not run: the script is larger than the service accepts."
    )


def test_the_narrow_layout_stacks_and_never_scrolls_sideways(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch, width=375, height=812)
    run_example(page, "pandas")  # long lines, a wide table on stdout
    expect(page.locator("#answer")).to_have_attribute("data-state", "done")

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    editor = page.locator(".editor-pane").bounding_box()
    answer = page.locator("#answer").bounding_box()
    assert editor is not None and answer is not None
    assert answer["y"] >= editor["y"] + editor["height"]  # stacked, not side by side
    page.click("#options summary")  # the folded fields fit too
    expect(page.locator("#memory-mb")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    for selector in ("#run", "#result", "#stdout", "#limits", "#input", "#timeout-s", "#memory-mb"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, selector


def test_busy_and_unreachable_services_are_explained(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, watch: Watch
) -> None:
    one_slot = {"MAX_CONCURRENCY": "1", "QUEUE_SIZE": "0"}
    srv = start_server("auto", tmp_path_factory.mktemp("busy"), one_slot)
    try:
        page = open_page(browser, srv, watch)
        page.click("button[data-example=happy]")
        occupant = threading.Thread(target=srv.execute, args=("def main():\n while True: pass",))
        occupant.start()
        try:
            expect_in_use(srv)
            page.click("#run")
            finished(page)
            expect(page.locator("#error-code")).to_have_text("BUSY")
            expect(page.locator("#status")).to_have_text(re.compile(r"busy.*Try again in \d+ s\."))
        finally:
            occupant.join()
    finally:
        stop_server(srv)

    watch.allowed.append(re.compile("ERR_CONNECTION_REFUSED"))  # the page's one request
    page.click("#run")
    finished(page)
    expect(page.locator("#error-code")).to_have_text("NETWORK_ERROR")
    expect(page.locator("#status")).to_have_text("Network error: no answer from the service.")
    expect(page.locator("#run")).to_be_enabled()


def expect_in_use(srv: Server) -> None:
    """Until the occupant holds the only slot (its 2 s TIMEOUT leaves ample time to click)."""
    for _ in range(200):
        with contextlib.suppress(OSError, ValueError):
            if srv.health().json()["slots"]["in_use"] == 1:
                return
        time.sleep(0.01)
    raise AssertionError("the occupying execution never took the slot")


# ---- input and limits (contract v2's optional fields) ----------------------------------------


def count_executions(page: Page) -> list[str]:
    """The bodies of the requests the page sends to /execute, as they go out."""
    sent: list[str] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request.post_data or "") if request.url.endswith("/execute") else None
        ),
    )
    return sent


def set_script(page: Page, script: str) -> None:
    page.click(".CodeMirror-code")
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(script)


def test_input_and_limits_are_folded_away_and_bounded_by_the_server(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    expect(page.locator("#options")).not_to_have_attribute("open", "")
    expect(page.locator("#input")).to_be_hidden()
    page.click("#options summary")
    expect(page.locator("#input")).to_be_visible()
    expect(page.locator("#timeout-s")).to_have_attribute("max", "2")  # TEST_ENV's WALL_TIME_S
    expect(page.locator("#timeout-s")).to_have_attribute("placeholder", "2 (the server's)")
    expect(page.locator("#memory-mb")).to_have_attribute("max", "256")  # TEST_ENV's MEMORY_MB
    expect(page.locator("#memory-mb")).to_have_attribute("min", "16")
    expect(page.locator("#memory-mb")).to_have_attribute("placeholder", "256 (the server's)")
    # Every field has a label a screen reader reads.
    for field, name in [
        ("#input", "Input"),
        ("#stdin", "Standard input"),
        ("#timeout-s", "Timeout, seconds"),
        ("#memory-mb", "Memory, MiB"),
    ]:
        expect(page.locator(field)).to_have_accessible_name(re.compile("^" + name))

    sent = count_executions(page)
    run_example(page, "happy")  # nothing filled: nothing but the script is sent
    assert len(sent) == 1 and sorted(json.loads(sent[0])) == ["script"], sent


def test_the_input_example_fills_the_fields_and_another_example_clears_them(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    sent = count_executions(page)
    run_example(page, "input-stdin")
    expect(page.locator("#options")).to_have_attribute("open", "")
    expect(page.locator("#input")).to_have_value("[3, 1, 4, 1, 5, 9, 2, 6]")
    expect(page.locator("#stdin")).to_have_value("first line\nsecond line\n")
    expect(page.locator("#answer")).to_have_attribute("data-state", "done")
    expect(page.locator("#result")).to_have_text(
        '{\n  "total": 31,\n  "largest": 9,\n  "lines": [\n    "first line",\n'
        '    "second line"\n  ]\n}'
    )
    expect(page.locator("#stdout")).to_have_text("read 2 lines from stdin\n")
    assert json.loads(sent[0]) == {
        "script": json.loads(sent[0])["script"],
        "input": [3, 1, 4, 1, 5, 9, 2, 6],
        "stdin": "first line\nsecond line\n",
    }

    page.fill("#timeout-s", "1")
    page.fill("#memory-mb", "64")
    page.click("button[data-example=happy]")
    for field in ("#input", "#stdin", "#timeout-s", "#memory-mb"):
        expect(page.locator(field)).to_have_value("")


def test_a_lowered_timeout_stops_a_sleeping_script_and_the_limits_say_so(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    sent = count_executions(page)
    set_script(page, "import time\n\ndef main():\n    time.sleep(5)\n")
    page.click("#options summary")
    page.fill("#timeout-s", "0.5")
    page.fill("#memory-mb", "128")
    page.click("#run")
    finished(page)

    expect(page.locator("#error-code")).to_have_text("TIMEOUT")
    expect(page.locator("#error-message")).to_contain_text("limit of 0.5 s")
    assert json.loads(sent[0])["timeout_s"] == 0.5
    assert json.loads(sent[0])["memory_mb"] == 128
    expect(page.locator("#limits-source")).to_have_text("(this execution's)")
    limits = facts(page, "#limits")
    assert limits["Wall time"] == "0.5 s (lowered from 2 s)", limits
    assert limits["Memory"] == "128 MiB (lowered from 256 MiB)", limits


def test_invalid_json_input_is_named_inline_and_nothing_is_sent(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    sent = count_executions(page)
    page.click("button[data-example=input-stdin]")
    page.fill("#input", "[1, 2,")
    page.click("#run")

    error = page.locator("#input-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The input is not valid JSON")
    expect(error).to_contain_text("Nothing was sent.")
    expect(page.locator("#input")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#input")).to_be_focused()
    expect(page.locator("#answer")).to_have_attribute("data-state", "error")
    expect(page.locator("#status")).to_have_text(
        "Not sent: the input is not valid JSON (see \u201cInput and limits\u201d)."
    )
    page.keyboard.press("Control+Enter")  # the shortcut is refused just the same
    expect(error).to_be_visible()
    assert sent == []

    page.fill("#input", "[1, 2, 18446744073709551617]")  # fixed: sent as written, exact
    page.click("#run")
    finished(page)
    expect(error).to_be_hidden()
    expect(page.locator("#input")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#result")).to_contain_text('"total": 18446744073709551620')
    assert len(sent) == 1 and '"input": [1, 2, 18446744073709551617]' in sent[0], sent

    page.click("#timeout-s")
    page.keyboard.type("1e")  # not a number: the box's value is "" but it is not empty
    page.click("#run")
    expect(page.locator("#limits-error")).to_have_text(
        "The timeout_s field is not a number. Nothing was sent."
    )
    expect(page.locator("#timeout-s")).to_be_focused()
    assert len(sent) == 1, sent


def test_a_limit_above_the_servers_is_refused_by_the_server_and_its_message_shown(
    browser: Browser, service: Server, watch: Watch
) -> None:
    page = open_page(browser, service, watch)
    sent = count_executions(page)
    page.click("button[data-example=happy]")
    page.click("#options summary")
    page.fill("#memory-mb", "100000")
    page.click("#run")
    finished(page)

    assert len(sent) == 1 and json.loads(sent[0])["memory_mb"] == 100000  # the page let it go
    expect(page.locator("#error-code")).to_have_text("INVALID_REQUEST")
    expect(page.locator("#error-message")).to_have_text(
        "'memory_mb' must be an integer from 16 to 256; got 100000."
    )
    expect(page.locator("#status")).to_have_text("Failed with INVALID_REQUEST (HTTP 400).")
    assert facts(page, "#error-details")["field"] == "memory_mb"


# ---- API keys (contract v2) -----------------------------------------------------------------


@pytest.mark.skipif(
    "API_KEYS" not in VARIABLES,
    reason="this build has no API_KEYS setting yet (contract v2 authentication)",
)
def test_with_api_keys_the_page_asks_for_one_and_keeps_it_in_memory_only(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, watch: Watch
) -> None:
    with running_server("auto", tmp_path_factory.mktemp("keys"), {"API_KEYS": KEY}) as srv:
        assert srv.execute("def main(): return 1").status == 401  # the server really asks
        page = open_page(browser, srv, watch)
        dialog = page.locator("#key-dialog")
        page.click("button[data-example=happy]")
        page.click("#run")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("requires an API key")
        expect(page.locator("#key-input")).to_be_focused()

        page.keyboard.type("not-the-key")
        page.keyboard.press("Enter")
        expect(dialog).to_contain_text("refused that key")
        page.keyboard.type(KEY)
        page.keyboard.press("Enter")
        finished(page)
        expect(dialog).to_be_hidden()
        expect(page.locator("#result")).to_contain_text('"sum": 45')
        expect(page.locator("#key-state")).to_have_text("API key: set (in memory)")

        stored = page.evaluate(
            "JSON.stringify([Object.assign({}, localStorage), Object.assign({}, sessionStorage),"
            " document.cookie])"
        )
        assert KEY not in stored
        assert page.context.cookies() == []

        page.reload()  # memory only: gone with the page
        page.click("#run")
        expect(dialog).to_be_visible()
        page.click("#key-cancel")
        finished(page)
        expect(page.locator("#error-code")).to_have_text("UNAUTHORIZED")
        expect(page.locator("#status")).to_have_text("Not run: the service requires an API key.")
