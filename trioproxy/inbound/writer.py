"""A connection's single writer task, for HTTP/2 (server and client side).

Any task may queue frames in the h2 state machine and call ``request()``
(synchronous, for flow-control credit) or ``await flush()`` (to wait until the
bytes reached the socket: that wait is what makes a slow peer push back on us).
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class Writer:
    def __init__(self, stream: trio.abc.Stream, take: Callable[[], bytes]) -> None:
        self._stream = stream
        self._take = take  # returns the bytes queued so far (h2's data_to_send)
        self._wanted = trio.Event()
        self._done = trio.Event()
        self._requested = 0
        self._written = 0
        self._extra: list[bytes] = []
        self.failed = False

    def request(self) -> int:
        self._requested += 1
        self._wanted.set()
        return self._requested

    def append_raw(self, data: bytes) -> None:
        """Bytes built outside the state machine (a graceful GOAWAY), sent after
        whatever the state machine queued before them."""
        self._extra.append(self._take() + data)
        self.request()

    async def flush(self) -> None:
        """Wait until everything queued so far is written. Raises
        BrokenResourceError if the connection died."""
        gen = self.request()
        while self._written < gen:
            if self.failed:
                raise trio.BrokenResourceError("connection writer failed")
            await self._done.wait()
        if self.failed:
            raise trio.BrokenResourceError("connection writer failed")

    async def run(self) -> None:
        """Write until cancelled or the socket fails (then ``failed`` is set and
        waiters are woken)."""
        try:
            while True:
                await self._wanted.wait()
                self._wanted = trio.Event()
                gen = self._requested
                data = b"".join(self._extra) + self._take() if self._extra else self._take()
                self._extra.clear()
                if data:
                    await self._stream.send_all(data)
                self._written = gen
                self._done.set()
                self._done = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.failed = True
            self._done.set()
