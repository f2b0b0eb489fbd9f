"""Credentials in headers: what a caller presents, and the provider key
put in its place.

A caller presents a shared secret as ``x-api-key: <secret>`` or
``Authorization: Bearer <secret>`` (Claude Code sends one or the other).
Callers are looked up by the SHA-256 of what they present (config/callers.py,
callers/directory.py): a table lookup, so no comparison of secrets happens
whose timing could tell how close a guess came. Callers are known by their
name: that is what logs, errors and accounting see, never the secret.
"""

from __future__ import annotations

from trioproxy.proto.events import Headers

CALLER_CREDENTIAL_HEADERS: frozenset[bytes] = frozenset({b"authorization", b"x-api-key"})


def presented_credential(headers: Headers) -> bytes | None:
    """The secret a caller presents: `x-api-key`, else `Authorization: Bearer`."""
    bearer: bytes | None = None
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                bearer = token.strip()
    return bearer


def inject_credential(headers: Headers, header: bytes, value: bytes) -> Headers:
    """Inject mode: the caller's `authorization` / `x-api-key` are removed and
    the provider key is sent instead (so the caller's secret never travels)."""
    out = [(n, v) for n, v in headers if n not in CALLER_CREDENTIAL_HEADERS]
    out.append((header, value))
    return out
