"""The router's runtime state: provider health, quota books, session
affinity and the routing mode, with the persistence of what must survive a
restart. Decisions are delegated to ``decide``; this object holds the
inputs and records the outcomes. One per server, passed explicitly.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import trio

from trioproxy.accounting.usage import Usage
from trioproxy.config.model import ProviderConfig, RoutingConfig
from trioproxy.routing.decide import RouteMode, candidates, retry_budget_allows
from trioproxy.routing.health import PROVIDER, ProviderHealth
from trioproxy.routing.quota import HOUR, RETAIN_HOURS, QuotaBook, QuotaStatus
from trioproxy.routing.store import StateStore

log = logging.getLogger("trioproxy.router")

AFFINITY_SESSIONS = 10_000  # sessions remembered (LRU); a few hundred bytes each
FLUSH_EVERY = 1.0  # seconds between quota writes to disk
CLOSE_GRACE = 2.0  # seconds for the last flush at shutdown
ROUTE_KEY = "route"


class Router:
    def __init__(
        self,
        routing: RoutingConfig,
        *,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """``wall`` is the epoch clock quota windows are measured on (tests
        move it); ``rand`` feeds the retry jitter."""
        self.routing = routing
        self.wall = wall
        self.rand = rand
        self.health: dict[str, ProviderHealth] = {
            p.name: ProviderHealth() for p in routing.providers
        }
        self.quotas = QuotaBook()
        self.mode = RouteMode(routing.mode, routing.single)
        self._affinity: OrderedDict[str, str] = OrderedDict()
        self.store: StateStore | None = None
        self._store_lock = trio.Lock()
        self.retries: dict[str, int] = {}
        self.failovers: dict[str, int] = {}  # by the provider failed over from
        self.forwarding = 0  # requests being forwarded now (the retry budget's base)
        self.retrying = 0  # of those, same-provider retries under way

    # -- decisions -------------------------------------------------------------
    def plan(
        self, *, pin: str | None, session: str | None, caller_key: str = ""
    ) -> list[ProviderConfig]:
        """Raises decide.UnknownProvider / decide.NoProvider."""
        now = trio.current_time()
        return candidates(
            self.routing,
            self.mode,
            self.health,
            self._over_quota_until,
            now,
            pin=pin,
            session_provider=self.session_provider(session),
            caller_key=caller_key,
        )

    def retry_allowed(self) -> bool:
        """Room in the retry budget for one more same-provider retry."""
        return retry_budget_allows(self.retrying, self.forwarding, self.routing.retry_budget)

    def _over_quota_until(self, p: ProviderConfig) -> float | None:
        status = self.quota_status(p)
        if status is None or not status.over:
            return None
        return trio.current_time() + max(0.0, status.reset_at - self.wall())

    def quota_status(self, p: ProviderConfig) -> QuotaStatus | None:
        return None if p.quota is None else self.quotas.status(p.name, p.quota, self.wall())

    def session_provider(self, session: str | None) -> str | None:
        if session is None:
            return None
        name = self._affinity.get(session)
        if name is not None:
            self._affinity.move_to_end(session)
        return name

    def remember_session(self, session: str | None, provider: str) -> None:
        if session is None:
            return
        self._affinity[session] = provider
        self._affinity.move_to_end(session)
        while len(self._affinity) > AFFINITY_SESSIONS:
            self._affinity.popitem(last=False)

    def family_of(self, name: str | None) -> str | None:
        p = self.routing.get(name) if name else None
        return p.family if p else None

    # -- outcomes --------------------------------------------------------------
    def health_of(self, name: str) -> ProviderHealth:
        h = self.health.get(name)
        if h is None:
            h = self.health[name] = ProviderHealth()
        return h

    def record_usage(self, provider: str, tokens: int) -> None:
        if tokens > 0:
            self.quotas.add(provider, tokens, self.wall())

    def count_retry(self, provider: str) -> None:
        self.retries[provider] = self.retries.get(provider, 0) + 1

    def count_failover(self, provider: str) -> None:
        self.failovers[provider] = self.failovers.get(provider, 0) + 1

    # -- mode ------------------------------------------------------------------
    def switch(self, mode: str, provider: str | None) -> RouteMode:
        """Set the runtime mode (validated; ValueError with a message)."""
        if mode not in ("failover", "single"):
            raise ValueError('mode must be "failover" or "single"')
        if mode == "single":
            if not provider:
                raise ValueError("single mode needs a provider")
            if self.routing.get(provider) is None:
                raise ValueError(
                    f"no provider named {provider!r} (known: {', '.join(self.routing.names)})"
                )
        else:
            provider = None
        self.mode = RouteMode(mode, provider)
        log.warning("routing switched to %s", _describe(self.mode))
        return self.mode

    def _configured(self) -> list[Any]:
        return [self.routing.mode, self.routing.single]

    async def save_mode(self) -> None:
        """Persist the mode with the configured one it overrides: a restart
        keeps the switch unless the operator changed the configuration since."""
        value = {
            "mode": self.mode.mode,
            "provider": self.mode.provider,
            "configured": self._configured(),
        }
        await self._with_store(lambda s: s.put(ROUTE_KEY, value))

    def reconfigure(self, routing: RoutingConfig) -> None:
        """A reload: health carries over by provider name; a changed routing
        setting in the configuration replaces a runtime switch."""
        old_configured = self._configured()
        self.routing = routing
        for p in routing.providers:
            self.health_of(p.name)
        if self._configured() != old_configured or (
            self.mode.provider is not None and routing.get(self.mode.provider) is None
        ):
            self.mode = RouteMode(routing.mode, routing.single)

    # -- persistence -----------------------------------------------------------
    async def _with_store(self, fn: Callable[[StateStore], object]) -> object:
        store = self.store
        if store is None:
            return None
        async with self._store_lock:
            try:
                return await trio.to_thread.run_sync(fn, store)
            except sqlite3.Error as exc:
                log.error("state store %s: %s", store.path, exc)
                return None

    async def open_store(self, state_dir: str) -> None:
        """Load quota counts and the routing mode. A state directory that
        cannot be used is logged and the router runs on memory alone."""
        try:
            self.store = await trio.to_thread.run_sync(StateStore, state_dir)
        except (OSError, sqlite3.Error) as exc:
            log.error(
                "state directory %s unusable (%s): quotas and the routing mode will not "
                "survive a restart",
                state_dir,
                exc,
            )
            return
        since = int(self.wall() // HOUR) - RETAIN_HOURS
        rows = await self._with_store(lambda s: s.load_buckets(since))
        if isinstance(rows, list):
            self.quotas.load(rows)
        saved = await self._with_store(lambda s: s.get(ROUTE_KEY))
        if isinstance(saved, dict) and saved.get("configured") == self._configured():
            try:
                self.switch(str(saved.get("mode")), saved.get("provider"))
            except ValueError as exc:
                log.warning("saved routing mode ignored: %s", exc)

    async def flush(self) -> None:
        pending = self.quotas.take_pending()
        if pending:
            cutoff = int(self.wall() // HOUR) - RETAIN_HOURS
            self.quotas.prune(self.wall())
            await self._with_store(lambda s: s.save_buckets(pending, cutoff))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write quota counts to disk every FLUSH_EVERY seconds until
        cancelled; the last counts are written (bounded) on the way out."""
        task_status.started()
        try:
            while True:
                await trio.sleep(FLUSH_EVERY)
                await self.flush()
        finally:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                await self.flush()
                if self.store is not None:
                    async with self._store_lock:
                        await trio.to_thread.run_sync(self.store.close)

    # -- reporting -------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """For GET /admin/providers."""
        now = trio.current_time()
        wall = self.wall()
        rows = []
        for p in self.routing.providers:
            h = self.health_of(p.name)
            quota = self.quota_status(p)
            state: str = h.state(now, p.breaker)
            if quota is not None and quota.over:
                state = "over_quota"
            until = h.cooldown_until(PROVIDER)
            cooldown = until if until > now else None
            requests, failed = h.window_counts(now, p.breaker)
            rows.append(
                {
                    "name": p.name,
                    "base_url": str(p.upstream.origin),
                    "family": p.family,
                    "priority": p.priority,
                    "enabled": p.enabled,
                    "state": state,
                    "breaker": str(h.breaker(now)),
                    "cooldown_until": None
                    if cooldown is None
                    else round(wall + (cooldown - now), 3),
                    "open_until": None
                    if h.opened_until is None or h.opened_until <= now
                    else round(wall + (h.opened_until - now), 3),
                    "consecutive_failures": h.failures,
                    "window_requests": requests,
                    "window_failures": failed,
                    "credentials_cooling": h.cooling(now),
                    "in_flight": h.in_flight,
                    "latency_avg_s": None if h.latency_avg is None else round(h.latency_avg, 4),
                    "last_error": h.last_error,
                    "quota": None if quota is None else quota.as_dict(),
                    "retries": self.retries.get(p.name, 0),
                    "failovers": self.failovers.get(p.name, 0),
                }
            )
        return {"mode": self.mode.mode, "provider": self.mode.provider, "providers": rows}


def _describe(mode: RouteMode) -> str:
    return f"single ({mode.provider})" if mode.mode == "single" else "failover"


def usage_tokens(usage: Usage) -> int:
    """All four classes count against a quota."""
    return sum(usage.as_dict().values())
