"""The client's exchange as a Bedrock-format client sees it (bedrock/client.py
has the translations; foreign_client.py the two phases): its request a
Messages request; every answer, the proxy's own errors included, in
Bedrock's format."""

from __future__ import annotations

from trioproxy.bedrock.client import (
    EVENT_STREAM,
    BedrockTarget,
    SSEToEventStream,
    aws_error,
    count_answer,
    to_messages,
)
from trioproxy.exchange.foreign_client import COUNT_TOKENS, MESSAGES, ForeignClient
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.proto.events import ResponseHead

WHOLE_MAX = 1024 * 1024  # bytes of an error or a count kept to translate it whole


class BedrockClient(ForeignClient):
    def __init__(self, inner: ClientExchange, target: BedrockTarget) -> None:
        super().__init__(inner)
        self.target = target
        self._stream: SSEToEventStream | None = None
        self._held: ResponseHead | None = None  # a whole answer's head, until its end
        self._chunks: list[bytes] = []
        self._size = 0

    def translate(self, raw: bytes) -> tuple[bytes, bytes, list[str]]:
        body, betas = to_messages(raw, self.target)
        path = COUNT_TOKENS if self.target.action == "count-tokens" else MESSAGES
        return path, body, betas

    @property
    def response_started(self) -> bool:
        return self._held is not None or self._inner.response_started

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
