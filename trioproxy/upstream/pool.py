"""Connection pool for one upstream origin.

Bookkeeping (which connection is idle or has free streams, how many exist)
changes in synchronous methods of ``PoolState``; ``UpstreamPool`` does the I/O
around them. HTTP/2 connections (ALPN ``h2``, or prior knowledge for h2c) carry
many streams each; when all of them are at the peer's MAX_CONCURRENT_STREAMS
another connection is opened rather than queueing. HTTP/1.1 connections carry
one request at a time and wait in an idle LIFO between requests. Limits:
``max_connections`` per origin (in use + idle + opening); idle connections
expire after ``idle_timeout``; an idle HTTP/1.1 connection the server closed is
noticed before reuse.
"""

from __future__ import annotations

import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from trioproxy.config.model import UpstreamConfig
from trioproxy.errors import UpstreamError, about_upstream
from trioproxy.proto.events import Http
from trioproxy.upstream.connect import Connector, make_client_ssl_context
from trioproxy.upstream.h1 import H1UpstreamConnection
from trioproxy.upstream.h2 import H2UpstreamConnection, H2UpstreamStream
from trioproxy.upstream.lease import Lease

log = logging.getLogger("trioproxy.pool")

CLOSE_GRACE = 1.0  # seconds; bound on shielded closes
STALE_CHECK_AFTER = 1.0  # seconds idle before reuse checks the socket for a close


@dataclass
class PoolState:
    max_connections: int
    idle_timeout: float
    idle: deque[H1UpstreamConnection] = field(default_factory=deque)
    h2: list[H2UpstreamConnection] = field(default_factory=list)
    active: int = 0  # h1 connections leased out
    opening: int = 0

    def __repr__(self) -> str:
        streams = sum(c.leased for c in self.h2)
        return (
            f"<PoolState h1_idle={len(self.idle)} h1_active={self.active} h2_conns={len(self.h2)} "
            f"h2_streams={streams} opening={self.opening} max={self.max_connections}>"
        )

    @property
    def total(self) -> int:
        return len(self.idle) + self.active + self.opening + len(self.h2)

    def counts(self) -> dict[str, int]:
        """Connections by state, and HTTP/2 streams in use (for /metrics)."""
        return {
            "h1_idle": len(self.idle),
            "h1_active": self.active,
            "h2": sum(1 for c in self.h2 if not c.dead),
            "opening": self.opening,
            "h2_streams": sum(c.leased for c in self.h2 if not c.dead),
        }

    def take_h2(self) -> H2UpstreamConnection | None:
        """The live HTTP/2 connection with the most free streams, if any."""
        if not self.h2:
            return None  # an HTTP/1.1 origin, on every request
        self.h2 = [c for c in self.h2 if not c.dead]
        best = max((c for c in self.h2 if c.capacity > 0), key=lambda c: c.capacity, default=None)
        return best

    def take_idle(
        self, now: float
    ) -> tuple[H1UpstreamConnection | None, list[H1UpstreamConnection]]:
        """Most recently used idle connection that is neither expired nor closed
        by the server, plus the ones found dead on the way (the caller closes them)."""
        dead: list[H1UpstreamConnection] = []
        while self.idle:
            conn = self.idle.pop()  # LIFO: the warmest connection
            idle_for = now - conn.idle_since
            # The poll costs a syscall; a connection idle for under a second is
            # trusted (a server that closed it that fast is caught by the retry).
            if (
                idle_for > self.idle_timeout
                or conn.broken
                or (idle_for > STALE_CHECK_AFTER and conn.is_stale())
            ):
                dead.append(conn)
                continue
            self.active += 1
            return conn, dead
        return None, dead

    def expire(self, now: float) -> tuple[list[H1UpstreamConnection], list[H2UpstreamConnection]]:
        keep: deque[H1UpstreamConnection] = deque()
        dead: list[H1UpstreamConnection] = []
        for conn in self.idle:
            (dead if now - conn.idle_since > self.idle_timeout or conn.is_stale() else keep).append(
                conn
            )
        self.idle = keep
        idle_h2 = [c for c in self.h2 if c.leased == 0 and now - c.idle_since > self.idle_timeout]
        self.h2 = [c for c in self.h2 if not c.dead and c not in idle_h2]
        return dead, idle_h2

    def reserve_new(self) -> bool:
        if self.total >= self.max_connections:
            return False
        self.opening += 1
        return True

    def opened(self, conn: H1UpstreamConnection | H2UpstreamConnection) -> None:
        self.opening -= 1
        if isinstance(conn, H2UpstreamConnection):
            self.h2.append(conn)
        else:
            self.active += 1

    def open_failed(self) -> None:
        self.opening -= 1

    def release_h1(self, conn: H1UpstreamConnection, reusable: bool, now: float) -> bool:
        self.active -= 1
        if reusable:
            conn.idle_since = now
            self.idle.append(conn)
        return reusable


class PoolTimeout(Exception):
    """Every connection the pool may hold is in use, and none came free in
    time (the caller answers 503 overloaded_error)."""


