"""What a caller may do now: pure decisions over its policy and counts.

Windows, on the wall clock (UTC):

- ``rpm`` and ``tpm`` count 10-second buckets: the current one and the six
  before it, so between 60 and 70 s of traffic. Erring on the side of
  counting a little more means no 60-second stretch ever holds more than
  the limit (plus what other processes admitted in the last second, before
  the state store told this one).
- budgets count whole days: ``daily`` from 00:00 UTC, ``weekly`` from
  Monday 00:00 UTC, ``monthly`` from the 1st; they reset when the window
  moves on.

A refusal names the limit and says when to come back: ``retry-after`` in
whole seconds, the end of the window for a budget.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass

from trioproxy.config.callers import format_time
from trioproxy.config.model import Budget, Caller

RATE_BUCKET = 10  # seconds per rpm/tpm bucket
RATE_BUCKETS = 7  # buckets counted: the last 60-70 s
RETRY_AFTER_MAX = 60  # seconds: a rate refusal's retry-after (Claude Code retries up to 60)
DAY = 86400

# Reasons, as the metrics label them.
EXPIRED = "expired"
MODEL = "model"
RPM = "rpm"
TPM = "tpm"
CONCURRENCY = "max_concurrent"
BUDGET = "budget"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # one of the names above
    status: int  # 401, 403 or 429
    message: str
    retry_after: int | None = None  # whole seconds


@dataclass(frozen=True, slots=True)
class Spend:
    usd: float
    tokens: int


def rate_bucket(now: float) -> int:
    return int(now // RATE_BUCKET)


def budget_window(window: str, now: float) -> tuple[float, float]:
    """(start, reset) of the budget window holding ``now``."""
    day = int(now // DAY)
    if window == "daily":
        return float(day * DAY), float((day + 1) * DAY)
    if window == "weekly":
        monday = day - (day + 3) % 7  # 1970-01-01 was a Thursday
        return float(monday * DAY), float((monday + 7) * DAY)
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    start = dt.datetime(t.year, t.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=dt.UTC)
    return start.timestamp(), end.timestamp()


def check_expiry(caller: Caller, now: float) -> Refusal | None:
    if caller.expires is not None and now >= caller.expires:
        return Refusal(
            EXPIRED,
            401,
            f"the credentials of caller {caller.name} expired at {format_time(caller.expires)}",
        )
    return None


def check_model(caller: Caller, model: str | None) -> Refusal | None:
    """A caller with an allowlist may use only what matches it; a request
    that names no model is refused too (it could not be checked)."""
    if not caller.models:
        return None
    if model and any(fnmatch.fnmatchcase(model, g) for g in caller.models):
        return None
    shown = repr(model) if model else "no model"
    return Refusal(
        MODEL,
        403,
        f"caller {caller.name} may not use {shown}; allowed: {', '.join(caller.models)}",
    )


def check_rates(
    caller: Caller,
    now: float,
    requests: Callable[[int], int],
    tokens: Callable[[int], int],
    in_flight: int,
) -> Refusal | None:
    """``requests(bucket)`` / ``tokens(bucket)``: what was counted in a
    rate bucket; ``in_flight``: the caller's requests under way now."""
    if caller.max_concurrent is not None and in_flight >= caller.max_concurrent:
        return Refusal(
            CONCURRENCY,
            429,
            f"caller {caller.name} has {in_flight} requests in flight; "
            f"its limit is max_concurrent = {caller.max_concurrent}",
            retry_after=1,
        )
    for reason, limit, count, unit in (
        (RPM, caller.rpm, requests, "requests"),
        (TPM, caller.tpm, tokens, "tokens"),
    ):
        if limit is None:
            continue
        current = rate_bucket(now)
        buckets = [(b, count(b)) for b in range(current - RATE_BUCKETS + 1, current + 1)]
        used = sum(n for _, n in buckets)
        if used < limit:
            continue
        return Refusal(
            reason,
            429,
            f"caller {caller.name} used {used} {unit} in the last minute; "
            f"its limit is {reason} = {limit}",
            retry_after=_rate_retry_after(buckets, used, limit, now),
        )
    return None


def _rate_retry_after(buckets: list[tuple[int, int]], used: int, limit: int, now: float) -> int:
    """Seconds until enough of the oldest buckets leave the window that one
    more fits, at most RETRY_AFTER_MAX: Claude Code gives up at once on a
    retry-after over 60 s, while a per-minute limit frees a place within 60
    to 70 s (its window); asked again a little early, the caller is told the
    few seconds left."""
    for bucket, n in buckets:
        used -= n
        if used < limit:
            leaves = (bucket + RATE_BUCKETS) * RATE_BUCKET
            return min(RETRY_AFTER_MAX, max(1, math.ceil(leaves - now)))
    return RETRY_AFTER_MAX


def check_budget(caller: Caller, spend: Spend, now: float) -> Refusal | None:
    budget = caller.budget
    if budget is None or not over(budget, spend):
        return None
    _, reset = budget_window(budget.window, now)
    what = (
        f"${budget.usd:.2f} (spent ${spend.usd:.2f})"
        if budget.usd is not None
        else f"{budget.tokens} tokens (used {spend.tokens})"
    )
    return Refusal(
        BUDGET,
        429,
        f"caller {caller.name} is over its {budget.window} budget of {what}; "
        f"it resets at {format_time(reset)}",
        retry_after=max(1, math.ceil(reset - now)),
    )


def over(budget: Budget, spend: Spend) -> bool:
    if budget.usd is not None:
        return spend.usd >= budget.usd
    return budget.tokens is not None and spend.tokens >= budget.tokens


def remaining(budget: Budget, spend: Spend) -> float:
    """What is left in the budget's unit (never below zero)."""
    if budget.usd is not None:
        return max(0.0, budget.usd - spend.usd)
    return float(max(0, (budget.tokens or 0) - spend.tokens))
