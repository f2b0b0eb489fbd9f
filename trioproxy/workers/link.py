"""One end of a supervisor <-> worker channel, over Trio: whole messages
out (one writer at a time), messages in (``channel.py`` frames them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from trioproxy.workers.channel import LineDecoder, encode

RECV = 64 * 1024  # bytes; one read


class Link:
    __slots__ = ("_lock", "sock")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self._lock = trio.Lock()  # several tasks send; a message must not interleave

    async def send(self, message: dict[str, Any]) -> None:
        """Raises OSError when the other end is gone."""
        data = memoryview(encode(message))
        async with self._lock:
            while data:
                data = data[await self.sock.send(data) :]

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Until end of file. Raises OSError (broken) or ValueError (garbage)."""
        decoder = LineDecoder()
        while data := await self.sock.recv(RECV):
            for msg in decoder.feed(data):
                yield msg

    def close(self) -> None:
        self.sock.close()
