"""Connection pool for one upstream origin.

Bookkeeping (which connection is idle, how many exist) changes in synchronous
methods of ``PoolState``; ``UpstreamPool`` does the I/O around them. Limits:
``max_connections`` per origin (in use + idle + opening); idle connections
expire after ``idle_timeout`` and are checked for a server-side close before
reuse.
"""

from __future__ import annotations

import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from trioproxy.config import Config, Origin
from trioproxy.upstream.connect import make_client_ssl_context, open_transport
from trioproxy.upstream.h1 import H1UpstreamConnection
from trioproxy.upstream.lease import Lease

log = logging.getLogger("trioproxy.pool")

CLOSE_GRACE = 1.0  # seconds; bound on shielded closes


@dataclass
class PoolState:
    max_connections: int
    idle_timeout: float
    idle: deque[H1UpstreamConnection] = field(default_factory=deque)
    active: int = 0  # h1 connections leased out
    opening: int = 0

    def __repr__(self) -> str:
        return (
            f"<PoolState idle={len(self.idle)} active={self.active} opening={self.opening} "
            f"max={self.max_connections}>"
        )

    @property
    def total(self) -> int:
        return len(self.idle) + self.active + self.opening

    def take_idle(
        self, now: float
    ) -> tuple[H1UpstreamConnection | None, list[H1UpstreamConnection]]:
        """Most recently used idle connection that is neither expired nor closed
        by the server, plus the ones found dead on the way (the caller closes them)."""
        dead: list[H1UpstreamConnection] = []
        while self.idle:
            conn = self.idle.pop()  # LIFO: the warmest connection
            if now - conn.idle_since > self.idle_timeout or conn.is_stale():
                dead.append(conn)
                continue
            self.active += 1
            return conn, dead
        return None, dead

    def expire(self, now: float) -> list[H1UpstreamConnection]:
        keep: deque[H1UpstreamConnection] = deque()
        dead: list[H1UpstreamConnection] = []
        for conn in self.idle:
            (dead if now - conn.idle_since > self.idle_timeout or conn.is_stale() else keep).append(
                conn
            )
        self.idle = keep
        return dead

    def reserve_new(self) -> bool:
        if self.total >= self.max_connections:
            return False
        self.opening += 1
        return True

    def opened(self) -> None:
        self.opening -= 1
        self.active += 1

    def open_failed(self) -> None:
        self.opening -= 1

    def release(self, conn: H1UpstreamConnection, reusable: bool, now: float) -> bool:
        self.active -= 1
        if reusable:
            conn.idle_since = now
            self.idle.append(conn)
        return reusable


class UpstreamPool:
    def __init__(self, config: Config, origin: Origin) -> None:
        up = config.upstream
        self.origin = origin
        self._max_head_bytes = max(config.limits.max_head_bytes, 64 * 1024)
        self._ssl: ssl.SSLContext | None = (
            make_client_ssl_context(up) if origin.scheme == "https" else None
        )
        self.state = PoolState(up.max_connections, up.idle_timeout)
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return f"<UpstreamPool {self.origin} {self.state!r}>"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def acquire(self, *, fresh: bool = False) -> Lease:
        """A lease on a connection, reusing an idle one unless ``fresh``. Waits
        when ``max_connections`` are busy. The caller bounds the wait and the
        connect with a cancel scope."""
        while True:
            if not fresh:
                conn, dead = self.state.take_idle(trio.current_time())
                await self._close_all(dead)
                if conn is not None:
                    conn.begin_lease(reused=True)
                    return conn
            elif self.state.idle and self.state.total >= self.state.max_connections:
                # make room for the fresh connection by dropping the oldest idle one
                await self._close_all([self.state.idle.popleft()])
            if self.state.reserve_new():
                try:
                    stream, _alpn = await open_transport(self.origin, self._ssl)
                except BaseException:
                    self.state.open_failed()
                    self._notify()
                    raise
                self.state.opened()
                conn = H1UpstreamConnection(
                    stream, max_head_bytes=self._max_head_bytes, label=str(self.origin)
                )
                conn.begin_lease(reused=False)
                return conn
            await self._changed.wait()

    async def release(self, lease: Lease) -> None:
        """Return a lease when its response body has ended (or it failed)."""
        assert isinstance(lease, H1UpstreamConnection)
        keep = self.state.release(lease, lease.end_lease(), trio.current_time())
        if not keep:
            await self._close_all([lease])
        self._notify()

    async def _close_all(self, conns: list[H1UpstreamConnection]) -> None:
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
            await self._close_all(self.state.expire(trio.current_time()))

    async def aclose(self) -> None:
        dead = list(self.state.idle)
        self.state.idle.clear()
        await self._close_all(dead)


@asynccontextmanager
async def open_pool(config: Config) -> AsyncIterator[UpstreamPool]:
    """The pool for the configured upstream, with its background reaper."""
    pool = UpstreamPool(config, config.upstream.origin)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.serve_reaper)
        try:
            yield pool
        finally:
            nursery.cancel_scope.cancel()
            await pool.aclose()
