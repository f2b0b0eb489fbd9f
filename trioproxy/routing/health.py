"""One provider's health, judged from live traffic only (never a paid probe).

Two mechanisms, kept apart because they mean different things:

* **Cooldown**: the provider said "not now" (429, or a ``retry-after`` too
  long to wait). It sits out until a known time, then is healthy again.
* **Circuit breaker**: the provider is failing (5xx, 529, connection errors,
  timeouts). Consecutive failures >= ``degraded_after`` make it *degraded*
  (tried after healthy providers); >= ``open_after`` *open* for ``open_s``;
  then *half-open*: exactly one live request is let through, in its normal
  place by priority (so traffic returns to a recovered primary). Its success
  closes the breaker and clears the count; its failure reopens it.
  Degradation fades: a degraded provider that has not failed for
  ``forget_after`` seconds is tried in its normal place again, because
  otherwise, tried only after healthy ones, it would never get the live
  request that could clear it.

All methods are synchronous and take ``now`` (trio time): the shell decides,
this records.
"""

from __future__ import annotations

from dataclasses import dataclass

LATENCY_WEIGHT = 0.2  # of a new sample in the moving average of time to headers


@dataclass
class ProviderHealth:
    failures: int = 0  # consecutive
    last_failure_at: float = -1e18
    opened_until: float | None = None  # set while open (and after: half-open)
    trial_in_flight: bool = False
    cooldown_until: float = 0.0
    in_flight: int = 0
    latency_avg: float | None = None
    last_error: str = ""
    successes: int = 0
    total_failures: int = 0

    def breaker(self, now: float) -> str:
        """closed | open | half-open."""
        if self.opened_until is None:
            return "closed"
        return "open" if now < self.opened_until else "half-open"

    def degraded(self, now: float, degraded_after: int, forget_after: float) -> bool:
        return self.failures >= degraded_after and now - self.last_failure_at < forget_after

    def state(self, now: float, *, degraded_after: int, forget_after: float = 60.0) -> str:
        """What /admin/providers shows: healthy, degraded, open, half-open or
        cooldown (quota is judged elsewhere)."""
        breaker = self.breaker(now)
        if breaker != "closed":
            return breaker
        if now < self.cooldown_until:
            return "cooldown"
        return "degraded" if self.degraded(now, degraded_after, forget_after) else "healthy"

    def tier(self, now: float, *, degraded_after: int, forget_after: float = 60.0) -> int | None:
        """0 healthy or half-open with its trial free, 1 degraded, None: not
        to be tried now."""
        if now < self.cooldown_until:
            return None
        breaker = self.breaker(now)
        if breaker == "open":
            return None
        if breaker == "half-open":
            return None if self.trial_in_flight else 0
        return 1 if self.degraded(now, degraded_after, forget_after) else 0

    def available_at(self, now: float) -> float:
        """Earliest trio time the provider may be tried again."""
        at = max(now, self.cooldown_until)
        if self.opened_until is not None:
            at = max(at, self.opened_until)
        return at

    def begin(self, now: float) -> bool:
        """A request starts on this provider. True if it is the half-open
        trial (the caller must end it with success, failure or abandon)."""
        self.in_flight += 1
        if self.breaker(now) == "half-open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def succeeded(self, latency: float | None) -> None:
        self.in_flight -= 1
        self.failures = 0
        self.opened_until = None
        self.trial_in_flight = False
        self.successes += 1
        if latency is not None:
            self.latency_avg = (
                latency
                if self.latency_avg is None
                else self.latency_avg + LATENCY_WEIGHT * (latency - self.latency_avg)
            )

    def failed(self, now: float, error: str, *, open_after: int, open_s: float) -> None:
        self.in_flight -= 1
        self.failures += 1
        self.total_failures += 1
        self.last_failure_at = now
        self.last_error = error
        reopen = self.trial_in_flight or self.breaker(now) == "half-open"
        self.trial_in_flight = False
        if reopen or self.failures >= open_after:
            self.opened_until = now + open_s

    def rate_limited(self, now: float, until: float, error: str) -> None:
        """A 429 (or an over-long retry-after): cooldown, not a breaker failure.
        A half-open trial that got a 429 frees its slot: the provider answered."""
        self.in_flight -= 1
        self.last_error = error
        self.cooldown_until = max(self.cooldown_until, until)
        self.trial_in_flight = False

    def abandoned(self, was_trial: bool) -> None:
        """The request ended without a verdict (client left, cancelled)."""
        self.in_flight -= 1
        if was_trial:
            self.trial_in_flight = False
