"""Serving the app with uvicorn, with the limits uvicorn lacks and the documented shutdown.

Connections: uvicorn never closes a connection whose request head never ends (slowloris), nor
one whose body trickles. Each connection here gets a deadline: its request head must be
complete within HEADER_TIMEOUT_S of the connection opening or of the previous response, and its
body within BODY_TIMEOUT_S of the head; past it the connection is closed. At most
MAX_CONNECTIONS are open at once: one more is answered at accept time, before any byte of it is
read, with a pre-built `429 {"error": "BUSY", ...}` and closed (uvicorn's own
`limit_concurrency` answers a plain-text 503 and only after reading the head). BUSY, not
UNAVAILABLE: the instance is full, not down, and clients already retry BUSY after Retry-After.

Shutdown: uvicorn stops listening as soon as it is signalled, before the app's shutdown runs.
Here the first SIGTERM or SIGINT starts a drain instead: the listener stays open, /health
answers 503 "shutting down", new executions answer 503 UNAVAILABLE, running ones finish (up
to SHUTDOWN_GRACE_S); then uvicorn stops as usual. A second signal stops at once (running
sandboxes are killed)."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import math
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, ClassVar

import attrs
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from adapters.http.render import rejection
from adapters.settings import Settings
from domain.outcome import ErrorCode
from entrypoints.app import Drain, create_app
from entrypoints.container import Container

log = logging.getLogger("safe_exec.serve")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
RETRY_AFTER_S = 1


def refusal_answer(max_connections: int) -> bytes:
    """The whole HTTP answer to a connection over the bound: the contract's BUSY shape."""
    status, body, headers = rejection(
        ErrorCode.BUSY,
        f"The server has its maximum of {max_connections} connections open; retry shortly.",
        retry_after_s=RETRY_AFTER_S,
    )
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Tally:
    """Connections closed or refused by the limits, logged at most once per interval: one
    line per connection would let an attack flood the log."""

    def __init__(
        self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self.counts: Counter[str] = Counter()
        self._clock = clock
        self._logged_at = -math.inf

    def add(self, what: str) -> None:
        self.counts[what] += 1
        now = self._clock()
        if now - self._logged_at >= self.interval_s:
            self._logged_at = now
            summary = ", ".join(f"{count} {name}" for name, count in sorted(self.counts.items()))
            log.warning("connections cut by the HTTP limits since the last report: %s", summary)
            self.counts.clear()


TALLY = Tally()


@attrs.frozen
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_timeout_s, settings.body_timeout_s, settings.max_connections)


class _Deadlines(asyncio.Protocol):
    """Mixed into one of uvicorn's HTTP protocols (the attributes below are theirs)."""

    limits: ClassVar[ConnectionLimits]
    refusal: ClassVar[bytes]
    connections: Any
    cycle: Any
    transport: Any
    loop: Any

    _deadline: asyncio.TimerHandle | None = None
    _refused = False

    def connection_made(self, transport: Any) -> None:
        # Refused before uvicorn sees it: no parser work, no task, and the descriptor is
        # released as soon as the answer is written.
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            TALLY.add("refused at MAX_CONNECTIONS")
            transport.write(self.refusal)
            transport.close()
            return
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def _phase(self) -> str:
        """ "head" while a request head is awaited, "body" while the running request's body
        is, "app" once the request is read (the app's own limits apply then)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return "head"
        queued = any(waiting is cycle for waiting, _app in getattr(self, "pipeline", ()))
        return "body" if cycle.more_body and not queued else "app"

    def _arm(self) -> None:
        """Starts the deadline of the phase the connection is in now."""
        self._disarm()
        if self.transport is None or self.transport.is_closing():
            return
        phase = self._phase()
        if phase == "head":
            delay = self.limits.header_timeout_s
        elif phase == "body":
            delay = self.limits.body_timeout_s
        else:
            return
        self._deadline = self.loop.call_later(delay, self._expire, phase, self.cycle)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, phase: str, cycle: Any) -> None:
        self._deadline = None
        if self._phase() != phase or self.cycle is not cycle or self.transport.is_closing():
            return  # the phase ended in time (a later phase has armed its own deadline)
        TALLY.add(f"closed at {'HEADER' if phase == 'head' else 'BODY'}_TIMEOUT_S")
        self.transport.close()


class HttpToolsWithDeadlines(_Deadlines, HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()


class H11WithDeadlines(_Deadlines, H11Protocol):
    def handle_events(self) -> None:
        # h11 yields at most one request per call (it pauses until the response is sent).
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:
            self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()


def protocol_class(
    base: type[HttpToolsWithDeadlines] | type[H11WithDeadlines], limits: ConnectionLimits
) -> type[asyncio.Protocol]:
    """`base` bound to `limits` (uvicorn builds protocols from the class and its Config)."""
    namespace = {"limits": limits, "refusal": refusal_answer(limits.max_connections)}
    return type(base.__name__, (base,), namespace)


class DrainingServer(uvicorn.Server):
    """uvicorn's Server whose first signal drains (see the module's docstring)."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace_s = grace_s
        self._draining: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after its shutdown, so a drained stop would end with
        # "killed by SIGTERM"; a completed drain is a clean exit (status 0) here.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig)
        try:
            yield
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stop(sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """First call: drain, then stop. Later calls: stop now."""
        if self._draining is None and not self.should_exit:
            log.info("%s: draining (up to %.1f s)", signal.Signals(sig).name, self._grace_s)
            self._draining = asyncio.ensure_future(self._drain_then_exit())
            return
        log.warning("%s again: stopping now", signal.Signals(sig).name)
        self._drain.begin()
        self._drain.hurry()
        self.should_exit = True
        self.force_exit = True

    async def _drain_then_exit(self) -> None:
        started = time.monotonic()
        self._drain.begin()
        try:
            await asyncio.wait_for(self._drain.idle(), self._grace_s)
        except TimeoutError:
            log.warning("running executions outlived SHUTDOWN_GRACE_S; stopping them")
            self._drain.hurry()  # the app's own shutdown must not wait a second grace
        # Executions are over; their answers get what is left of the grace to be written.
        left = self._grace_s - (time.monotonic() - started)
        self.config.timeout_graceful_shutdown = max(1, math.ceil(left))
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        # A forced stop makes uvicorn skip the app's shutdown, which ends the sandboxes.
        app_stopped = getattr(self.lifespan, "shutdown_event", None)
        if self.force_exit and app_stopped is not None and not app_stopped.is_set():
            await self.lifespan.shutdown()


def make_server(
    settings: Settings,
    container: Container,
    http: type[HttpToolsWithDeadlines] | type[H11WithDeadlines] = HttpToolsWithDeadlines,
) -> DrainingServer:
    """The server `serve` runs, built but not started."""
    app = create_app(container)
    drain = app.state.drain
    assert isinstance(drain, Drain)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(http, ConnectionLimits.of(settings)),
        ws="none",  # no route upgrades; an Upgrade header gets an ordinary answer
        log_level="info",
        access_log=False,  # the app logs one line per request itself
        log_config=None,  # uvicorn's loggers propagate to configure_logging's handler
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
    )
    return DrainingServer(config, drain, settings.shutdown_grace_s)


def serve(settings: Settings, container: Container) -> int:
    """Serves until signalled; the exit status (0 after a drain or a forced stop)."""
    server = make_server(settings, container)
    server.run()
    return 0 if server.started else 1
