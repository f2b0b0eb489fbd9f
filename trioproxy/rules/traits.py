"""What a request body says about itself (for the diagnostic line of a
failed forward): whether it asks for a stream and whether it uses thinking.

Only the body's first and last WINDOW bytes are kept and looked at, and
only when asked: these are top-level keys, which clients write before or
after the (possibly megabyte-long) ``messages`` array, and nothing is
scanned on the request path. Byte patterns are safe here: inside a JSON
string every quote is escaped, so ``"stream":true`` can only be structure,
never prose.
"""

from __future__ import annotations

import re
from collections import deque

_STREAM = re.compile(rb'"stream"\s*:\s*true')
_THINKING = re.compile(rb'"thinking"\s*:\s*\{|"type"\s*:\s*"(?:redacted_)?thinking"')
WINDOW = 16 * 1024  # bytes kept from each end of the body


class BodyTraits:
    """Keeps references to the chunks that hold the first and the last
    WINDOW bytes (no copy on the request path); joins them only when asked."""

    __slots__ = ("_head", "_head_len", "_tail", "_tail_len", "_total")

    def __init__(self) -> None:
        self._head: list[bytes] = []
        self._head_len = 0
        # Made on first use: most request bodies fit the head, and an empty
        # deque is a 600-byte block kept for as long as the stream is held.
        self._tail: deque[bytes] | None = None
        self._tail_len = 0
        self._total = 0

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._head_len < WINDOW:
            self._head.append(chunk)
            self._head_len += len(chunk)
            return
        tail = self._tail
        if tail is None:
            tail = self._tail = deque()
        tail.append(chunk)
        self._tail_len += len(chunk)
        while self._tail_len - len(tail[0]) >= WINDOW:
            self._tail_len -= len(tail.popleft())

    def _search(self, pattern: re.Pattern[bytes]) -> bool:
        head = b"".join(self._head)
        if not self._tail:  # the head holds it all
            return pattern.search(head) is not None
        tail = (head[-WINDOW:] + b"".join(self._tail))[-WINDOW:]
        if self._total <= 2 * WINDOW:  # head and tail cover it all: one search
            return pattern.search(head + b"".join(self._tail)) is not None
        return pattern.search(head[:WINDOW]) is not None or pattern.search(tail) is not None

    @property
    def stream(self) -> bool:
        return self._search(_STREAM)

    @property
    def thinking(self) -> bool:
        return self._search(_THINKING)
