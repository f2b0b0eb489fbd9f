"""A connection's single writer task, and flow-controlled sending, for HTTP/2
(server and client side alike).

Any task may queue frames in the h2 state machine and call ``request()``
(synchronous, for flow-control credit) or ``await flush()`` (to wait until the
bytes reached the socket: that wait is what makes a slow peer push back on us).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio


class _DataSender(Protocol):
    def sendable(self, stream_id: int) -> int: ...

    def send_data(self, stream_id: int, data: bytes) -> None: ...


class WindowGate:
    """Wakes a sender that waits for the peer to open a stream's window (and,
    opened by a reset or a closing connection, lets it see that too)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def open(self) -> None:
        self._event.set()

    async def wait(self, available: Callable[[], int]) -> None:
        self._event = trio.Event()
        if available() <= 0:
            await self._event.wait()


async def send_flow_controlled(
    proto: _DataSender,
    stream_id: int,
    data: bytes,
    writer: Writer,
    gate: WindowGate,
    check_open: Callable[[], None],
    stall_timeout: float = 60.0,
) -> None:
    """Queue ``data`` as DATA frames no faster than the peer's window allows.
    ``check_open`` raises (the caller's own error) once the stream is gone.
    Waiting for credit is bounded by ``stall_timeout`` (a peer that never opens
    the window): then trio.TooSlowError. The caller flushes afterwards."""
    view = memoryview(data)
    while view:
        check_open()
        n = proto.sendable(stream_id)
        if n <= 0:
            with trio.fail_after(stall_timeout):
                await gate.wait(lambda: proto.sendable(stream_id))
            continue
        proto.send_data(stream_id, bytes(view[:n]))
        view = view[n:]
        writer.request()


class _Sender(Protocol):
    async def send_all(self, data: bytes) -> None: ...


class Writer:
    def __init__(
        self, stream: _Sender, take: Callable[[], bytes], *, stall_timeout: float = 60.0
    ) -> None:
        """``stream``: a ByteIO or any trio Stream (send_all is all it needs)."""
        self._stream = stream
        self._stall_timeout = stall_timeout  # seconds one write may block (peer not reading)
        self.busy = False  # a write is blocked on the socket right now
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
        """Write until cancelled or the socket fails. However it ends (the
        socket broke, or the connection's reader cancelled us because the
        peer went away), ``failed`` is set and every task waiting in
        ``flush`` is woken to see it: nobody waits on a writer that is gone."""
        try:
            while True:
                await self._wanted.wait()
                self._wanted = trio.Event()
                gen = self._requested
                data = b"".join(self._extra) + self._take() if self._extra else self._take()
                self._extra.clear()
                if data:
                    self.busy = True
                    with trio.move_on_after(self._stall_timeout) as stalled:
                        await self._stream.send_all(data)
                    self.busy = False
                    if stalled.cancelled_caught:
                        raise trio.BrokenResourceError("peer stopped reading")
                self._written = gen
                self._done.set()
                self._done = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.failed = True
            self._done.set()
