"""`/mcp` mounted in the Litestar app in process, with a fake use case behind it: the API-key
gate answers before the SDK, JSON-RPC reaches the tool, the request log line names the tool's
code, other paths keep the contract's answers, and the SDK's lifespan lives in the app's."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from adapters.auth import ApiKeys
from adapters.http.api import build_app
from adapters.mcp.http import McpHttpEndpoint, transport_security
from domain.limits import Limits
from domain.outcome import ErrorCode, Failure, Output, Success, Usage
from tests.unit.fakes import FakeExecute

LIMITS = Limits()
KEY = "k-unit-3f9e2d1c"
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def success() -> Success:
    return Success(
        result_json="[1, 2]",
        output=Output(stdout="hi\n"),
        usage=Usage(wall_time_s=0.01, cpu_time_s=0.01),
        limits=LIMITS,
    )


class BrokenSdkEndpoint(McpHttpEndpoint):
    """An endpoint whose SDK cannot be loaded (a broken install)."""

    def _load(self) -> Any:
        raise ImportError("no module named mcp")


def make_app(
    execute: FakeExecute,
    *,
    api_keys: ApiKeys | None = None,
    host: str = "0.0.0.0",
    endpoint_class: type[McpHttpEndpoint] = McpHttpEndpoint,
) -> tuple[Litestar, list[str]]:
    rejections: list[str] = []
    endpoint = endpoint_class(
        execute,
        limits=LIMITS,
        max_body_bytes=10_000,
        api_keys=api_keys,
        host=host,
        observe_rejection=rejections.append,
    )
    app = build_app(
        execute=execute,
        health=lambda: (True, {}),
        metrics_text=lambda: b"",
        limits=LIMITS,
        max_body_bytes=10_000,
        observe_rejection=rejections.append,
        api_keys=api_keys,
        lifespan=[endpoint.lifespan],
        extra_routes=[endpoint.route()],
    )
    return app, rejections


def rpc(method: str, params: dict[str, Any], ident: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": ident, "method": method, "params": params}).encode()


def call(script: str = "def main():\n    return [1, 2]", **arguments: Any) -> bytes:
    return rpc("tools/call", {"name": "run_python", "arguments": {"script": script, **arguments}})


@pytest.fixture
def keyed() -> Iterator[tuple[TestClient[Litestar], FakeExecute, list[str]]]:
    execute = FakeExecute(success())
    app, rejections = make_app(execute, api_keys=ApiKeys([KEY]))
    with TestClient(app) as client:
        yield client, execute, rejections


@pytest.mark.parametrize("authorization", [None, f"Bearer {KEY}-", f"Basic {KEY}", "Bearer "])
def test_without_the_key_the_answer_is_the_contracts_401_and_nothing_runs(
    keyed: tuple[TestClient[Litestar], FakeExecute, list[str]], authorization: str | None
) -> None:
    client, execute, rejections = keyed
    headers = MCP_HEADERS | ({"Authorization": authorization} if authorization else {})

    answer = client.post("/mcp", content=call(), headers=headers)

    assert answer.status_code == 401
    body = answer.json()
    assert body["error"] == "UNAUTHORIZED"
    assert "Authorization: Bearer <key>" in body["message"]
    assert body["limits"] == LIMITS.as_public_dict()
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert execute.requests == []
    assert rejections == ["UNAUTHORIZED"]


def test_every_method_is_gated_not_only_post(
    keyed: tuple[TestClient[Litestar], FakeExecute, list[str]],
) -> None:
    client, _execute, _rejections = keyed

    answers = [client.get("/mcp"), client.delete("/mcp"), client.options("/mcp")]

    assert [a.status_code for a in answers] == [401, 401, 401]


def test_with_the_key_json_rpc_reaches_the_tool(
    keyed: tuple[TestClient[Litestar], FakeExecute, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, execute, _rejections = keyed
    caplog.set_level(logging.INFO)
    headers = MCP_HEADERS | {"Authorization": f"Bearer {KEY}"}

    listed = client.post("/mcp", content=rpc("tools/list", {}), headers=headers)
    called = client.post("/mcp", content=call(stdin="in"), headers=headers)

    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["result"]["tools"]] == ["run_python"]
    assert called.status_code == 200, called.text
    assert called.headers["content-type"].startswith("application/json")  # json_response
    result = called.json()["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["result"] == [1, 2]
    assert [r.stdin for r in execute.requests] == ["in"]
    # the service's one log line per request carries the tool's code
    lines = [r for r in caplog.records if r.name == "safe_exec.http" and r.msg == "request"]
    assert [(r.__dict__["path"], r.__dict__["code"]) for r in lines][-1] == ("/mcp", "OK")
    assert lines[-1].__dict__["tool"] == "run_python"


def test_a_tool_failure_is_a_tool_error_inside_a_json_rpc_success() -> None:
    failure = Failure(code=ErrorCode.NO_MAIN, message="No main.", usage=None, limits=LIMITS)
    app, _rejections = make_app(FakeExecute(failure))
    with TestClient(app) as client:
        answer = client.post("/mcp", content=call(), headers=MCP_HEADERS)

    assert answer.status_code == 200  # a tool error is a JSON-RPC success
    assert answer.json()["result"]["isError"] is True
    assert answer.json()["result"]["structuredContent"]["error"] == "NO_MAIN"


def test_without_keys_configured_mcp_is_open_and_other_paths_keep_the_contract() -> None:
    app, _rejections = make_app(FakeExecute(success()))
    with TestClient(app) as client:
        called = client.post("/mcp", content=call(), headers=MCP_HEADERS)
        missing = client.get("/mcp/deeper")
        unknown = client.get("/nothing")
        wrong_method = client.get("/execute")

    assert called.status_code == 200, called.text
    assert (missing.status_code, missing.json()["error"]) == (404, "NOT_FOUND")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "NOT_FOUND")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "METHOD_NOT_ALLOWED")


def test_bound_to_loopback_only_loopback_host_names_are_answered() -> None:
    app, _rejections = make_app(FakeExecute(success()), host="127.0.0.1")
    with TestClient(app) as client:
        rebound = client.post("/mcp", content=call(), headers=MCP_HEADERS | {"Host": "evil.test"})
        local = client.post(
            "/mcp", content=call(), headers=MCP_HEADERS | {"Host": "127.0.0.1:8080"}
        )

    assert rebound.status_code in (403, 421), rebound.text
    assert local.status_code == 200, local.text


def test_the_host_check_follows_the_bind_address() -> None:
    assert transport_security("0.0.0.0") is None
    settings = transport_security("127.0.0.1")
    assert settings is not None and settings.enable_dns_rebinding_protection
    assert "127.0.0.1:*" in settings.allowed_hosts


def test_an_sdk_that_cannot_load_answers_unavailable_and_the_rest_still_serves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, _rejections = make_app(FakeExecute(success()), endpoint_class=BrokenSdkEndpoint)
    with TestClient(app) as client:
        answer = client.post("/mcp", content=call(), headers=MCP_HEADERS)
        health = client.get("/health")

    assert answer.status_code == 503
    assert answer.json()["error"] == "UNAVAILABLE"
    assert health.status_code == 200
    assert "MCP could not be started" in caplog.text


def test_the_sdk_is_loaded_by_the_first_admitted_request_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app, _rejections = make_app(FakeExecute(success()), api_keys=ApiKeys([KEY]))
    with TestClient(app) as client:
        client.get("/health")
        refused = client.post("/mcp", content=call(), headers=MCP_HEADERS)
        loaded_before = "MCP ready" in caplog.text
        admitted = client.post(
            "/mcp", content=call(), headers=MCP_HEADERS | {"Authorization": f"Bearer {KEY}"}
        )

    assert refused.status_code == 401
    assert not loaded_before
    assert admitted.status_code == 200
    assert "MCP ready" in caplog.text
