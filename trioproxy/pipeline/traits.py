"""What a request body says about itself, noticed as it streams past (for
the diagnostic line of a failed forward): whether it asks for a stream and
whether it carries thinking (the config or thinking blocks).

Byte patterns are safe here: inside a JSON string every quote is escaped,
so ``"stream":true`` can only be JSON structure, never prose. A tail of the
previous chunk is kept so a match split across chunks is still seen.
"""

from __future__ import annotations

import re

_STREAM = re.compile(rb'"stream"\s*:\s*true')
_THINKING = re.compile(rb'"thinking"\s*:\s*\{|"type"\s*:\s*"(?:redacted_)?thinking"')
_TAIL = 64  # bytes; longer than either pattern with generous whitespace


class BodyTraits:
    __slots__ = ("_tail", "stream", "thinking")

    def __init__(self) -> None:
        self.stream = False
        self.thinking = False
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if self.stream and self.thinking:
            return
        data = self._tail + chunk
        if not self.stream and _STREAM.search(data):
            self.stream = True
        if not self.thinking and _THINKING.search(data):
            self.thinking = True
        self._tail = data[-_TAIL:]
