"""One accepted client connection: TLS handshake, protocol pick, serve.

The protocol is chosen by ALPN on TLS listeners, and on cleartext ones by the
first bytes: the HTTP/2 connection preface (RFC 9113 3.4) means prior-knowledge
h2c, anything else is HTTP/1.1. A cleartext connection's socket is taken from
its trio stream and served with raw socket I/O (transport/byteio.py); a TLS
one goes through trio's SSLStream.
"""

from __future__ import annotations

import logging
import ssl

import trio

from trioproxy.inbound.context import ConnContext, Listening
from trioproxy.inbound.exchange import App
from trioproxy.inbound.h1 import serve_h1
from trioproxy.inbound.h2 import serve_h2
from trioproxy.transport.byteio import ByteIO, SocketIO, StreamIO, take_socket

log = logging.getLogger("trioproxy.connection")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CLOSE_GRACE = 1.0  # seconds; bound on the shielded close of a connection no transport took


def make_server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, ValueError):
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def handle_connection(
    stream: trio.SocketStream,
    shared: Listening,
    app: App,
    ssl_context: ssl.SSLContext | None,
) -> None:
    """Serve one accepted connection to completion. Never raises: a bug in one
    connection is logged and closes that connection only; whatever a client
    does (resets, garbage, hanging up mid-write) is logged at debug."""
    ctx = ConnContext(shared, _peer(stream))
    io: ByteIO | None = None
    try:
        if ssl_context is not None:
            tls = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
            io = StreamIO(tls)
            with trio.move_on_after(ctx.timeouts.client_head) as scope:
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError:
                    await io.aclose()
                    return
            if scope.cancelled_caught:
                await io.aclose()
                return
            if tls.selected_alpn_protocol() == "h2":
                await serve_h2(io, ctx, app)
            else:
                await serve_h1(io, ctx, app)
            return
        io = SocketIO(take_socket(stream), shared.buffer)
        await serve_connection(io, ctx, app)
    except Exception as exc:
        if client_caused(exc):  # whatever a client does is not our error
            log.debug("connection ended by the client: %r", exc)
        else:
            log.exception("connection handler failed; closing that connection")
    finally:
        # The transports close what they serve; a connection cancelled before
        # one took it (the server stopping while it handshakes or says nothing
        # yet, as a browser's preconnect does) is closed here, not left to the
        # garbage collector. Closing twice is a no-op.
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            if io is not None:
                await io.aclose()
            else:
                await trio.aclose_forcefully(stream)


async def serve_connection(io: ByteIO, ctx: ConnContext, app: App) -> None:
    """A cleartext connection (or any byte stream, as in the component
    tests): the h2 preface picks HTTP/2, anything else is HTTP/1.1."""
    initial = b""
    with trio.move_on_after(ctx.timeouts.client_head) as scope:
        while len(initial) < len(H2_PREFACE) and H2_PREFACE.startswith(initial):
            data = await io.receive()
            if not data:
                break
            initial += bytes(data)  # kept across awaits: a copy out of the shared buffer
    if scope.cancelled_caught and not initial:
        await io.aclose()
        return
    if initial.startswith(H2_PREFACE):
        await serve_h2(io, ctx, app, initial)
    elif initial:
        await serve_h1(io, ctx, app, initial)
    else:
        await io.aclose()


def client_caused(exc: BaseException) -> bool:
    """A connection that broke (reset, closed, TLS garbage), possibly inside
    a nursery's exception group: the client's doing, logged at debug only."""
    if isinstance(exc, BaseExceptionGroup):
        return all(client_caused(e) for e in exc.exceptions)
    return isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError)
