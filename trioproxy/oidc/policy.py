"""A signed-in user's policy from their groups (pure): the
``[[caller_groups]]`` that match one of the user's groups, merged so that
each key is the most generous any of them gives. A user in no group, or
outside ``allowed_domains``, is refused with a reason.

Most generous, key by key: no model allowlist over any (else the union);
no limit over any (else the highest) for ``rpm``, ``tpm`` and
``max_concurrent``; no budget over any, else the highest per day of the
same kind (a USD budget and a token budget are not compared: the group
listed first keeps its kind); the provider's key over the user's own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from trioproxy.config.model import Budget, Caller, CallerGroup, OIDCConfig
from trioproxy.oidc.tokens import Identity

DAYS = {"daily": 1.0, "weekly": 7.0, "monthly": 30.0}


class Refused(ValueError):
    """Why a signed-in user may not use the proxy (a 403)."""


def policy_for(identity: Identity, oidc: OIDCConfig, groups: Sequence[CallerGroup]) -> Caller:
    """The user as a caller, with the merged policy of their groups; it
    expires with the token (plus the leeway)."""
    user = identity.user
    if oidc.allowed_domains:
        domain = user.rpartition("@")[2].lower() if "@" in user else ""
        if domain not in oidc.allowed_domains:
            raise Refused(
                f"user {user} is not at an allowed domain ({', '.join(oidc.allowed_domains)}: "
                "auth.oidc.allowed_domains)"
            )
    matched = [
        g for g in groups if any(fnmatch.fnmatchcase(mine, g.match) for mine in identity.groups)
    ]
    if not matched:
        mine = ", ".join(identity.groups[:20]) or "none"
        raise Refused(
            f"user {user} is in no group this proxy serves (their groups, from the "
            f"{oidc.groups_claim!r} claim: {mine}; [[caller_groups]] match "
            f"{', '.join(g.match for g in groups)})"
        )
    return merged(user, [g.policy for g in matched], identity.expires + oidc.leeway_s)


def merged(name: str, policies: Sequence[Caller], expires: float | None) -> Caller:
    models: tuple[str, ...] = ()
    if all(p.models for p in policies):
        models = tuple(dict.fromkeys(m for p in policies for m in p.models))
    return Caller(
        name=name,
        digests=frozenset(),
        models=models,
        rpm=_most([p.rpm for p in policies]),
        tpm=_most([p.tpm for p in policies]),
        max_concurrent=_most([p.max_concurrent for p in policies]),
        budget=_budget([p.budget for p in policies]),
        expires=expires,
        upstream_credential=("own" if all(p.own_credential for p in policies) else "provider"),
    )


def _most(values: list[int | None]) -> int | None:
    if any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def _budget(budgets: list[Budget | None]) -> Budget | None:
    if any(b is None for b in budgets):
        return None
    kept = [b for b in budgets if b is not None]
    kind = "usd" if kept[0].usd is not None else "tokens"
    same = [b for b in kept if getattr(b, kind) is not None]
    return max(same, key=lambda b: float(getattr(b, kind)) / DAYS.get(b.window, 1.0))
