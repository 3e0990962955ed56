"""The pieces of entrypoints.serve that need no socket: the answer at the connection bound and
the log of connections the HTTP limits cut."""

from __future__ import annotations

import json
import logging

import pytest

from entrypoints.serve import Tally, refusal_answer


def test_the_answer_at_the_connection_bound_is_the_contracts_busy() -> None:
    head, _, body = refusal_answer(64).partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)

    assert status_line == "HTTP/1.1 429 Too Many Requests"
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["Retry-After"] == "1"
    assert int(headers["content-length"]) == len(body)
    payload = json.loads(body)
    assert (payload["error"], payload["retry_after_s"]) == ("BUSY", 1)
    assert "64 connections" in payload["message"]


def test_cut_connections_are_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    tally = Tally(interval_s=60, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="safe_exec.serve")

    tally.add("closed at HEADER_TIMEOUT_S")  # the first is reported at once
    for _ in range(500):  # an attack's worth within the interval: no line
        tally.add("closed at HEADER_TIMEOUT_S")
    tally.add("refused at MAX_CONNECTIONS")
    now[0] += 60
    tally.add("refused at MAX_CONNECTIONS")  # the next one after the interval reports them all

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].endswith(": 1 closed at HEADER_TIMEOUT_S")
    assert messages[1].endswith(": 500 closed at HEADER_TIMEOUT_S, 2 refused at MAX_CONNECTIONS")
