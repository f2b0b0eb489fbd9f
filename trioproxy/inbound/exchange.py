"""The seam between transports and applications: one request/response exchange."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from trioproxy.proto.events import BodyChunk, Http, RequestHead, ResponseHead


class ClientExchange(Protocol):
    """One request from a client and the response we owe it.

    ``receive_body`` returns chunks until ``None`` (end of body). It raises
    ``ClientGone`` when the client went away, ``ClientTimeout`` (408) when no
    body byte came for the body idle timeout, and ``ProxyError`` subclasses
    for bad framing (400) detected mid-body. After forwarding a chunk, the caller
    calls ``ack(chunk.flow_controlled_length)``: HTTP/2 hands that credit back
    to the client only then, so a slow upstream pushes back on the client.

    ``watch_disconnect()`` is called before waiting on something slow (the
    upstream), once the body was read: from then on a client that goes away
    cancels the exchange (HTTP/2 always notices; HTTP/1.1 starts a reader).

    ``abort()`` ends a started response so that the client sees a truncation
    (HTTP/1.1: close without the final chunk; HTTP/2: RST_STREAM), never a body
    that looks complete.
    """

    head: RequestHead
    request_id: str
    protocol: Http

    @property
    def peer(self) -> str:
        """The client's address (HOST:PORT), for the access line."""

    @property
    def has_body(self) -> bool: ...

    @property
    def response_started(self) -> bool: ...

    async def receive_body(self) -> BodyChunk | None: ...

    def ack(self, nbytes: int) -> None: ...

    def watch_disconnect(self) -> None: ...

    async def send_head(self, head: ResponseHead) -> None: ...

    async def send_body(self, data: bytes) -> None: ...

    async def end(self) -> None: ...

    async def abort(self) -> None: ...


App = Callable[[ClientExchange], Awaitable[None]]


async def respond(exchange: ClientExchange, head: ResponseHead, body: bytes) -> None:
    """Send a whole small response."""
    await exchange.send_head(head)
    if body and exchange.head.method != b"HEAD":
        await exchange.send_body(body)
    await exchange.end()
