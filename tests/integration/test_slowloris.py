"""Slow clients cannot hold the server's connections: a request head (and body) has a deadline,
and connections past MAX_CONNECTIONS are refused with the contract's BUSY at accept time.

Attacks run over loopback only: against uvicorn with the service's protocols and a trivial app
in this process (both of uvicorn's HTTP parsers), and against the real server."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from entrypoints.serve import (
    ConnectionLimits,
    H11WithDeadlines,
    HttpToolsWithDeadlines,
    protocol_class,
)
from tests.integration.server import Server, free_port, running_server

WAIT_S = 15  # a bound on every wait below, far above the deadlines under test
PARTIAL_HEAD = b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers its length: enough HTTP to hold a connection open."""
    assert scope["type"] == "http"
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = json.dumps({"received": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def in_process_server(
    base: type[HttpToolsWithDeadlines] | type[H11WithDeadlines], limits: ConnectionLimits
) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        echo_app,
        host="127.0.0.1",
        port=port,
        http=protocol_class(base, limits),
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)  # no signal handlers off main
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Waits (bounded) for the server's side: True once it closed (EOF or reset)."""
    sock.settimeout(WAIT_S)
    try:
        while data := sock.recv(65536):
            del data  # an answer written before closing (none is expected here) is skipped
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_open(sock: socket.socket) -> bool:
    """True when nothing has arrived and the server has not closed (checked without waiting)."""
    sock.setblocking(False)
    try:
        return not sock.recv(1)  # data or b"" (EOF): not an idle open connection
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.setblocking(True)


def http_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Reads one whole answer with a Content-Length."""
    sock.settimeout(WAIT_S)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def get(port: int, path: str = "/health") -> tuple[int, dict[str, str], bytes]:
    with connect(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()) as sock:
        return http_answer(sock)


PARSERS = [
    pytest.param(HttpToolsWithDeadlines, id="httptools"),
    pytest.param(H11WithDeadlines, id="h11"),
]
SHORT = ConnectionLimits(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=50)


@pytest.mark.parametrize("base", PARSERS)
def test_partial_and_trickled_heads_are_closed(base: Any) -> None:
    with in_process_server(base, SHORT) as port:
        silent = connect(port)
        partial = connect(port, PARTIAL_HEAD)
        trickled = connect(port, b"GET /health HTTP/1.1\r\n")
        closed_while_trickling = False
        for _ in range(int(WAIT_S / 0.1)):  # one header byte per 0.1 s never completes a head
            try:
                trickled.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed_while_trickling = True
                break
            time.sleep(0.1)

        assert closed_while_trickling
        assert closed_by_server(silent)
        assert closed_by_server(partial)
        assert get(port)[0] == 200  # the server itself is fine


@pytest.mark.parametrize("base", PARSERS)
def test_a_stalled_body_is_closed_and_a_whole_one_is_not(base: Any) -> None:
    head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with in_process_server(base, SHORT) as port:
        stalled = connect(port, head + b"x" * 10)
        whole = connect(port, head + b"x" * 100)

        assert closed_by_server(stalled)
        status, _headers, body = http_answer(whole)
        assert (status, json.loads(body)) == (200, {"received": 100})


@pytest.mark.parametrize("base", PARSERS)
def test_a_keep_alive_connection_gets_a_new_deadline_per_request(base: Any) -> None:
    limits = ConnectionLimits(header_timeout_s=2, body_timeout_s=2, max_connections=50)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with in_process_server(base, limits) as port, connect(port) as sock:
        for _ in range(3):  # requests spanning more than one deadline on one connection
            sock.sendall(request)
            assert http_answer(sock)[0] == 200
            time.sleep(0.8)
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # then a head that never ends

        assert closed_by_server(sock)


@pytest.mark.parametrize("base", PARSERS)
def test_connections_past_the_bound_get_busy_at_once(base: Any) -> None:
    limits = ConnectionLimits(header_timeout_s=60, body_timeout_s=60, max_connections=8)
    with in_process_server(base, limits) as port:
        held = [connect(port, PARTIAL_HEAD) for _ in range(8)]
        refused = [connect(port) for _ in range(5)]  # they send nothing: answered unasked
        answers = [http_answer(sock) for sock in refused]

        for status, headers, body in answers:
            assert status == 429
            assert headers["retry-after"] == "1"
            assert headers["connection"] == "close"
            payload = json.loads(body)
            assert payload["error"] == "BUSY"
            assert "8 connections" in payload["message"]
        assert all(closed_by_server(sock) for sock in refused)
        assert all(still_open(sock) for sock in held)

        held.pop().close()  # a freed place is taken by the next connection
        for _ in range(int(WAIT_S / 0.05)):
            status = get(port)[0]
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200
        for sock in held + refused:
            sock.close()


# The real server: its protocol is httptools (uvicorn[standard]), the default above.


def service_fds(server: Server) -> int:
    return len(os.listdir(f"/proc/{server.service_pid()}/fd"))


def test_the_real_server_closes_slowloris_and_answers_health_meanwhile(tmp_path: Path) -> None:
    env = {"HEADER_TIMEOUT_S": "1", "BODY_TIMEOUT_S": "1", "MAX_CONNECTIONS": "100"}
    with running_server("nsjail-warm", tmp_path, env) as server:
        attack = [connect(server.port, PARTIAL_HEAD) for _ in range(60)]
        stalled_body = connect(
            server.port,
            b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{",
        )
        health_during = [server.health().status for _ in range(5)]

        closed = [closed_by_server(sock) for sock in attack]
        assert health_during == [200] * 5
        assert closed.count(True) == 60
        assert closed_by_server(stalled_body)
        assert server.execute("def main():\n    return 1\n").json()["result"] == 1
        assert "closed at HEADER_TIMEOUT_S" in server.log()  # the operator is told, once
        for sock in [*attack, stalled_body]:
            sock.close()


def test_the_real_server_holds_its_connection_bound(tmp_path: Path) -> None:
    env = {"HEADER_TIMEOUT_S": "60", "MAX_CONNECTIONS": "20"}
    with running_server("nsjail-warm", tmp_path, env) as server:
        before = service_fds(server)
        held = [connect(server.port, PARTIAL_HEAD) for _ in range(20)]
        refused = [connect(server.port) for _ in range(100)]
        answers = [http_answer(sock) for sock in refused]
        during = service_fds(server)

        assert [status for status, _h, _b in answers] == [429] * 100
        assert {json.loads(body)["error"] for _s, _h, body in answers} == {"BUSY"}
        assert all(still_open(sock) for sock in held)
        # 20 held connections and nothing of the 100 refused ones (a few fds of slack for
        # the service's own, e.g. a warm pool refilling).
        assert during - before <= 20 + 5, (before, during)
        assert "refused at MAX_CONNECTIONS" in server.log()
        for sock in held + refused:
            sock.close()
        for _ in range(int(WAIT_S / 0.05)):
            with contextlib.suppress(OSError):
                if server.health().status == 200:
                    break
            time.sleep(0.05)
        assert server.health().status == 200
