"""The client's exchange as a Bedrock-format client sees it (bedrock/client.py
has the translations): its request, once read, is a Messages request for
the rest of the proxy; every answer goes back in Bedrock's format, the
proxy's own errors included.

Two phases: the answer side translates from the start (a refused caller
gets AWS's shape too); the request is read and translated only once the
caller is admitted (``read_request``), so nobody unauthenticated makes the
proxy read a body.
"""

from __future__ import annotations

from trioproxy.bedrock.client import (
    EVENT_STREAM,
    BedrockTarget,
    SSEToEventStream,
    aws_error,
    count_answer,
    to_messages,
)
from trioproxy.errors import InvalidRequest, RequestTooLarge
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import BodyChunk, RequestHead, ResponseHead

MESSAGES = b"/v1/messages"
COUNT_TOKENS = b"/v1/messages/count_tokens"
WHOLE_MAX = 1024 * 1024  # bytes of an error or a count kept to translate it whole
API_VERSION = b"2023-06-01"


class BedrockClient:
    def __init__(self, inner: ClientExchange, target: BedrockTarget) -> None:
        self._inner = inner
        self.target = target
        self.head = inner.head
        self.request_id = inner.request_id
        self.protocol = inner.protocol
        self._body: bytes | None = None  # the translated request body
        self._stream: SSEToEventStream | None = None
        self._held: ResponseHead | None = None  # a whole answer's head, until its end
        self._chunks: list[bytes] = []
        self._size = 0

    @property
    def peer(self) -> str:
        return self._inner.peer

    @property
    def has_body(self) -> bool:
        return bool(self._body) if self._body is not None else self._inner.has_body

    @property
    def response_started(self) -> bool:
        return self._held is not None or self._inner.response_started

    async def read_request(self, max_bytes: int) -> None:
        """Read the client's body whole (within ``max_bytes``) and become
        the Messages request it stands for."""
        parts: list[bytes] = []
        total = 0
        while (chunk := await self._inner.receive_body()) is not None:
            total += len(chunk.data)
            if total > max_bytes:
                raise RequestTooLarge(f"request body over the proxy's limit of {max_bytes} bytes")
            parts.append(chunk.data)
            self._inner.ack(chunk.flow_controlled_length)
        try:
            body, betas = to_messages(b"".join(parts), self.target)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        old = self._inner.head
        dropped = (b"content-length", b"content-type", b"anthropic-beta", b"anthropic-version")
        headers = [(n, v) for n, v in old.headers if n not in dropped]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"anthropic-version", API_VERSION),
        ]
        if betas:
            headers.append((b"anthropic-beta", ",".join(betas).encode()))
        path = COUNT_TOKENS if self.target.action == "count-tokens" else MESSAGES
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

    async def send_head(self, head: ResponseHead) -> None:
        kind = head.header(b"content-type") or b""
        if head.status == 200 and kind.startswith(b"text/event-stream"):
            self._stream = SSEToEventStream()
            drop = (b"content-type", b"content-length")
            headers = [(n, v) for n, v in head.headers if n not in drop]
            headers.append((b"content-type", EVENT_STREAM))
            await self._inner.send_head(ResponseHead(200, headers, head.reason))
        elif head.status >= 400 or self.target.action == "count-tokens":
            self._held = head  # translated whole, at the end
        else:
            await self._inner.send_head(head)  # a Message: Bedrock's JSON is Anthropic's

    async def send_body(self, data: bytes) -> None:
        if self._held is not None:
            self._size += len(data)
            if self._size <= WHOLE_MAX:
                self._chunks.append(data)
            return
        if self._stream is not None:
            data = self._stream.feed(data)
            if not data:
                return
        await self._inner.send_body(data)

    async def end(self) -> None:
        head = self._held
        if head is not None:
            self._held = None
            body = b"".join(self._chunks)
            status, extra = head.status, []
            counted = count_answer(body) if head.status == 200 else None
            if counted is not None:
                body = counted
            else:
                status, name, body = aws_error(head.status, body)
                extra.append((b"x-amzn-errortype", f"{name}:".encode()))
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
