"""An HTTP/1.1 upstream connection. One lease at a time uses it."""

from __future__ import annotations

import trio

from trioproxy.errors import UpstreamError, about_upstream
from trioproxy.proto.errors import ProtocolError
from trioproxy.proto.events import (
    BodyChunk,
    EndOfMessage,
    Http,
    InformationalResponse,
    NeedData,
    PeerClosed,
    RequestHead,
    ResponseHead,
)
from trioproxy.proto.h1 import ClientEvent, H1Client
from trioproxy.transport.byteio import ByteIO
from trioproxy.upstream.lease import UpstreamClosed, UpstreamWriteFailed


class H1UpstreamConnection:
    protocol = Http.H1

    __slots__ = (
        "_max_head_bytes",
        "_pending",
        "_received_any",
        "_response_done",
        "broken",
        "idle_since",
        "io",
        "label",
        "proto",
        "requests",
        "reused",
    )

    def __init__(self, io: ByteIO, *, max_head_bytes: int, label: str) -> None:
        self.io = io
        self.label = label  # the origin, for messages
        self._max_head_bytes = max_head_bytes
        self.proto = H1Client(max_head_bytes=max_head_bytes)
        self.reused = False
        self.requests = 0
        self.idle_since = 0.0
        self.broken = False
        self._received_any = False
        self._response_done = False
        self._pending = b""  # the request head, held to go out with the first body bytes

    def __repr__(self) -> str:
        return f"<H1Upstream {self.label} requests={self.requests} broken={self.broken} {self.proto!r}>"

    # -- pool hooks -----------------------------------------------------------
    def begin_lease(self, *, reused: bool) -> None:
        self.reused = reused
        self.requests += 1
        self._received_any = False
        self._response_done = False

    def end_lease(self) -> bool:
        """True if the connection can go back to the idle pool."""
        if self.broken or not self._response_done:
            return False
        return self.proto.reusable()

    def is_stale(self) -> bool:
        """An idle connection must have nothing to read: readable means the
        server closed it (or sent junk). Either way, do not reuse it."""
        return self.broken or bool(self.io.peer_gone())

    async def aclose(self) -> None:
        self.broken = True
        await self.io.aclose()

    # -- sending --------------------------------------------------------------
    async def _write(self, data: bytes) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        if not data:
            return
        try:
            await self.io.send_all(data)
        except trio.BrokenResourceError as exc:
            self.broken = True
            self.proto.send_failed()
            raise about_upstream(
                UpstreamWriteFailed,
                self.label,
                "closed the connection",
                retryable=self.reused and not self._received_any,
            ) from exc
        except BaseException:
            self.broken = True
            self.proto.send_failed()
            raise

    async def send_head(self, head: RequestHead, *, has_body: bool) -> None:
        chunked = has_body and head.header(b"content-length") is None
        # Held until the first body bytes (or the end): one write for a small
        # request, and no upstream answering a head whose body is still in flight.
        self._pending = self.proto.send_request_head(head, chunked=chunked)

    async def send_body(self, data: bytes) -> None:
        await self._write(self.proto.send_body(data))

    async def end_body(self) -> None:
        await self._write(self.proto.send_end())

    # -- receiving ------------------------------------------------------------
    async def _next(self) -> ClientEvent:
        while True:
            try:
                ev = self.proto.next_event()
            except ProtocolError as exc:
                self.broken = True
                if not self._received_any:
                    raise self._closed_early() from None
                raise about_upstream(
                    UpstreamClosed, self.label, f"broke HTTP/1.1: {exc.message}"
                ) from None
            if not isinstance(ev, NeedData):
                return ev
            data = await self.io.receive()
            if data:
                self._received_any = True
            self.proto.receive_data(data)

    def _closed_early(self) -> UpstreamClosed:
        self.broken = True
        return about_upstream(
            UpstreamClosed,
            self.label,
            "closed the connection before responding",
            retryable=self.reused,
        )

    async def receive_head(self) -> ResponseHead:
        while True:
            ev = await self._next()
            if isinstance(ev, ResponseHead):
                return ev
            if isinstance(ev, InformationalResponse):
                continue  # 100 Continue and friends are ours to swallow
            if isinstance(ev, PeerClosed):
                raise self._closed_early()
            raise about_upstream(
                UpstreamError, self.label, f"sent an unexpected {type(ev).__name__} first"
            )

    async def receive_body(self) -> bytes | None:
        while True:
            ev = await self._next()
            if isinstance(ev, BodyChunk):
                if ev.data:
                    return ev.data
                continue
            if isinstance(ev, EndOfMessage):
                self._response_done = True
                return None
            if isinstance(ev, PeerClosed):
                self.broken = True
                raise about_upstream(
                    UpstreamClosed, self.label, "closed the connection mid-response"
                )
            raise about_upstream(
                UpstreamError, self.label, f"sent an unexpected {type(ev).__name__} in the body"
            )
