"""Every answer has the contract's failure shape, over real HTTP (uvicorn, real sockets):
unknown paths and methods, wrong media types, duplicated keys, oversized bodies (which ordinary
clients must read as a 413, not a connection reset), plus /metrics and the JSON request log."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import TEST_ENV, HttpAnswer, Server, running_server

SECRET = "n0t-in-the-" + "log"
SCRIPT = f"def main():\n    print({SECRET!r})\n    return 41 + 1\n"
MAX_BODY = int(TEST_ENV["MAX_BODY_BYTES"])
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server (nsjail; these answers do not depend on the runner) logging JSON."""
    with running_server(
        "nsjail", tmp_path_factory.mktemp("http"), {"LOG_FORMAT": "json"}
    ) as server:
        yield server


def failure(answer_body: bytes, code: str) -> dict[str, object]:
    body = json.loads(answer_body)
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    return dict(body)


def header(answer: HttpAnswer, name: str) -> str:
    return {key.lower(): value for key, value in answer.headers.items()}[name.lower()]


def executions(srv: Server) -> float:
    text = srv.request("GET", "/metrics").body.decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "safe_exec_executions"
        for sample in family.samples
        if sample.name == "safe_exec_executions_total"
    )


def raw_request(
    srv: Server, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_an_unknown_path_is_not_found(srv: Server) -> None:
    answer = srv.request("GET", "/nope")

    assert answer.status == 404
    failure(answer.body, "NOT_FOUND")
    assert header(answer, "Content-Type").startswith("application/json")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/execute"), ("POST", "/health"), ("DELETE", "/metrics")]
)
def test_a_wrong_method_is_method_not_allowed(srv: Server, method: str, path: str) -> None:
    answer = srv.request(
        method, path, body=b"{}" if method == "POST" else None, headers=JSON_HEADERS
    )

    assert answer.status == 405
    failure(answer.body, "METHOD_NOT_ALLOWED")
    assert header(answer, "Allow")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_a_body_that_is_not_json_by_type_runs_nothing(srv: Server, content_type: str) -> None:
    before = executions(srv)

    answer = srv.request(
        "POST", "/execute", json.dumps({"script": SCRIPT}).encode(), {"Content-Type": content_type}
    )

    assert answer.status == 415
    failure(answer.body, "UNSUPPORTED_MEDIA_TYPE")
    assert executions(srv) == before


def test_a_body_without_a_content_type_is_unsupported(srv: Server) -> None:
    status, _, body = raw_request(
        srv, "POST", "/execute", json.dumps({"script": SCRIPT}).encode(), {}
    )

    assert status == 415
    failure(body, "UNSUPPORTED_MEDIA_TYPE")


def test_a_plus_json_type_is_accepted(srv: Server) -> None:
    answer = srv.request(
        "POST",
        "/execute",
        json.dumps({"script": SCRIPT}).encode(),
        {"Content-Type": "application/vnd.safe-exec+json; charset=utf-8"},
    )

    assert answer.status == 200, answer.body
    assert answer.json()["result"] == 42


def test_a_duplicated_key_is_an_invalid_request(srv: Server) -> None:
    body = b'{"script": "def main(): return 1", "script": "def main(): return 2"}'

    answer = srv.request("POST", "/execute", body, JSON_HEADERS)

    assert answer.status == 400
    failure(answer.body, "INVALID_REQUEST")


@pytest.mark.parametrize("size", [MAX_BODY + 1, 2 * 1024 * 1024, 20 * 1024 * 1024])
def test_urllib_sending_an_oversized_body_reads_the_413(srv: Server, size: int) -> None:
    # urllib writes the whole body before it reads anything, and asks for Connection: close
    answer = srv.request("POST", "/execute", b"x" * size, JSON_HEADERS)

    assert answer.status == 413
    failure(answer.body, "PAYLOAD_TOO_LARGE")


def test_a_chunked_oversized_body_gets_413_and_the_connection_stays_usable(srv: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        chunks = (b"x" * 65536 for _ in range(2 * MAX_BODY // 65536 + 1))
        conn.request("POST", "/execute", body=chunks, headers=JSON_HEADERS, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413
        failure(response.read(), "PAYLOAD_TOO_LARGE")

        conn.request("GET", "/health")  # same connection: the body was drained
        again = conn.getresponse()
        assert again.status == 200
        again.read()
    finally:
        conn.close()


def test_expect_continue_with_an_oversized_length_is_refused_without_the_body(srv: Server) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(
            b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 999999999\r\nExpect: 100-continue\r\n\r\n"
        )
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)

    assert received.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in received


def test_metrics_use_prometheus_conventions(srv: Server) -> None:
    srv.execute(SCRIPT)
    refused = srv.request("POST", "/execute", b"{}", {"Content-Type": "text/plain"})
    assert refused.status == 415, refused.body

    answer = srv.request("GET", "/metrics")

    assert answer.status == 200
    assert header(answer, "Content-Type").startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(answer.body.decode())}
    assert all(family.documentation for family in families.values())
    ok = [
        s
        for s in families["safe_exec_executions"].samples
        if s.labels == {"outcome": "OK", "runner": "nsjail"}
    ]
    assert ok
    assert ok[0].value >= 1
    assert families["safe_exec_execution_duration_seconds"].type == "histogram"
    assert families["safe_exec_queue_wait_seconds"].type == "histogram"
    for name in (
        "safe_exec_executions_in_flight",
        "safe_exec_queue_depth",
        "safe_exec_rejections",
        "safe_exec_sandbox_failures",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
    ):
        assert name in families, name
    rejected = {
        s.labels["code"]: s.value
        for s in families["safe_exec_rejections"].samples
        if s.name.endswith("_total")
    }
    assert rejected["UNSUPPORTED_MEDIA_TYPE"] >= 1


def log_lines(srv: Server, request_id: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == request_id]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def test_each_request_is_one_json_log_line_with_its_id_and_no_script_or_output(
    srv: Server,
) -> None:
    payload = json.dumps({"script": SCRIPT}).encode()
    answer = srv.request(
        "POST", "/execute", payload, {**JSON_HEADERS, "X-Request-ID": "it-execute-1"}
    )

    assert answer.status == 200
    assert header(answer, "X-Request-ID") == "it-execute-1"
    [line] = log_lines(srv, "it-execute-1")
    assert line["code"] == "OK"
    assert line["status"] == 200
    assert line["runner"] == "nsjail"
    assert line["method"] == "POST"
    assert line["path"] == "/execute"
    assert isinstance(line["duration_ms"], float)
    assert isinstance(line["wall_ms"], float)
    assert isinstance(line["queue_ms"], float)
    assert line["limits"] == answer_limits(srv)
    assert SECRET not in srv.log()


def answer_limits(srv: Server) -> object:
    return srv.health().json()["limits"]


def test_a_request_without_an_id_gets_one_and_errors_are_logged_with_their_code(
    srv: Server,
) -> None:
    answer = srv.request("GET", "/no-such-thing")

    request_id = header(answer, "X-Request-ID")
    assert len(request_id) == 32
    [line] = log_lines(srv, request_id)
    assert line["code"] == "NOT_FOUND"
    assert line["status"] == 404
