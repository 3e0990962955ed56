"""What a runner hands the in-sandbox harness for one job (the other direction, the report,
is described in domain/report.py).

Three lines' worth of bytes: the report token, one JSON line of call details (`stdin`: the
script's standard input; `input`: the value main() is called with), then the script. The
harness (harness.py, `execute`) reads them in that order before the script runs."""

from __future__ import annotations

import json

from application.ports import SandboxJob


def job_payload(job: SandboxJob, token: bytes) -> bytes:
    fields = []  # JSON text, ASCII only: the line never holds a raw newline or a lone surrogate
    if job.stdin is not None:
        fields.append('"stdin": ' + json.dumps(job.stdin))
    if job.input_json is not None:  # already JSON text (ASCII) from the request's validation
        fields.append('"input": ' + job.input_json)
    call = "{" + ", ".join(fields) + "}"
    return b"%s\n%s\n%s" % (token, call.encode("ascii"), job.script.source.encode("utf-8"))
