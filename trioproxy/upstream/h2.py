"""A multiplexed HTTP/2 upstream connection and its per-request stream leases.

The connection's reader task (in the pool's nursery) routes events to streams;
its writer task owns the socket's send side. Response data is acknowledged to
the upstream only when the next chunk is asked for, that is after the previous
one reached the client, so a slow client slows the upstream stream instead of
filling our memory. A stream left unfinished (client gone, error) is reset with
CANCEL, which is how a client's cancellation reaches the upstream.

A peer can stop answering without closing (a NAT that forgot the
connection, a frozen host): nothing arrives and nothing fails, and every
request on the connection would wait for its headers timeout. So after
``ping_interval`` seconds in which nothing arrived, the connection sends a
PING; if still nothing arrived ``ping_timeout`` seconds later, it is
retired as dead: its requests get what any dead connection gives them (a
retry or failover before the first byte reached the client, a cut after).
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque

import h2.errors
import trio

from trioproxy.errors import UpstreamError, about_upstream
from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import (
    BadRequest,
    BodyChunk,
    EndOfMessage,
    Http,
    InformationalResponse,
    RequestHead,
    ResponseHead,
    StreamReset,
)
from trioproxy.proto.h2 import ConnectionEnded, H2Client, StreamEvent, WindowOpened
from trioproxy.transport.byteio import ByteIO
from trioproxy.transport.h2writer import WindowGate, Writer, send_flow_controlled
from trioproxy.upstream.lease import UpstreamClosed, UpstreamWriteFailed

log = logging.getLogger("trioproxy.upstream.h2")

STREAM_WINDOW = 1024 * 1024  # bytes the upstream may send on one stream before we ack
PING_PAYLOAD = b"tp-alive"  # 8 bytes (RFC 9113 6.7)
LOCAL_STREAM_CAP = 256  # streams we put on one connection even if the peer allows more

StreamItem = (
    ResponseHead | InformationalResponse | BodyChunk | EndOfMessage | StreamReset | UpstreamError
)


class H2UpstreamConnection:
    protocol = Http.H2

    def __init__(
        self,
        io: ByteIO,
        *,
        label: str,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
    ) -> None:
        """``ping_interval``: seconds of silence before a PING (0: never);
        ``ping_timeout``: seconds it has to answer (anything at all counts)."""
        self.io = io
        self.label = label
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._heard = 0.0  # when the peer last sent anything (trio clock)
        self.proto = H2Client(stream_window=STREAM_WINDOW)
        self.writer = Writer(io, self.proto.data_to_send)
        self.streams: dict[int, H2UpstreamStream] = {}
        self.leased = 0  # leases handed out and not yet released
        self.requests = 0
        self.idle_since = 0.0
        self.dead = False
        self.goaway_last_id: int | None = None
        self._ready = trio.Event()
        self._scope = trio.CancelScope()

    def __repr__(self) -> str:
        return (
            f"<H2Upstream {self.label} leased={self.leased} capacity={self.capacity} "
            f"dead={self.dead} goaway={self.goaway_last_id}>"
        )

    @property
    def max_streams(self) -> int:
        return min(self.proto.peer_max_streams, LOCAL_STREAM_CAP)

    @property
    def usable(self) -> bool:
        return not self.dead and self.goaway_last_id is None

    @property
    def capacity(self) -> int:
        return self.max_streams - self.leased if self.usable else 0

    # -- lifecycle (driven by the pool) ----------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run reader and writer until the connection dies or is closed; report
        started once the server's SETTINGS arrived (its stream limit is known).
        A connection that dies before that raises UpstreamClosed (retryable:
        no request was sent on it) to whoever is starting it. However it ends,
        every stream still on it fails promptly (``_die``)."""
        started = False
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._run_writer, nursery.cancel_scope)
                    self.writer.request()  # preface + SETTINGS
                    nursery.start_soon(self._read_loop, nursery.cancel_scope)
                    await self._ready.wait()
                    task_status.started()
                    started = True
                    if self._ping_interval > 0:
                        nursery.start_soon(self._watch_silence, nursery.cancel_scope)
        finally:
            self._die("closed the connection")
            with trio.move_on_after(1.0, shield=True):
                await self.io.aclose()
        if not started:
            raise about_upstream(
                UpstreamClosed,
                self.label,
                "closed the connection before its HTTP/2 SETTINGS",
                retryable=True,
            )

    async def _run_writer(self, scope: trio.CancelScope) -> None:
        await self.writer.run()
        scope.cancel()

    async def _watch_silence(self, scope: trio.CancelScope) -> None:
        """PING after ``ping_interval`` s of silence; retire the connection
        if nothing at all arrives within ``ping_timeout`` s of it."""
        interval, timeout = self._ping_interval, self._ping_timeout
        while True:
            await trio.sleep_until(self._heard + interval)
            if trio.current_time() < self._heard + interval:
                continue  # the peer spoke meanwhile
            sent = trio.current_time()
            self.proto.ping(PING_PAYLOAD)
            self.writer.request()
            await trio.sleep_until(sent + timeout)
            if self._heard < sent:
                log.warning(
                    "%s: HTTP/2 connection silent for %g s and no answer to a PING within %g s: "
                    "retiring it (%d request%s on it)",
                    self.label,
                    interval + timeout,
                    timeout,
                    len(self.streams),
                    "" if len(self.streams) == 1 else "s",
                )
                self._die(f"did not answer an HTTP/2 PING within {timeout:g} s")
                scope.cancel()
                return

    async def _read_loop(self, scope: trio.CancelScope) -> None:
        while True:
            data = await self.io.receive()
            self._heard = trio.current_time()
            if not data:
                self._die("closed the connection")
                scope.cancel()
                return
            try:
                events = self.proto.receive_data(data)
            except ProtocolError as exc:
                self.writer.request()
                self._die(f"broke HTTP/2: {exc.message}")
                scope.cancel()
                return
            for ev in events:
                self._dispatch(ev)
            if self.proto.peer_settings_received:
                self._ready.set()
            self.writer.request()
            if self.goaway_last_id is not None and not self.streams:
                scope.cancel()  # drained by the upstream's GOAWAY: close
                return

    def _dispatch(self, ev: object) -> None:
        if isinstance(ev, StreamEvent):
            st = self.streams.get(ev.stream_id)
            if isinstance(ev.event, RequestHead | BadRequest):
                return  # a pushed request: push is disabled in our SETTINGS
            if st is not None:
                st.push(ev.event)
            elif isinstance(ev.event, BodyChunk):
                self.proto.ack(ev.stream_id, ev.event.flow_controlled_length)
        elif isinstance(ev, WindowOpened):
            targets = (
                self.streams.values() if ev.stream_id == 0 else [self.streams.get(ev.stream_id)]
            )
            for st in targets:
                if st is not None:
                    st.window_opened()
        elif isinstance(ev, ConnectionEnded):
            self.goaway_last_id = ev.last_stream_id
            for sid, st in list(self.streams.items()):
                if sid > ev.last_stream_id:
                    st.push(
                        about_upstream(
                            UpstreamClosed,
                            self.label,
                            "refused the stream (GOAWAY)",
                            retryable=True,
                        )
                    )

    def _die(self, what: str) -> None:
        """Fail every stream on this connection (``what`` happened to it)."""
        if self.dead:
            return
        self.dead = True
        for st in list(self.streams.values()):
            st.push(about_upstream(UpstreamClosed, self.label, what))

    async def aclose(self) -> None:
        """GOAWAY (bounded wait for it to be written), then stop the tasks."""
        if not self.dead:
            self.proto.close()
            with trio.move_on_after(0.5):
                with contextlib.suppress(trio.BrokenResourceError):
                    await self.writer.flush()
        self._scope.cancel()

    # -- leases ------------------------------------------------------------------
    def lease(self) -> H2UpstreamStream:
        self.leased += 1
        self.requests += 1
        return H2UpstreamStream(self, reused=self.requests > 1)

    def release(self, st: H2UpstreamStream, now: float) -> None:
        self.leased -= 1
        if st.stream_id is not None:
            if self.proto.stream_open(st.stream_id):
                # Unfinished on our side or theirs: tell the upstream to stop.
                self.proto.reset_stream(st.stream_id, h2.errors.ErrorCodes.CANCEL)
            if st.unacked:
                self.proto.ack(st.stream_id, st.unacked)
            self.streams.pop(st.stream_id, None)
            self.writer.request()
        if self.leased == 0:
            self.idle_since = now
        if self.goaway_last_id is not None and not self.streams:
            self._scope.cancel()


