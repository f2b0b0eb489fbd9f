"""Who may use what: the access decisions for one request (pure)."""

from __future__ import annotations

import hmac

from trioproxy.config import AuthConfig
from trioproxy.errors import AuthenticationFailed, PermissionDenied
from trioproxy.pipeline.auth import authenticate, presented_credential
from trioproxy.proto.events import RequestHead

AUTH_HELP = (
    "present the proxy's shared secret as `x-api-key: <secret>` or "
    "`Authorization: Bearer <secret>` (ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN)"
)


def check_caller(head: RequestHead, auth: AuthConfig) -> str | None:
    """The caller's secret name, None when auth is off; 401 otherwise. The
    message never echoes what was presented."""
    if not auth.enabled:
        return None
    secret = authenticate(head.headers, auth.secrets)
    if secret is None:
        missing = presented_credential(head.headers) is None
        raise AuthenticationFailed(
            ("missing credentials: " if missing else "invalid credentials: ") + AUTH_HELP
        )
    return secret.name


def check_admin(head: RequestHead, auth: AuthConfig, *, loopback_only: bool) -> None:
    """Admin endpoints: the admin token whenever one is configured, and always
    when the listener is reachable beyond loopback (then without a configured
    token they are closed)."""
    token = auth.admin_token
    if not token:
        if loopback_only:
            return
        raise PermissionDenied(
            "admin endpoints are disabled on a non-loopback listener until TRIOPROXY_ADMIN_TOKEN is set"
        )
    presented = presented_credential(head.headers)
    if presented is None or not hmac.compare_digest(presented, token):
        raise AuthenticationFailed(
            "admin endpoints need the admin token as `Authorization: Bearer <token>` or `x-api-key: <token>`"
        )
