"""Reading a request body under a cap, straight from ASGI `receive`.

A body over the cap is refused, but what the client already sends is read and discarded up to
`drain_limit` bytes before the answer goes out: a client that writes its whole body before
reading (Python's urllib) would otherwise see the connection reset instead of the 413. Bodies
announced beyond the drain limit, and bodies behind `Expect: 100-continue` that were not yet
invited, are not read at all; the answer then closes the connection."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from litestar.types import Receive

MIB = 1024 * 1024
DRAIN_LIMIT_BYTES = 64 * MIB


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


class BodyTooLarge(Exception):
    """The body exceeds the cap; `drained` says whether all of it was read (keep-alive is
    possible) or the connection must be closed."""

    def __init__(self, drained: bool) -> None:
        super().__init__("body too large")
        self.drained = drained


@attrs.frozen
class BodyHeaders:
    content_type: str | None = None
    content_length: int | None = None
    expects_continue: bool = False

    @classmethod
    def parse(cls, raw: Iterable[tuple[bytes, bytes]]) -> BodyHeaders:
        content_type = content_length = None
        expects_continue = False
        for name, value in raw:
            lowered = name.lower()
            if lowered == b"content-type":
                content_type = value.decode("latin-1")
            elif lowered == b"content-length":
                content_length = int(value) if value.strip().isdigit() else None
            elif lowered == b"expect":
                expects_continue = value.strip().lower() == b"100-continue"
        return cls(content_type, content_length, expects_continue)


def is_json_media_type(content_type: str | None) -> bool:
    """application/json or any `+json` type, with no charset other than UTF-8."""
    if not content_type:
        return False
    media, *params = (part.strip().lower() for part in content_type.split(";"))
    if media != "application/json" and not ("/" in media and media.endswith("+json")):
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return False
    return True


async def discard_body(
    receive: Receive, headers: BodyHeaders, drain_limit: int, received: int = 0
) -> bool:
    """Read and drop the rest of the body; True when it ended within `drain_limit` bytes."""
    if received == 0 and headers.expects_continue:
        return False  # the client waits for an invitation: do not send one
    if headers.content_length is not None and headers.content_length > drain_limit:
        return False
    while received <= drain_limit:
        message = await receive()
        if message["type"] != "http.request":
            return False
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return received <= drain_limit
    return False


async def read_body(receive: Receive, headers: BodyHeaders, cap: int, drain_limit: int) -> bytes:
    """The whole body, at most `cap` bytes; else BodyTooLarge (after draining what is bounded)."""
    if headers.content_length is not None and headers.content_length > cap:
        raise BodyTooLarge(await discard_body(receive, headers, drain_limit))
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        received += len(chunk)
        more = message.get("more_body", False)
        if received > cap:
            drained = not more or await discard_body(receive, headers, drain_limit, received)
            raise BodyTooLarge(drained)
        if not more:
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)
