"""Caller authentication and upstream credentials: pure decisions.

A caller presents a shared secret as ``x-api-key: <secret>`` or
``Authorization: Bearer <secret>`` (Claude Code sends one or the other). It is
compared in constant time against every configured secret, with no early exit,
so timing does not tell which secret (or which prefix) was close. Secrets are
known by their configured name, or by a short keyed hash when they have none:
that name is what logs, errors and accounting see, never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from trioproxy.proto.events import Headers

# The hash that names an unnamed secret: keyed, so the name cannot be checked
# against a guessed secret list without this constant, and short, so it cannot
# be used to recover a high-entropy secret.
_NAME_KEY = b"trioproxy/secret-name/v1"
CALLER_CREDENTIAL_HEADERS: frozenset[bytes] = frozenset({b"authorization", b"x-api-key"})


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    value: bytes

    def __repr__(self) -> str:  # never the value, not even in a traceback
        return f"Secret(name={self.name!r})"


def secret_name(value: bytes) -> str:
    return "key-" + hmac.new(_NAME_KEY, value, hashlib.sha256).hexdigest()[:8]


def parse_secrets(text: str, where: str) -> tuple[Secret, ...]:
    """``name:secret`` pairs separated by commas or newlines; a bare secret is
    named by its keyed hash; ``#`` starts a comment line. Raises ValueError
    naming the position, never quoting a secret."""
    out: list[Secret] = []
    seen: set[str] = set()
    # Comment lines go first: a comment may contain commas.
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    for n, raw in enumerate(",".join(lines).split(","), 1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        name, sep, value = item.partition(":")
        if not sep:
            name, value = "", item
        name, value = name.strip(), value.strip()
        if not value:
            raise ValueError(f"{where}: entry {n} has an empty secret")
        if len(value) < 16:
            raise ValueError(
                f"{where}: entry {n} ({name or 'unnamed'}) is shorter than 16 characters"
            )
        secret = Secret(name or secret_name(value.encode()), value.encode())
        if secret.name in seen:
            raise ValueError(f"{where}: the name {secret.name!r} is used twice")
        seen.add(secret.name)
        out.append(secret)
    return tuple(out)


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
