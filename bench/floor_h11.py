"""The floor with h11: the floor relay (``bench/floor.py``) plus exactly the
HTTP/1.1 work a proxy cannot skip while h11 is its parser and state machine.
Each client connection gets one upstream connection, kept alive both ways;
every request and response head is parsed by h11 and re-sent through h11
(``_parsed=True``, as trioproxy does), every body chunk is framed by h11 on
the way out. No routing, no accounting, no timeouts: the distance from
``floor`` to this column is what h11 costs, the distance from this column to
trioproxy is what the proxy itself adds.
Run: ``python -m bench.floor_h11 LISTEN_PORT UPSTREAM_PORT``.
"""

from __future__ import annotations

import socket

import h11
import trio

BUF = 64 * 1024  # bytes; one read
Sock = trio.socket.SocketType


async def send_all(sock: Sock, data: bytes) -> None:
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        sent += await sock.send(view[sent:])


async def _pass_request(client: Sock, up: Sock, s: h11.Connection, c: h11.Connection) -> bool:
    """One request from the client to the upstream; False when the client left."""
    buf = bytearray(BUF)
    while True:
        ev = s.next_event()
        if ev is h11.NEED_DATA:
            n = await client.recv_into(buf)
            if not n:
                return False
            s.receive_data(bytes(buf[:n]))
        elif isinstance(ev, h11.Request):
            headers = [(k, v) for k, v in ev.headers if k != b"host"]
            headers.append((b"host", b"origin"))
            req = h11.Request(method=ev.method, target=ev.target, headers=headers, _parsed=True)
            await send_all(up, c.send(req) or b"")
        elif isinstance(ev, h11.Data):
            await send_all(up, c.send(h11.Data(data=bytes(ev.data))) or b"")
        elif isinstance(ev, h11.EndOfMessage):
            await send_all(up, c.send(h11.EndOfMessage()) or b"")
            return True
        else:
            return False


async def _pass_response(client: Sock, up: Sock, s: h11.Connection, c: h11.Connection) -> bool:
    """The upstream's answer back to the client; False when either side left."""
    buf = bytearray(BUF)
    while True:
        ev = c.next_event()
        if ev is h11.NEED_DATA:
            n = await up.recv_into(buf)
            c.receive_data(bytes(buf[:n]))
        elif isinstance(ev, h11.Response):
            head = h11.Response(status_code=ev.status_code, headers=ev.headers, _parsed=True)
            await send_all(client, s.send(head) or b"")
        elif isinstance(ev, h11.Data):
            await send_all(client, s.send(h11.Data(data=bytes(ev.data))) or b"")
        elif isinstance(ev, h11.EndOfMessage):
            await send_all(client, s.send(h11.EndOfMessage()) or b"")
            return True
        else:
            return False


async def relay(client: Sock, upstream_port: int) -> None:
    s, c = h11.Connection(h11.SERVER), h11.Connection(h11.CLIENT)
    with client, trio.socket.socket() as up:
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await up.connect(("127.0.0.1", upstream_port))
            while await _pass_request(client, up, s, c) and await _pass_response(client, up, s, c):
                if s.our_state is not h11.DONE or c.our_state is not h11.DONE:
                    return
                s.start_next_cycle()
                c.start_next_cycle()
        except (OSError, h11.ProtocolError):
            pass  # a load generator hanging up mid-request at the end of a run


if __name__ == "__main__":
    from bench.floor import run

    run(relay)
