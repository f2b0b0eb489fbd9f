"""The floor with h2 inbound: for scenario E, the floor relay plus exactly
the protocol work a proxy built on h2 and h11 cannot skip when HTTP/2
clients reach an HTTP/1.1 upstream. The client's connection is parsed and
framed by h2 (configured as trioproxy configures it: no header validation
or normalisation inside h2), each stream is handled in a task of its own
(streams on one connection are concurrent), and its request goes to the
upstream through h11 on a kept-alive upstream connection of its own (a
small per-connection free list), with ``_parsed=True`` heads as trioproxy
sends them. Data is acknowledged as it arrives. No routing, no accounting,
no timeouts, no flow-control waits (the bodies are small): the distance
from ``floor`` to this column is what h2 + h11 cost, the distance from
this column to trioproxy is what the proxy itself adds.
Run: ``python -m bench.floor_h2 LISTEN_PORT UPSTREAM_PORT``.
"""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import trio

from bench.floor_h11 import send_all

BUF = 64 * 1024  # bytes; one read
Sock = trio.socket.SocketType
Upstream = tuple[Sock, h11.Connection]


def h2_config(*, client_side: bool) -> h2.config.H2Configuration:
    """As trioproxy configures h2 (proto/h2.py): no validation or
    normalisation of header fields inside h2."""
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


class _Client:
    """One HTTP/2 client connection: its h2 state, one writer at a time."""

    def __init__(self, sock: Sock, upstream_port: int) -> None:
        self.sock = sock
        self.port = upstream_port
        self.h2 = h2.connection.H2Connection(config=h2_config(client_side=False))
        self.lock = trio.Lock()
        self.idle: list[Upstream] = []

    async def flush(self) -> None:
        async with self.lock:
            if data := self.h2.data_to_send():
                await send_all(self.sock, data)

    async def upstream(self) -> Upstream:
        if self.idle:
            return self.idle.pop()
        up = trio.socket.socket()
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await up.connect(("127.0.0.1", self.port))
        return up, h11.Connection(h11.CLIENT)

    async def stream(self, sid: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """One request through h11 to the upstream, its answer back in h2."""
        up, c = await self.upstream()
        pseudo = {k: v for k, v in headers if k.startswith(b":")}
        fields = [(k, v) for k, v in headers if not k.startswith(b":")]
        fields.append((b"host", pseudo.get(b":authority", b"origin")))
        fields.append((b"content-length", str(len(body)).encode()))
        req = h11.Request(
            method=pseudo[b":method"], target=pseudo[b":path"], headers=fields, _parsed=True
        )
        await send_all(
            up,
            (c.send(req) or b"")
            + (c.send(h11.Data(data=body)) or b"")
            + (c.send(h11.EndOfMessage()) or b""),
        )
        buf = bytearray(BUF)
        parts: list[bytes] = []
        status = 502
        out: list[tuple[bytes, bytes]] = []
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA:
                n = await up.recv_into(buf)
                c.receive_data(bytes(buf[:n]))
            elif isinstance(ev, h11.Response):
                status = ev.status_code
                out = [(k, v) for k, v in ev.headers if k not in (b"connection", b"keep-alive")]
            elif isinstance(ev, h11.Data):
                parts.append(bytes(ev.data))
            elif isinstance(ev, h11.EndOfMessage):
                break
            else:
                up.close()
                return
        if c.our_state is h11.DONE and c.their_state is h11.DONE:
            c.start_next_cycle()
            self.idle.append((up, c))
        else:
            up.close()
        self.h2.send_headers(sid, [(b":status", str(status).encode()), *out])
        self.h2.send_data(sid, b"".join(parts), end_stream=True)
        await self.flush()

    async def serve(self, nursery: trio.Nursery) -> None:
        self.h2.initiate_connection()
        await self.flush()
        pending: dict[int, tuple[list[tuple[bytes, bytes]], list[bytes]]] = {}
        buf = bytearray(BUF)
        while n := await self.sock.recv_into(buf):
            for ev in self.h2.receive_data(bytes(buf[:n])):
                if isinstance(ev, h2.events.RequestReceived):
                    pending[ev.stream_id] = (list(ev.headers), [])
                elif isinstance(ev, h2.events.DataReceived):
                    pending[ev.stream_id][1].append(ev.data)
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in pending:
                    headers, body = pending.pop(ev.stream_id)
                    nursery.start_soon(self.stream, ev.stream_id, headers, b"".join(body))
            await self.flush()


async def relay(client: Sock, upstream_port: int) -> None:
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = _Client(client, upstream_port)
    with client:
        try:
            async with trio.open_nursery() as nursery:
                await conn.serve(nursery)
                nursery.cancel_scope.cancel()
        except (OSError, h2.exceptions.ProtocolError, h11.ProtocolError):
            pass  # a load generator hanging up at the end of a run
        finally:
            for up, _ in conn.idle:
                up.close()


if __name__ == "__main__":
    from bench.floor import run

    run(relay)
