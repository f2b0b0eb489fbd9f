"""The StateStore interface and what goes through it (plain values)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

QuotaKey = tuple[str, int]  # (provider, hour since the epoch)
# A counter of callers' use: (series, bucket, until). The writer fixes
# ``until`` (epoch seconds after which no window counts the bucket) for a
# given (series, bucket), so the stores can drop old rows without knowing
# what a series measures.
CounterKey = tuple[str, int, int]

# Event kinds. An event is the latest word on its (kind, key): a newer one
# for the same provider or session replaces it.
HEALTH = "health"  # key: provider; value: {"open_until": wall | None, "cooldowns": {key: wall}}
AFFINITY = "affinity"  # key: session id; value: {"provider": name}
MODE = "mode"  # key: ""; value: {"mode": ..., "provider": ..., "configured": [...]}
INFLIGHT = "inflight"  # key: process; value: {"at": wall, "callers": {name: requests in flight}}


def origin() -> str:
    """This process, among every process that shares a store (its own events
    are not read back)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


class StoreUnavailable(Exception):
    """The store did not answer (or refused): the caller serves on its own
    view and tries again at the next sync. Backends raise only this."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    key: str
    value: dict[str, Any]


@dataclass(slots=True)
class Outbox:
    """What this process changed since its last sync."""

    quota: dict[QuotaKey, int] = field(default_factory=dict)  # increments
    events: list[Event] = field(default_factory=list)
    counters: dict[CounterKey, int] = field(default_factory=dict)  # increments

    def __bool__(self) -> bool:
        return bool(self.quota or self.events or self.counters)


@dataclass(slots=True)
class Inbox:
    """What the store holds now that this process did not say itself."""

    quota: dict[QuotaKey, int] = field(default_factory=dict)  # totals of recently changed buckets
    events: list[Event] = field(default_factory=list)  # from the others, oldest first
    counters: dict[CounterKey, int] = field(default_factory=dict)  # totals, as quota


class Participant(Protocol):
    """Something besides the router that shares state through its sync
    (the callers' book): it hands over its counters and events, takes them
    back when the store was down, and reads the inbox. Quota buckets are
    the router's own."""

    def outgoing(self) -> Outbox: ...

    def returned(self, part: Outbox) -> None: ...

    def incoming(self, inbox: Inbox) -> None: ...


class StateStore(Protocol):
    """``sync`` is the only call on the way of traffic (twice a second, from
    the router's task); every call raises StoreUnavailable when the store
    does not answer, and the caller keeps its outbox for the next try."""

    async def sync(self, out: Outbox, *, since_hour: int) -> Inbox:
        """Send ``out``; return the quota totals that changed lately (every
        bucket from ``since_hour`` on, the first time) and the others'
        events since the last sync."""
        ...

    async def load_mode(self) -> dict[str, Any] | None:
        """The routing mode saved last (it survives restarts)."""
        ...

    async def save_mode(self, value: dict[str, Any]) -> None: ...

    async def claim(self, key: str, ttl: float) -> bool:
        """True for the first process (of every process sharing the store)
        to claim ``key`` within ``ttl`` seconds: one alert per crossing."""
        ...
