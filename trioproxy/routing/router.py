"""The router's runtime state: provider health, quota books, session
affinity and the routing mode, with the persistence of what must survive a
restart. Decisions are delegated to ``decide``; this object holds the
inputs and records the outcomes. One per server, passed explicitly.
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio

from trioproxy.accounting.usage import Usage
from trioproxy.config.model import ProviderConfig, RoutingConfig
from trioproxy.routing.clouds import Clouds
from trioproxy.routing.decide import RouteMode, candidates, retry_budget_allows
from trioproxy.routing.health import PROVIDER, ProviderHealth
from trioproxy.routing.quota import HOUR, RETAIN_HOURS, QuotaBook, QuotaStatus
from trioproxy.routing.subscriptions import Subscriptions
from trioproxy.store.base import (
    AFFINITY,
    HEALTH,
    MODE,
    Event,
    Inbox,
    Outbox,
    Participant,
    StateStore,
    StoreUnavailable,
)
from trioproxy.store.open import open_state_store

log = logging.getLogger("trioproxy.router")

AFFINITY_SESSIONS = 10_000  # sessions remembered (LRU); a few hundred bytes each
SYNC_EVERY = 0.5  # seconds between syncs with the state store: views at most ~1 s behind
CLOSE_GRACE = 2.0  # seconds for the last sync at shutdown
OUTBOX_EVENTS_MAX = 10_000  # events kept for a store that is down (the oldest go first)


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
        self.participants: list[Participant] = []  # share through this router's sync
        self.subscriptions = Subscriptions(routing, wall=wall)  # auth = "oauth_file" providers
        self.clouds = Clouds(routing)  # kind = "bedrock" providers' credentials
        self._unusable_tokens: dict[str, str] = {}
        self._unusable_clouds: dict[str, str] = {}
        self.unusable: dict[str, str] = {}  # provider -> why it cannot be used (its credential)
        self._events: list[Event] = []  # for the next sync
        self._published: dict[str, tuple[float | None, frozenset[tuple[str, float]]]] = {}
        self.store_down = False  # the last sync failed (/livez and a metric show it)
        self.retries: dict[str, int] = {}
        self.failovers: dict[str, int] = {}  # by the provider failed over from
        self.forwarding = 0  # requests being forwarded now (the retry budget's base)
        self.retrying = 0  # of those, same-provider retries under way

    # -- decisions -------------------------------------------------------------
    def plan(
        self, *, pin: str | None, session: str | None, caller_key: str = ""
    ) -> list[ProviderConfig]:
        """Raises decide.UnknownProvider / decide.NoProvider / Unusable."""
        now = trio.current_time()
        routing = self.routing
        if self.unusable:
            routing = self._usable_routing(pin)
        return candidates(
            routing,
            self.mode,
            self.health,
            self._over_quota_until,
            now,
            pin=pin,
            session_provider=self.session_provider(session),
            caller_key=caller_key,
        )

    def _usable_routing(self, pin: str | None) -> RoutingConfig:
        """The routing without the providers whose credential cannot be used:
        they are never sent a request. When the provider asked for (pinned,
        single mode) or every provider is one of them, Unusable says why."""
        chosen = pin or (self.mode.provider if self.mode.mode == "single" else None)
        if chosen is not None and chosen in self.unusable:
            raise Unusable(f"provider {chosen} cannot be used: {self.unusable[chosen]}")
        providers = tuple(
            replace(p, enabled=False) if p.name in self.unusable else p
            for p in self.routing.providers
        )
        if chosen is None and not any(p.enabled for p in providers):
            name, why = next(iter(self.unusable.items()))
            raise Unusable(f"no provider can be used now: provider {name}: {why}")
        return replace(self.routing, providers=providers)

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
        if self._affinity.get(session) != provider and self.store is not None:
            self._queue(Event(AFFINITY, session, {"provider": provider}))
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
        keeps the switch unless the operator changed the configuration since.
        The other workers and instances get it with the next sync."""
        value = {
            "mode": self.mode.mode,
            "provider": self.mode.provider,
            "configured": self._configured(),
        }
        if self.store is None:
            return
        self._queue(Event(MODE, "", value))
        try:
            await self.store.save_mode(value)
        except StoreUnavailable as exc:
            log.error("state store: routing mode not saved: %s", exc)

    def reconfigure(self, routing: RoutingConfig) -> None:
        """A reload: health carries over by provider name; a changed routing
        setting in the configuration replaces a runtime switch."""
        old_configured = self._configured()
        self.routing = routing
        self.subscriptions.reconfigure(routing)
        self.clouds.reconfigure(routing)
        self._unusable_tokens = self.subscriptions.report()
        self._unusable_clouds = self.clouds.report()
        self.unusable = {**self._unusable_tokens, **self._unusable_clouds}
        for p in routing.providers:
            self.health_of(p.name)
        if self._configured() != old_configured or (
            self.mode.provider is not None and routing.get(self.mode.provider) is None
        ):
            self.mode = RouteMode(routing.mode, routing.single)

    # -- the shared state ------------------------------------------------------
    async def attach(self, store: StateStore | None) -> None:
        """Share state through ``store`` from now on: a first sync, then the
        routing mode saved last."""
        self.store = store
        if store is None:
            return
        await self.sync()
        try:
            saved = await store.load_mode()
        except StoreUnavailable as exc:
            log.error("state store: saved routing mode not read: %s", exc)
            saved = None
        if saved is not None:
            self._apply_mode(saved)

    def _queue(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) > OUTBOX_EVENTS_MAX:
            del self._events[: len(self._events) - OUTBOX_EVENTS_MAX]

    def _health_events(self) -> None:
        """Breaker openings and cooldowns decided here since the last sync,
        on the wall clock (other processes have other trio clocks)."""
        now, wall = trio.current_time(), self.wall()
        for name, h in self.health.items():
            mine = (h.opened_until, frozenset(h.cooldowns.items()))
            if self._published.get(name, (None, frozenset())) == mine:
                continue
            self._published[name] = mine
            self._queue(
                Event(
                    HEALTH,
                    name,
                    {
                        "open_until": None
                        if h.opened_until is None
                        else wall + h.opened_until - now,
                        "cooldowns": {k: wall + u - now for k, u in h.cooldowns.items() if u > now},
                    },
                )
            )

    async def sync(self) -> None:
        """Send what changed here, take in what changed elsewhere. A store
        that fails is logged once; what was not sent goes with the next try."""
        store = self.store
        if store is None:
            return
        self._health_events()
        out = Outbox(quota=self.quotas.take_pending(), events=self._events)
        own = Outbox(quota=dict(out.quota), events=list(out.events))
        self._events = []
        parts = [p.outgoing() for p in self.participants]
        for part in parts:  # participants share counters and events; quotas are the router's
            out.events.extend(part.events)
            out.counters.update(part.counters)
        since = int(self.wall() // HOUR) - RETAIN_HOURS
        try:
            inbox = await store.sync(out, since_hour=since)
        except StoreUnavailable as exc:
            self.quotas.give_back(own.quota)
            self._events = own.events + self._events
            for p, part in zip(self.participants, parts, strict=True):
                p.returned(part)
            if not self.store_down:
                log.error(
                    "state store %s unreachable, serving on this process's view: %s", store, exc
                )
            self.store_down = True
            return
        if self.store_down:
            log.warning("state store %s reachable again; views resynced", store)
            self.store_down = False
        self._apply(inbox)
        for p in self.participants:
            p.incoming(inbox)

    def _apply(self, inbox: Inbox) -> None:
        self.quotas.settle(inbox.quota)
        self.quotas.prune(self.wall())
        now, wall = trio.current_time(), self.wall()
        for e in inbox.events:
            if e.kind == AFFINITY and isinstance(e.value.get("provider"), str):
                self._affinity[e.key] = e.value["provider"]
                self._affinity.move_to_end(e.key)
                while len(self._affinity) > AFFINITY_SESSIONS:
                    self._affinity.popitem(last=False)
            elif e.kind == HEALTH and e.key in self.health:
                self._apply_health(e.key, e.value, now, wall)
            elif e.kind == MODE:
                self._apply_mode(e.value)

    def _apply_health(self, name: str, value: dict[str, Any], now: float, wall: float) -> None:
        """Another process's decision: an opening or a cooldown later than
        ours wins; a breaker it closed closes here too unless we opened it
        again since."""
        h = self.health[name]
        remote_open = value.get("open_until")
        if isinstance(remote_open, int | float):
            until = now + (remote_open - wall)
            if until > now and (h.opened_until is None or until > h.opened_until):
                h.opened_until = until
        elif remote_open is None and h.opened_until is not None and h.opened_until <= now:
            h.opened_until = None  # its trial succeeded: closed everywhere
            h.failures = 0
        for key, remote in (value.get("cooldowns") or {}).items():
            until = now + (float(remote) - wall)
            if until > h.cooldowns.get(key, 0.0):
                h.cooldowns[key] = until
        self._published[name] = (h.opened_until, frozenset(h.cooldowns.items()))

    def _apply_mode(self, saved: dict[str, Any]) -> None:
        if saved.get("configured") != self._configured():
            return  # saved before the operator changed the configuration: it wins
        if (saved.get("mode"), saved.get("provider")) == (self.mode.mode, self.mode.provider):
            return
        try:
            self.switch(str(saved.get("mode")), saved.get("provider"))
        except ValueError as exc:
            log.warning("saved routing mode ignored: %s", exc)

    async def serve(
        self,
        state_dir: str,
        redis_url: str = "",
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the state store (Redis with ``redis_url``, else the SQLite
        file in ``state_dir``), then sync every SYNC_EVERY seconds until
        cancelled; the last changes are sent (bounded) on the way out."""
        async with open_state_store(state_dir, redis_url) as store:
            await self.attach(store)
            task_status.started()
            try:
                while True:
                    await trio.sleep(SYNC_EVERY)
                    await self.sync()
            finally:
                with trio.move_on_after(CLOSE_GRACE, shield=True):
                    await self.sync()

    async def watch_subscriptions(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep ``unusable`` up to date with the subscriptions' credentials
        files until cancelled."""

        def apply(unusable: dict[str, str]) -> None:
            self._unusable_tokens = unusable
            self.unusable = {**unusable, **self._unusable_clouds}

        await self.subscriptions.serve(apply, task_status=task_status)

    async def watch_clouds(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Resolve and refresh cloud providers' credentials (in worker
        threads) until cancelled, keeping ``unusable`` up to date."""

        def apply(unusable: dict[str, str]) -> None:
            self._unusable_clouds = unusable
            self.unusable = {**self._unusable_tokens, **unusable}

        await self.clouds.serve(apply, task_status=task_status)

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
            unusable = self.unusable.get(p.name)
            if unusable is not None:
                state = "unavailable"
            until = h.cooldown_until(PROVIDER)
            cooldown = until if until > now else None
            requests, failed = h.window_counts(now, p.breaker)
            rows.append(
                {
                    "name": p.name,
                    "base_url": str(p.upstream.origin),
                    "kind": p.kind,
                    "region": p.region or None,
                    "credentials": self.clouds.state(p.name),
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
                    "last_error": unusable or h.last_error,
                    "quota": None if quota is None else quota.as_dict(),
                    "retries": self.retries.get(p.name, 0),
                    "failovers": self.failovers.get(p.name, 0),
                }
            )
        store = None if self.store is None else {"up": not self.store_down, "name": str(self.store)}
        return {
            "mode": self.mode.mode,
            "provider": self.mode.provider,
            "providers": rows,
            "state_store": store,
        }


class Unusable(Exception):
    """Every provider that could serve has a credential that cannot be used
    (a subscription's expired token): never sent, so the proxy answers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _describe(mode: RouteMode) -> str:
    return f"single ({mode.provider})" if mode.mode == "single" else "failover"


def usage_tokens(usage: Usage) -> int:
    """All four classes count against a quota."""
    return sum(usage.as_dict().values())
