"""HTTP/1.1 client connections: keep-alive, pipelining, 100-continue, timeouts.

The application task is the only writer, and reads the request body itself
straight from the socket (so a slow upstream stops us reading from the client:
backpressure, with no buffer in between). Once the request is complete a
watcher task reads ahead, so that a client EOF cancels the exchange at once and
pipelined requests wait in h11's buffer (at most ``PIPELINE_BUFFER`` bytes) to
be answered in order, one at a time.
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
from trioproxy.proto.events import (
    BodyChunk,
    EndOfMessage,
    NeedData,
    PeerClosed,
    RequestHead,
    ResponseHead,
)
from trioproxy.proto.h1 import H1Server
from trioproxy.state import ServerState

log = logging.getLogger("trioproxy.h1")

MAX_RECV = 256 * 1024  # bytes; one read from the client (fewer, larger reads for big bodies)
PIPELINE_BUFFER = 64 * 1024  # bytes of pipelined requests read ahead during a response
CLOSE_GRACE = 1.0  # seconds; bound on shielded cleanup when closing a connection
# Lingering close (as nginx does): closing with unread request bytes makes the
# kernel send RST, which can destroy the response we just wrote (a 413, say).
# So we half-close and read and discard for a while first.
LINGER_TIME = 2.0  # seconds
LINGER_BYTES = 64 * 1024 * 1024  # bytes discarded at most
# An answer sent before the request body arrived (a 401, the proxy's own 429,
# a 413 by Content-Length) keeps the connection when at most this much body is
# still to come: it is read and discarded after the response. A larger or
# unknown remainder gets `connection: close` instead (RFC 9112 9.6), so the
# client never writes its next request onto a connection about to close.
EARLY_DISCARD = 64 * 1024  # bytes


class H1Exchange:
    protocol = "h1"

    def __init__(
        self,
        stream: trio.abc.Stream,
        proto: H1Server,
        head: RequestHead,
        state: ServerState,
        nursery: trio.Nursery,
    ) -> None:
        self.head = head
        self.request_id = state.request_ids.next()
        self._stream = stream
        self._proto = proto
        self._state = state
        self._nursery = nursery
        self._body_done = False
        # A sized response's head, held back to go out with the first body bytes
        # (one write); until then nothing reached the client, and the
        # application may still answer differently (a retry, a 502).
        self._pending_head: ResponseHead | None = None
        self.app_scope = trio.CancelScope()
        self.client_gone = False
        self.aborted = False
        te = head.header(b"transfer-encoding")
        cl = head.header(b"content-length")
        self._has_body = te is not None or (cl is not None and int(cl) > 0)
        self._declared = int(cl) if cl is not None and te is None else None
        self._received = 0  # request body bytes read so far
        self._discard_rest = False  # an early answer: discard the rest, keep the connection
        # Without a body there is nothing to read (h11's EndOfMessage is
        # consumed by the watcher, or by finish_request at the end).
        self._body_done = not self._has_body
        self._watching = False

    @property
    def has_body(self) -> bool:
        return self._has_body

    @property
    def response_started(self) -> bool:
        """Response bytes were handed to the client's connection."""
        return self._proto.response_started

    # -- request body -------------------------------------------------------
    async def receive_body(self) -> BodyChunk | None:
        """Read the body straight from the socket (the app is the only reader
        until the body ends; then the watcher takes over)."""
        if self._body_done:
            return None
        proto = self._proto
        if proto.waiting_for_100_continue:
            await self._write(proto.send_informational(100))
        while True:
            try:
                ev = proto.next_event()
            except ProtocolError as exc:
                self._body_done = True
                raise from_protocol_error(exc) from None
            if isinstance(ev, BodyChunk):
                self._received += len(ev.data)
                return ev
            if isinstance(ev, EndOfMessage):
                self._body_done = True
                return None
            if isinstance(ev, PeerClosed):
                self._client_went_away()
                raise ClientGone("client closed the connection mid-body")
            data = await self._receive()
            if not data:
                self._client_went_away()
                raise ClientGone("client closed the connection mid-body")
            proto.receive_data(data)

    def ack(self, nbytes: int) -> None:
        """HTTP/1.1 backpressure is simply not reading; nothing to credit."""

    async def _receive(self) -> bytes | bytearray:
        try:
            return await self._stream.receive_some(MAX_RECV)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    def watch_disconnect(self) -> None:
        """Called by the application before it waits on something slow (the
        upstream): from now on a client EOF cancels the exchange. Only after
        the request body was read (the watcher then owns the socket's reads)."""
        if not self._watching and self._body_done:
            self._watching = True
            self._nursery.start_soon(self._watch)

    async def finish_request(self) -> bool:
        """After the response: consume what is left of the request (a
        body-less request's end, a small unread body), so the connection can
        be reused. Reads from the socket only for the small remainder of an
        early answer's body, each read within the body idle timeout. False
        if the request cannot be completed: the connection closes."""
        proto = self._proto
        idle = self._state.config.timeouts.client_body_idle
        discarded = 0
        while proto.request_has_body:
            try:
                ev = proto.next_event()
            except ProtocolError:
                return False
            if isinstance(ev, BodyChunk):
                discarded += len(ev.data)
                if discarded > EARLY_DISCARD:
                    return False
            elif isinstance(ev, NeedData) and self._discard_rest:
                with trio.move_on_after(idle):
                    data = await self._receive()
                    if data:
                        proto.receive_data(data)
                        continue
                return False
            elif not isinstance(ev, EndOfMessage):
                return False
        return True

    def _closing(self, head: ResponseHead) -> ResponseHead:
        """The head as sent: `connection: close` while draining, or when an
        answer goes out before the request body arrived and the rest is too
        large (or of unknown size) to read and discard afterwards."""
        close = self._state.draining
        if not self._body_done and not close:
            remaining = None if self._declared is None else self._declared - self._received
            if (
                remaining is not None
                and remaining <= EARLY_DISCARD
                and not self._proto.waiting_for_100_continue  # it will not send the body
            ):
                self._discard_rest = True
            else:
                close = True
        if not close or head.header(b"connection") == b"close":
            return head
        return ResponseHead(head.status, [*head.headers, (b"connection", b"close")], head.reason)

    async def _watch(self) -> None:
        """After the request: read ahead (pipelined requests, bounded) and
        notice a client that goes away, which cancels the exchange."""
        proto = self._proto
        while True:
            try:
                ev = proto.next_event()
            except ProtocolError:
                return  # garbage after the request: answered when its turn comes
            if isinstance(ev, EndOfMessage):
                continue  # a body-less request's end
            if isinstance(ev, PeerClosed):
                self._client_went_away()
                return
            if proto.buffered_bytes >= PIPELINE_BUFFER:
                await trio.sleep_forever()  # bounded read-ahead; cancelled at exchange end
            data = await self._receive()
            if not data:
                self._client_went_away()
                return
            proto.receive_data(data)

    def _client_went_away(self) -> None:
        self.client_gone = True
        self.app_scope.cancel()

    # -- response -----------------------------------------------------------
    def _head_bytes(self) -> bytes:
        """The held-back head, now committed to h11 (empty if none)."""
        head = self._pending_head
        if head is None:
            return b""
        self._pending_head = None
        return self._proto.send_response_head(head)

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
        head = self._closing(head)
        if head.header(b"content-length") is not None:
            self._pending_head = head  # a sized body follows: one write for both
            return
        await self._write(self._proto.send_response_head(head))  # streaming: now

    async def send_body(self, data: bytes) -> None:
        if data:
            head = self._head_bytes()
            await self._write(head + self._proto.send_body(data))

    async def end(self) -> None:
        head = self._head_bytes()
        await self._write(head + self._proto.send_end())

    async def abort(self) -> None:
        """Truncate: the connection closes without the terminating chunk
        (or, if only a held-back head was pending, with nothing at all)."""
        self.aborted = True
        self._pending_head = None
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
                # While draining, responses say `connection: close` and h11 then
                # ends the cycle here; a response that went out just before the
                # drain did not say so, and the client may already be sending
                # its next request: that one is answered (with the close).
                if not await _run_exchange(stream, proto, state, app, head):
                    if proto.request_has_body and not proto.response_failed:
                        await _linger(stream)
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
                with state.idle(trio.current_time() + wait) as idle:
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
    with state.exchange("h1"):
        async with trio.open_nursery() as nursery:
            ex = H1Exchange(stream, proto, head, state, nursery)
            with ex.app_scope, contextlib.suppress(ClientGone):
                await app(ex)
            nursery.cancel_scope.cancel()
    if ex.client_gone or ex.aborted or not await ex.finish_request():
        return False
    return proto.start_next_cycle()


async def _linger(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(LINGER_TIME):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            discarded = 0
            while discarded < LINGER_BYTES:
                data = await stream.receive_some(MAX_RECV)
                if not data:
                    return
                discarded += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _send_error_and_close(
    stream: trio.abc.Stream, proto: H1Server, exc: ProxyError, state: ServerState
) -> None:
    if not proto.can_respond:
        return
    head, body = error_response(exc, state.request_ids.next())
    head = ResponseHead(head.status, [*head.headers, (b"connection", b"close")])
    data = proto.whole_response(head, body)
    if data is None:
        log.debug("h11 could not frame an error response in state %r", proto)
        return
    with trio.move_on_after(CLOSE_GRACE):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(data)
