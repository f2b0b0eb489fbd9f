"""One provider's health, judged from live traffic only (never a paid probe).

Two mechanisms, kept apart because they mean different things:

* **Cooldown**: the provider said "not now" (429, or a ``retry-after`` too
  long to wait) to one *credential*. Cooldowns are keyed: the provider's own
  key in inject mode, the caller's credential in passthrough mode (one
  caller's 429 says nothing about another caller's key), and ``PROVIDER``
  for a provider-wide "not now" (503/529 with a long ``retry-after``). A
  cooled-down pair sits out until a known time, then is healthy again.
* **Circuit breaker**: the provider is failing (5xx, 529, connection errors,
  response-header timeouts). It opens on a failure *rate* over a sliding
  window (``BreakerPolicy``), counting each client request at most once,
  however many attempts it made: one poison request that fails on every
  retry is one failure, not three. Open for ``open_s``, then *half-open*:
  exactly one live request (the trial) is let through, in its normal place by
  priority. Only the trial decides: its success closes the breaker, its
  failure reopens it. Outcomes of requests that started before the trial
  (late successes included) are recorded in the window but never close it.

Consecutive failed requests >= ``degraded_after`` make a provider *degraded*
(tried after healthy ones); that fades after ``open_s`` seconds without a
failure, because a provider tried only after healthy ones would otherwise
never get the live request that could clear it.

Health only orders and skips providers while another one can be tried; the
decision functions in ``decide`` apply that rule. All methods here are
synchronous and take ``now`` (trio time): the shell decides, this records.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from trioproxy.config.model import BreakerPolicy

LATENCY_WEIGHT = 0.2  # of a new sample in the moving average of time to headers
PROVIDER = "*"  # the cooldown key that covers every credential of a provider
MAX_COOLDOWN_KEYS = 10_000  # credentials remembered per provider; expired ones go first
BUCKET_S = 1.0  # seconds per bucket of the breaker's sliding window


class Breaker(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class State(enum.StrEnum):
    """What /admin/providers and the metrics show (quota is judged elsewhere)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    OPEN = "open"
    HALF_OPEN = "half-open"
    COOLDOWN = "cooldown"


@dataclass(slots=True)
class Visit:
    """One client request's stay on one provider (its retries included)."""

    started: float
    trial: bool
    done: bool = False


