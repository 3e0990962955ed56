"""Reading /execute's body under its cap, and draining an oversized one so the client reads
the 413 instead of a connection reset."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.http.body import (
    BodyHeaders,
    BodyTooLarge,
    ClientGone,
    discard_body,
    is_json_media_type,
    read_body,
)


class FakeReceive:
    """ASGI receive() that hands out the given chunks, then http.disconnect."""

    def __init__(self, *chunks: bytes, disconnect: bool = False) -> None:
        self.messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        if disconnect:
            self.messages[-1]["more_body"] = True
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.messages:
            return self.messages.pop(0)
        return {"type": "http.disconnect"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json; charset="UTF-8"',
        "application/vnd.safe-exec+json",
        "application/problem+json;charset=utf8",
    ],
)
def test_json_media_types_are_accepted(content_type: str) -> None:
    assert is_json_media_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonx",
        "+json",
    ],
)
def test_other_media_types_are_refused(content_type: str | None) -> None:
    assert not is_json_media_type(content_type)


def test_headers_are_parsed_case_insensitively() -> None:
    headers = BodyHeaders.parse(
        [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"12"),
            (b"Expect", b"100-Continue"),
        ]
    )

    assert headers == BodyHeaders("application/json", 12, True)
    assert BodyHeaders.parse([(b"content-length", b"nope")]).content_length is None


def test_a_body_in_chunks_is_joined() -> None:
    assert run(read_body(FakeReceive(b"ab", b"cd", b""), BodyHeaders(), 10, 100)) == b"abcd"


def test_a_body_at_the_cap_is_accepted() -> None:
    assert run(read_body(FakeReceive(b"x" * 10), BodyHeaders(), 10, 100)) == b"x" * 10


def test_an_announced_oversized_body_is_drained_then_refused() -> None:
    receive = FakeReceive(b"x" * 30, b"x" * 30)

    with pytest.raises(BodyTooLarge) as caught:
        run(read_body(receive, BodyHeaders(content_length=60), 10, 100))

    assert caught.value.drained
    assert receive.messages == []


def test_a_streamed_oversized_body_is_drained_then_refused() -> None:
    receive = FakeReceive(b"x" * 8, b"x" * 8, b"x" * 8)

    with pytest.raises(BodyTooLarge) as caught:
        run(read_body(receive, BodyHeaders(), 10, 100))

    assert caught.value.drained
    assert receive.messages == []


def test_a_body_beyond_the_drain_limit_is_not_read() -> None:
    receive = FakeReceive(b"x" * 60)

    with pytest.raises(BodyTooLarge) as caught:
        run(read_body(receive, BodyHeaders(content_length=1000), 10, 100))

    assert not caught.value.drained
    assert receive.calls == 0


def test_a_streamed_body_beyond_the_drain_limit_stops_being_read() -> None:
    receive = FakeReceive(*[b"x" * 40] * 10)

    with pytest.raises(BodyTooLarge) as caught:
        run(read_body(receive, BodyHeaders(), 10, 100))

    assert not caught.value.drained
    assert receive.calls <= 4


def test_a_client_waiting_for_100_continue_is_not_invited() -> None:
    receive = FakeReceive(b"x" * 60)

    assert not run(discard_body(receive, BodyHeaders(expects_continue=True), 100))
    assert receive.calls == 0


def test_a_disconnect_mid_body_is_reported() -> None:
    with pytest.raises(ClientGone):
        run(read_body(FakeReceive(b"ab", disconnect=True), BodyHeaders(), 10, 100))
    assert not run(discard_body(FakeReceive(b"ab", disconnect=True), BodyHeaders(), 100))
