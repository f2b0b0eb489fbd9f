"""Audit entries (pure): what changed, with every secret replaced by its
hash, so the trail can show that a secret changed, and which, without
holding it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

SECRET_KEYS = frozenset({"secrets", "secret", "token", "api_key", "password"})


@dataclass(frozen=True, slots=True)
class Change:
    who: str  # an admin token's name, or the OS user of the CLI
    action: str  # caller.add, caller.rotate, caller.revoke, caller.update, route.switch, reload
    subject: str  # the caller, or "" for the proxy as a whole
    before: Any
    after: Any
    source: str  # api, cli or signal
    ts: float = field(default_factory=time.time)

    def row(self) -> tuple[object, ...]:
        """In AUDIT_COLUMNS order."""
        return (
            self.ts,
            self.who[:100],
            self.action,
            self.subject[:200],
            orjson.dumps(self.before, default=str).decode(),
            orjson.dumps(self.after, default=str).decode(),
            self.source,
        )


def hashed(value: object) -> str:
    """A secret as the trail shows it."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def redacted(entry: object, secret_keys: Iterable[str] = SECRET_KEYS) -> Any:
    """``entry`` with the values of secret keys hashed (at any depth)."""
    keys = frozenset(secret_keys)
    if isinstance(entry, Mapping):
        return {
            k: (
                [hashed(x) for x in v]
                if k in keys and isinstance(v, list | tuple)
                else hashed(v)
                if k in keys and v not in (None, "")
                else redacted(v, keys)
            )
            for k, v in entry.items()
        }
    if isinstance(entry, list | tuple):
        return [redacted(x, keys) for x in entry]
    return entry


def settings_changed(
    old: Mapping[str, Any], new: Mapping[str, Any], secret: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after) of the settings a reload changed, secret settings as
    hashes."""
    hidden = frozenset(secret)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        before[key] = hashed(a) if key in hidden and a not in (None, "") else _plain(a)
        after[key] = hashed(b) if key in hidden and b not in (None, "") else _plain(b)
    return before, after


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value
