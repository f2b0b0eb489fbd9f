"""Caller authentication and upstream credentials: pure decisions.

A caller presents a shared secret as ``x-api-key: <secret>`` or
``Authorization: Bearer <secret>`` (Claude Code sends one or the other). It is
compared in constant time against every configured secret, with no early exit,
so timing does not tell which secret (or which prefix) was close. Secrets are
known by their configured name, or by a short keyed hash when they have none:
that name is what logs, errors and accounting see, never the secret.
"""

from __future__ import annotations

import hmac

from trioproxy.config.model import Secret
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


def authenticate(headers: Headers, secrets: tuple[Secret, ...]) -> Secret | None:
    """The matching secret, or None. Every configured secret is compared."""
    presented = presented_credential(headers)
    if presented is None:
        return None
    match: Secret | None = None
    for secret in secrets:
        if hmac.compare_digest(presented, secret.value) and match is None:
            match = secret
    return match


def inject_credential(headers: Headers, header: bytes, value: bytes) -> Headers:
    """Inject mode: the caller's `authorization` / `x-api-key` are removed and
    the provider key is sent instead (so the caller's secret never travels)."""
    out = [(n, v) for n, v in headers if n not in CALLER_CREDENTIAL_HEADERS]
    out.append((header, value))
    return out
