"""The Litestar app in process, with hand-written fakes behind it: answer shapes, the request
log line and its id, and the OpenAPI document against the contract's table of codes."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from adapters.auth import ApiKeys
from adapters.http.api import build_app
from adapters.http.openapi import ERROR_EXAMPLES
from domain.limits import Limits
from domain.outcome import ErrorCode, Output, Success, Usage
from tests.unit.fakes import FakeExecute

LIMITS = Limits()
SECRET = "s3cr3t-" + "value"
SCRIPT_BODY = json.dumps({"script": f"def main():\n    print('{SECRET}')\n    return 1\n"})
CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contract.md"
# The contract's codes, for when ../shared/contract.md is not reachable (a copy).
CONTRACT_CODES = {
    "NO_MAIN": 400,
    "NON_JSON_RETURN": 400,
    "SYNTAX_ERROR": 400,
    "RUNTIME_ERROR": 400,
    "TIMEOUT": 400,
    "MEMORY_LIMIT": 400,
    "OUTPUT_LIMIT": 400,
    "EMPTY_OUTPUT": 500,
    "INVALID_REQUEST": 400,
    "PAYLOAD_TOO_LARGE": 413,
    "BUSY": 429,
    "UNAVAILABLE": 503,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "INTERNAL_ERROR": 500,
}


def success() -> Success:
    return Success(
        result_json="1",
        output=Output(stdout=SECRET + "\n"),
        usage=Usage(wall_time_s=0.03, cpu_time_s=0.02),
        limits=LIMITS,
    )


def make_app(
    execute: FakeExecute | None = None,
    healthy: bool | Exception = True,
    api_keys: ApiKeys | None = None,
) -> tuple[Litestar, FakeExecute, list[str]]:
    execute = execute or FakeExecute(success())
    rejections: list[str] = []

    def health() -> tuple[bool, dict[str, Any]]:
        if isinstance(healthy, Exception):
            raise healthy
        return healthy, {"sandbox": "fake"} if healthy else {"reason": "shutting down"}

    app = build_app(
        execute=execute,
        health=health,
        metrics_text=lambda: b"# metrics\n",
        limits=LIMITS,
        max_body_bytes=1000,
        runner=lambda: "fake",
        observe_rejection=rejections.append,
        api_keys=api_keys,
    )
    return app, execute, rejections


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    with TestClient(make_app()[0]) as test_client:
        yield test_client


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "safe_exec.http" and r.msg == "request"]


def test_a_success_is_logged_once_with_its_facts_and_never_the_output(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    answer = client.post(
        "/execute", content=SCRIPT_BODY, headers={"Content-Type": "application/json"}
    )

    assert answer.status_code == 200
    [line] = request_lines(caplog)
    fields = line.__dict__
    assert fields["code"] == "OK"
    assert fields["status"] == 200
    assert fields["runner"] == "fake"
    assert fields["limits"] == LIMITS.as_public_dict()
    assert fields["wall_ms"] == 30.0
    assert fields["cpu_ms"] == 20.0
    assert fields["duration_ms"] >= 0
    assert fields["request_id"] == answer.headers["x-request-id"]
    assert SECRET not in caplog.text
    assert all(SECRET not in repr(record.__dict__) for record in caplog.records)


def test_a_sane_request_id_is_honoured_and_echoed(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    answer = client.get("/health", headers={"X-Request-ID": "trace-42:a/b"})

    assert answer.headers["x-request-id"] == "trace-42:a/b"
    assert request_lines(caplog)[0].__dict__["request_id"] == "trace-42:a/b"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, 'quote"s'])
def test_an_unusable_request_id_is_replaced(client: TestClient[Litestar], bad: str) -> None:
    answer = client.get("/health", headers={"X-Request-ID": bad})

    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])


def test_each_request_gets_its_own_id(client: TestClient[Litestar]) -> None:
    ids = {client.get("/health").headers["x-request-id"] for _ in range(3)}

    assert len(ids) == 3


def test_an_unexpected_exception_is_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app, _, _ = make_app(healthy=RuntimeError("boom"))
    with TestClient(app) as test_client:
        answer = test_client.get("/health", headers={"X-Request-ID": "r-500"})

    assert answer.status_code == 500
    body = answer.json()
    assert body["error"] == "INTERNAL_ERROR"
    assert "r-500" in body["message"]
    assert request_lines(caplog)[0].__dict__["code"] == "INTERNAL_ERROR"
    assert "RuntimeError: boom" in caplog.text  # the traceback is logged for operators


def test_an_unhealthy_answer_has_the_failure_shape() -> None:
    app, _, _ = make_app(healthy=False)
    with TestClient(app) as test_client:
        answer = test_client.get("/health")

    assert answer.status_code == 503
    assert answer.json()["ok"] is False
    assert answer.json()["error"] == "UNAVAILABLE"
    assert "shutting down" in answer.json()["message"]


def test_a_wrong_media_type_runs_nothing_and_counts_a_rejection() -> None:
    app, execute, rejections = make_app()
    with TestClient(app) as test_client:
        answer = test_client.post(
            "/execute", content=SCRIPT_BODY, headers={"Content-Type": "text/plain"}
        )

    assert answer.status_code == 415
    assert answer.json()["error"] == "UNSUPPORTED_MEDIA_TYPE"
    assert execute.requests == []
    assert rejections == ["UNSUPPORTED_MEDIA_TYPE"]


def test_invalid_requests_count_as_rejections() -> None:
    app, execute, rejections = make_app()
    with TestClient(app) as test_client:
        test_client.post("/execute", content=b"{", headers={"Content-Type": "application/json"})
        test_client.post(
            "/execute", content=b"x" * 2000, headers={"Content-Type": "application/json"}
        )

    assert rejections == ["INVALID_REQUEST", "PAYLOAD_TOO_LARGE"]
    assert execute.requests == []


def test_metrics_are_served_as_prometheus_text(client: TestClient[Litestar]) -> None:
    answer = client.get("/metrics")

    assert answer.text == "# metrics\n"
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")


# --- OpenAPI ---------------------------------------------------------------------------------


def contract_codes() -> dict[str, int]:
    """code -> HTTP status from the contract's table and its Clarifications section."""
    if not CONTRACT.exists():
        return CONTRACT_CODES
    text = CONTRACT.read_text()
    codes = {
        code: int(status)
        for code, status in re.findall(r"^\| `([A-Z_]+)` \| (\d{3}) \|", text, re.MULTILINE)
    }
    # Clarifications name codes as `415 {"error": "UNSUPPORTED_MEDIA_TYPE", ...}` or `404 NOT_FOUND`
    clarifications = text.split("## Clarifications", 1)[1]
    for status, code in re.findall(r'`(\d{3}) (?:\{"error": ")?([A-Z_]+)', clarifications):
        codes[code] = int(status)
    return codes


