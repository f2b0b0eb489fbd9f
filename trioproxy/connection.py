"""One accepted client connection: TLS handshake, protocol pick, serve.

The protocol is chosen by ALPN on TLS listeners, and on cleartext ones by the
first bytes: the HTTP/2 connection preface (RFC 9113 3.4) means prior-knowledge
h2c, anything else is HTTP/1.1.
"""

from __future__ import annotations

import logging
import ssl

import trio

from trioproxy.inbound.exchange import App
from trioproxy.inbound.h1 import MAX_RECV, serve_h1
from trioproxy.inbound.h2 import serve_h2
from trioproxy.state import ServerState

log = logging.getLogger("trioproxy.connection")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def make_server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


async def handle_connection(
    stream: trio.abc.Stream, state: ServerState, app: App, ssl_context: ssl.SSLContext | None
) -> None:
    """Serve one client connection to completion. Never raises: a bug in one
    connection is logged and closes that connection only."""
    try:
        if isinstance(stream, trio.SocketStream):
            stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            tls = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
            with trio.move_on_after(state.config.timeouts.client_head) as scope:
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError:
                    await trio.aclose_forcefully(stream)
                    return
            if scope.cancelled_caught:
                await trio.aclose_forcefully(stream)
                return
            if tls.selected_alpn_protocol() == "h2":
                await serve_h2(tls, state, app)
            else:
                await serve_h1(tls, state, app)
            return
        initial = b""
        with trio.move_on_after(state.config.timeouts.client_head) as scope:
            while len(initial) < len(H2_PREFACE) and H2_PREFACE.startswith(initial):
                data = await stream.receive_some(MAX_RECV)
                if not data:
                    break
                initial += data
        if scope.cancelled_caught and not initial:
            await trio.aclose_forcefully(stream)
            return
        if initial.startswith(H2_PREFACE):
            await serve_h2(stream, state, app, initial)
        elif initial:
            await serve_h1(stream, state, app, initial)
        else:
            await trio.aclose_forcefully(stream)
    except Exception as exc:
        if client_caused(exc):  # whatever a client does is not our error
            log.debug("connection ended by the client: %r", exc)
        else:
            log.exception("connection handler failed; closing that connection")
        await trio.aclose_forcefully(stream)


def client_caused(exc: BaseException) -> bool:
    """A connection that broke (reset, closed, TLS garbage), possibly inside
    a nursery's exception group: the client's doing, logged at debug only."""
    if isinstance(exc, BaseExceptionGroup):
        return all(client_caused(e) for e in exc.exceptions)
    return isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError)
