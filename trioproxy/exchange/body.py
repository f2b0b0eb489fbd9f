"""The client's request body as the forwarding side sees it: read once, with
limits, and kept until the response starts so that a retry or a failover
can send it again.

Each copy is bounded by the body limit (``limits.max_body_bytes``), and all
of them together by the process's retention budget (retention.py): a body
that does not fit is streamed without a copy and cannot be sent again
(``replayable``). Credit goes back to an HTTP/2 client only after a chunk
was handed upstream (backpressure), except when a retry replays: then
whatever is still owed is acknowledged at once.
"""

from __future__ import annotations

from trioproxy.accounting.record import RequestRecord
from trioproxy.errors import RequestTooLarge
from trioproxy.exchange.retention import Retention
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
        retention: Retention,
        stages: Chain | None = None,
    ) -> None:
        """``stages``: what each chunk passes as it is read (stages.READING).
        ``retention``: the process's budget for kept copies."""
        self._ex = ex
        self._max = max_bytes
        self.declared = declared  # Content-Length, when the client sent one
        self.total = 0
        self.done = not ex.has_body
        self._kept: list[bytes] = []
        self._keeping = True
        self._whole = False  # read whole for a feature: kept whatever the budget
        self._held = 0  # bytes of _kept counted in the retention budget
        self._retention = retention
        self.skipped = False  # no copy kept: the budget could not hold it
        self._owed = 0  # flow-controlled bytes not yet acknowledged to the client
        self.first: bytes | None = None  # the first chunk (for the requested model)
        self._stages = stages
        # Known too large for the budget: its first chunk is not kept either
        # (unless a feature reads it whole).
        self._too_large = declared is not None and not retention.fits(declared)

    @property
    def replayable(self) -> bool:
        """The body can still be sent again from the start (it is kept, or
        nothing of it was read yet)."""
        return not self.skipped

    def _skip(self) -> None:
        self.skipped = True
        self._retention.skipped += 1
        self.forget()

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
            n = len(chunk.data)
            if self._whole:
                self._retention.force(n)
            elif self._too_large or not self._retention.reserve(n):
                self._skip()
                self._owed += chunk.flow_controlled_length
                return chunk
            self._held += n
            self._kept.append(chunk.data)
        self._owed += chunk.flow_controlled_length
        return chunk

    def settle(self, record: RequestRecord) -> None:
        """The request is over: what the reading stages found goes to its record."""
        if self._stages is not None:
            self._stages.settle(record, complete=self.done)

    def forget(self) -> None:
        """The body will never be sent again (the response has started, or
        the request is over): the copy goes, and its place in the budget."""
        self._keeping = False
        self._kept = []
        if self._held:
            self._retention.release(self._held)
            self._held = 0

    async def read_all(self) -> bytes:
        """The whole body (for features that must look inside it), acknowledged
        as it arrives: it is held here, within the body limit, either way."""
        self._whole = True
        while await self.read() is not None:
            self.ack_all()
        whole = b"".join(self._kept)
        if len(self._kept) > 1:
            self._kept = [whole]  # one copy, not the chunks and their join
        return whole

    def ack(self, chunk: BodyChunk) -> None:
        n = min(chunk.flow_controlled_length, self._owed)
        if n:
            self._owed -= n
            self._ex.ack(n)

    def ack_all(self) -> None:
        if self._owed:
            self._ex.ack(self._owed)
            self._owed = 0
