"""Token quotas: how many tokens each provider served, in hourly buckets on
the wall clock (UTC), and whether a provider is over its budget now.

Counting per hour keeps the state small (a week is 168 rows per provider),
lets every window kind (weekly from Monday 00:00 UTC, daily from 00:00 UTC,
rolling N hours) be a sum over buckets, and makes "reset" automatic: when
the window moves on, old buckets simply stop counting. Rolling windows are
judged at hour granularity, erring on the side of counting a little more.

Pure bookkeeping with ``now`` passed in; sharing and persistence are the
store's job: ``take_pending`` hands it the increments counted here, and
``settle`` takes back the totals of every process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trioproxy.config.model import QuotaConfig

HOUR = 3600
DAY = 86400
RETAIN_HOURS = 24 * 31  # buckets older than this are forgotten (longest window + margin)


def window_bounds(
    quota: QuotaConfig, now: float, oldest_counted: int | None = None
) -> tuple[float, float]:
    """(start, reset) of the window containing ``now`` (epoch seconds)."""
    if quota.window == "daily":
        start = (now // DAY) * DAY
        return start, start + DAY
    if quota.window == "weekly":
        days = int(now // DAY)
        monday = days - (days + 3) % 7  # 1970-01-01 was a Thursday
        start = float(monday * DAY)
        return start, start + 7 * DAY
    start = (now // HOUR) * HOUR - quota.hours * HOUR
    first = oldest_counted * HOUR if oldest_counted is not None else start
    return start, max(first, start) + (quota.hours + 1) * HOUR


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    used: int
    limit: int
    threshold: float
    reset_at: float  # epoch seconds

    @property
    def over(self) -> bool:
        return self.used >= self.limit * self.threshold

    def as_dict(self) -> dict[str, object]:
        return {
            "used": self.used,
            "limit": self.limit,
            "threshold": self.threshold,
            "over": self.over,
            "reset_at": self.reset_at,
        }


@dataclass
class QuotaBook:
    buckets: dict[tuple[str, int], int] = field(default_factory=dict)  # (provider, hour) -> tokens
    pending: dict[tuple[str, int], int] = field(default_factory=dict)  # added since the last sync

    def add(self, provider: str, tokens: int, now: float) -> None:
        if tokens <= 0:
            return
        key = (provider, int(now // HOUR))
        self.buckets[key] = self.buckets.get(key, 0) + tokens
        self.pending[key] = self.pending.get(key, 0) + tokens

    def take_pending(self) -> dict[tuple[str, int], int]:
        """The increments not yet in the store (they leave the book's care)."""
        out, self.pending = self.pending, {}
        return out

    def give_back(self, increments: dict[tuple[str, int], int]) -> None:
        """Increments the store did not take: they go with the next sync."""
        for key, n in increments.items():
            self.pending[key] = self.pending.get(key, 0) + n

    def settle(self, totals: dict[tuple[str, int], int]) -> None:
        """The store's totals (every process's increments, ours sent so far
        included), plus what was counted here since."""
        for key, total in totals.items():
            self.buckets[key] = total + self.pending.get(key, 0)

    def status(self, provider: str, quota: QuotaConfig, now: float) -> QuotaStatus:
        start, _ = window_bounds(quota, now)
        first_hour = int(start // HOUR)
        counted = [
            (h, n) for (p, h), n in self.buckets.items() if p == provider and h >= first_hour
        ]
        oldest = min((h for h, _ in counted), default=None)
        _, reset = window_bounds(quota, now, oldest)
        return QuotaStatus(sum(n for _, n in counted), quota.tokens, quota.threshold, reset)

    def prune(self, now: float) -> None:
        cutoff = int(now // HOUR) - RETAIN_HOURS
        for key in [k for k in self.buckets if k[1] < cutoff]:
            del self.buckets[key]
