"""HTTP/1.1 client connections: keep-alive, pipelining, 100-continue, timeouts.

One task per connection does everything: it reads the request head, runs
the application for it, and the application reads the request body straight
from the socket through the exchange (so a slow upstream stops us reading
from the client: backpressure, with no buffer in between). No task is spawned
per request. While the exchange waits on the upstream, the watchdog peeks at
the client's socket now and then, and a client that went away cancels the
exchange (on connections that cannot be peeked, TLS or memory streams, a
watcher task reads ahead instead, as it must to see the EOF). Pipelined
requests wait in the socket and are answered in order, one at a time.
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
from trioproxy.inbound.context import ConnContext
from trioproxy.inbound.exchange import App
from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import (
    BodyChunk,
    EndOfMessage,
    Http,
    NeedData,
    PeerClosed,
    RequestHead,
    ResponseHead,
)
from trioproxy.proto.h1 import H1Server
from trioproxy.transport.byteio import ByteIO
from trioproxy.transport.watchdog import Watch

log = logging.getLogger("trioproxy.h1")

PIPELINE_BUFFER = 64 * 1024  # bytes of pipelined requests a watcher task reads ahead
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
    protocol = Http.H1
    __slots__ = (
        "_body_done",
        "_conn",
        "_declared",
        "_discard_rest",
        "_has_body",
        "_pending_head",
        "_received",
        "_watch",
        "aborted",
        "app_scope",
        "client_gone",
        "head",
        "request_id",
    )

    def __init__(self, conn: H1Connection, head: RequestHead) -> None:
        self.head = head
        self.request_id = conn.ctx.shared.request_ids.next()
        self._conn = conn
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
        # consumed by finish_request at the end).
        self._body_done = not self._has_body
        self._watch: Watch | None = None

    @property
    def peer(self) -> str:
        return self._conn.ctx.peer

    @property
    def has_body(self) -> bool:
        return self._has_body

    @property
    def response_started(self) -> bool:
        """Response bytes were handed to the client's connection."""
        return self._conn.proto.response_started

    # -- request body -------------------------------------------------------
    async def receive_body(self) -> BodyChunk | None:
        """Read the body straight from the socket (the application is the
        only reader until the body ends). No byte for the body idle timeout:
        ClientTimeout (408)."""
        if self._body_done:
            return None
        conn = self._conn
        proto = conn.proto
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
            idle = conn.ctx.timeouts.client_body_idle
            with conn.ctx.shared.watchdog.guard(idle) as guard:
                data = await conn.io.receive()
            if guard.expired:
                raise ClientTimeout(f"no request body data received for {idle:g} s")
            if not data:
                self._client_went_away()
                raise ClientGone("client closed the connection mid-body")
            proto.receive_data(data)

    def ack(self, nbytes: int) -> None:
        """HTTP/1.1 backpressure is simply not reading; nothing to credit."""

    def watch_disconnect(self) -> None:
        """Called by the application before it waits on something slow (the
        upstream), once the body was read: from now on a client that goes
        away cancels the exchange."""
        if self._watch is not None or not self._body_done:
            return
        conn = self._conn
        if not conn.io.can_peek:  # TLS, memory streams: read ahead instead
            conn.start_watcher(self)
            return
        self._watch = conn.ctx.shared.watchdog.watch(conn.io.peer_gone, self._client_went_away)

    def end_watch(self) -> None:
        if self._watch is not None:
            self._conn.ctx.shared.watchdog.unwatch(self._watch)
            self._watch = None

    async def finish_request(self) -> bool:
        """After the response: consume what is left of the request (a
        body-less request's end, a small unread body), so the connection can
        be reused. Reads from the socket only for the small remainder of an
        early answer's body, each read within the body idle timeout. False
        if the request cannot be completed: the connection closes."""
        conn = self._conn
        proto = conn.proto
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
                with conn.ctx.shared.watchdog.guard(conn.ctx.timeouts.client_body_idle):
                    data = await conn.io.receive()
                    if data:
                        proto.receive_data(data)
                        continue
                return False
            elif not isinstance(ev, EndOfMessage):
                return False
        return True

    def _client_went_away(self) -> None:
        self.client_gone = True
        self.app_scope.cancel()

    # -- response -----------------------------------------------------------
    def _closing(self, head: ResponseHead) -> ResponseHead:
        """The head as sent: `connection: close` while draining, or when an
        answer goes out before the request body arrived and the rest is too
        large (or of unknown size) to read and discard afterwards."""
        conn = self._conn
        close = conn.ctx.shared.draining
        if not self._body_done and not close:
            remaining = None if self._declared is None else self._declared - self._received
            if (
                remaining is not None
                and remaining <= EARLY_DISCARD
                and not conn.proto.waiting_for_100_continue  # it will not send the body
            ):
                self._discard_rest = True
            else:
                close = True
        if not close or head.header(b"connection") == b"close":
            return head
        return ResponseHead(head.status, [*head.headers, (b"connection", b"close")], head.reason)

    def _head_bytes(self) -> bytes:
        """The held-back head, now committed to h11 (empty if none)."""
        head = self._pending_head
        if head is None:
            return b""
        self._pending_head = None
        return self._conn.proto.send_response_head(head)

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self._conn.io.send_all(data)
        except trio.BrokenResourceError as exc:
            self._conn.proto.send_failed()
            self._client_went_away()
            raise ClientGone("client connection closed while writing") from exc
        except BaseException:
            self._conn.proto.send_failed()  # cancelled mid-write: framing is lost
            raise

    async def send_head(self, head: ResponseHead) -> None:
        head = self._closing(head)
        if head.header(b"content-length") is not None:
            self._pending_head = head  # a sized body follows: one write for both
            return
        await self._write(self._conn.proto.send_response_head(head))  # streaming: now

    async def send_body(self, data: bytes) -> None:
        if data:
            head = self._head_bytes()
            await self._write(head + self._conn.proto.send_body(data))

    async def end(self) -> None:
        head = self._head_bytes()
        await self._write(head + self._conn.proto.send_end())

    async def abort(self) -> None:
        """Truncate: the connection closes without the terminating chunk
        (or, if only a held-back head was pending, with nothing at all)."""
        self.aborted = True
        self._pending_head = None
        self._conn.proto.send_failed()


