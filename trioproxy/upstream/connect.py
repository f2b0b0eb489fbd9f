"""Opening transport connections to an origin: TCP, then TLS with ALPN."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import trio

from trioproxy.config.model import Origin, UpstreamConfig
from trioproxy.errors import UpstreamError
from trioproxy.transport.byteio import ByteIO, ReadBuffer, SocketIO, StreamIO, take_socket


def make_client_ssl_context(cfg: UpstreamConfig) -> ssl.SSLContext:
    """Certificates are verified against the system store or the configured CA
    bundle; a failure is an error, never a silent downgrade."""
    ctx = ssl.create_default_context(cafile=cfg.ca_bundle or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2", "http/1.1"] if cfg.http2 else ["http/1.1"])
    return ctx


Connector = Callable[[Origin, ssl.SSLContext | None], Awaitable[tuple[ByteIO, str]]]


def tcp_connector(buffer: ReadBuffer) -> Connector:
    """The connector the pool uses: real TCP (and TLS), cleartext
    connections on raw socket I/O sharing the server's read buffer. Tests
    give the pool another (memory streams)."""

    async def connect(origin: Origin, ssl_context: ssl.SSLContext | None) -> tuple[ByteIO, str]:
        stream, alpn = await open_transport(origin, ssl_context)
        if isinstance(stream, trio.SocketStream):
            return SocketIO(take_socket(stream), buffer), alpn
        return StreamIO(stream), alpn

    return connect


async def open_transport(
    origin: Origin, ssl_context: ssl.SSLContext | None
) -> tuple[trio.abc.Stream, str]:
    """Connect and (for https) handshake. Returns the stream and the negotiated
    protocol ("h2" or "http/1.1"). The caller owns the deadline (a cancel scope).

    Raises UpstreamError with a message naming the origin; the stream is closed
    on failure."""
    host = origin.host
    try:
        tcp = await trio.open_tcp_stream(host, origin.port)
    except OSError as exc:
        # trio's message names the address; the client gets the reason alone.
        why = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        raise UpstreamError(
            f"the upstream cannot be reached: {why.strerror or type(why).__name__}",
            detail=f"upstream {origin} cannot be reached: {exc.strerror or exc}",
        ) from exc
    tcp.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
    if origin.scheme == "http" or ssl_context is None:
        return tcp, "http/1.1"
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tcp)
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise UpstreamError(
                "TLS certificate verification failed for the upstream",
                detail=f"upstream {origin}: certificate verification failed: "
                f"{cause.verify_message}",
            ) from exc
        raise UpstreamError(
            "the upstream failed the TLS handshake",
            detail=f"upstream {origin}: TLS handshake failed: {cause or exc}",
        ) from exc
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return tls, tls.selected_alpn_protocol() or "http/1.1"
