"""The client's exchange as a Vertex-format client sees it (vertex/client.py
has the translation; foreign_client.py the two phases): its request a
Messages request. Claude on Vertex answers in the Messages API's own
shapes, so the answer passes as it is."""

from __future__ import annotations

from trioproxy.exchange.foreign_client import COUNT_TOKENS, MESSAGES, ForeignClient
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.vertex.client import VertexTarget, to_messages


class VertexClient(ForeignClient):
    def __init__(self, inner: ClientExchange, target: VertexTarget) -> None:
        super().__init__(inner)
        self.target = target

    def translate(self, raw: bytes) -> tuple[bytes, bytes, list[str]]:
        path = COUNT_TOKENS if self.target.counting else MESSAGES
        return path, to_messages(raw, self.target), []
