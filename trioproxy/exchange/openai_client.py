"""The client's exchange as a Chat Completions client sees it
(openai/client.py has the translations; foreign_client.py the two phases):
its request a Messages request; every answer, the proxy's own errors
included, in Chat Completions' shapes."""

from __future__ import annotations

import orjson

from trioproxy.exchange.foreign_client import MESSAGES, ForeignClient
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.openai.client import (
    ChunkStream,
    Untranslatable,
    to_completion,
    to_error,
    to_messages,
)
from trioproxy.proto.events import ResponseHead

CHAT_COMPLETIONS = b"/v1/chat/completions"
WHOLE_MAX = 32 * 1024 * 1024  # bytes of a JSON answer kept to translate it whole


def is_chat(method: bytes, path: bytes) -> bool:
    return method == b"POST" and path == CHAT_COMPLETIONS


class OpenAIClient(ForeignClient):
    def __init__(self, inner: ClientExchange) -> None:
        super().__init__(inner)
        self._model = ""
        self._usage = False
        self._stream: ChunkStream | None = None
        self._held: ResponseHead | None = None
        self._chunks: list[bytes] = []
        self._size = 0

    def translate(self, raw: bytes) -> tuple[bytes, bytes, list[str]]:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ValueError("the request body is not JSON") from None
        if not isinstance(doc, dict):
            raise ValueError("the request body is not a JSON object")
        try:
            messages, self._usage = to_messages(doc)
        except Untranslatable as exc:
            raise ValueError(str(exc)) from None
        self._model = str(messages["model"])
        return MESSAGES, orjson.dumps(messages), []

    @property
    def response_started(self) -> bool:
        return self._held is not None or self._inner.response_started

    async def send_head(self, head: ResponseHead) -> None:
        kind = head.header(b"content-type") or b""
        if head.status == 200 and kind.startswith(b"text/event-stream"):
            self._stream = ChunkStream(self._model, include_usage=self._usage)
            drop = (b"content-type", b"content-length")
            headers = [(n, v) for n, v in head.headers if n not in drop]
            headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
            await self._inner.send_head(ResponseHead(200, headers, head.reason))
        else:
            self._held = head  # a Message or an error: translated whole, at the end

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
            raw = b"".join(self._chunks)
            body = to_error(head.status, raw)
            if head.status == 200:
                try:
                    doc = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    doc = None
                if isinstance(doc, dict) and doc.get("type") == "message":
                    body = orjson.dumps(to_completion(doc, self._model))
            drop = (b"content-type", b"content-length")
            headers = [(n, v) for n, v in head.headers if n not in drop]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await self._inner.send_head(ResponseHead(head.status, headers, b""))
            await self._inner.send_body(body)
        await self._inner.end()
