"""HTTP/1.1 client connections: keep-alive, pipelining, 100-continue, timeouts.

Per exchange, two tasks share the connection: the application (the only writer)
and a reader that feeds h11 and hands body chunks over a zero-capacity channel,
so a slow upstream stops us reading from the client (backpressure) and a client
EOF cancels the exchange at once. Pipelined requests are read ahead into h11's
buffer up to ``PIPELINE_BUFFER`` bytes and answered in order, one at a time.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from trioproxy.errors import (
    ClientGone,
    ClientTimeout,
    ProxyError,
    error_response,
    from_protocol_error,
)
from trioproxy.inbound.exchange import App
from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import BodyChunk, EndOfMessage, PeerClosed, RequestHead, ResponseHead
from trioproxy.proto.h1 import H1Server
from trioproxy.state import ServerState

log = logging.getLogger("trioproxy.h1")

MAX_RECV = 64 * 1024  # bytes; one read from the client
PIPELINE_BUFFER = 64 * 1024  # bytes of pipelined requests read ahead during a response
CLOSE_GRACE = 1.0  # seconds; bound on shielded cleanup when closing a connection

BodyItem = BodyChunk | ProxyError | None


class H1Exchange:
    protocol = "h1"

    def __init__(
        self, stream: trio.abc.Stream, proto: H1Server, head: RequestHead, state: ServerState
    ) -> None:
        self.head = head
        self.request_id = state.request_ids.next()
        self._stream = stream
        self._proto = proto
        self._state = state
        self._body_send, self._body_recv = trio.open_memory_channel[BodyItem](0)
        self._body_done = False
        self.app_scope = trio.CancelScope()
        self.client_gone = False
        self.aborted = False
        te = head.header(b"transfer-encoding")
        cl = head.header(b"content-length")
        self._has_body = te is not None or (cl is not None and int(cl) > 0)

    @property
    def has_body(self) -> bool:
        return self._has_body

    @property
    def response_started(self) -> bool:
        return self._proto.response_started

    # -- request body -------------------------------------------------------
    async def receive_body(self) -> BodyChunk | None:
        if self._body_done:
            return None
        if self._proto.waiting_for_100_continue:
            await self._write(self._proto.send_informational(100))
        item = await self._body_recv.receive()
        if item is None:
            self._body_done = True
            return None
        if isinstance(item, ProxyError):
            self._body_done = True
            raise item
        return item

    def ack(self, nbytes: int) -> None:
        """HTTP/1.1 backpressure is the zero-capacity channel; nothing to credit."""

    async def read_loop(self) -> None:
        """Feed h11 from the socket until the exchange ends; runs beside the app."""
        proto = self._proto
        while True:
            try:
                ev = proto.next_event()
            except ProtocolError as exc:
                if not self._body_done:
                    await self._body_send.send(from_protocol_error(exc))
                self._client_went_away()
                return
            if isinstance(ev, BodyChunk):
                await self._body_send.send(ev)
                continue
            if isinstance(ev, EndOfMessage):
                await self._body_send.send(None)
                continue
            if isinstance(ev, PeerClosed):
                self._client_went_away()
                return
            # NEED_DATA, or PAUSED with a pipelined request waiting in h11's buffer.
            if proto.buffered_bytes >= PIPELINE_BUFFER:
                await trio.sleep_forever()  # bounded read-ahead; cancelled at exchange end
            try:
                data = await self._stream.receive_some(MAX_RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._client_went_away()
                return
            proto.receive_data(data)

    def _client_went_away(self) -> None:
        self.client_gone = True
        self.app_scope.cancel()

    # -- response -----------------------------------------------------------
    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._proto.send_failed()
            self._client_went_away()
            raise ClientGone("client connection closed while writing") from exc
        except BaseException:
            self._proto.send_failed()  # cancelled mid-write: framing is lost
            raise

    async def send_head(self, head: ResponseHead) -> None:
        if self._state.draining:
            head = ResponseHead(
                head.status, [*head.headers, (b"connection", b"close")], head.reason
            )
        await self._write(self._proto.send_response_head(head))

    async def send_body(self, data: bytes) -> None:
        if data:
            await self._write(self._proto.send_body(data))

    async def end(self) -> None:
        await self._write(self._proto.send_end())

    async def abort(self) -> None:
        """Truncate: the connection closes without the terminating chunk."""
        self.aborted = True
        self._proto.send_failed()


async def serve_h1(
    stream: trio.abc.Stream, state: ServerState, app: App, initial: bytes = b""
) -> None:
    """Serve one HTTP/1.1 connection until it closes. Closes ``stream``.

    Cancellation: the connection is closed (bounded by CLOSE_GRACE)."""
    limits = state.config.limits
    proto = H1Server(max_head_bytes=limits.max_head_bytes, max_headers=limits.max_headers)
    if initial:
        proto.receive_data(initial)
    first = True
    with state.connection("h1"):
        try:
            while True:
                try:
                    head = await _read_head(stream, proto, state, first)
                except ProxyError as exc:
                    await _send_error_and_close(stream, proto, exc, state)
                    return
                if head is None:
                    return
                if not await _run_exchange(stream, proto, state, app, head):
                    return
                if state.draining:
                    return
                first = False
        finally:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                await stream.aclose()


async def _read_head(
    stream: trio.abc.Stream, proto: H1Server, state: ServerState, first: bool
) -> RequestHead | None:
    """The next request head; None to close quietly (EOF, idle expiry, drain)."""
    timeouts = state.config.timeouts
    deadline: float | None = None
    if proto.buffered_bytes:
        deadline = trio.current_time() + timeouts.client_head
    while True:
        try:
            ev = proto.next_event()
        except ProtocolError as exc:
            raise from_protocol_error(exc) from None
        if isinstance(ev, RequestHead):
            return ev
        if isinstance(ev, PeerClosed):
            return None
        try:
            if deadline is None:
                # Waiting for the first byte of a request: drain may close us.
                wait = timeouts.client_head if first else timeouts.keepalive_idle
                with state.idle() as idle:
                    idle.deadline = trio.current_time() + wait
                    data = await stream.receive_some(MAX_RECV)
                if idle.cancelled_caught:
                    if first and not state.draining:
                        raise ClientTimeout(
                            f"no request received within {timeouts.client_head:g} s"
                        )
                    return None
                deadline = trio.current_time() + timeouts.client_head
            else:
                with trio.move_on_at(deadline) as scope:
                    data = await stream.receive_some(MAX_RECV)
                if scope.cancelled_caught:
                    raise ClientTimeout(
                        f"request head not completed within {timeouts.client_head:g} s"
                    )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if not data:
            return None  # EOF, possibly mid-head: nobody left to answer
        proto.receive_data(data)


async def _run_exchange(
    stream: trio.abc.Stream, proto: H1Server, state: ServerState, app: App, head: RequestHead
) -> bool:
    """Run the application for one request; True if the connection may be reused."""
    ex = H1Exchange(stream, proto, head, state)
    with state.exchange():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ex.read_loop)
            with ex.app_scope, contextlib.suppress(ClientGone):
                await app(ex)
            nursery.cancel_scope.cancel()
    if ex.client_gone or ex.aborted:
        return False
    return proto.start_next_cycle()


async def _send_error_and_close(
    stream: trio.abc.Stream, proto: H1Server, exc: ProxyError, state: ServerState
) -> None:
    if not proto.can_respond:
        return
    head, body = error_response(exc, state.request_ids.next())
    head = ResponseHead(head.status, [*head.headers, (b"connection", b"close")])
    try:
        data = proto.send_response_head(head) + proto.send_body(body) + proto.send_end()
    except Exception:  # h11 refuses (e.g. the client's framing is already broken)
        log.debug("could not frame error response", exc_info=True)
        return
    with trio.move_on_after(CLOSE_GRACE):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(data)
