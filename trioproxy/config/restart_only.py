"""What a reload cannot change while the server runs (pure, but for its
warnings): the listeners, each provider's pool (base URL and pool
settings), the state directory and turning sign-in through an IdP on are
kept from the running configuration until a restart; everything else in
the new one applies now."""

from __future__ import annotations

import logging
from dataclasses import replace

from trioproxy.config.model import Config, ProviderConfig
from trioproxy.config.source import ConfigError

log = logging.getLogger("trioproxy.server")  # the reload's own warnings, as before


def keep_restart_only(old: Config, new: Config) -> Config:
    """Providers' pools exist from the start: a provider keeps its base URL
    and pool settings until a restart (its key, models, priority, quota
    and the rest apply now); a new provider waits for a restart, a removed
    one is disabled."""
    kept: list[ProviderConfig] = []
    for prov in new.routing.providers:
        before = old.routing.get(prov.name)
        if before is None:
            log.warning("reload: new provider %s needs a restart; not used yet", prov.name)
            continue
        pool = replace(before.upstream, credential=prov.upstream.credential)
        if replace(prov.upstream, credential=None) != replace(before.upstream, credential=None):
            log.warning(
                "reload: provider %s: base URL or pool settings changed; they need a restart",
                prov.name,
            )
        kept.append(replace(prov, upstream=pool))
    for prov in old.routing.providers:
        if new.routing.get(prov.name) is None:
            log.warning("reload: provider %s removed; disabled until a restart", prov.name)
            kept.append(replace(prov, enabled=False))
    if not any(p.enabled for p in kept):
        raise ConfigError("providers: the new configuration leaves no usable provider")
    names = {p.name for p in kept}
    routes = tuple(
        r for r in new.routing.routes if r.provider in names and set(r.fallbacks) <= names
    )
    for r in new.routing.routes:
        if r not in routes:
            log.warning(
                "reload: route %s names a provider that needs a restart; not used yet", r.name
            )
    routing = replace(
        new.routing,
        providers=tuple(sorted(kept, key=lambda p: p.priority)),
        routes=routes,
    )
    if new.listen != old.listen:
        log.warning(
            "reload: listen %s -> %s needs a restart; still on %s",
            old.listen,
            new.listen,
            old.listen,
        )
    if new.admin_listen != old.admin_listen:
        log.warning("reload: admin.listen changed; it needs a restart")
    if new.auth.oidc != old.auth.oidc:
        # The issuer's keys are fetched by a task started with the server;
        # [[caller_groups]] apply now.
        log.warning("reload: auth.oidc changed; it needs a restart (its groups apply now)")
        if old.auth.oidc is None:
            raise ConfigError("auth.oidc: turning sign-in through an IdP on needs a restart")
        new = replace(new, auth=replace(new.auth, oidc=old.auth.oidc))
    if new.state_dir != old.state_dir:
        log.warning("reload: state_dir changed; it needs a restart")
    return replace(
        new,
        listen=old.listen,
        admin_listen=old.admin_listen,
        routing=routing,
        state_dir=old.state_dir,
    )
