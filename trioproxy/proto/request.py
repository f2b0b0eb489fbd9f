"""Rules every request head must pass before anything else happens to it:
before the proxy's own endpoints, auth or routing, and long before anything
could reach an upstream (sans-IO: both transports apply them).

A reverse proxy forwards origin-form targets only (RFC 9112 3.2.1: a path and
an optional query). Asterisk-form (``OPTIONS *``) and absolute-form
(``GET http://elsewhere/``) are how a request asks a proxy to talk to the
server it names, which this one never does; a target without a leading ``/``
or with a ``#fragment`` (never sent by a real client, RFC 9110 4.2.4) would
be forwarded into the upstream's base path as something else. Control
characters other than HTAB in a header value (RFC 9110 5.5) are how header
injection hides; h11 lets them through, so they are refused here.
"""

from __future__ import annotations

import re

from trioproxy.proto.events import RequestHead

# RFC 9110 5.6.2: token = 1*tchar
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # every control byte but HTAB
VERSIONS = frozenset({b"1.0", b"1.1", b"2"})


def is_token(value: bytes) -> bool:
    return _TOKEN.fullmatch(value) is not None


def request_problem(head: RequestHead) -> tuple[int, str] | None:
    """(status, message) when the head must be refused, else None. The
    message is safe to show the client: it never echoes a header value."""
    if head.http_version not in VERSIONS:
        version = head.http_version.decode("ascii", "replace")
        return 505, f"HTTP/{version} is not supported; speak HTTP/1.1 or HTTP/2"
    target = head.target
    if target == b"*":
        return 400, "the request target * (asterisk-form) is not served by this proxy"
    if not target.startswith(b"/"):
        return 400, (
            "the request target must be a path starting with / (origin-form); "
            "this proxy does not forward to other hosts"
        )
    if b"#" in target:
        return 400, "the request target must not contain a fragment (#...)"
    if not is_token(head.method):
        return 400, "the request method is not an HTTP token"
    # One search over every value (joined by HTAB, which is allowed): half
    # the cost of a search per value; which header it was is looked up only
    # when there is one.
    if _CTL.search(b"\t".join([v for _, v in head.headers])) is not None:
        for name, value in head.headers:
            if _CTL.search(value) is not None:
                shown = name.decode("latin-1")[:64]
                return 400, f"header {shown}: control characters are not allowed in a value"
    return None
