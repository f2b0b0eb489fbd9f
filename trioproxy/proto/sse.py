"""Incremental Server-Sent Events observer (WHATWG HTML, "Parsing an event stream").

It watches a stream that the proxy forwards untouched: the bytes reach the client
exactly as they came, whatever this parser makes of them. Lines may end in CRLF,
LF or CR (a CR at the end of one chunk and an LF at the start of the next are one
terminator). There is no line-length limit on the stream; the *observer* keeps at
most ``max_event_bytes`` of one event's data and flags the event as truncated
beyond that, so a pathological stream cannot grow the proxy's memory.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_EVENT_BYTES = 4 * 1024 * 1024  # bytes of one event's data the observer keeps


class SSEEvent(NamedTuple):
    """A named tuple, not a frozen dataclass: one is made per event, and a
    frozen dataclass's ``__init__`` costs several times a tuple's."""

    event: bytes  # b"message" when no `event:` field was given
    data: bytes
    truncated: bool = False


class SSEParser:
    __slots__ = ("_data", "_event", "_fields", "_line", "_max", "_skip_lf", "_truncated")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._line = bytearray()  # the current, unterminated line
        self._data = bytearray()
        self._event = b""
        self._fields = False  # any field seen since the last dispatch
        self._truncated = False
        self._skip_lf = False

    @property
    def at_event_boundary(self) -> bool:
        """True when everything fed so far forms whole events: an `event: error`
        written now would be parsed as an event of its own."""
        return not self._line and not self._fields

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []  # an empty read must not forget a pending CR
        if self._skip_lf or self._line or self._fields or b"\r" in chunk:
            return self._feed_lines(chunk)
        return self._feed_events(chunk)

    def _feed_events(self, chunk: bytes) -> list[SSEEvent]:
        """The common shape at an event boundary, LF-only, an event as
        ``event: NAME`` then one ``data: ...`` line: one split per event
        instead of the line machine's work per line (a conversation-log
        row rebuilds a 150 KB answer, a thousand events, in one call).
        Any other block, and the unterminated rest, go through the line
        machine, which gives the same events for them."""
        blocks = chunk.split(b"\n\n")
        rest = blocks.pop()  # after the last blank line: not a whole event yet
        out: list[SSEEvent] = []
        limit = self._max
        for block in blocks:
            if block[:7] == b"event: ":
                nl = block.find(b"\n")
                if (
                    nl > 0
                    and block[nl + 1 : nl + 7] == b"data: "
                    and block.find(b"\n", nl + 1) < 0
                    and len(block) - nl - 7 < limit  # what the line machine keeps whole
                ):
                    out.append(SSEEvent(block[7:nl] or b"message", block[nl + 7 :]))
                    continue
            out.extend(self._feed_lines(block + b"\n\n"))
        if rest:
            out.extend(self._feed_lines(rest))
        return out

    def _feed_lines(self, chunk: bytes) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        for piece in chunk.splitlines(keepends=True):
            if piece[-1:] == b"\n" or piece[-1:] == b"\r":
                body = piece.rstrip(b"\r\n")
                if piece.endswith(b"\r"):
                    self._skip_lf = True  # only matters for the chunk's last line
                else:
                    self._skip_lf = False
                if self._line:
                    self._line += body
                    line = bytes(self._line)
                    self._line.clear()
                else:
                    line = body
                ev = self._process_line(line)
                if ev is not None:
                    out.append(ev)
            else:
                self._skip_lf = False
                room = self._max - len(self._line)
                if room > 0:
                    self._line += piece[:room]
                if len(piece) > room:
                    self._truncated = True  # the line stays non-empty: still mid-line
        return out

    def _process_line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if not self._fields:
                return None
            data = bytes(self._data[:-1]) if self._data.endswith(b"\n") else bytes(self._data)
            ev = SSEEvent(self._event or b"message", data, self._truncated)
            self._data.clear()
            self._event = b""
            self._fields = False
            self._truncated = False
            return ev
        if line[:1] == b":":
            return None  # comment
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        self._fields = True
        if name == b"event":
            self._event = value
        elif name == b"data":
            if len(self._data) + len(value) < self._max:
                self._data += value
                self._data += b"\n"
            else:
                self._truncated = True
        return None


class EventBoundary:
    """Cheap tracker of whether a forwarded SSE stream currently ends between
    events, from its last few bytes only (no per-line work on the hot path).

    It answers conservatively: when unsure it says False, and the writer then
    adds a blank line first, which is harmless at a real boundary (an event
    with no fields is never dispatched)."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b"\n\n"  # an empty stream is at a boundary

    def feed(self, chunk: bytes) -> None:
        if len(chunk) >= 4:
            self._tail = chunk[-4:]
        else:
            self._tail = (self._tail + chunk)[-4:]

    @property
    def at_boundary(self) -> bool:
        t = self._tail
        return t.endswith((b"\n\n", b"\r\r", b"\r\n\r\n", b"\n\r\n"))