class UpstreamPool:
    def __init__(
        self,
        up: UpstreamConfig,
        nursery: trio.Nursery,
        *,
        max_head_bytes: int,
        connector: Connector,
    ) -> None:
        origin = up.origin
        self.origin = origin
        self._connector = connector
        self._nursery = nursery  # HTTP/2 connections' reader/writer tasks live here
        self._max_head_bytes = max(max_head_bytes, 64 * 1024)
        self._ssl: ssl.SSLContext | None = (
            make_client_ssl_context(up) if origin.scheme == "https" else None
        )
        self._prior_knowledge = up.h2_prior_knowledge and origin.scheme == "http"
        # What the origin speaks: known up front except for https with ALPN.
        self.protocol: Http | None
        if self._prior_knowledge:
            self.protocol = Http.H2
        elif origin.scheme == "http" or not up.http2:
            self.protocol = Http.H1
        else:
            self.protocol = None
        self.state = PoolState(up.max_connections, up.idle_timeout)
        self._ping = (up.h2_ping_interval, up.h2_ping_timeout)
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return f"<UpstreamPool {self.origin} protocol={self.protocol} {self.state!r}>"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def acquire(
        self, *, fresh: bool = False, connect_timeout: float = 10.0, pool_timeout: float = 10.0
    ) -> Lease:
        """A lease: a stream on an HTTP/2 connection with room, an idle HTTP/1.1
        connection, or a new connection. ``fresh`` skips reuse (the one retry
        after a stale connection). A new connection must be up (TLS included)
        within ``connect_timeout`` (else UpstreamError); when
        ``max_connections`` are busy, one must come free within
        ``pool_timeout`` (else PoolTimeout): nothing waits forever."""
        deadline: float | None = None  # for a free connection, once at the cap
        while True:
            if not fresh:
                h2conn = self.state.take_h2()
                if h2conn is not None:
                    return h2conn.lease()
                conn, dead = self.state.take_idle(trio.current_time())
                if dead:
                    await self._close_h1(dead)
                if conn is not None:
                    conn.begin_lease(reused=True)
                    return conn
                if self.protocol is not Http.H1 and self.state.opening:
                    # A connection that may multiplex is on its way: wait for it
                    # rather than opening one per waiting request.
                    with trio.move_on_after(connect_timeout) as scope:
                        await self._changed.wait()
                    if scope.cancelled_caught:
                        raise self._connect_timeout(connect_timeout)
                    continue
            elif self.state.idle and self.state.total >= self.state.max_connections:
                await self._close_h1([self.state.idle.popleft()])
            if self.state.reserve_new():
                try:
                    with trio.move_on_after(connect_timeout) as scope:
                        new = await self._open()
                    if scope.cancelled_caught:
                        raise self._connect_timeout(connect_timeout)
                except BaseException:
                    self.state.open_failed()
                    self._notify()
                    raise
                self.state.opened(new)
                self._notify()
                if isinstance(new, H2UpstreamConnection):
                    return new.lease()
                new.begin_lease(reused=False)
                return new
            if deadline is None:
                deadline = trio.current_time() + pool_timeout
            with trio.move_on_at(deadline) as scope:
                await self._changed.wait()
            if scope.cancelled_caught:
                raise PoolTimeout(f"{self.origin}: {self.state!r}")

    def _connect_timeout(self, seconds: float) -> UpstreamError:
        return about_upstream(
            UpstreamError, self.origin, f"could not be connected to within {seconds:g} s"
        )

    async def _open(self) -> H1UpstreamConnection | H2UpstreamConnection:
        io, alpn = await self._connector(self.origin, self._ssl)
        if self._prior_knowledge or alpn == Http.H2:
            self.protocol = Http.H2
            interval, timeout = self._ping
            conn = H2UpstreamConnection(
                io, label=str(self.origin), ping_interval=interval, ping_timeout=timeout
            )
            try:
                await self._nursery.start(conn.serve)  # until the server's SETTINGS arrived
            except BaseException:
                await io.aclose()
                raise
            return conn
        self.protocol = Http.H1
        return H1UpstreamConnection(io, max_head_bytes=self._max_head_bytes, label=str(self.origin))

    async def release(self, lease: Lease) -> None:
        """Return a lease when its response body has ended (or it failed)."""
        if isinstance(lease, H2UpstreamStream):
            lease.conn.release(lease, trio.current_time())
        else:
            assert isinstance(lease, H1UpstreamConnection)
            if not self.state.release_h1(lease, lease.end_lease(), trio.current_time()):
                await self._close_h1([lease])
        self._notify()

    async def _close_h1(self, conns: list[H1UpstreamConnection]) -> None:
        if not conns:
            return
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            for conn in conns:
                await conn.aclose()
        self._notify()

    async def serve_reaper(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Close idle connections past their expiry, so they do not hold sockets
        (or sit in CLOSE_WAIT) while traffic is quiet. Runs until cancelled."""
        task_status.started()
        period = max(self.state.idle_timeout / 2, 0.5)
        while True:
            await trio.sleep(period)
            h1_dead, h2_idle = self.state.expire(trio.current_time())
            for conn in h2_idle:
                await conn.aclose()
            await self._close_h1(h1_dead)

    async def aclose(self) -> None:
        dead = list(self.state.idle)
        self.state.idle.clear()
        await self._close_h1(dead)
        for conn in self.state.h2:
            await conn.aclose()


@asynccontextmanager
async def open_pools(
    upstreams: Mapping[str, UpstreamConfig], *, max_head_bytes: int, connector: Connector
) -> AsyncIterator[dict[str, UpstreamPool]]:
    """One pool per provider (by name), with their background tasks.
    Connections open lazily, so a provider never used costs nothing."""
    async with trio.open_nursery() as nursery:
        pools = {
            name: UpstreamPool(up, nursery, max_head_bytes=max_head_bytes, connector=connector)
            for name, up in upstreams.items()
        }
        for pool in pools.values():
            await nursery.start(pool.serve_reaper)
        try:
            yield pools
        finally:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                for pool in pools.values():
                    await pool.aclose()
            nursery.cancel_scope.cancel()
