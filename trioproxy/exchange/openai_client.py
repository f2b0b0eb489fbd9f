"""The client's exchange as a Chat Completions client sees it
(openai/client.py has the translations; foreign_client.py the two phases):
its request a Messages request; every answer, the proxy's own errors
included, in Chat Completions' shapes."""

from __future__ import annotations

import orjson

from trioproxy.exchange.foreign_client import MESSAGES, ForeignClient, Translate
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.openai.client import (
    ChunkStream,
    Untranslatable,
    to_completion,
    to_error,
    to_messages,
)
from trioproxy.proto.events import Headers, ResponseHead

CHAT_COMPLETIONS = b"/v1/chat/completions"


def is_chat(method: bytes, path: bytes) -> bool:
    return method == b"POST" and path == CHAT_COMPLETIONS


def unserved(method: bytes, path: bytes) -> str:
    """What a 404 says for a request under ``/v1/chat/`` that is not
    ``POST /v1/chat/completions``; "" for any other request."""
    if not path.startswith(b"/v1/chat/") or is_chat(method, path):
        return ""
    return f"Invalid URL ({method.decode('latin-1')} {path.decode('latin-1')[:200]})"


def _is_stream(head: ResponseHead) -> bool:
    kind = head.header(b"content-type") or b""
    return head.status == 200 and kind.startswith(b"text/event-stream")


class OpenAIClient(ForeignClient):
    def __init__(self, inner: ClientExchange, *, unserved: str = "") -> None:
        super().__init__(inner, unserved=unserved)
        self._model = ""
        self._usage = False

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

    def whole(self, head: ResponseHead) -> bool:
        return not _is_stream(head)  # a Message or an error

    def streamed(self, head: ResponseHead) -> tuple[ResponseHead, Translate] | None:
        drop = (b"content-type", b"content-length")
        headers = [(n, v) for n, v in head.headers if n not in drop]
        headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        chunks = ChunkStream(self._model, include_usage=self._usage)
        return ResponseHead(200, headers, head.reason), chunks.feed

    def finish(self, head: ResponseHead, body: bytes) -> tuple[int, Headers, bytes]:
        if head.status == 200:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict) and doc.get("type") == "message":
                try:
                    return 200, [], orjson.dumps(to_completion(doc, self._model))
                except (TypeError, ValueError, AttributeError):
                    pass  # an integer over 64 bits, a field of the wrong type
            # A 200 that is no Message the proxy can translate is an
            # upstream fault: a 502, never a 200 that carries an error.
            what = "the upstream's answer is not a Message the proxy can translate"
            return (
                502,
                [],
                to_error(502, orjson.dumps({"error": {"type": "api_error", "message": what}})),
            )
        return head.status, [], to_error(head.status, body)
