"""A Claude subscription as a provider: the credentials file Claude Code
writes (``~/.claude/.credentials.json``), read for its access token.

The file looks like ``{"claudeAiOauth": {"accessToken": "sk-ant-oat01-…",
"refreshToken": "sk-ant-ort01-…", "expiresAt": 1767225600000, …}}``
(``expiresAt`` in milliseconds since the epoch). The proxy only reads it:
Claude Code (or whatever the operator runs) refreshes the token and
rewrites the file; the proxy picks the new one up. Errors name the file
and the field, never a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

OAUTH_BETA = b"oauth-2025-04-20"  # what the API asks of requests with a subscription token
_SECTION = "claudeAiOauth"


@dataclass(frozen=True, slots=True)
class OAuthToken:
    access: bytes = field(repr=False)
    expires_at: float | None  # epoch seconds; None: the file does not say

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def read_oauth_file(path: str) -> OAuthToken:
    """The token in ``path``; ValueError when the file is missing, not JSON
    or not of Claude Code's shape."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError(f"{path} is not JSON") from None
    section = doc.get(_SECTION) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"{path}: no {_SECTION} object (Claude Code's credentials file)")
    access = section.get("accessToken")
    if not isinstance(access, str) or not access.strip():
        raise ValueError(f"{path}: {_SECTION}.accessToken is missing")
    if any(c in access for c in "\r\n\0 "):
        raise ValueError(f"{path}: {_SECTION}.accessToken holds spaces or line breaks")
    expires = section.get("expiresAt")
    if expires is not None and (not isinstance(expires, int | float) or isinstance(expires, bool)):
        raise ValueError(f"{path}: {_SECTION}.expiresAt is not a number (milliseconds)")
    return OAuthToken(access.strip().encode(), None if expires is None else expires / 1000)
