"""The client's request body as the forwarding side sees it: read once, with
limits, and kept until the response starts so that a retry or a failover
can send it again.

The copy is bounded by the body limit (``limits.max_body_bytes``): the same
bound that already applies to any request. Credit goes back to an HTTP/2
client only after a chunk was handed upstream (backpressure), except when a
retry replays: then whatever is still owed is acknowledged at once.
"""

from __future__ import annotations

from trioproxy.errors import RequestTooLarge
from trioproxy.exchange.stages import Chain
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import BodyChunk


class RequestBody:
    def __init__(
        self,
        ex: ClientExchange,
        *,
        max_bytes: int,
        declared: int | None,
        stages: Chain | None = None,
    ) -> None:
        """``stages``: what each chunk passes as it is read (stages.READING)."""
        self._ex = ex
        self._max = max_bytes
        self.declared = declared  # Content-Length, when the client sent one
        self.total = 0
        self.done = not ex.has_body
        self._kept: list[bytes] = []
        self._keeping = True
        self._owed = 0  # flow-controlled bytes not yet acknowledged to the client
        self.first: bytes | None = None  # the first chunk (for the requested model)
        self._stages = stages

    @property
    def exchange(self) -> ClientExchange:
        return self._ex

    def replay(self) -> list[bytes]:
        """What was read so far, to send again (the rest is still to read)."""
        self.ack_all()
        return list(self._kept)

    async def read(self) -> BodyChunk | None:
        """The next chunk (the transport enforces the body idle timeout)."""
        if self.done:
            return None
        chunk = await self._ex.receive_body()
        if chunk is None:
            self.done = True
            rest = self._stages.end() if self._stages is not None else b""
            if not rest:
                return None
            chunk = BodyChunk(rest, 0)  # what a stage held back: nothing to credit
            return self._count(chunk)
        if self._stages is not None:
            data = self._stages.feed(chunk.data)
            if data is not chunk.data:
                chunk = BodyChunk(data, chunk.flow_controlled_length)
        return self._count(chunk)

    def _count(self, chunk: BodyChunk) -> BodyChunk:
        if self.first is None:
            self.first = chunk.data
        self.total += len(chunk.data)
        if self.total > self._max:
            raise RequestTooLarge(f"request body exceeds the proxy's limit of {self._max} bytes")
        if self._keeping:
            self._kept.append(chunk.data)
        self._owed += chunk.flow_controlled_length
        return chunk

    def forget(self) -> None:
        """The response has started: the body will never be sent again."""
        self._keeping = False
        self._kept = []

    async def read_all(self) -> bytes:
        """The whole body (for routing that must look inside it), acknowledged
        as it arrives: it is held here, within the body limit, either way."""
        while await self.read() is not None:
            self.ack_all()
        return b"".join(self._kept)

    def ack(self, chunk: BodyChunk) -> None:
        n = min(chunk.flow_controlled_length, self._owed)
        if n:
            self._owed -= n
            self._ex.ack(n)

    def ack_all(self) -> None:
        if self._owed:
            self._ex.ack(self._owed)
            self._owed = 0
