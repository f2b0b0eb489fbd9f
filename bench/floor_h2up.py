"""The floor with an HTTP/2-over-TLS upstream: for A's h2-TLS row, the floor
relay plus exactly the protocol work a proxy built on h11, h2 and Python's
ssl cannot skip on the production path (HTTP/1.1 clients, ``api.anthropic.com``
over h2 and TLS). Each client connection gets one TLS connection to the
origin (ALPN h2, the certificate verified against the given CA); each
request head is parsed by h11 and sent as an h2 stream (configured as
trioproxy configures its client side), the answer's h2 events go back
through h11. No routing, no accounting, no timeouts, no pool. Set beside
``floor + h11`` (the same with an HTTP/1.1 upstream), it shows what the
upstream's protocol and TLS cost by themselves.
Run: ``python -m bench.floor_h2up LISTEN_PORT UPSTREAM_TLS_PORT CA_FILE``.
"""

from __future__ import annotations

import socket
import ssl
import sys
from functools import partial

import h2.connection
import h2.events
import h2.exceptions
import h11
import trio

from bench.floor_h2 import h2_config
from bench.floor_h11 import send_all

BUF = 64 * 1024  # bytes; one read
Sock = trio.socket.SocketType
# What the h2 client must not forward (RFC 9113 8.2.2): connection-specific fields.
_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"host"})


async def _open(
    port: int, ctx: ssl.SSLContext
) -> tuple[trio.SSLStream, h2.connection.H2Connection]:
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = trio.SSLStream(tcp, ctx, server_hostname="127.0.0.1")
    await tls.do_handshake()
    conn = h2.connection.H2Connection(config=h2_config(client_side=True))
    conn.initiate_connection()
    await tls.send_all(conn.data_to_send())
    return tls, conn


async def _exchange(
    tls: trio.SSLStream, up: h2.connection.H2Connection, req: h11.Request, body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request as an h2 stream; the answer's status, fields and body."""
    sid = up.get_next_available_stream_id()
    fields = [
        (b":method", req.method),
        (b":scheme", b"https"),
        (b":authority", b"127.0.0.1"),
        (b":path", req.target),
        *((k, v) for k, v in req.headers if k not in _HOP),
    ]
    up.send_headers(sid, fields, end_stream=not body)
    if body:
        up.send_data(sid, body, end_stream=True)
    await tls.send_all(up.data_to_send())
    status, headers, parts = 502, [], []
    while True:
        data = await tls.receive_some(BUF)
        if not data:
            raise OSError("upstream closed")
        for ev in up.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                for k, v in ev.headers:
                    if k == b":status":
                        status = int(v)
                    else:
                        headers.append((k, v))
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                parts.append(ev.data)
                up.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                if out := up.data_to_send():
                    await tls.send_all(out)
                return status, headers, b"".join(parts)
        if out := up.data_to_send():
            await tls.send_all(out)


async def relay(client: Sock, upstream_port: int, ctx: ssl.SSLContext) -> None:
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = h11.Connection(h11.SERVER)
    buf = bytearray(BUF)
    with client:
        try:
            tls, up = await _open(upstream_port, ctx)
        except OSError:
            return
        try:
            req: h11.Request | None = None
            body: list[bytes] = []
            while True:
                ev = s.next_event()
                if ev is h11.NEED_DATA:
                    n = await client.recv_into(buf)
                    if not n:
                        return
                    s.receive_data(bytes(buf[:n]))
                elif isinstance(ev, h11.Request):
                    req, body = ev, []
                elif isinstance(ev, h11.Data):
                    body.append(bytes(ev.data))
                elif isinstance(ev, h11.EndOfMessage) and req is not None:
                    status, headers, answer = await _exchange(tls, up, req, b"".join(body))
                    headers = [(k, v) for k, v in headers if k != b"content-length"]
                    headers.append((b"content-length", str(len(answer)).encode()))
                    head = h11.Response(status_code=status, headers=headers, _parsed=True)
                    out = (s.send(head) or b"") + (s.send(h11.Data(data=answer)) or b"")
                    await send_all(client, out + (s.send(h11.EndOfMessage()) or b""))
                    if s.our_state is not h11.DONE or s.their_state is not h11.DONE:
                        return
                    s.start_next_cycle()
                else:
                    return
        except (OSError, trio.BrokenResourceError, h11.ProtocolError, h2.exceptions.ProtocolError):
            pass  # a load generator hanging up at the end of a run
        finally:
            await trio.aclose_forcefully(tls)


if __name__ == "__main__":
    from bench.floor import run

    context = ssl.create_default_context(cafile=sys.argv[3])
    context.set_alpn_protocols(["h2"])
    run(partial(relay, ctx=context))
