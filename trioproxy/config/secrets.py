"""The caller-secret grammar: ``name:secret`` pairs (or bare secrets, named
by a short keyed hash), as in ``auth.secrets`` and the secrets file."""

from __future__ import annotations

import hashlib
import hmac

from trioproxy.config.model import Secret

# The hash that names an unnamed secret: keyed, so the name cannot be checked
# against a guessed secret list without this constant, and short, so it cannot
# be used to recover a high-entropy secret.
_NAME_KEY = b"trioproxy/secret-name/v1"


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
