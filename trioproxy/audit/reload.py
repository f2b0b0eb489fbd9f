"""What a reload changed, for the audit trail (pure): the flat settings
(secret ones as hashes), the ``[[callers]]`` of the TOML file, the
``[[caller_groups]]`` policies, the providers and the routes."""

from __future__ import annotations

from typing import Any

from trioproxy.audit.changes import Change, hashed, settings_changed
from trioproxy.config.callers import policy_dict
from trioproxy.config.model import Caller, Config
from trioproxy.config.settings import SETTINGS

SECRET_SETTINGS = frozenset(s.key for s in SETTINGS if s.secret)


def reload_changes(
    old: Config, new: Config, who: str = "reload", source: str = "signal"
) -> list[Change]:
    out: list[Change] = []
    before, after = settings_changed(old.raw, new.raw, SECRET_SETTINGS)
    if before or after:
        out.append(Change(who, "reload.settings", "", before, after, source))
    for action, a, b in (
        ("reload.caller_groups", _groups(old), _groups(new)),
        ("reload.callers", _callers(old.auth.callers), _callers(new.auth.callers)),
        ("reload.providers", _providers(old), _providers(new)),
        ("reload.routes", _routes(old), _routes(new)),
    ):
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                out.append(Change(who, action, name, a.get(name), b.get(name), source))
    return out


def _groups(cfg: Config) -> dict[str, Any]:
    return {g.name: {"match": g.match, **policy_dict(g.policy)} for g in cfg.auth.groups}


def _callers(callers: tuple[Caller, ...]) -> dict[str, Any]:
    return {
        c.name: {
            **policy_dict(c),
            "secret_sha256": sorted(d.hex() for d in c.digests),
            "expires": c.expires,
        }
        for c in callers
    }


def _providers(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in cfg.routing.providers:
        cred = p.upstream.credential
        out[p.name] = {
            "kind": p.kind,
            "url": str(p.upstream.origin),
            "priority": p.priority,
            "enabled": p.enabled,
            "models": [list(m) for m in p.models],
            "credential": None if cred is None else hashed(cred.value),
        }
    return out


def _routes(cfg: Config) -> dict[str, Any]:
    return {
        r.name: {"provider": r.provider, "model": r.model, "fallbacks": list(r.fallbacks)}
        for r in cfg.routing.routes
    }
