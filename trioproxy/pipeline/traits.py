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

_STREAM = re.compile(rb'"stream"\s*:\s*true')
_THINKING = re.compile(rb'"thinking"\s*:\s*\{|"type"\s*:\s*"(?:redacted_)?thinking"')
WINDOW = 16 * 1024  # bytes kept from each end of the body


class BodyTraits:
    __slots__ = ("_head", "_tail", "_total")

    def __init__(self) -> None:
        self._head = b""
        self._tail = b""
        self._total = 0

    def feed(self, chunk: bytes) -> None:
        """Keeps at most WINDOW bytes from each end: a copy of a few KiB per
        chunk, never of the body."""
        if len(self._head) < WINDOW:
            self._head += chunk[: WINDOW - len(self._head)]
        self._tail = (self._tail + chunk[-WINDOW:])[-WINDOW:]
        self._total += len(chunk)

    def _search(self, pattern: re.Pattern[bytes]) -> bool:
        if self._total <= 2 * WINDOW:  # head and tail cover it all: join them once
            overlap = len(self._head) + len(self._tail) - self._total
            return pattern.search(self._head + self._tail[overlap:]) is not None
        return pattern.search(self._head) is not None or pattern.search(self._tail) is not None

    @property
    def stream(self) -> bool:
        return self._search(_STREAM)

    @property
    def thinking(self) -> bool:
        return self._search(_THINKING)
