"""Who is calling: a caller's secret (the directory), or a token of the
identity provider (``[auth.oidc]``, oidc/). A token naming a key the proxy
has not seen makes it fetch the issuer's keys again, once, and try again:
after the IdP rotates its keys, the first request with a new token
succeeds instead of failing until the next routine fetch."""

from __future__ import annotations

import time

from trioproxy.callers.directory import Directory
from trioproxy.config.model import Caller
from trioproxy.errors import AuthenticationFailed, PermissionDenied
from trioproxy.oidc.issuer import SignIn
from trioproxy.oidc.policy import Refused
from trioproxy.oidc.tokens import TokenRejected, UnknownKey, looks_like_jwt
from trioproxy.proto.events import RequestHead
from trioproxy.rules.access import identify


class _UnknownKey(AuthenticationFailed):
    pass


async def authenticate(head: RequestHead, callers: Directory, signin: SignIn | None) -> Caller:
    """The caller, else the proxy's 401 (or 403 for a user no group serves)."""

    def lookup(secret: bytes) -> Caller | None:
        found = callers.lookup(secret)
        if found is not None or signin is None or not looks_like_jwt(secret):
            return found
        try:
            return signin.caller(secret, time.time())
        except UnknownKey as exc:
            raise _UnknownKey(f"invalid token: {exc}") from None
        except TokenRejected as exc:
            raise AuthenticationFailed(f"invalid token: {exc}") from None
        except Refused as exc:
            raise PermissionDenied(str(exc)) from None

    try:
        return identify(head, lookup)
    except _UnknownKey:
        if signin is None:
            raise
        await signin.issuer.refresh()  # the IdP may have rotated its keys
        return identify(head, lookup)
