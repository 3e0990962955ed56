"""Checks a running safe-exec container through its published port (stdlib only: it runs
with the host's python3, outside the image).

    python3 scripts/image_check.py URL SANDBOX [LAYER ...]
    python3 scripts/image_check.py --not URL SANDBOX

The first waits for /health to name a sandbox, then asserts its name and that it lists each
LAYER, and sends /execute requests whose answers must carry the exact contract codes. The
second (a container started with one privilege less) waits until the sandbox has been
chosen and asserts that it is not SANDBOX. Exit status 0 when all pass; 1 with the failed
expectation on stderr otherwise."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

START_TIMEOUT_S = 180.0  # the warm pools preload numpy and pandas before /health answers


def call(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_for_health(base: str, *, settled: bool = False) -> dict[str, Any] | str:
    """/health's answer once it names the sandbox (with `settled`: once the choice is made,
    even if no sandbox works), or why it never came."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = call(base + "/health", timeout=5)
            # /health answers while the sandbox is still being chosen ("warming"); it names
            # it after, or answers 503 when none works.
            if body.get("sandbox") or (settled and "warming" not in body):
                return dict(body)
            last = (status, body)
        except (OSError, ValueError) as error:  # not listening yet, or reset while starting
            last = error
        time.sleep(1)
    return f"/health named no sandbox within {START_TIMEOUT_S:.0f} s: {last}"


PANDAS = """
import pandas as pd

def main():
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [10, 20, 30]})
    print(frame["y"].sum())
    return {"mean_x": float(frame["x"].mean()), "rows": len(frame)}
"""

# (name, request, HTTP status, expected fields of the answer)
CASES: list[tuple[str, dict[str, Any], int, dict[str, Any]]] = [
    (
        "happy path",
        {"script": "def main():\n    print('hi')\n    return {'answer': 42}\n"},
        200,
        {"result": {"answer": 42}, "stdout": "hi\n"},
    ),
    ("NO_MAIN", {"script": "x = 1\n"}, 400, {"error": "NO_MAIN"}),
    (
        "TIMEOUT",
        {"script": "def main():\n    while True:\n        pass\n"},
        400,
        {"error": "TIMEOUT"},
    ),
    ("pandas", {"script": PANDAS}, 200, {"result": {"mean_x": 2.0, "rows": 3}, "stdout": "60\n"}),
]


def check_weaker(base: str, sandbox: str) -> int:
    health = wait_for_health(base, settled=True)
    if isinstance(health, str):
        print(f"image_check: {health}", file=sys.stderr)
        return 1
    chosen = health.get("sandbox")
    print(f"  /health: sandbox={chosen} {health.get('message', '')}")
    if chosen == sandbox:
        print(
            f"image_check: still {sandbox}: the privilege taken away is not needed", file=sys.stderr
        )
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "--not":
        return check_weaker(argv[1], argv[2])
    base, sandbox, *layers = argv
    failures: list[str] = []
    health = wait_for_health(base)
    if isinstance(health, str):
        print(f"image_check: {health}", file=sys.stderr)
        return 1
    print(f"  /health: sandbox={health.get('sandbox')} isolation={health.get('isolation')}")
    if health.get("sandbox") != sandbox:
        failures.append(f"/health sandbox is {health.get('sandbox')!r}, expected {sandbox!r}")
    missing = [layer for layer in layers if layer not in health.get("isolation", [])]
    if missing:
        failures.append(f"/health isolation lacks {missing}: {health.get('isolation')}")
    for name, request, want_status, want in CASES:
        started = time.monotonic()
        status, body = call(base + "/execute", request)
        elapsed = time.monotonic() - started
        got = {key: body.get(key) for key in want} if isinstance(body, dict) else body
        verdict = "ok" if status == want_status and got == want else "FAIL"
        print(f"  /execute {name}: {status} {got} ({elapsed:.2f} s) {verdict}")
        if verdict != "ok":
            failures.append(f"{name}: expected {want_status} {want}, got {status} {body}")
    for failure in failures:
        print(f"image_check: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
