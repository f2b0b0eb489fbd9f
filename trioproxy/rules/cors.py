"""CORS for browser clients, as pure functions of the request head.

Going direct, a browser app that sends `anthropic-dangerous-direct-browser-
access: true` gets its preflight answered by the API. Through a proxy with
caller auth on, the preflight (which never carries a credential, by the
Fetch standard) would get a 401. So for the origins an operator lists
(``cors.allow_origins``), the proxy answers preflights itself, before auth,
never forwarding them or counting them as a caller's request, and marks every
answer to those origins as readable. With no origins listed, nothing here
applies: preflights pass through as any other request.
"""

from __future__ import annotations

from trioproxy.proto.events import Headers, RequestHead, ResponseHead

PREFLIGHT_MAX_AGE = b"86400"  # seconds a browser may cache the preflight's answer
VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def allowed_origin(head: RequestHead, allow: tuple[str, ...]) -> bytes | None:
    """The request's Origin when it is listed (``*`` lists every origin)."""
    if not allow:
        return None
    origin = head.header(b"origin")
    if origin is None:
        return None
    if "*" in allow or origin.decode("latin-1").lower().rstrip("/") in allow:
        return origin
    return None


def is_preflight(head: RequestHead) -> bool:
    return head.method == b"OPTIONS" and head.header(b"access-control-request-method") is not None


def preflight_answer(head: RequestHead, origin: bytes) -> ResponseHead:
    """204 allowing what the browser asked for: the method and headers it
    names (the API's own headers are open-ended: anthropic-beta values,
    x-stainless-*, custom ones)."""
    headers: Headers = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", head.header(b"access-control-request-method") or b""),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE),
        (b"vary", VARY),
    ]
    asked = head.header(b"access-control-request-headers")
    if asked:
        headers.insert(2, (b"access-control-allow-headers", asked))
    return ResponseHead(204, headers)


def with_cors(head: ResponseHead, origin: bytes) -> ResponseHead:
    """An answer to a listed origin, readable by the page: the upstream's own
    access-control-* headers (if any) are replaced, so there is one set."""
    kept = [(n, v) for n, v in head.headers if not n.startswith(b"access-control-")]
    kept.append((b"access-control-allow-origin", origin))
    kept.append((b"access-control-expose-headers", b"*"))
    if not any(n == b"vary" for n, _ in kept):
        kept.append((b"vary", b"Origin"))
    return ResponseHead(head.status, kept, head.reason)
