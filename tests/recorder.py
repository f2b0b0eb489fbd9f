"""An HTTP endpoint in the test that records what it is sent (a webhook,
a collector): each request's path, headers and body; the scripted
statuses first, then 200."""

from __future__ import annotations

from collections import deque

import trio

from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import ResponseHead


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, list[tuple[bytes, bytes]], bytes]] = []  # the 200s
        self.script: deque[int] = deque()
        self._arrived = trio.Event()

    async def __call__(self, ex: ClientExchange) -> None:
        parts = []
        while (chunk := await ex.receive_body()) is not None:
            parts.append(chunk.data)
            ex.ack(chunk.flow_controlled_length)
        status = self.script.popleft() if self.script else 200
        if status == 200:
            self.got.append((ex.head.path, list(ex.head.headers), b"".join(parts)))
            self._arrived.set()
        await respond(ex, ResponseHead(status, [(b"content-length", b"0")]), b"")

    def bodies(self, path: bytes | None = None) -> list[bytes]:
        return [b for p, _, b in self.got if path is None or p == path]

    async def wait_for(self, n: int, path: bytes | None = None, seconds: float = 15) -> list[bytes]:
        """At least ``n`` bodies (to ``path``) recorded; those bodies."""
        with trio.fail_after(seconds):
            while len(found := self.bodies(path)) < n:
                self._arrived = trio.Event()
                await self._arrived.wait()
        return found
