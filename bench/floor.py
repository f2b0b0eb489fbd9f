"""The floor: the cheapest Trio relay there is, for every table to show what
Trio itself allows. No HTTP parsing at all: each client connection gets its
own upstream connection and bytes are copied both ways with raw
``trio.socket`` calls (``recv_into`` one reused buffer, ``send`` tried at once
and waited on only when the kernel says EAGAIN; trio's socket methods do
exactly that). Run: ``python -m bench.floor LISTEN_PORT UPSTREAM_PORT``.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Awaitable, Callable

import trio

BUF = 64 * 1024  # bytes; one read


async def pump(src: trio.socket.SocketType, dst: trio.socket.SocketType) -> None:
    buf = bytearray(BUF)
    view = memoryview(buf)
    try:
        while n := await src.recv_into(buf):
            sent = 0
            while sent < n:
                sent += await dst.send(view[sent:n])
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


async def relay(client: trio.socket.SocketType, upstream_port: int) -> None:
    with client, trio.socket.socket() as up:
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await up.connect(("127.0.0.1", upstream_port))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, up)
            nursery.start_soon(pump, up, client)


Relay = Callable[[trio.socket.SocketType, int], Awaitable[None]]


async def main(port: int, upstream_port: int, relay: Relay = relay) -> None:
    """Accept on ``port``; each client connection goes to ``relay``."""
    with trio.socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await listener.bind(("127.0.0.1", port))
        listener.listen(4096)
        async with trio.open_nursery() as nursery:
            while True:
                client, _ = await listener.accept()
                nursery.start_soon(relay, client, upstream_port)


def run(relay: Relay) -> None:
    """The command line: ``LISTEN_PORT UPSTREAM_PORT``, descriptors raised to
    the hard limit (F holds thousands of connections)."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]), relay)


if __name__ == "__main__":
    run(relay)
