"""Bytes in and out of one connection, as cheaply as Trio allows.

``SocketIO`` works on the raw socket of a plain TCP connection: it reads
with ``recv_into`` into one buffer shared by every connection of a server
and sends at once, waiting for readiness only when the kernel says EAGAIN.
That skips ``SocketStream``'s conflict detectors and the two scheduler
checkpoints trio's socket methods take on every call: per SSE event that
is most of what separates a proxy from the floor (see ``bench/floor.py``).
``StreamIO`` wraps any ``trio.abc.Stream`` (TLS, or memory streams in the
component tests) behind the same four methods.

Rules:

* What ``receive`` returns is valid until the next ``receive`` on *any*
  connection of the same server (the buffer is shared): hand it to a parser
  (h11 and h2 copy what they keep) before the next await.
* A read that found data without waiting makes the next read on the same
  connection take a checkpoint first. Without it a busy keep-alive client,
  whose next request is always already there when we look, is served again
  and again while the others wait: under load, latency turns bimodal (p50
  0.5 ms, p99 0.7 s, timeouts in the bench). One yield per fast read is
  what trio's own socket methods give (they take two). Writes that complete
  at once take none (a read always comes next).
* Errors are ``trio.BrokenResourceError`` on send; ``receive`` returns an
  empty buffer at EOF and on a reset, which is how peers end connections.
"""

from __future__ import annotations

import errno
import socket
from typing import Protocol

import trio

from trioproxy.proto.events import Received

BUFFER = 256 * 1024  # bytes; the shared read buffer (fewer, larger reads for big bodies)


class ByteIO(Protocol):
    can_peek: bool  # peer_gone() can tell without reading (a plain socket)

    async def receive(self) -> Received: ...

    async def receive_ready(self) -> Received | None:
        """What ``receive`` would return if it need not wait, else None
        (without a wait, a caller needs no timeout scope around it)."""

    async def send_all(self, data: bytes) -> None: ...

    async def send_eof(self) -> None: ...

    def peer_gone(self) -> bool | None:
        """True when the peer has closed (EOF or reset), False when it has
        not, None when this kind of connection cannot tell without reading."""

    async def aclose(self) -> None: ...


class ReadBuffer:
    """The receive buffer one server's connections share (one event loop,
    one thread: a read is always consumed before the next one starts)."""

    __slots__ = ("buf", "view")

    def __init__(self, size: int = BUFFER) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)


def take_socket(stream: trio.SocketStream) -> socket.socket:
    """The stdlib socket behind a freshly accepted stream, owned by the
    caller from now on (trio's ``detach``: the stream no longer closes it)."""
    return socket.socket(fileno=stream.socket.detach())


class SocketIO:
    can_peek = True
    __slots__ = ("_buf", "_fast", "_view", "closed", "sock")

    def __init__(self, sock: socket.socket, buffer: ReadBuffer) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._buf = buffer.buf
        self._view = buffer.view
        self._fast = False  # the last read did not wait
        self.closed = False

    def __repr__(self) -> str:
        return f"<SocketIO fd={-1 if self.closed else self.sock.fileno()}>"

    async def receive(self) -> Received:
        if self._fast:
            # The last read found data without waiting: yield now, before
            # reading (the buffer is shared), or a busy connection whose next
            # request is always already there would never let others run.
            self._fast = False
            await trio.lowlevel.checkpoint()
        sock = self.sock
        fast = True
        while True:
            try:
                n = sock.recv_into(self._buf)
            except BlockingIOError:
                fast = False
                await trio.lowlevel.wait_readable(sock)  # a checkpoint
                continue
            except OSError:
                return b""  # reset: the peer is gone, as at EOF
            self._fast = fast
            return self._view[:n]

    async def receive_ready(self) -> Received | None:
        if self._fast:
            self._fast = False
            await trio.lowlevel.checkpoint()
        try:
            n = self.sock.recv_into(self._buf)
        except BlockingIOError:
            return None
        except OSError:
            return b""
        self._fast = True
        return self._view[:n]

    async def send_all(self, data: bytes) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"send failed: {exc.strerror or exc}") from exc
        if sent == len(data):
            return
        view = memoryview(data)
        while sent < len(data):
            await trio.lowlevel.wait_writable(sock)
            try:
                sent += sock.send(view[sent:])
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"send failed: {exc.strerror or exc}") from exc

    async def send_eof(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise trio.BrokenResourceError(f"shutdown failed: {exc.strerror or exc}") from exc

    def peer_gone(self) -> bool:
        """A peek that never blocks and consumes nothing: an empty read means
        the peer closed; pending bytes (a pipelined request) mean it is there."""
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError as exc:
            return exc.errno not in (errno.EINTR,)

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()
        await trio.lowlevel.checkpoint()


class StreamIO:
    """Any trio Stream behind the same interface (TLS, memory streams)."""

    can_peek = False

    __slots__ = ("closed", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.closed = False

    def __repr__(self) -> str:
        return f"<StreamIO {type(self.stream).__name__}>"

    async def receive(self) -> Received:
        try:
            return await self.stream.receive_some(BUFFER)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def receive_ready(self) -> None:
        return None  # a stream cannot say without waiting

    async def send_all(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except trio.ClosedResourceError as exc:
            raise trio.BrokenResourceError("connection closed") from exc

    async def send_eof(self) -> None:
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            raise trio.BrokenResourceError("this connection cannot half-close")
        try:
            await self.stream.send_eof()
        except trio.ClosedResourceError as exc:
            raise trio.BrokenResourceError("connection closed") from exc

    def peer_gone(self) -> None:
        return None  # a TLS record or a memory buffer cannot be peeked

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await trio.aclose_forcefully(self.stream)
