"""The Redis StateStore: for several trioproxy instances (each with its
workers) behind a load balancer, sharing one Redis (``state.redis_url``).

Through coredis (anyio underneath, so it runs under Trio). Each sync is one
pipelined round trip, not a transaction (every part is idempotent or an
append):

- quota: one hash, ``PREFIX:quota``, field ``provider|hour``, HINCRBY'd by
  each process's increments; read back whole (a few hundred fields).
- events: one stream, ``PREFIX:events``, XADD'd (capped near EVENTS_MAX)
  and read from the last id this process saw (XRANGE with an exclusive
  start); a process's first read only notes where the stream ends, so no
  history is replayed.
- callers' counters: one hash, ``PREFIX:counters``, field
  ``series|bucket|until``, HINCRBY'd and read back whole like quota;
  fields past their ``until`` are removed.
- the routing mode: ``PREFIX:route``, a JSON string.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import coredis
import coredis.exceptions
import orjson
import trio
from coredis.tokens import PureToken

from trioproxy.store.base import Event, Inbox, Outbox, StoreUnavailable, origin

log = logging.getLogger("trioproxy.store")

SYNC_TIMEOUT = 2.0  # seconds for one round trip before the store counts as unreachable
EVENTS_MAX = 10_000  # events kept in the stream (approximately)
EVENTS_PER_SYNC = 1_000  # read at most this many at a time
PRUNE_EVERY = 60.0  # seconds between removals of quota buckets out of every window


class RedisStore:
    def __init__(self, client: coredis.Redis[bytes], url_shown: str, prefix: str) -> None:
        self._client = client
        self._shown = url_shown
        self._quota = f"{prefix}:quota".encode()
        self._counters = f"{prefix}:counters".encode()
        self._events = f"{prefix}:events".encode()
        self._route = f"{prefix}:route".encode()
        self._claims = f"{prefix}:claim:"
        self._origin = origin().encode()
        self._last: bytes | None = None  # the last event id seen
        self._next_prune = 0.0

    def __repr__(self) -> str:
        return f"<RedisStore {self._shown}>"

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, prefix: str = "trioproxy") -> AsyncIterator[RedisStore]:
        """The client lives as long as the block. Connecting is lazy: a
        Redis that is down now makes the syncs fail, not the start."""
        try:
            client: coredis.Redis[bytes] = coredis.Redis.from_url(
                url,
                decode_responses=False,
                stream_timeout=SYNC_TIMEOUT,
                connect_timeout=SYNC_TIMEOUT,
            )
        except (ValueError, coredis.exceptions.RedisError) as exc:
            raise StoreUnavailable(f"state.redis_url: {exc}") from exc
        shown = _without_password(url)
        try:
            async with client:
                yield cls(client, shown, prefix)
        except* (coredis.exceptions.RedisError, OSError) as group:
            # A connection that broke in the client's own tasks: the proxy is
            # stopping anyway, and nothing it counted is lost by saying so.
            log.warning("redis %s: closed with errors: %s", shown, group.exceptions[0])

    async def _round_trip(self, fn: Any) -> Any:
        try:
            with trio.fail_after(SYNC_TIMEOUT * 2):
                return await fn()
        except (
            coredis.exceptions.RedisError,
            OSError,
            trio.TooSlowError,
            # The client's own streams, closed under it when the proxy is
            # cancelled (the last sync on the way out is shielded).
            anyio.ClosedResourceError,
            anyio.BrokenResourceError,
        ) as exc:
            raise StoreUnavailable(f"{self._shown}: {exc!r}") from exc

    async def sync(self, out: Outbox, *, since_hour: int) -> Inbox:
        return await self._round_trip(lambda: self._sync(out, since_hour))  # type: ignore[no-any-return]

    async def _sync(self, out: Outbox, since_hour: int) -> Inbox:
        first = self._last is None
        async with self._client.pipeline(transaction=False) as p:
            for (provider, hour), n in out.quota.items():
                p.hincrby(self._quota, f"{provider}|{hour}", n)
            for (series, bucket, until), n in out.counters.items():
                p.hincrby(self._counters, f"{series}|{bucket}|{until}", n)
            for e in out.events:
                p.xadd(
                    self._events,
                    {b"o": self._origin, b"k": e.kind, b"key": e.key, b"v": orjson.dumps(e.value)},
                    trim_strategy=coredis.PureToken.MAXLEN,
                    threshold=EVENTS_MAX,
                    trim_operator=coredis.PureToken.APPROXIMATELY,
                )
            totals = p.hgetall(self._quota)
            counters = p.hgetall(self._counters)
            if first:
                tail = p.xrevrange(self._events, b"+", b"-", count=1)
            else:
                assert self._last is not None
                tail = p.xrange(self._events, b"(" + self._last, b"+", count=EVENTS_PER_SYNC)
        inbox = Inbox()
        stale: list[bytes] = []
        for field, value in (await totals).items():
            name, _, hour_text = _text(field).rpartition("|")
            if not hour_text.isdigit():
                continue
            if int(hour_text) < since_hour:
                stale.append(field)
            else:
                inbox.quota[(name, int(hour_text))] = int(value)
        wall = time.time()
        expired: list[bytes] = []
        for field, value in (await counters).items():
            series, _, rest = _text(field).partition("|")
            bucket_text, _, until_text = rest.partition("|")
            if not (bucket_text.lstrip("-").isdigit() and until_text.isdigit()):
                continue
            if int(until_text) < wall:
                expired.append(field)
            else:
                inbox.counters[(series, int(bucket_text), int(until_text))] = int(value)
        entries = await tail
        if first:
            self._last = entries[0].identifier if entries else b"0-0"  # type: ignore[assignment]
        else:
            for entry in entries:
                self._last = entry.identifier  # type: ignore[assignment]
                f = entry.field_values
                if f.get(b"o") == self._origin:
                    continue
                value = orjson.loads(f.get(b"v", b"{}"))
                kind, key = _text(f.get(b"k", b"")), _text(f.get(b"key", b""))
                if isinstance(value, dict):
                    inbox.events.append(Event(kind, key, value))
        now = trio.current_time()
        if (stale or expired) and now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            if stale:
                await self._client.hdel(self._quota, stale)
            if expired:
                await self._client.hdel(self._counters, expired)
        return inbox

    async def load_mode(self) -> dict[str, Any] | None:
        raw = await self._round_trip(lambda: self._client.get(self._route))
        value = None if raw is None else orjson.loads(raw)
        return value if isinstance(value, dict) else None

    async def save_mode(self, value: dict[str, Any]) -> None:
        await self._round_trip(lambda: self._client.set(self._route, orjson.dumps(value)))

    async def claim(self, key: str, ttl: float) -> bool:
        """SET NX with an expiry: atomic across every instance."""
        name = (self._claims + key).encode()
        won = await self._round_trip(
            lambda: self._client.set(name, b"1", condition=PureToken.NX, px=max(1, int(ttl * 1000)))
        )
        return bool(won)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _without_password(url: str) -> str:
    """For logs and /admin/providers: never the password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"
