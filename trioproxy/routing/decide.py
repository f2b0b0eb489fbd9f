"""Routing decisions as plain functions: which providers to try, in what
order, and what to do after each attempt. The Trio code executes them.

Failover happens only before the first response byte reached the client.
The table (also in the README):

| Upstream outcome | Same provider | Then | Health |
|---|---|---|---|
| connect/TLS/DNS error, connection lost before the response | retry (backoff) | fail over | breaker failure |
| 503, 529 | retry, honouring `retry-after` up to the cap | fail over | breaker failure |
| 503, 529 with `retry-after` over the cap | no | fail over | cooldown for `retry-after` |
| 429 | no | fail over | cooldown for `retry-after`, else `cooldown_s` |
| 500, 502, 504, response-header timeout | no | fail over | breaker failure |
| any other status (2xx, 3xx, 400, 401, 403, 404, 413, ...) | - | to the client | success |
"""

from __future__ import annotations

import email.utils
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from trioproxy.routing.config import ProviderConfig, RoutingConfig
from trioproxy.routing.health import ProviderHealth

FAILOVER_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
RETRY_STATUSES = frozenset({503, 529})


class Outcome(enum.Enum):
    ANSWER = "answer"  # goes to the client as it is
    RETRY = "retry"  # same provider again (if retries are left), else next
    FAILOVER = "failover"  # next provider
    RATE_LIMITED = "rate_limited"  # next provider, this one cools down


def classify(status: int | None) -> Outcome:
    """``None`` is a connection error before any response."""
    if status is None or status in RETRY_STATUSES:
        return Outcome.RETRY
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in FAILOVER_STATUSES:
        return Outcome.FAILOVER
    return Outcome.ANSWER


def parse_retry_after(value: bytes | None, now_epoch: float) -> float | None:
    """Seconds to wait from a ``retry-after`` header: delta-seconds or an
    HTTP date (RFC 9110 10.2.3). None when absent or unreadable."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now_epoch)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def backoff_delay(base: float, retry: int, rand: float) -> float:
    """Delay before retry number ``retry`` (0-based): base, 2*base, 4*base ...
    with +-20 % jitter (``rand`` in [0, 1)) so clients that failed together
    do not retry together."""
    return float(base * 2.0**retry * (0.8 + 0.4 * rand))


@dataclass(frozen=True, slots=True)
class Next:
    """What to do after a failed attempt."""

    retry_in: float | None  # seconds before retrying the same provider; None: fail over
    cooldown_for: float | None  # put the provider in cooldown for this long


def after_failure(
    outcome: Outcome,
    *,
    retry: int,
    retries: int,
    retry_after: float | None,
    cap: float,
    backoff: float,
    cooldown_s: float,
    rand: float,
) -> Next:
    """``retry`` is how many retries of this provider were already made."""
    if outcome is Outcome.RATE_LIMITED:
        # Without retry-after a 429 is a spend or quota cap: do not knock again soon.
        return Next(None, retry_after if retry_after is not None else cooldown_s)
    if outcome is Outcome.RETRY:
        if retry_after is not None and retry_after > cap:
            return Next(None, retry_after)
        if retry < retries:
            delay = retry_after if retry_after is not None else backoff_delay(backoff, retry, rand)
            return Next(delay, None)
    return Next(None, None)


class NoProvider(Exception):
    """Nothing can be tried now; ``retry_after`` seconds until something can."""

    def __init__(self, message: str, retry_after: float | None, *, rate_limited: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.rate_limited = rate_limited  # every provider is cooling down or over quota


class UnknownProvider(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RouteMode:
    mode: str  # failover | single
    provider: str | None


def candidates(
    routing: RoutingConfig,
    mode: RouteMode,
    health: Mapping[str, ProviderHealth],
    over_quota: Callable[[ProviderConfig], float | None],
    now: float,
    *,
    pin: str | None = None,
    session_provider: str | None = None,
) -> list[ProviderConfig]:
    """The providers to try, in order. ``over_quota(p)`` gives the trio time
    at which p's quota window resets when it is over its threshold, else
    None. ``pin`` (x-trioproxy-provider) and single mode name one provider
    that is tried whatever its state: the operator asked for it. In
    failover mode, providers that cannot be tried now are skipped, healthy
    before degraded, by priority; the session's last provider goes first
    while it is available (prompt caches and thinking signatures live there)."""
    chosen = pin or (mode.provider if mode.mode == "single" else None)
    if chosen is not None:
        p = routing.get(chosen)
        if p is None:
            raise UnknownProvider(chosen)
        return [p]
    ranked: list[tuple[int, int, ProviderConfig]] = []
    waits: list[tuple[float, str]] = []
    limited = True
    for order, p in enumerate(routing.providers):
        if not p.enabled:
            continue
        h = health.get(p.name) or ProviderHealth()
        tier = h.tier(now, degraded_after=routing.degraded_after, forget_after=p.open_s)
        quota_reset = over_quota(p)
        if tier is None or quota_reset is not None:
            state = (
                "over quota"
                if quota_reset is not None
                else h.state(now, degraded_after=routing.degraded_after, forget_after=p.open_s)
            )
            if state == "half-open":
                state = "half-open, trial in flight"
            limited = limited and state in ("cooldown", "over quota")
            at = max(h.available_at(now), quota_reset or now)
            waits.append((at, f"{p.name} ({state})"))
            continue
        ranked.append((tier, order, p))
    if not ranked:
        soonest = min((at for at, _ in waits), default=now)
        raise NoProvider(
            "no provider is available: " + ", ".join(text for _, text in waits),
            max(0.0, soonest - now) if waits else None,
            rate_limited=limited,
        )
    ranked.sort(key=lambda t: (t[0], t[1]))
    out = [p for _, _, p in ranked]
    if session_provider is not None:
        for i, p in enumerate(out):
            if p.name == session_provider:
                out.insert(0, out.pop(i))
                break
    return out
