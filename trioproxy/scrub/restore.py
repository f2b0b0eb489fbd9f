"""Putting a request's placeholders back into its response, so that when the
model echoes ``<GITHUB_TOKEN_1>`` into a file or a command the client gets
the real value.

JSON responses: placeholders are plain ASCII, so they appear verbatim inside
JSON strings; each is replaced by its original, JSON-escaped. A small answer
is restored whole; a large one as it streams (JSONRestorer).

SSE streams: only ``content_block_delta`` events with a ``text_delta`` or an
``input_json_delta`` are rewritten; every other event passes byte for byte.
A placeholder may be split across two deltas, so the possible start of one
at the end of a delta (at most one placeholder's length) is held back and
put in front of the next delta of the same block, or flushed as its own
delta just before the block's ``content_block_stop``. Inside
``partial_json`` (JSON text being streamed) the original is JSON-escaped
before the delta is encoded again.

The mapping lives in memory for this one response and is never logged.
"""

from __future__ import annotations

from typing import Any, AnyStr

import orjson


def _escaped(value: str) -> str:
    """The JSON string content for ``value`` (without the quotes)."""
    return orjson.dumps(value).decode()[1:-1]


def restore_text(text: str, mapping: dict[str, str], *, json_escape: bool = False) -> str:
    if "<" not in text:
        return text
    for placeholder, original in mapping.items():
        if placeholder in text:
            text = text.replace(placeholder, _escaped(original) if json_escape else original)
    return text


def restore_json(body: bytes, mapping: dict[str, str]) -> bytes:
    """A whole JSON response with the placeholders replaced (same object if
    none occurs)."""
    if not mapping or b"<" not in body:
        return body
    out = body
    for placeholder, original in mapping.items():
        p = placeholder.encode()
        if p in out:
            out = out.replace(p, _escaped(original).encode())
    return out


def _held_tail(text: AnyStr, prefixes: frozenset[AnyStr], longest: int) -> int:
    """Length of the longest suffix of ``text`` that could be the start of a
    placeholder (0 if none); never more than one placeholder's length. For
    decoded deltas (str) and raw JSON answers (bytes) alike."""
    lt = "<" if isinstance(text, str) else b"<"
    at = text.find(lt, max(0, len(text) - (longest - 1)))
    while at != -1:
        if text[at:] in prefixes:
            return len(text) - at
        at = text.find(lt, at + 1)
    return 0


class JSONRestorer:
    """A JSON answer too large to hold (over attempt.ERROR_BODY_MAX),
    restored as it streams: bytes pass on at once except a tail that could
    be the start of a placeholder (at most one placeholder's length), which
    waits for the next chunk."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping
        self._prefixes = frozenset(p[:i].encode() for p in mapping for i in range(1, len(p)))
        self._longest = max((len(p) for p in mapping), default=0)
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        keep = _held_tail(data, self._prefixes, self._longest)
        ready, self._held = (data[:-keep], data[-keep:]) if keep else (data, b"")
        return restore_json(ready, self.mapping)

    def finish(self) -> bytes:
        """The end: a held tail never became a placeholder; it goes as it is."""
        rest, self._held = self._held, b""
        return rest


class SSERestorer:
    """Feed it the upstream's SSE bytes; it returns the bytes to send on."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping
        # Proper prefixes of placeholders that start with '<' (what may be held).
        self._prefixes = frozenset(p[:i] for p in mapping for i in range(1, len(p)))
        self._longest = max((len(p) for p in mapping), default=0)
        self._buf = b""
        self._held: dict[int, tuple[str, str]] = {}  # block index -> (delta type, text)

    def feed(self, chunk: bytes) -> bytes:
        self._buf += chunk
        out: list[bytes] = []
        while True:
            end, sep = self._boundary()
            if end < 0:
                break
            event, self._buf = self._buf[: end + sep], self._buf[end + sep :]
            out.append(self._event(event))
        return b"".join(out)

    def finish(self) -> bytes:
        """The end of the stream: held text as deltas (a stream cut before
        its content_block_stop must not lose it), then whatever is buffered."""
        held = b"".join(self._delta_event(i, k, t) for i, (k, t) in sorted(self._held.items()))
        self._held = {}
        rest, self._buf = self._buf, b""
        return held + rest

    def _boundary(self) -> tuple[int, int]:
        buf = self._buf
        a, b = buf.find(b"\n\n"), buf.find(b"\r\n\r\n")
        if a < 0 and b < 0:
            return -1, 0
        if b >= 0 and (a < 0 or b < a):
            return b, 4
        return a, 2

    def _event(self, event: bytes) -> bytes:
        if b"content_block_delta" not in event and b"content_block_stop" not in event:
            return event
        lines = event.splitlines(keepends=True)
        data_lines = [i for i, line in enumerate(lines) if line.startswith(b"data:")]
        if len(data_lines) != 1:
            return event
        line = lines[data_lines[0]]
        payload = line[5:].strip()
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event
        if not isinstance(doc, dict):
            return event
        index = doc.get("index")
        if not isinstance(index, int):
            return event
        if doc.get("type") == "content_block_stop":
            held = self._held.pop(index, None)
            if held is None or not held[1]:
                return event
            return self._delta_event(index, held[0], held[1]) + event
        delta = doc.get("delta")
        if not isinstance(delta, dict):
            return event
        kind = delta.get("type")
        field = {"text_delta": "text", "input_json_delta": "partial_json"}.get(str(kind))
        if field is None or not isinstance(delta.get(field), str):
            return event
        prior = self._held.pop(index, (kind, ""))[1]
        text = prior + delta[field]
        if "<" not in text:
            return event
        keep = _held_tail(text, self._prefixes, self._longest)
        ready, tail = (text[:-keep], text[-keep:]) if keep else (text, "")
        if tail:
            self._held[index] = (str(kind), tail)
        restored = restore_text(ready, self.mapping, json_escape=field == "partial_json")
        if restored == delta[field] and not prior and not tail:
            return event  # a '<' that was no placeholder: the bytes as they came
        delta[field] = restored
        ending = line[len(line.rstrip(b"\r\n")) :]
        lines[data_lines[0]] = b"data: " + orjson.dumps(doc) + ending
        return b"".join(lines)

    def _delta_event(self, index: int, kind: str, text: str) -> bytes:
        field = "text" if kind == "text_delta" else "partial_json"
        doc: dict[str, Any] = {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": kind, field: text},
        }
        return b"event: content_block_delta\ndata: " + orjson.dumps(doc) + b"\n\n"
