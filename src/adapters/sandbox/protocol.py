"""What a runner hands the in-sandbox harness for one job (the other direction, the report,
is described in domain/report.py).

Three lines' worth of bytes: the report token, one JSON line of call details (`stdin`: the
script's standard input; `input`: the value main() is called with), then the script. The
harness (harness.py, `execute`) reads them in that order before the script runs."""

from __future__ import annotations

import json
from typing import Any

from application.ports import SandboxJob


def job_payload(job: SandboxJob, token: bytes) -> bytes:
    call: dict[str, Any] = {}
    if job.stdin is not None:
        call["stdin"] = job.stdin
    if job.input_json is not None:
        call["input"] = json.loads(job.input_json)
    # ensure_ascii: the line never holds a raw newline or a lone surrogate
    return b"%s\n%s\n%s" % (token, json.dumps(call).encode(), job.script.source.encode("utf-8"))
