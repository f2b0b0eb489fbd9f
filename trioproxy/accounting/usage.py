"""Token usage observed beside a response, sans-IO.

Anthropic reports usage in the JSON body (`usage`), or in a stream in
`message_start.message.usage` (the first event) and the cumulative
`message_delta.usage` (near the end); an `event: error` ends a stream too. A
stream carries hundreds of content deltas in between, so the observer keeps
only the first HEAD and the last TAIL bytes (streams smaller than both: all of
it) and, at the end, decodes the data lines there that carry usage, with
bytes.find instead of a line-by-line parse. An error event buried mid-stream,
far from both ends, would go uncounted. The bytes the client receives are
never touched.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

HEAD = 8 * 1024  # bytes at the start of a stream kept (message_start)
TAIL = 16 * 1024  # bytes at the end of a stream kept (message_delta, error)
MAX_JSON = 4 * 1024 * 1024  # bytes of a JSON body kept to read its usage
TOKEN_CLASSES = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""  # as served (the response's `model`)
    stop_reason: str = ""  # the answer's (a trace's gen_ai.response.finish_reasons)
    stream_errors: int = 0  # `event: error` inside a stream
    complete: bool = False  # the whole response was seen
    extra: dict[str, Any] = field(default_factory=dict)

    def merge(self, usage: object) -> None:
        """Apply a `usage` object. Stream values are cumulative, so a later
        report replaces an earlier one rather than adding to it."""
        if not isinstance(usage, dict):
            return
        for name in TOKEN_CLASSES:
            value = usage.get(name)
            if isinstance(value, int) and value >= 0:
                setattr(self, name, value)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TOKEN_CLASSES}


class UsageObserver:
    """Feed it the response body as it passes; read ``usage`` at the end.
    It keeps references to chunks, never copies on the way (a stream's
    events are joined only at the end, and only its first and last KiB)."""

    __slots__ = (
        "_head",
        "_head_len",
        "_json",
        "_json_bytes",
        "_stream",
        "_tail",
        "_tail_len",
        "usage",
    )

    def __init__(self, *, event_stream: bool) -> None:
        self._stream = event_stream
        self._json: list[bytes] = []  # references to the chunks: joined once at the end
        self._json_bytes = 0
        self._head: list[bytes] = []  # the chunks that hold the first HEAD + TAIL bytes
        self._head_len = 0
        # The chunks that hold the last TAIL bytes after them; made on first
        # use (an empty deque is a 600-byte block, for as long as a stream is held).
        self._tail: deque[bytes] | None = None
        self._tail_len = 0
        self.usage = Usage()

    def feed(self, chunk: bytes) -> None:
        if not self._stream:
            if self._json_bytes + len(chunk) <= MAX_JSON:
                self._json.append(chunk)
                self._json_bytes += len(chunk)
            return
        if self._head_len < HEAD + TAIL:  # small streams are kept whole
            self._head.append(chunk)
            self._head_len += len(chunk)
            return
        tail = self._tail
        if tail is None:
            tail = self._tail = deque()
        tail.append(chunk)
        self._tail_len += len(chunk)
        while self._tail_len - len(tail[0]) >= TAIL:
            self._tail_len -= len(tail.popleft())

    def _scan_stream(self) -> None:
        head = b"".join(self._head)
        if not self._tail and len(head) <= HEAD + TAIL:
            self._scan(head, 0, len(head))
            return
        start = head[:HEAD]
        self._scan(start, 0, start.rfind(b"\n") + 1)  # whole lines only
        tail = (head[-TAIL:] + b"".join(self._tail or ()))[-TAIL:]
        self._scan(tail, tail.find(b"\n") + 1, len(tail))

    def _scan(self, data: bytes, lo: int, hi: int) -> None:
        """Lines in data[lo:hi]: count error events, decode usage lines."""
        at = data.find(b"event: error", lo, hi)
        while at >= 0:
            self.usage.stream_errors += 1
            at = data.find(b"event: error", at + 12, hi)
        at = data.find(b'"usage"', lo, hi)
        while at >= 0:
            line_start = data.rfind(b"\n", lo, at) + 1 or lo
            line_end = data.find(b"\n", at, hi)
            if line_end < 0:
                line_end = hi
            if data.startswith(b"data:", line_start):
                self._event(data[line_start + 5 : line_end].strip())
            at = data.find(b'"usage"', line_end, hi)

    def _event(self, payload: bytes) -> None:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if doc.get("type") == "message_start" and isinstance(doc.get("message"), dict):
            message = doc["message"]
            self.usage.merge(message.get("usage"))
            if isinstance(message.get("model"), str):
                self.usage.model = message["model"]
        elif doc.get("type") == "message_delta":
            self.usage.merge(doc.get("usage"))
            delta = doc.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.usage.stop_reason = delta["stop_reason"][:40]

    def finish(self, *, complete: bool) -> Usage:
        """``complete`` is False for a stream the client abandoned or the
        upstream broke: what was seen is kept, flagged incomplete."""
        if self._stream:
            self._scan_stream()
        elif self._json:
            try:
                doc = orjson.loads(self._json[0] if len(self._json) == 1 else b"".join(self._json))
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict):
                self.usage.merge(doc.get("usage"))
                if isinstance(doc.get("model"), str):
                    self.usage.model = doc["model"]
                if isinstance(doc.get("stop_reason"), str):
                    self.usage.stop_reason = doc["stop_reason"][:40]
        self.usage.complete = complete
        return self.usage


def requested_model(first_chunk: bytes) -> str:
    """The requested `model`, read from the start of the request body without
    parsing it all (a 1 MB body would cost a millisecond): clients put it at
    the top. Best effort, for accounting labels only."""
    at = first_chunk.find(b'"model"')
    if at < 0:
        return ""
    colon = first_chunk.find(b":", at + 7)
    quote = first_chunk.find(b'"', colon + 1)
    end = first_chunk.find(b'"', quote + 1)
    if colon < 0 or quote < 0 or end < 0 or end - quote > 200:
        return ""
    return first_chunk[quote + 1 : end].decode("utf-8", "replace")