def test_the_contract_table_is_parsed() -> None:
    codes = contract_codes()

    assert codes["NO_MAIN"] == 400
    assert codes["UNSUPPORTED_MEDIA_TYPE"] == 415
    assert codes["NOT_FOUND"] == 404
    assert codes["METHOD_NOT_ALLOWED"] == 405
    assert codes["INTERNAL_ERROR"] == 500
    assert set(CONTRACT_CODES) <= set(codes)


def test_the_domain_has_every_contract_code_with_its_status() -> None:
    domain = {code.code: code.http_status for code in ErrorCode}
    for code, status in contract_codes().items():
        if code == "UNAUTHORIZED" and code not in domain:
            continue  # contract version 2, built elsewhere
        assert domain[code] == status


def test_every_error_code_has_a_documented_example() -> None:
    assert set(ERROR_EXAMPLES) == set(ErrorCode)


def test_the_openapi_document_shows_every_contract_code_with_an_example(
    client: TestClient[Litestar],
) -> None:
    document = client.get("/schema/openapi.json").json()

    examples: dict[str, set[str]] = {}  # code -> statuses it is documented under
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                for media in response.get("content", {}).values():
                    for example in media.get("examples", {}).values():
                        body = example["value"]
                        if isinstance(body, dict) and "error" in body:
                            assert body["message"]
                            examples.setdefault(body["error"], set()).add(status)
    for code, status in contract_codes().items():
        if code == "UNAUTHORIZED" and code not in {c.code for c in ErrorCode}:
            continue
        assert code in examples, code
        assert str(status) in examples[code] or "default" in examples[code], code
    error_schema = document["paths"]["/execute"]["post"]["responses"]["400"]["content"][
        "application/json"
    ]["schema"]
    assert set(error_schema["properties"]["error"]["enum"]) == {c.code for c in ErrorCode}


def test_with_keys_configured_a_request_without_one_runs_nothing_and_is_counted() -> None:
    app, execute, rejections = make_app(api_keys=ApiKeys(["s3cret-key"]))
    with TestClient(app) as keyed:
        refused = keyed.post(
            "/execute", content=SCRIPT_BODY, headers={"Content-Type": "application/json"}
        )
        admitted = keyed.post(
            "/execute",
            content=SCRIPT_BODY,
            headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret-key"},
        )
        health = keyed.get("/health")

    assert refused.status_code == 401
    assert refused.json()["error"] == "UNAUTHORIZED"
    assert refused.headers["www-authenticate"] == 'Bearer realm="safe-exec"'
    assert refused.json()["limits"] == LIMITS.as_public_dict()
    assert admitted.status_code == 200
    assert len(execute.requests) == 1  # only the admitted one reached the use case
    assert rejections == ["UNAUTHORIZED"]
    assert health.status_code == 200


def test_the_key_is_checked_before_the_body_is_judged() -> None:
    app, execute, _rejections = make_app(api_keys=ApiKeys(["s3cret-key"]))
    with TestClient(app) as keyed:
        answer = keyed.post("/execute", content=b"not json", headers={"Content-Type": "text/plain"})

    assert answer.status_code == 401  # a stranger learns nothing about what we accept
    assert execute.requests == []


def test_the_openapi_document_names_the_contract_version_and_the_v2_fields(
    client: TestClient[Litestar],
) -> None:
    document = client.get("/schema/openapi.json").json()

    assert document["info"]["version"] == "2.0.0"
    operation = document["paths"]["/execute"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"script", "timeout_s", "memory_mb", "stdin", "input"}
    assert operation["security"] == [{}, {"apiKey": []}]
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    ok = operation["responses"]["200"]["content"]["application/json"]
    assert "limits" in ok["schema"]["properties"]
    assert "limits" in ok["examples"]["ok"]["value"]
