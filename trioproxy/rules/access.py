"""Who may use what: the access decisions for one request (pure)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable

from trioproxy.config import AuthConfig
from trioproxy.config.model import Caller
from trioproxy.errors import AuthenticationFailed, PermissionDenied
from trioproxy.proto.events import RequestHead
from trioproxy.rules.auth import presented_credential

AUTH_HELP = (
    "present the proxy's shared secret as `x-api-key: <secret>` or "
    "`Authorization: Bearer <secret>` (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN), "
    "or as `x-trioproxy-key: <secret>`"
)


PROXY_KEY = b"x-trioproxy-key"  # a caller's proxy secret when its own key goes upstream
OWN_HELP = (
    "caller {name} brings its own upstream credential: present the proxy's secret as "
    "`x-trioproxy-key: <secret>` (Claude Code: ANTHROPIC_CUSTOM_HEADERS) and your own key "
    "as usual"
)


def identify(head: RequestHead, lookup: Callable[[bytes], Caller | None]) -> Caller:
    """The caller presenting one of its secrets, else 401. ``x-trioproxy-key``
    wins when present (the other credential headers are then the caller's
    own, for upstream); a caller with its own upstream credential must use
    it. The message never echoes what was presented."""
    proxy_key = head.header(PROXY_KEY)
    presented = proxy_key.strip() if proxy_key is not None else presented_credential(head.headers)
    if presented is None:
        raise AuthenticationFailed("missing credentials: " + AUTH_HELP)
    caller = lookup(presented)
    if caller is None:
        raise AuthenticationFailed("invalid credentials: " + AUTH_HELP)
    if caller.own_credential and proxy_key is None:
        raise AuthenticationFailed(OWN_HELP.format(name=caller.name))
    return caller


def check_admin(head: RequestHead, auth: AuthConfig, *, loopback_only: bool) -> str:
    """Admin endpoints: an admin token whenever one is configured, and
    always when the listener is reachable beyond loopback (then without a
    configured token they are closed). Returns who: the token's name
    (``admin`` for ``admin.token``), or ``local`` on a loopback listener
    without tokens."""
    token = auth.admin_token
    named = auth.admin_tokens
    if not token and not named:
        if loopback_only:
            return "local"
        raise PermissionDenied(
            "admin endpoints are disabled on a non-loopback listener until TRIOPROXY_ADMIN_TOKEN is set"
        )
    presented = presented_credential(head.headers) or _basic_password(head)
    if presented is not None:
        if token and hmac.compare_digest(presented, token):
            return "admin"
        for t in named:
            if hmac.compare_digest(presented, t.value):
                return t.name
    raise AuthenticationFailed(
        "admin endpoints need an admin token as `Authorization: Bearer <token>` or "
        "`x-api-key: <token>` (a browser: any user name, the token as password)"
    )


def _basic_password(head: RequestHead) -> bytes | None:
    """The password of ``Authorization: Basic`` (RFC 7617): how a browser
    presents the admin token to /dashboard and the stream behind it, after
    the 401's ``WWW-Authenticate: Basic`` made it ask. The user name is
    ignored."""
    raw = head.header(b"authorization")
    if raw is None or raw[:6].lower() != b"basic ":
        return None
    try:
        decoded = base64.b64decode(raw[6:].strip(), validate=True)
    except binascii.Error:
        return None
    _, sep, password = decoded.partition(b":")
    return password if sep else None
