"""One log line per HTTP request, and the request id.

A plain ASGI wrapper around the whole application (routing included, so unknown paths and
methods are logged too). The id comes from the client's `X-Request-ID` when it is a sane
token, else a new one is made; either way the answer carries it back in `X-Request-ID`."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from adapters import request_record

REQUEST_ID_HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER and SANE_REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return os.urandom(16).hex()


class RequestLog:
    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self._app = app
        self._log = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope["headers"])
        rid_header = (REQUEST_ID_HEADER, rid.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        record, token = request_record.begin(rid)
        try:
            await self._app(scope, receive, send_with_id)
        finally:
            request_record.end(token)
            code = record.code or ("OK" if 0 < status < 400 else None)
            self._log.info(
                "request",
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "code": code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    **record.fields,
                },
            )
