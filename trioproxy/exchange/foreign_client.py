"""The client's exchange as a client of another format sees it (Bedrock's,
Vertex AI's): its request, once read, is a Messages request for the rest
of the proxy; every answer goes back in the client's format.

Two phases: the answer side translates from the start (a refused caller
gets its format's shape too); the request is read and translated only
once the caller is admitted (``read_request``), so nobody unauthenticated
makes the proxy read a body.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from trioproxy.errors import InvalidRequest, NotFound, RequestTooLarge
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import BodyChunk, Headers, RequestHead, ResponseHead

MESSAGES = b"/v1/messages"
COUNT_TOKENS = b"/v1/messages/count_tokens"
API_VERSION = b"2023-06-01"
WHOLE_MAX = 32 * 1024 * 1024  # bytes of an answer kept to translate it whole
Translate = Callable[[bytes], bytes]


class ForeignClient:
    """Delegates to the client's exchange; subclasses translate."""

    def __init__(self, inner: ClientExchange, *, unserved: str = "") -> None:
        self._inner = inner
        # A path of the format that names nothing it serves: its 404, said
        # in the format's shape once the caller is admitted.
        self.unserved = unserved
        self.head = inner.head
        self.request_id = inner.request_id
        self.protocol = inner.protocol
        self._body: bytes | None = None  # the translated request body
        self._feed: Translate | None = None  # an answer translated as it streams
        self._held: ResponseHead | None = None  # an answer kept whole, until its end
        self._chunks: list[bytes] = []
        self._size = 0

    def translate(self, raw: bytes) -> tuple[bytes, bytes, list[str]]:
        """(the Messages path, its body, the anthropic-beta values); raises
        ValueError (a 400) for a request that cannot be one."""
        raise NotImplementedError

    @property
    def peer(self) -> str:
        return self._inner.peer

    @property
    def has_body(self) -> bool:
        return bool(self._body) if self._body is not None else self._inner.has_body

    async def read_request(self, max_bytes: int) -> None:
        """Read the client's body whole (within ``max_bytes``) and become
        the Messages request it stands for."""
        if self.unserved:
            raise NotFound(self.unserved)
        parts: list[bytes] = []
        total = 0
        while (chunk := await self._inner.receive_body()) is not None:
            total += len(chunk.data)
            if total > max_bytes:
                raise RequestTooLarge(f"request body over the proxy's limit of {max_bytes} bytes")
            parts.append(chunk.data)
            self._inner.ack(chunk.flow_controlled_length)
        try:
            path, body, betas = self.translate(b"".join(parts))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        old = self._inner.head
        dropped = (b"content-length", b"content-type", b"anthropic-version")
        headers: Headers = [(n, v) for n, v in old.headers if n not in dropped]
        if betas:
            headers = [(n, v) for n, v in headers if n != b"anthropic-beta"]
            headers.append((b"anthropic-beta", ",".join(betas).encode()))
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"anthropic-version", API_VERSION),
        ]
        self.head = RequestHead(b"POST", path, headers, old.http_version, old.authority, old.scheme)
        self._body = body

    async def receive_body(self) -> BodyChunk | None:
        if self._body is None:
            return await self._inner.receive_body()
        body, self._body = self._body, b""
        return BodyChunk(body) if body else None

    def ack(self, nbytes: int) -> None:
        if self._body is None:
            self._inner.ack(nbytes)

    def watch_disconnect(self) -> None:
        self._inner.watch_disconnect()

    # -- the answer: as it came (the defaults), translated as it streams, or whole --
    def whole(self, head: ResponseHead) -> bool:
        """Whether this answer is translated whole (``finish`` at its end)."""
        return False

    def streamed(self, head: ResponseHead) -> tuple[ResponseHead, Translate] | None:
        """The head and the translation of an answer translated as it streams."""
        return None

    def finish(self, head: ResponseHead, body: bytes) -> tuple[int, Headers, bytes]:
        """(status, headers to add, body) for an answer kept whole."""
        return head.status, [], body

    @property
    def response_started(self) -> bool:
        return self._held is not None or self._inner.response_started

    async def send_head(self, head: ResponseHead) -> None:
        if self.whole(head):
            self._held = head  # translated at the end
            return
        streamed = self.streamed(head)
        if streamed is not None:
            head, self._feed = streamed
        await self._inner.send_head(head)

    async def send_body(self, data: bytes) -> None:
        if self._held is not None:
            self._size += len(data)
            if self._size <= WHOLE_MAX:
                self._chunks.append(data)
            return
        if self._feed is not None:
            data = self._feed(data)
            if not data:
                return
        await self._inner.send_body(data)

    async def end(self) -> None:
        head = self._held
        if head is not None:
            self._held = None
            if self._size > WHOLE_MAX:  # never a truncated answer that looks whole
                head, whole = _too_large(head, self.request_id)
            else:
                whole = b"".join(self._chunks)
            status, extra, body = self.finish(head, whole)
            drop = (b"content-type", b"content-length")
            headers = [(n, v) for n, v in head.headers if n not in drop] + extra
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await self._inner.send_head(ResponseHead(status, headers, b""))
            await self._inner.send_body(body)
        await self._inner.end()

    async def abort(self) -> None:
        await self._inner.abort()


def _too_large(head: ResponseHead, request_id: str) -> tuple[ResponseHead, bytes]:
    """An answer over what the proxy keeps to translate, as a 502 in
    Anthropic's shape (translated into the client's like any error)."""
    message = f"the upstream's answer is over the {WHOLE_MAX} bytes the proxy translates whole"
    body = {"type": "error", "error": {"type": "api_error", "message": message}}
    if request_id:
        body["request_id"] = request_id
    return ResponseHead(502, head.headers, b""), orjson.dumps(body)