class H2UpstreamStream:
    """One request on an HTTP/2 upstream connection (a pool lease)."""

    protocol = Http.H2

    def __init__(self, conn: H2UpstreamConnection, *, reused: bool) -> None:
        self.conn = conn
        self.reused = reused
        self.stream_id: int | None = None
        self._items: deque[StreamItem] = deque()
        self._arrived = trio.Event()
        self._window = WindowGate()
        self.finished = False  # the upstream ended its response (or reset it)
        self._got_response = False
        self.unacked = 0  # flow-controlled bytes received and not yet acknowledged
        self.unacked_returned = 0  # of those, bytes already handed to the caller
        self._request_ended = False

    def push(self, item: StreamItem) -> None:
        if isinstance(item, EndOfMessage | StreamReset):
            self.finished = True
        if isinstance(item, BodyChunk):
            self.unacked += item.flow_controlled_length
        self._items.append(item)
        self._arrived.set()
        self._window.open()

    def window_opened(self) -> None:
        self._window.open()

    async def _next(self) -> StreamItem:
        while not self._items:
            await self._arrived.wait()
            self._arrived = trio.Event()
        item = self._items.popleft()
        if isinstance(item, StreamReset):
            raise about_upstream(
                UpstreamClosed,
                self.conn.label,
                f"reset the stream (error code {item.error_code})",
                retryable=item.refused and not self._got_response,
            )
        if isinstance(item, UpstreamError):
            raise item
        return item

    # -- sending -------------------------------------------------------------
    async def send_head(self, head: RequestHead, *, has_body: bool) -> None:
        conn = self.conn
        if conn.dead:
            raise about_upstream(
                UpstreamWriteFailed, conn.label, "closed the connection", retryable=self.reused
            )
        self.stream_id = conn.proto.open_stream(head, end_stream=not has_body)
        self._request_ended = not has_body
        conn.streams[self.stream_id] = self
        await self._flush()

    async def _flush(self) -> None:
        try:
            await self.conn.writer.flush()
        except trio.BrokenResourceError as exc:
            raise about_upstream(
                UpstreamWriteFailed,
                self.conn.label,
                "closed the connection",
                retryable=self.reused and not self._got_response,
            ) from exc

    async def send_body(self, data: bytes) -> None:
        assert self.stream_id is not None
        conn = self.conn
        try:
            await send_flow_controlled(
                conn.proto, self.stream_id, data, conn.writer, self._window, self._check_open
            )
        except trio.TooSlowError:
            raise about_upstream(
                UpstreamWriteFailed, conn.label, "did not open the stream's flow-control window"
            ) from None
        await self._flush()

    def _check_open(self) -> None:
        if self.finished or self.conn.dead:
            raise about_upstream(UpstreamWriteFailed, self.conn.label, "closed the stream")

    async def end_body(self) -> None:
        assert self.stream_id is not None
        if self._request_ended or self.finished or self.conn.dead:
            return  # ended with the head, or the upstream already answered or reset
        self._request_ended = True
        self.conn.proto.end_stream(self.stream_id)
        await self._flush()

    # -- receiving -----------------------------------------------------------
    async def receive_head(self) -> ResponseHead:
        while True:
            item = await self._next()
            if isinstance(item, ResponseHead):
                self._got_response = True
                return item
            if isinstance(item, InformationalResponse):
                continue
            raise about_upstream(
                UpstreamError, self.conn.label, f"sent {type(item).__name__} before its answer"
            )

    def _ack_forwarded(self) -> None:
        """Hand back the credit of everything returned so far: the caller asks
        for more only after it forwarded the previous chunk."""
        if self.unacked_returned and self.stream_id is not None:
            self.conn.proto.ack(self.stream_id, self.unacked_returned)
            self.unacked -= self.unacked_returned
            self.unacked_returned = 0
            self.conn.writer.request()

    async def receive_body(self) -> bytes | None:
        self._ack_forwarded()
        while True:
            item = await self._next()
            if isinstance(item, BodyChunk):
                self.unacked_returned += item.flow_controlled_length
                if item.data:
                    return item.data
                continue
            if isinstance(item, EndOfMessage):
                return None
            raise about_upstream(
                UpstreamError,
                self.conn.label,
                f"sent an unexpected {type(item).__name__} in the body",
            )
