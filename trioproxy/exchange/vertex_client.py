"""The client's exchange as a Vertex-format client sees it (vertex/client.py
has the translation; foreign_client.py the two phases): its request a
Messages request. Claude on Vertex answers in the Messages API's own
shapes, so the answer passes as it is."""

from __future__ import annotations

from trioproxy.bedrock.client import error_of
from trioproxy.exchange.foreign_client import COUNT_TOKENS, MESSAGES, ForeignClient
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import Headers, ResponseHead
from trioproxy.vertex.client import VertexTarget, google_error, to_messages

UNSERVED = VertexTarget("", "")


class VertexClient(ForeignClient):
    def __init__(
        self, inner: ClientExchange, target: VertexTarget = UNSERVED, *, unserved: str = ""
    ) -> None:
        super().__init__(inner, unserved=unserved)
        self.target = target

    def translate(self, raw: bytes) -> tuple[bytes, bytes, list[str]]:
        path = COUNT_TOKENS if self.target.counting else MESSAGES
        return path, to_messages(raw, self.target), []

    def whole(self, head: ResponseHead) -> bool:
        return bool(self.unserved)

    def finish(self, head: ResponseHead, body: bytes) -> tuple[int, Headers, bytes]:
        return head.status, [], google_error(head.status, error_of(body)[1])
