"""Routing decisions as plain functions: which providers to try, in what
order, and what to do after each attempt. The Trio code executes them.

The proxy answers for the upstream only when it can do better (another
provider to try) or when the operator told it to (a quota). With one
candidate left, the upstream's own answer reaches the client verbatim, so
the client's retry logic sees exactly what it would see going direct.
Failover happens only before the first response byte reached the client.
The table (also in docs/routing.md):

| Upstream outcome | Another provider can serve | Last candidate | Health |
|---|---|---|---|
| connect/TLS error, connection lost before the response | retry (backoff, retry budget), then fail over | retry (backoff, retry budget), then 502 | breaker failure |
| 503 | retry (honouring `retry-after` up to the cap, retry budget), then fail over | to the client | breaker failure |
| 529 | fail over | to the client | breaker failure |
| 503, 529 with `retry-after` over the cap | fail over | to the client | provider cooldown for `retry-after` |
| 429 | fail over | to the client | cooldown of that credential: `retry-after`, else `cooldown_s` |
| 500, 502, 504, response-header timeout | fail over | to the client (504 for the timeout) | breaker failure |
| any other status (2xx, 3xx, 400, 401, 403, 404, 413, ...) | to the client | to the client | success |
"""

from __future__ import annotations

import email.utils
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from trioproxy.config.model import ProviderConfig, RoutingConfig
from trioproxy.routing.health import PROVIDER, ProviderHealth


class Outcome(enum.Enum):
    ANSWER = "answer"  # goes to the client as it is
    RETRY = "retry"  # 503 or a connection error: same provider again, if allowed
    OVERLOADED = "overloaded"  # 529: fail over at once when another provider can serve
    FAILOVER = "failover"  # 500, 502, 504, header timeout: next provider
    RATE_LIMITED = "rate_limited"  # 429: next provider, this credential cools down

    @property
    def is_failure(self) -> bool:
        """Whether it counts against the circuit breaker."""
        return self in (Outcome.RETRY, Outcome.OVERLOADED, Outcome.FAILOVER)


def classify(status: int | None) -> Outcome:
    """``None`` is a connection error before any response."""
    if status is None or status == 503:
        return Outcome.RETRY
    if status == 529:
        return Outcome.OVERLOADED
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in (500, 502, 504):
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


def retry_budget_allows(retrying: int, in_flight: int, budget: float, floor: int = 3) -> bool:
    """Envoy's retry budget: same-provider retries in flight stay within
    ``budget`` of the requests in flight (at least ``floor``), so a proxy
    never multiplies the load on an upstream that is already failing."""
    return retrying < max(floor, budget * in_flight)


@dataclass(frozen=True, slots=True)
class Next:
    """What to do after a failed attempt."""

    retry_in: float | None  # seconds before retrying the same provider; None: move on
    cooldown_for: float | None = None  # the credential (or provider) sits out this long
    provider_wide: bool = False  # the cooldown covers every credential


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
    more: bool,
    budget_ok: bool,
    status: int | None,
) -> Next:
    """``status``: the upstream's answer (None: a connection error);
    ``retry``: retries of this provider already made for this request;
    ``more``: another provider can still be tried; ``budget_ok``: the retry
    budget has room. A status is retried only when another provider could
    serve instead (else its answer goes to the client, whose own retry logic
    takes it from there); connection errors are retried either way."""
    if outcome is Outcome.RATE_LIMITED:
        # Without retry-after a 429 is a spend or plan cap: do not knock again soon.
        return Next(None, retry_after if retry_after is not None else cooldown_s)
    long_wait = retry_after is not None and retry_after > cap
    if outcome in (Outcome.RETRY, Outcome.OVERLOADED) and long_wait:
        return Next(None, retry_after, provider_wide=True)
    if outcome is Outcome.RETRY and (more or status is None) and retry < retries and budget_ok:
        delay = retry_after if retry_after is not None else backoff_delay(backoff, retry, rand)
        return Next(delay)
    return Next(None)


class NoProvider(Exception):
    """Nothing can be tried: every provider is over its quota (a budget the
    operator set). ``retry_after`` seconds until one resets."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class UnknownProvider(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RouteMode:
    mode: str  # failover | single
    provider: str | None


OWN_KEY = "own:"  # prefixes the caller key of a caller that brings its own credential


def cooldown_key(provider: ProviderConfig, caller_key: str) -> str:
    """Whose 429 this provider's cooldown is about: its own key (inject
    mode), or the caller's credential passing through (always, for a caller
    whose own credential goes upstream: ``OWN_KEY``)."""
    if caller_key.startswith(OWN_KEY):
        return caller_key
    return PROVIDER if provider.keyed or not caller_key else caller_key


def candidates(
    routing: RoutingConfig,
    mode: RouteMode,
    health: Mapping[str, ProviderHealth],
    over_quota: Callable[[ProviderConfig], float | None],
    now: float,
    *,
    pin: str | None = None,
    session_provider: str | None = None,
    caller_key: str = "",
) -> list[ProviderConfig]:
    """The providers to try, in order. ``over_quota(p)`` gives the trio time
    at which p's quota window resets when it is over its threshold, else
    None. ``caller_key`` names the caller's own credential (passthrough
    cooldowns are per credential).

    ``pin`` (x-trioproxy-provider) and single mode name one provider that is
    tried whatever its health: the operator asked for it. In failover mode,
    providers that cannot be tried now (cooling down, open) are skipped while
    another one can be tried: healthy before degraded, by priority, the
    session's last provider first while it is available (prompt caches and
    thinking signatures live there). When every provider is cooling down or
    open, the one available soonest is tried rather than answering for it.
    Only over-quota providers are never tried (NoProvider)."""
    chosen = pin or (mode.provider if mode.mode == "single" else None)
    if chosen is not None:
        p = routing.get(chosen)
        if p is None:
            raise UnknownProvider(chosen)
        reset = over_quota(p)
        if reset is not None:
            raise NoProvider(f"provider {p.name} is over its token quota", max(0.0, reset - now))
        return [p]
    ranked: list[tuple[int, int, ProviderConfig]] = []
    waiting: list[tuple[float, int, ProviderConfig]] = []
    resets: list[float] = []
    for order, p in enumerate(routing.providers):
        if not p.enabled:
            continue
        reset = over_quota(p)
        if reset is not None:
            resets.append(reset)
            continue
        h = health.get(p.name) or ProviderHealth()
        key = cooldown_key(p, caller_key)
        tier = h.tier(now, p.breaker, key)
        if tier is None:
            waiting.append((h.available_at(now, key), order, p))
        else:
            ranked.append((tier, order, p))
    if not ranked:
        if waiting:
            return [min(waiting, key=lambda w: (w[0], w[1]))[2]]
        soonest = min(resets, default=now)
        raise NoProvider("every provider is over its token quota", max(0.0, soonest - now))
    ranked.sort(key=lambda t: (t[0], t[1]))
    out = [p for _, _, p in ranked]
    if session_provider is not None:
        for i, p in enumerate(out):
            if p.name == session_provider:
                out.insert(0, out.pop(i))
                break
    return out
