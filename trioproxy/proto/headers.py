"""Pure header rules for a forwarding proxy (RFC 9110 section 7.6.1, RFC 9113 8.2.2).

End-to-end headers pass verbatim and in order, including names we have never
heard of (``anthropic-beta`` is an open list). Only hop-by-hop headers are
removed: they describe one connection, not the message.
"""

from __future__ import annotations

from trioproxy.proto.events import Headers

# RFC 9110 7.6.1 plus the de-facto ones; `proxy-*` is matched by prefix below.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",  # RFC 7540 3.2.1, only meaningful with Upgrade
    }
)

# Not hop-by-hop, but owned by the proxy: `host` is rewritten to the upstream's
# and `expect: 100-continue` is answered by the proxy itself, so forwarding it
# would make the upstream wait for a 100 that nobody reads.
# x-trioproxy-provider pins a request to a provider and x-trioproxy-key is a
# caller's proxy secret: they are for us, never for the upstream.
PROXY_OWNED: frozenset[bytes] = frozenset(
    {b"host", b"expect", b"x-trioproxy-provider", b"x-trioproxy-key"}
)


# Every header is checked on every request, both ways: one set lookup and one
# prefix test per name. The names a `Connection` header lists are hop-by-hop
# too; they are looked at only when it lists something beyond the usual
# `keep-alive` or `close` (a second pass, rare).
_NOT_FORWARDED: frozenset[bytes] = HOP_BY_HOP | PROXY_OWNED
_PREFIXES = (b":", b"proxy-")  # pseudo-headers; proxy-authorization and friends
_USUAL_CONNECTION = frozenset({b"keep-alive", b"close"})


def _listed(values: list[bytes]) -> frozenset[bytes]:
    """The header names the `Connection` fields' values list (hop-by-hop for
    this hop), beyond the usual `keep-alive` and `close`."""
    if len(values) == 1 and values[0].lower() in _USUAL_CONNECTION:
        return frozenset()
    tokens = {t.strip().lower() for v in values for t in v.split(b",")}
    return frozenset(tokens - _USUAL_CONNECTION - {b""})


def _forwarded(headers: Headers, drop: frozenset[bytes], *, te_trailers: bool) -> Headers:
    """``headers`` without the names in ``drop``, pseudo-headers, `proxy-*`
    and what `Connection` lists; with ``te_trailers``, `te: trailers` stays."""
    out: Headers = []
    connection: list[bytes] = []
    for name, value in headers:
        if name in drop or name.startswith(_PREFIXES):
            if name == b"connection":
                connection.append(value)
            elif te_trailers and name == b"te" and value.strip().lower() == b"trailers":
                out.append((name, b"trailers"))
            continue
        out.append((name, value))
    if connection and (named := _listed(connection)):
        out = [(n, v) for n, v in out if n not in named or (n == b"te" and v == b"trailers")]
    return out


def request_headers_for_upstream(headers: Headers, *, upstream_is_h2: bool) -> Headers:
    """End-to-end request headers, in order, with hop-by-hop and proxy-owned ones
    removed. HTTP/2 upstreams may keep `te: trailers` (RFC 9113 8.2.2)."""
    return _forwarded(headers, _NOT_FORWARDED, te_trailers=upstream_is_h2)


def response_headers_for_client(headers: Headers) -> Headers:
    """End-to-end response headers, in order (request-id, retry-after,
    anthropic-ratelimit-*, x-should-retry, content-type ... all kept)."""
    return _forwarded(headers, HOP_BY_HOP, te_trailers=False)


def content_length(headers: Headers) -> int | None:
    """The declared Content-Length, or None. The adapters have already rejected
    malformed or conflicting values, so a bad value here is a programming error."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


def has_header(headers: Headers, name: bytes) -> bool:
    return any(n == name for n, _ in headers)


def header_value(headers: Headers, name: bytes) -> bytes | None:
    for n, v in headers:
        if n == name:
            return v
    return None


def is_event_stream(headers: Headers) -> bool:
    ctype = header_value(headers, b"content-type")
    return ctype is not None and ctype.split(b";", 1)[0].strip().lower() == b"text/event-stream"
