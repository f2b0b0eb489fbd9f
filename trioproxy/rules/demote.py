"""Demotion (pure): a non-streaming Messages request sent upstream as a
stream, and the stream rebuilt into the one JSON Message the API would
have returned.

Why: a non-streaming answer gets no response headers until it is whole,
minutes for a long Opus answer with extended thinking, and every header
timeout on the way (ours, a front proxy's, a load balancer's) may fire
first. A stream's headers come at once.

The request edit is byte-level: ``"stream": true`` goes in (or replaces a
top-level ``false``/``null``) and every other byte stays as sent, so a
30-digit integer in a tool input survives.

The assembler follows the streaming protocol event by event: message_start
gives the message; content blocks are started, extended by their deltas
(text, citations, tool input JSON fragments, thinking, signature) and
stopped; message_delta sets stop_reason / stop_sequence and the cumulative
usage; message_stop ends it. Tool inputs are spliced in as the upstream's
own JSON text, never re-encoded. An ``event: error`` becomes the error
JSON with its status. Anything it cannot place (an unknown event or delta
type, a stream that ends early) is a DemoteFailed, never dropped content.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import orjson

from trioproxy.proto.sse import SSEParser

# The status the API answers a non-streaming request with, by error type.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_STREAM_KEY = re.compile(rb'"stream"\s*:\s*(false|null)')
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]', re.DOTALL)
# Where a tool input's raw JSON goes; the nonce makes it unguessable, so no
# text of the answer can be taken for it.
_PLACEHOLDER = "\x00trioproxy-input-{}-{}\x00"


class DemoteFailed(Exception):
    """The stream cannot be rebuilt into a Message (the proxy answers 502,
    or retries / fails over: nothing has reached the client)."""


def streaming_body(body: bytes, doc: dict[str, Any]) -> bytes | None:
    """``body`` asking for a stream, or None when it already does (or it
    is not a Messages request the proxy can demote). ``doc`` is the same
    body parsed."""
    stream = doc.get("stream", False)
    if stream is True:
        return None
    if "stream" not in doc:
        start = body.index(b"{")  # a JSON object: the parse said so
        rest = body[start + 1 :]
        sep = b"" if rest.lstrip().startswith(b"}") else b","
        return body[: start + 1] + b'"stream":true' + sep + rest
    if stream not in (False, None):
        return None  # not a boolean: the upstream judges it
    for m in _STREAM_KEY.finditer(body):
        if _depth_at(body, m.start()) == 1:
            return body[: m.start(1)] + b"true" + body[m.end(1) :]
    return None


def _depth_at(body: bytes, offset: int) -> int:
    """Object/array nesting at ``offset``, skipping strings; -1 when
    ``offset`` is inside a string (a value that looks like the key)."""
    depth = 0
    for t in _TOKENS.finditer(body, 0, offset + 1):
        if t.start() == offset:
            return depth
        if t.end() > offset:
            return -1  # the key text is inside a longer string
        c = t.group()
        if c in (b"{", b"["):
            depth += 1
        elif c in (b"}", b"]"):
            depth -= 1
    return depth


class MessageAssembler:
    """Feed the SSE bytes; ``result()`` at the end gives (status, JSON)."""

    def __init__(self, *, request_id: str = "", max_bytes: int = 32 * 1024 * 1024) -> None:
        self._sse = SSEParser()
        self._request_id = request_id
        self._max = max_bytes
        self._seen = 0
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._inputs: dict[int, list[str]] = {}  # tool input JSON fragments
        # text, thinking and signature fragments, joined once at the end: adding
        # each to the block's string would copy the answer so far per delta
        self._pieces: dict[tuple[int, str], list[str]] = {}
        self._error: tuple[int, bytes] | None = None
        self._stopped = False
        self._nonce = os.urandom(8).hex()

    def feed(self, chunk: bytes) -> None:
        self._seen += len(chunk)
        if self._seen > self._max:
            raise DemoteFailed(f"the streamed answer is over {self._max} bytes")
        for ev in self._sse.feed(chunk):
            if ev.truncated:
                raise DemoteFailed("an event of the stream is too large to rebuild")
            self._event(ev.event.decode("latin-1"), ev.data)

    def result(self) -> tuple[int, bytes]:
        if self._error is not None:
            return self._error
        if not self._stopped or self._message is None:
            raise DemoteFailed("the stream ended before message_stop")
        message = dict(self._message)
        content = []
        raw: dict[str, str] = {}
        for index in sorted(self._blocks):
            block = self._blocks[index]
            for (at, field), pieces in self._pieces.items():
                if at == index:
                    block = {**block, field: str(block.get(field, "")) + "".join(pieces)}
            text = "".join(self._inputs.get(index, ()))
            if text.strip():
                try:
                    json.loads(text)  # the stdlib: any integer size
                except ValueError:
                    raise DemoteFailed(f"content block {index}: tool input is not JSON") from None
                key = _PLACEHOLDER.format(self._nonce, index)
                raw[orjson.dumps(key).decode()] = text
                block = {**block, "input": key}
            content.append(block)
        message["content"] = content
        out = orjson.dumps(message).decode()
        for quoted, text in raw.items():
            out = out.replace(quoted, text, 1)
        return 200, out.encode()

    # -- the events ----------------------------------------------------------------
    def _event(self, name: str, data: bytes) -> None:
        if name == "ping":
            return
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise DemoteFailed(f"event {name}: data is not JSON") from None
        if not isinstance(doc, dict):
            raise DemoteFailed(f"event {name}: data is not an object")
        if name == "error":
            self._on_error(doc)
            return
        if self._error is not None or self._stopped:
            raise DemoteFailed(f"event {name} after the end of the message")
        handler = _HANDLERS.get(name)
        if handler is None:
            raise DemoteFailed(f"unknown event type {name!r}: cannot place it in a Message")
        handler(self, doc)

    def _on_error(self, doc: dict[str, Any]) -> None:
        err = doc.get("error")
        kind = err.get("type") if isinstance(err, dict) else None
        status = ERROR_STATUS.get(kind, 500) if isinstance(kind, str) else 500
        body = {"type": "error", "error": err if isinstance(err, dict) else {}}
        body["request_id"] = doc.get("request_id") or self._request_id
        self._error = (status, orjson.dumps(body))

    def _on_message_start(self, doc: dict[str, Any]) -> None:
        message = doc.get("message")
        if not isinstance(message, dict):
            raise DemoteFailed("message_start without a message")
        self._message = dict(message)
        self._message["usage"] = dict(message.get("usage") or {})

    def _on_block_start(self, doc: dict[str, Any]) -> None:
        index, block = doc.get("index"), doc.get("content_block")
        if not isinstance(index, int) or not isinstance(block, dict):
            raise DemoteFailed("content_block_start without an index and a block")
        self._blocks[index] = dict(block)

    def _on_block_delta(self, doc: dict[str, Any]) -> None:
        index, delta = doc.get("index"), doc.get("delta")
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None or not isinstance(delta, dict):
            raise DemoteFailed("content_block_delta for a block that was not started")
        kind = delta.get("type")
        assert isinstance(index, int)
        field = _TEXT_DELTAS.get(kind) if isinstance(kind, str) else None
        if field is not None:
            self._pieces.setdefault((index, field), []).append(str(delta.get(field, "")))
        elif kind == "input_json_delta":
            self._inputs.setdefault(index, []).append(str(delta.get("partial_json", "")))
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))
        else:
            raise DemoteFailed(f"unknown delta type {kind!r}: cannot place it in a Message")

    def _on_block_stop(self, doc: dict[str, Any]) -> None:
        if doc.get("index") not in self._blocks:
            raise DemoteFailed("content_block_stop for a block that was not started")

    def _on_message_delta(self, doc: dict[str, Any]) -> None:
        if self._message is None:
            raise DemoteFailed("message_delta before message_start")
        delta = doc.get("delta")
        if isinstance(delta, dict):
            self._message.update(delta)  # stop_reason, stop_sequence (and what comes)
        usage = doc.get("usage")
        if isinstance(usage, dict):
            self._message["usage"].update(usage)  # cumulative: a later value replaces

    def _on_message_stop(self, doc: dict[str, Any]) -> None:
        if self._message is None:
            raise DemoteFailed("message_stop before message_start")
        self._stopped = True


# delta type -> the block field its fragments add up to
_TEXT_DELTAS = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}

_HANDLERS = {
    "message_start": MessageAssembler._on_message_start,
    "content_block_start": MessageAssembler._on_block_start,
    "content_block_delta": MessageAssembler._on_block_delta,
    "content_block_stop": MessageAssembler._on_block_stop,
    "message_delta": MessageAssembler._on_message_delta,
    "message_stop": MessageAssembler._on_message_stop,
}
