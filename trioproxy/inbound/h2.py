"""HTTP/2 client connections: many concurrent streams, real flow control.

A reader task feeds h2 and routes events to streams; the writer task owns the
socket's send side; each stream runs the application in its own task inside
the connection's nursery. Request data is acknowledged to the client only
after the application forwarded it (``ack``), so per-stream buffering is
bounded by the stream window we advertise. Drain sends a graceful GOAWAY and
lets the streams already opened finish.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from enum import Enum

import h2.errors
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
    BadRequest,
    BodyChunk,
    EndOfMessage,
    Http,
    Received,
    RequestHead,
    ResponseHead,
    StreamReset,
)
from trioproxy.proto.h2 import (
    DRAIN_PING,
    ENHANCE_YOUR_CALM,
    ConnectionEnded,
    H2Event,
    H2Server,
    PingAnswered,
    ResetBudget,
    StreamEvent,
    WindowOpened,
)
from trioproxy.transport.byteio import ByteIO
from trioproxy.transport.h2writer import WindowGate, Writer, send_flow_controlled

log = logging.getLogger("trioproxy.h2")


class Stop(Enum):
    """Why a connection's read loop ended, which decides what becomes of its
    open streams."""

    EOF = "eof"  # the client closed or reset: its streams are cancelled
    ERROR = "error"  # a protocol error: GOAWAY sent, streams cancelled
    GOAWAY = "goaway"  # the client's GOAWAY: opened streams finish
    DRAINED = "drained"  # ours (drain, idle expiry): opened streams finish


CLOSE_GRACE = 1.0  # seconds; bound on shielded cleanup


class H2Stream:
    protocol = Http.H2

    def __init__(
        self, conn: H2ServerConnection, stream_id: int, head: RequestHead, request_id: str
    ) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.head = head
        self.request_id = request_id
        self._chunks: deque[BodyChunk] = deque()
        self._arrived = trio.Event()
        self._window = WindowGate()
        self.ended = False  # client finished its body
        self.reset = False  # client reset the stream
        self.finished = False  # we ended or reset our side
        self._started = False
        self.received_flow = 0
        self.acked_flow = 0
        self.app_scope = trio.CancelScope()
        self._has_body: bool | None = None
        # A sized response's head, held back until its body (or end) goes out:
        # until then nothing reached the client and the application may still
        # answer differently (a retry, a 502).
        self._pending_head: ResponseHead | None = None
        self.refusal: BadRequest | None = None  # answered by the connection, not the app

    @property
    def has_body(self) -> bool:
        if self._has_body is None:
            self._has_body = bool(self._chunks) or not self.ended
        return self._has_body

    @property
    def response_started(self) -> bool:
        return self._started

    # -- events from the reader ----------------------------------------------
    def on_data(self, chunk: BodyChunk) -> None:
        self.received_flow += chunk.flow_controlled_length
        self._chunks.append(chunk)
        self._arrived.set()

    def on_end(self) -> None:
        self.ended = True
        self._arrived.set()

    def on_reset(self) -> None:
        self.reset = True
        self.app_scope.cancel()
        self._arrived.set()
        self._window.open()

    def on_window(self) -> None:
        self._window.open()

    # -- request body ---------------------------------------------------------
    @property
    def peer(self) -> str:
        return self._conn.ctx.peer

    async def receive_body(self) -> BodyChunk | None:
        """The next chunk the reader routed here; no data for the body idle
        timeout: ClientTimeout (408)."""
        while not self._chunks:
            if self.reset:
                raise ClientGone("client reset the stream")
            if self.ended:
                return None
            ctx = self._conn.ctx
            idle = ctx.timeouts.client_body_idle
            with ctx.shared.watchdog.guard(idle) as guard:
                await self._arrived.wait()
            if guard.expired:
                raise ClientTimeout(f"no request body data received for {idle:g} s")
            self._arrived = trio.Event()
        return self._chunks.popleft()

    def watch_disconnect(self) -> None:
        """The connection's reader always notices RST_STREAM and EOF."""

    def ack(self, nbytes: int) -> None:
        if nbytes and not self.reset:
            self.acked_flow += nbytes
            self._conn.proto.ack(self.stream_id, nbytes)
            self._conn.writer.request()

    # -- response -------------------------------------------------------------
    async def _flush(self) -> None:
        try:
            await self._conn.writer.flush()
        except trio.BrokenResourceError as exc:
            raise ClientGone("client connection closed") from exc

    async def send_head(self, head: ResponseHead) -> None:
        if self.reset:
            raise ClientGone("client reset the stream")
        if head.header(b"content-length") is not None:
            self._pending_head = head
            return
        self._started = True
        self._conn.proto.send_response_head(self.stream_id, head)
        await self._flush()

    def _commit_head(self) -> None:
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            self._started = True
            self._conn.proto.send_response_head(self.stream_id, head)

    def _check_open(self) -> None:
        if self.reset:
            raise ClientGone("client reset the stream")

    async def send_body(self, data: bytes) -> None:
        conn = self._conn
        self._check_open()
        self._commit_head()
        try:
            await send_flow_controlled(
                conn.proto,
                self.stream_id,
                data,
                conn.writer,
                self._window,
                self._check_open,
                conn.stall_timeout,
            )
        except trio.TooSlowError:
            # The client never opened this stream's window: give up on it.
            await self.abort()
            raise ClientGone("client did not open the stream's flow-control window") from None
        await self._flush()

    async def end(self) -> None:
        if self.reset:
            raise ClientGone("client reset the stream")
        self.finished = True
        self._commit_head()
        self._conn.proto.end_stream(self.stream_id)
        await self._flush()

    async def abort(self) -> None:
        """RST_STREAM: the client sees a truncated response, not a complete one."""
        self.finished = True
        self._pending_head = None
        self._conn.proto.reset_stream(self.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self._conn.writer.request()


class H2ServerConnection:
    def __init__(self, io: ByteIO, ctx: ConnContext, app: App) -> None:
        limits = ctx.limits
        self.io = io
        self.ctx = ctx
        self.shared = ctx.shared
        self.app = app
        self.proto = H2Server(
            stream_window=limits.h2_stream_window,
            max_concurrent_streams=limits.h2_max_concurrent_streams,
        )
        idle = ctx.timeouts.client_body_idle
        self.stall_timeout = idle
        self.writer = Writer(io, self.proto.data_to_send, stall_timeout=idle)
        self._reset_rate = limits.h2_max_resets_per_second
        self._resets = ResetBudget(rate=self._reset_rate, burst=2 * self._reset_rate)
        self._reset_count = 0  # streams the client reset on this connection
        self._abusive = False  # it reset them too fast: GOAWAY sent, closing
        self._abuse_logged = False
        self.streams: dict[int, H2Stream] = {}
        self._reader_scope = trio.CancelScope()
        self._streams_done = trio.Event()
        self._goaway_sent = False
        self._lingering = False  # the imminent GOAWAY is out, its PING not yet answered

    def __repr__(self) -> str:
        return f"<H2ServerConnection streams={len(self.streams)} {self.proto!r}>"

    def begin_drain(self) -> None:
        """Two GOAWAYs (RFC 9113 6.8): "imminent" and a PING now; the final
        one when the PING comes back. Closing at once would reset a request
        the client sent before it read the GOAWAY (a lost POST, and the
        client cannot tell whether it was processed). A client that never
        answers is closed by the end of the drain grace."""
        if self._goaway_sent:
            return
        self._goaway_sent = True
        self._lingering = True
        self.writer.append_raw(self.proto.imminent_goaway())
        self.proto.ping(DRAIN_PING)
        self.writer.request()

    def _drain_answered(self) -> bool:
        """Our drain PING came back: the final GOAWAY. True if the connection
        may stop reading now (no stream left)."""
        self._lingering = False
        self.writer.append_raw(self.proto.graceful_goaway())
        return not self.streams

    async def serve(self, initial: bytes) -> None:
        with self.shared.connection(Http.H2), self.shared.drainable(self):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_writer, nursery.cancel_scope)
                self.writer.request()  # our SETTINGS
                reason = Stop.DRAINED
                with self._reader_scope:
                    reason = await self._read_loop(nursery, initial)
                if reason is Stop.EOF or reason is Stop.ERROR:
                    for st in list(self.streams.values()):
                        st.on_reset()  # the client is gone: cancel its streams
                # GOAWAY (the client's) or DRAINED (ours): opened streams finish;
                # the server's drain deadline bounds the wait.
                while self.streams:
                    self._streams_done = trio.Event()
                    await self._streams_done.wait()
                with (
                    trio.move_on_after(CLOSE_GRACE, shield=True),
                    contextlib.suppress(trio.BrokenResourceError),  # the client is gone
                ):
                    await self.writer.flush()
                nursery.cancel_scope.cancel()

    async def _run_writer(self, conn_scope: trio.CancelScope) -> None:
        await self.writer.run()
        conn_scope.cancel()  # socket gone: every stream is gone

    async def _read_loop(self, nursery: trio.Nursery, initial: bytes) -> Stop:
        """Read until the connection should stop reading; says why."""
        if initial and (reason := self._feed(nursery, initial)):
            return reason
        keepalive = self.ctx.timeouts.keepalive_idle
        while True:
            if self.streams:
                data = await self._receive()
            else:
                with self.shared.idle(trio.current_time() + keepalive) as idle:
                    data = await self._receive()
                if idle.cancelled_caught:
                    self.begin_drain()  # idle expiry or the end of accepting: GOAWAY, then close
                    if self._lingering:
                        self._drain_answered()  # no time left for the PING: the final GOAWAY now
                    return Stop.DRAINED
            if not data:
                return Stop.EOF
            if reason := self._feed(nursery, data):
                return reason
            if self.writer.busy:
                # The client is not reading what we owe it (ACKs for a SETTINGS or
                # PING flood, responses): stop reading until it does, so nothing
                # queues up without bound. A writer stuck for good ends the connection.
                try:
                    await self.writer.flush()
                except trio.BrokenResourceError:
                    return Stop.EOF

    async def _receive(self) -> Received:
        return await self.io.receive()

    def _feed(self, nursery: trio.Nursery, data: Received) -> Stop | None:
        """Process bytes; why reading must stop (ERROR, GOAWAY), else None."""
        try:
            events = self.proto.receive_data(data)
        except ProtocolError as exc:
            log.info("closing HTTP/2 connection: %s", exc.message)
            self.writer.request()  # h2 queued GOAWAY
            self._goaway_sent = True
            return Stop.ERROR
        new: list[H2Stream] = []
        go_on = True
        for ev in events:
            go_on = self._dispatch(ev, new) and go_on
        if self._abusive and not self._abuse_logged:
            # Once per connection, however many frames of the flood are
            # still in this read (a line per frame was 47 to 66 lines).
            self._abuse_logged = True
            log.warning(
                "HTTP/2 client reset too many streams (rapid reset: %d resets, over %d a "
                "second): closing the connection",
                self._reset_count,
                self._reset_rate,
            )
        for st in new:
            nursery.start_soon(self._run_stream, st)
        if new and self.shared.draining:
            # Accepted during the drain grace: these streams are served, and
            # the client is told to take the next ones elsewhere.
            self.begin_drain()
        self.writer.request()
        return None if go_on else Stop.GOAWAY

    def _dispatch(self, ev: H2Event, new: list[H2Stream]) -> bool:
        if self._abusive:  # closing: the rest of what it sent is not looked at
            return False
        if isinstance(ev, StreamEvent):
            sid, inner = ev.stream_id, ev.event
            if isinstance(inner, RequestHead | BadRequest):
                bad = inner if isinstance(inner, BadRequest) else None
                head = inner.head if isinstance(inner, BadRequest) else inner
                st = H2Stream(self, sid, head, self.shared.request_ids.next())
                st.refusal = bad
                self.streams[sid] = st
                new.append(st)
                return True
            st_or_none = self.streams.get(sid)
            if st_or_none is None:
                if isinstance(inner, BodyChunk):
                    self.proto.ack(
                        sid, inner.flow_controlled_length
                    )  # keep the connection window whole
                return True
            if isinstance(inner, BodyChunk):
                st_or_none.on_data(inner)
            elif isinstance(inner, EndOfMessage):
                st_or_none.on_end()
            elif isinstance(inner, StreamReset):
                st_or_none.on_reset()
            if isinstance(inner, StreamReset):
                self._reset_count += 1
                if not self._resets.spend(trio.current_time()):
                    if not self._abusive:
                        self._abusive = True
                        self.proto.close(ENHANCE_YOUR_CALM)
                        self._goaway_sent = True
                    return False
        elif isinstance(ev, WindowOpened):
            if ev.stream_id == 0:
                for st in self.streams.values():
                    st.on_window()
            elif (st2 := self.streams.get(ev.stream_id)) is not None:
                st2.on_window()
        elif isinstance(ev, ConnectionEnded):
            return False
        elif isinstance(ev, PingAnswered) and ev.payload == DRAIN_PING and self._lingering:
            return not self._drain_answered()
        return True

    async def _run_stream(self, st: H2Stream) -> None:
        try:
            with self.shared.exchange(Http.H2), st.app_scope:
                try:
                    if st.refusal is not None:
                        bad = st.refusal
                        raise from_protocol_error(ProtocolError(bad.message, bad.status))
                    await self.app(st)
                except ClientGone:
                    pass
                except ProxyError as exc:  # an app that let one escape: still answer
                    if not st.response_started and not st.reset:
                        head, body = error_response(exc, st.request_id)
                        # The client may reset the stream while this is
                        # written (it often does, right after a refusal): its
                        # stream alone is gone, not the connection.
                        with contextlib.suppress(ClientGone):
                            await st.send_head(head)
                            await st.send_body(body)
                            await st.end()
                except Exception:
                    log.exception("stream %d: the application failed", st.stream_id)
        finally:
            if not st.finished and not st.reset:
                self.proto.reset_stream(st.stream_id, h2.errors.ErrorCodes.CANCEL)
            leftover = st.received_flow - st.acked_flow
            if leftover > 0:
                self.proto.ack(
                    st.stream_id, leftover
                )  # unread body: give the connection window back
            self.streams.pop(st.stream_id, None)
            self.writer.request()
            if not self.streams:
                self._streams_done.set()
                if self._goaway_sent and not self._lingering:
                    self._reader_scope.cancel()  # drained: stop reading, close


async def serve_h2(io: ByteIO, ctx: ConnContext, app: App, initial: bytes = b"") -> None:
    """Serve one HTTP/2 connection until it closes. Closes ``io``."""
    conn = H2ServerConnection(io, ctx, app)
    try:
        await conn.serve(initial)
    finally:
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            await io.aclose()