@dataclass
class ProviderHealth:
    # Sliding window: [bucket start, requests, failed requests], oldest first.
    window: deque[list[float]] = field(default_factory=deque)
    failures: int = 0  # consecutive failed requests
    last_failure_at: float = -1e18
    opened_until: float | None = None  # set while open (and after: half-open)
    trial_in_flight: bool = False
    cooldowns: dict[str, float] = field(default_factory=dict)  # credential key -> until
    in_flight: int = 0
    latency_avg: float | None = None
    last_error: str = ""
    successes: int = 0
    total_failures: int = 0

    # -- reading ---------------------------------------------------------------
    def breaker(self, now: float) -> Breaker:
        if self.opened_until is None:
            return Breaker.CLOSED
        return Breaker.OPEN if now < self.opened_until else Breaker.HALF_OPEN

    def degraded(self, now: float, policy: BreakerPolicy) -> bool:
        return self.failures >= policy.degraded_after and now - self.last_failure_at < policy.open_s

    def cooldown_until(self, key: str = PROVIDER) -> float:
        """When the credential ``key`` may be used again (a provider-wide
        cooldown covers every key)."""
        until = self.cooldowns.get(PROVIDER, 0.0)
        if key != PROVIDER:
            until = max(until, self.cooldowns.get(key, 0.0))
        return until

    def cooling(self, now: float) -> int:
        """Credentials (or the whole provider) in cooldown now."""
        return sum(1 for until in self.cooldowns.values() if until > now)

    def state(self, now: float, policy: BreakerPolicy, key: str = PROVIDER) -> State:
        breaker = self.breaker(now)
        if breaker is Breaker.OPEN:
            return State.OPEN
        if breaker is Breaker.HALF_OPEN:
            return State.HALF_OPEN
        if now < self.cooldown_until(key):
            return State.COOLDOWN
        return State.DEGRADED if self.degraded(now, policy) else State.HEALTHY

    def tier(self, now: float, policy: BreakerPolicy, key: str = PROVIDER) -> int | None:
        """0 healthy or half-open with its trial free, 1 degraded, None: skip
        it while another provider can be tried."""
        if now < self.cooldown_until(key):
            return None
        breaker = self.breaker(now)
        if breaker is Breaker.OPEN:
            return None
        if breaker is Breaker.HALF_OPEN:
            return None if self.trial_in_flight else 0
        return 1 if self.degraded(now, policy) else 0

    def available_at(self, now: float, key: str = PROVIDER) -> float:
        """Earliest trio time the provider may be tried again with ``key``."""
        at = max(now, self.cooldown_until(key))
        if self.opened_until is not None:
            at = max(at, self.opened_until)
        return at

    def window_counts(self, now: float, policy: BreakerPolicy) -> tuple[int, int]:
        """(requests, failed requests) in the sliding window."""
        self._prune(now, policy)
        return int(sum(b[1] for b in self.window)), int(sum(b[2] for b in self.window))

    # -- recording -------------------------------------------------------------
    def begin(self, now: float) -> Visit:
        """A request starts on this provider. Its Visit must end exactly once:
        ``succeeded``, ``failed``, ``answered_not_now`` or ``abandoned``."""
        self.in_flight += 1
        trial = False
        if self.breaker(now) is Breaker.HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = trial = True
        return Visit(now, trial)

    def _end(self, visit: Visit) -> bool:
        if visit.done:
            return False
        visit.done = True
        self.in_flight -= 1
        if visit.trial:
            self.trial_in_flight = False
        return True

    def succeeded(self, visit: Visit, now: float, policy: BreakerPolicy, latency: float) -> None:
        if not self._end(visit):
            return
        self._count(now, policy, failed=False)
        self.failures = 0
        self.successes += 1
        self.latency_avg = (
            latency
            if self.latency_avg is None
            else self.latency_avg + LATENCY_WEIGHT * (latency - self.latency_avg)
        )
        if visit.trial:
            self.opened_until = None
            self.window.clear()  # a fresh start: old failures must not reopen it at once

    def failed(self, visit: Visit, now: float, policy: BreakerPolicy, error: str) -> None:
        if not self._end(visit):
            return
        self._count(now, policy, failed=True)
        self.failures += 1
        self.total_failures += 1
        self.last_failure_at = now
        self.last_error = error
        if visit.trial:
            self.opened_until = now + policy.open_s  # the trial failed: open again
        elif self.opened_until is None:
            total, failed = self.window_counts(now, policy)
            if total >= policy.min_requests and failed >= policy.failure_rate * total:
                self.opened_until = now + policy.open_s

    def answered_not_now(self, visit: Visit) -> None:
        """The request ended on a 429 (or a long retry-after): the provider
        answered, so the breaker learns nothing; a trial frees its slot."""
        self._end(visit)

    def abandoned(self, visit: Visit) -> None:
        """The request ended without a verdict (client left, cancelled)."""
        self._end(visit)

    def cool_down(self, key: str, now: float, until: float, error: str) -> None:
        """``key`` sits out until ``until`` (trio time)."""
        self.last_error = error
        if key not in self.cooldowns and len(self.cooldowns) >= MAX_COOLDOWN_KEYS:
            self.cooldowns = {k: u for k, u in self.cooldowns.items() if u > now}
            while len(self.cooldowns) >= MAX_COOLDOWN_KEYS:  # all live: drop the oldest entry
                del self.cooldowns[next(iter(self.cooldowns))]
        self.cooldowns[key] = max(self.cooldowns.get(key, 0.0), until)

    def _prune(self, now: float, policy: BreakerPolicy) -> None:
        horizon = now - policy.window_s
        while self.window and self.window[0][0] + BUCKET_S <= horizon:
            self.window.popleft()

    def _count(self, now: float, policy: BreakerPolicy, *, failed: bool) -> None:
        self._prune(now, policy)
        start = now - now % BUCKET_S
        if not self.window or self.window[-1][0] != start:
            self.window.append([start, 0, 0])
        bucket = self.window[-1]
        bucket[1] += 1
        if failed:
            bucket[2] += 1