class H1Connection:
    """One client connection: its I/O, its h11 state, and its loop."""

    __slots__ = ("_nursery", "_watcher_done", "_watcher_scope", "app", "ctx", "io", "proto")

    def __init__(self, io: ByteIO, ctx: ConnContext, app: App) -> None:
        self.io = io
        self.ctx = ctx
        self.app = app
        limits = ctx.limits
        self.proto = H1Server(max_head_bytes=limits.max_head_bytes, max_headers=limits.max_headers)
        self._nursery: trio.Nursery | None = None
        self._watcher_scope: trio.CancelScope | None = None
        self._watcher_done = trio.Event()

    def __repr__(self) -> str:
        return f"<H1Connection {self.ctx.peer} {self.proto!r} {self.io!r}>"

    async def serve(self, initial: bytes) -> None:
        """Serve until the connection closes; closes ``io``.

        Cancellation: the connection is closed (bounded by CLOSE_GRACE)."""
        if initial:
            self.proto.receive_data(initial)
        first = True
        shared = self.ctx.shared
        with shared.connection(Http.H1):
            try:
                async with trio.open_nursery() as nursery:  # watcher tasks, if any
                    self._nursery = nursery
                    while True:
                        try:
                            head = await self._read_head(first)
                        except ProxyError as exc:
                            await self._send_error_and_close(exc)
                            break
                        if head is None:
                            break
                        # While draining, responses say `connection: close`
                        # and h11 then ends the cycle here; a response that went
                        # out just before the drain did not say so, and the
                        # client may already be sending its next request: that
                        # one is answered (with the close).
                        if not await self._run_exchange(head):
                            if self.proto.request_has_body and not self.proto.response_failed:
                                await self._linger()
                            break
                        first = False
                    nursery.cancel_scope.cancel()
            finally:
                self._nursery = None
                with trio.move_on_after(CLOSE_GRACE, shield=True):
                    await self.io.aclose()

    async def _read_head(self, first: bool) -> RequestHead | None:
        """The next request head; None to close quietly (EOF, idle expiry, drain)."""
        proto, shared, timeouts = self.proto, self.ctx.shared, self.ctx.timeouts
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
            if deadline is None:
                # Waiting for the first byte of a request: the end of accepting
                # closes us. A busy client's next request is usually there
                # already: then there is no wait, and no scope to time it.
                data = await self.io.receive_ready()
                if data is None:
                    wait = timeouts.client_head if first else timeouts.keepalive_idle
                    with shared.idle(trio.current_time() + wait) as idle:
                        data = await self.io.receive()
                    if idle.cancelled_caught:
                        if first and not shared.draining:
                            raise ClientTimeout(
                                f"no request received within {timeouts.client_head:g} s"
                            )
                        return None
                deadline = trio.current_time() + timeouts.client_head
            else:
                with trio.move_on_at(deadline) as scope:
                    data = await self.io.receive()
                if scope.cancelled_caught:
                    raise ClientTimeout(
                        f"request head not completed within {timeouts.client_head:g} s"
                    )
            if not data:
                return None  # EOF, possibly mid-head: nobody left to answer
            proto.receive_data(data)

    async def _run_exchange(self, head: RequestHead) -> bool:
        """Run the application for one request; True if the connection may be reused."""
        ex = H1Exchange(self, head)
        with self.ctx.shared.exchange(Http.H1):
            try:
                with ex.app_scope, contextlib.suppress(ClientGone):
                    await self.app(ex)
            finally:
                ex.end_watch()
                await self.stop_watcher()
        if ex.client_gone or ex.aborted or not await ex.finish_request():
            return False
        return self.proto.start_next_cycle()

    # -- watcher task, for connections that cannot be peeked ------------------
    def start_watcher(self, ex: H1Exchange) -> None:
        """One watcher per exchange, however often the application asks (once
        per attempt: a retry or a failover asks again)."""
        assert self._nursery is not None
        if self._watcher_scope is not None:
            return
        scope = self._watcher_scope = trio.CancelScope()
        done = self._watcher_done = trio.Event()
        self._nursery.start_soon(self._watcher, ex, scope, done)

    async def stop_watcher(self) -> None:
        """The exchange ended: its watcher (if any) with it. Waits until the
        watcher has left its read: a cancelled task runs only later, and the
        next request's read must not find the stream still in use (trio
        refuses two readers: BusyResourceError)."""
        if self._watcher_scope is not None:
            self._watcher_scope.cancel()
            self._watcher_scope = None
            with trio.CancelScope(shield=True):  # it ends at its next checkpoint
                await self._watcher_done.wait()

    async def _watcher(self, ex: H1Exchange, scope: trio.CancelScope, done: trio.Event) -> None:
        """After the request: read ahead (pipelined requests, bounded) and
        notice a client that goes away, which cancels the exchange."""
        proto = self.proto
        try:
            with scope:
                while True:
                    try:
                        ev = proto.next_event()
                    except ProtocolError:
                        return  # garbage after the request: answered when its turn comes
                    if isinstance(ev, EndOfMessage):
                        continue  # a body-less request's end
                    if isinstance(ev, PeerClosed):
                        ex._client_went_away()
                        return
                    if proto.buffered_bytes >= PIPELINE_BUFFER:
                        await trio.sleep_forever()  # bounded read-ahead; cancelled at exchange end
                    data = await self.io.receive()
                    if not data:
                        ex._client_went_away()
                        return
                    proto.receive_data(data)
        finally:
            done.set()

    # -- closing ------------------------------------------------------------
    async def _linger(self) -> None:
        with trio.move_on_after(LINGER_TIME):
            try:
                await self.io.send_eof()
                discarded = 0
                while discarded < LINGER_BYTES:
                    data = await self.io.receive()
                    if not data:
                        return
                    discarded += len(data)
            except trio.BrokenResourceError:
                pass

    async def _send_error_and_close(self, exc: ProxyError) -> None:
        proto = self.proto
        if not proto.can_respond:
            return
        head, body = error_response(exc, self.ctx.shared.request_ids.next())
        head = ResponseHead(head.status, [*head.headers, (b"connection", b"close")])
        data = proto.whole_response(head, body)
        if data is None:
            log.debug("h11 could not frame an error response in state %r", proto)
            return
        with trio.move_on_after(CLOSE_GRACE), contextlib.suppress(trio.BrokenResourceError):
            await self.io.send_all(data)


async def serve_h1(io: ByteIO, ctx: ConnContext, app: App, initial: bytes = b"") -> None:
    """Serve one HTTP/1.1 connection until it closes. Closes ``io``."""
    await H1Connection(io, ctx, app).serve(initial)
