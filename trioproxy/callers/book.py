"""What each caller used: counted here, shared through the state store, and
read on the hot path without a round trip.

Every process counts its own traffic into buckets (requests and tokens per
10 s for rpm/tpm, tokens and micro-dollars per day for budgets) and hands
the increments to the router's sync every 0.5 s (this book is one of its
participants); the store's totals come back the same way. Requests in
flight are a gauge, not a counter: each process publishes its own (an
``inflight`` event when they change, and every few seconds while there
are any) and adds the others' latest, forgetting a process that went
quiet. So a limit may be overshot by what other processes admit within
about a second, never more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from trioproxy.callers.policy import (
    DAY,
    RATE_BUCKET,
    RATE_BUCKETS,
    Refusal,
    Spend,
    budget_window,
    check_budget,
    check_rates,
    rate_bucket,
)
from trioproxy.config.model import Caller
from trioproxy.store.base import INFLIGHT, CounterKey, Event, Inbox, Outbox, origin

PREFIX = "caller:"  # series names carry a colon: no provider name can
BUDGET_DAYS = 32  # days a budget bucket is kept (the longest window and a margin)
INFLIGHT_REFRESH = 2.0  # seconds between publishing an unchanged, non-zero gauge
INFLIGHT_STALE = 5.0  # seconds after which another process's gauge is forgotten
USD_MICRO = 1_000_000


def series(caller: str, what: str) -> str:
    return f"{PREFIX}{caller}:{what}"


@dataclass
class Counters:
    """Shared counters: totals as the store last said plus what was counted
    here since, and the increments the store has not taken yet."""

    totals: dict[tuple[str, int], int] = field(default_factory=dict)
    until: dict[tuple[str, int], int] = field(default_factory=dict)
    pending: dict[CounterKey, int] = field(default_factory=dict)

    def add(self, name: str, bucket: int, until: int, n: int) -> None:
        if n <= 0:
            return
        key = (name, bucket)
        self.totals[key] = self.totals.get(key, 0) + n
        self.until[key] = until
        full = (name, bucket, until)
        self.pending[full] = self.pending.get(full, 0) + n

    def get(self, name: str, bucket: int) -> int:
        return self.totals.get((name, bucket), 0)

    def take_pending(self) -> dict[CounterKey, int]:
        out, self.pending = self.pending, {}
        return out

    def give_back(self, increments: dict[CounterKey, int]) -> None:
        for key, n in increments.items():
            self.pending[key] = self.pending.get(key, 0) + n

    def settle(self, totals: dict[CounterKey, int]) -> None:
        mine: dict[tuple[str, int], int] = {}
        for (name, bucket, _), n in self.pending.items():
            mine[(name, bucket)] = mine.get((name, bucket), 0) + n
        for (name, bucket, until), total in totals.items():
            if name.startswith(PREFIX):
                self.totals[(name, bucket)] = total + mine.get((name, bucket), 0)
                self.until[(name, bucket)] = until

    def prune(self, now: float) -> None:
        for key in [k for k, u in self.until.items() if u < now]:
            del self.until[key]
            self.totals.pop(key, None)


class CallerBook:
    """One per process. ``wall`` is the epoch clock windows are measured on."""

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.counters = Counters()
        self.in_flight: dict[str, int] = {}  # this process's, by caller
        self._others: dict[str, tuple[float, dict[str, int]]] = {}  # process -> (at, gauge)
        self._origin = origin()
        self._published: dict[str, int] = {}
        self._published_at = 0.0

    # -- the hot path ------------------------------------------------------------
    def admit(self, caller: Caller, now: float | None = None) -> Refusal | None:
        """Rates, concurrency and budget; admitted, the request counts (and
        is in flight until ``release``)."""
        now = self.wall() if now is None else now
        name = caller.name
        refusal = check_rates(
            caller,
            now,
            lambda b: self.counters.get(series(name, "req"), b),
            lambda b: self.counters.get(series(name, "tok"), b),
            self.concurrent(name, now),
        ) or check_budget(caller, self.spend(caller, now), now)
        if refusal is not None:
            return refusal
        bucket = rate_bucket(now)
        self.counters.add(series(name, "req"), bucket, _rate_until(bucket), 1)
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        return None

    def release(self, name: str) -> None:
        n = self.in_flight.get(name, 0) - 1
        if n > 0:
            self.in_flight[name] = n
        else:
            self.in_flight.pop(name, None)

    def record(self, name: str, tokens: int, usd: float, now: float | None = None) -> None:
        """What a finished request used (tokens as rpm/tpm and budgets count
        them; ``usd`` priced by the caller of this)."""
        now = self.wall() if now is None else now
        bucket, day = rate_bucket(now), int(now // DAY)
        day_until = (day + BUDGET_DAYS) * DAY
        self.counters.add(series(name, "tok"), bucket, _rate_until(bucket), tokens)
        self.counters.add(series(name, "day_tok"), day, day_until, tokens)
        self.counters.add(series(name, "day_usd"), day, day_until, round(usd * USD_MICRO))

    # -- views -------------------------------------------------------------------
    def concurrent(self, name: str, now: float) -> int:
        n = self.in_flight.get(name, 0)
        for at, gauge in self._others.values():
            if now - at <= INFLIGHT_STALE:
                n += gauge.get(name, 0)
        return n

    def spend(self, caller: Caller, now: float) -> Spend:
        window = caller.budget.window if caller.budget is not None else "monthly"
        start, _ = budget_window(window, now)
        first, last = int(start // DAY), int(now // DAY)
        days = range(first, last + 1)
        get = self.counters.get
        usd = sum(get(series(caller.name, "day_usd"), d) for d in days) / USD_MICRO
        return Spend(usd, sum(get(series(caller.name, "day_tok"), d) for d in days))

    def usage(self, caller: Caller, now: float | None = None) -> dict[str, object]:
        """For ``trioproxy callers list`` and the dashboard."""
        now = self.wall() if now is None else now
        current = rate_bucket(now)
        window = range(current - RATE_BUCKETS + 1, current + 1)
        get = self.counters.get
        spend = self.spend(caller, now)
        return {
            "requests_last_minute": sum(get(series(caller.name, "req"), b) for b in window),
            "tokens_last_minute": sum(get(series(caller.name, "tok"), b) for b in window),
            "in_flight": self.concurrent(caller.name, now),
            "spend_usd": round(spend.usd, 6),
            "spend_tokens": spend.tokens,
            "budget_window": caller.budget.window if caller.budget else "monthly",
        }

    # -- sharing (a participant of the router's sync) ------------------------------
    def outgoing(self) -> Outbox:
        out = Outbox(counters=self.counters.take_pending())
        now = self.wall()
        gauge = dict(self.in_flight)
        if gauge != self._published or (gauge and now - self._published_at >= INFLIGHT_REFRESH):
            out.events.append(Event(INFLIGHT, self._origin, {"at": now, "callers": gauge}))
            self._published, self._published_at = gauge, now
        return out

    def returned(self, part: Outbox) -> None:
        self.counters.give_back(part.counters)
        if part.events:
            self._published = {}  # publish again next time

    def incoming(self, inbox: Inbox) -> None:
        self.counters.settle(inbox.counters)
        now = self.wall()
        self.counters.prune(now)
        for e in inbox.events:
            if e.kind != INFLIGHT:
                continue
            callers = e.value.get("callers")
            at = e.value.get("at")
            if isinstance(callers, dict) and isinstance(at, int | float):
                self._others[e.key] = (
                    float(at),
                    {str(k): int(v) for k, v in callers.items() if isinstance(v, int)},
                )
        for key in [k for k, (at, _) in self._others.items() if now - at > INFLIGHT_STALE]:
            del self._others[key]


def _rate_until(bucket: int) -> int:
    """The bucket is counted while any window holds it, plus one bucket."""
    return (bucket + RATE_BUCKETS + 1) * RATE_BUCKET
