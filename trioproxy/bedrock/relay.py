"""Bedrock's own frames, kept for a client of Bedrock's format (pure).

A Bedrock provider's stream is read as SSE so that every response stage
(usage, the log, scrubbing's restore, pings) works on one dialect; a client
of Bedrock's format then gets frames again. Where no stage changed an
event, that client should get the frame Bedrock sent, byte for byte (its
padding member, an exception's own type), not the proxy's re-encoding.
The reading side remembers each frame by the event data it became; the
writing side takes the frame back when an event's data is still the same,
and encodes afresh otherwise (an event a stage edited, or one the proxy
added). Entries skipped over are events a stage changed or dropped; they
are forgotten at the next match. Bounded: a stage that holds events back
(scrubbing's restore, across a placeholder) can leave only so much here.
"""

from __future__ import annotations

from collections import deque

MAX_ENTRIES = 256
MAX_BYTES = 4 << 20


class FrameMemo:
    __slots__ = ("_bytes", "_entries")

    def __init__(self) -> None:
        self._entries: deque[tuple[bytes, bytes]] = deque()  # (event data, its frame)
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, data: bytes, frame: bytes) -> None:
        """``frame`` became the SSE event whose data is ``data``."""
        self._entries.append((data, frame))
        self._bytes += len(data) + len(frame)
        while len(self._entries) > MAX_ENTRIES or self._bytes > MAX_BYTES:
            self._drop()

    def take(self, data: bytes) -> bytes | None:
        """The frame an event with this data came from (None: a changed or
        a new event, to encode afresh)."""
        for i, (kept, _) in enumerate(self._entries):
            if kept == data:
                for _ in range(i):
                    self._drop()
                self._bytes -= len(kept) + len(self._entries[0][1])
                return self._entries.popleft()[1]
        return None

    def _drop(self) -> None:
        data, frame = self._entries.popleft()
        self._bytes -= len(data) + len(frame)
