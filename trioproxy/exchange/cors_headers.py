"""The client's exchange as a listed browser origin sees it (see
rules/cors.py for the decisions): every answer head is marked readable
by that origin, errors included (a page must be able to read a 401 or a
429 too)."""

from __future__ import annotations

from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import BodyChunk, ResponseHead
from trioproxy.rules.cors import with_cors


class CorsExchange:
    """Delegates everything; adds the CORS headers to the head."""

    def __init__(self, inner: ClientExchange, origin: bytes) -> None:
        self._inner = inner
        self._origin = origin
        self.head = inner.head
        self.request_id = inner.request_id
        self.protocol = inner.protocol

    @property
    def peer(self) -> str:
        return self._inner.peer

    @property
    def has_body(self) -> bool:
        return self._inner.has_body

    @property
    def response_started(self) -> bool:
        return self._inner.response_started

    async def receive_body(self) -> BodyChunk | None:
        return await self._inner.receive_body()

    def ack(self, nbytes: int) -> None:
        self._inner.ack(nbytes)

    def watch_disconnect(self) -> None:
        self._inner.watch_disconnect()

    async def send_head(self, head: ResponseHead) -> None:
        await self._inner.send_head(with_cors(head, self._origin))

    async def send_body(self, data: bytes) -> None:
        await self._inner.send_body(data)

    async def end(self) -> None:
        await self._inner.end()

    async def abort(self) -> None:
        await self._inner.abort()
