"""What client connections share, and what each one knows about itself.

``Listening`` is one per server: the configuration new connections start
with, request ids, the watchdog, the shared read buffer, the drain state and
the counters (/livez and the gauges read them). ``ConnContext`` is one per
connection: the limits and timeouts it started with and the peer's address
(also recorded in the access line), plus the shared part. Transports get a
``ConnContext`` and nothing else of the server: not the router, the pools,
the ledger or the metrics.

Drain has two phases (see server.py): ``begin_drain`` (the grace: HTTP/2
connections get GOAWAY, HTTP/1.1 answers say `connection: close`, the
listeners still accept) and ``stop_accepting`` (connections waiting for a
request close at once).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import trio

from trioproxy.config.model import Config, Limits, Timeouts
from trioproxy.proto.events import Http
from trioproxy.transport.byteio import ReadBuffer
from trioproxy.transport.watchdog import Watchdog


class Drainable(Protocol):
    def begin_drain(self) -> None: ...


class RequestIds:
    """Process-unique ids for proxy-made errors and logs: a random prefix per
    process plus a counter (cheaper than uuid4 per request, still unguessable
    across restarts)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = "req_trioproxy_" + os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


class Listening:
    def __init__(self, config: Config) -> None:
        self.config = config  # what new connections start with (a reload replaces it)
        self.started_monotonic = time.monotonic()
        self.request_ids = RequestIds()
        self.watchdog = Watchdog()
        self.buffer = ReadBuffer()
        self.draining = False  # SIGTERM came: /health says 503, answers say goodbye
        self.retiring = False  # draining because a newer worker took over: /health stays 200
        self.accepting = True  # listeners open (false once the drain grace is over)
        self.drain_started = trio.Event()
        # Keyed by plain strings (JSON keys); an Http indexes them all the same.
        self.active: dict[str, int] = {
            Http.H1.value: 0,
            Http.H2.value: 0,
        }  # requests in flight, by client protocol
        self.watchers = 0  # of those, /metrics/stream readers (not traffic)
        self.connections: dict[str, int] = {Http.H1.value: 0, Http.H2.value: 0}
        self._idle_scopes: set[trio.CancelScope] = set()
        self._drainables: set[Drainable] = set()
        self._none_left: trio.Event | None = None  # set when the last connection closes

    @property
    def in_flight(self) -> int:
        return sum(self.active.values())

    @property
    def total_connections(self) -> int:
        return sum(self.connections.values())

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def begin_drain(self) -> None:
        """Phase one (the drain grace): /health answers 503, HTTP/2
        connections get GOAWAY, HTTP/1.1 responses carry `connection: close`.
        The listeners still accept and serve, so a load balancer has time to
        see the 503 and move traffic before anything is refused."""
        if self.draining:
            return
        self.draining = True
        self.drain_started.set()
        for d in list(self._drainables):
            d.begin_drain()

    def stop_accepting(self) -> None:
        """Phase two: the listeners are closing; connections waiting for a
        request (keep-alive or a first one) close at once. In-flight
        exchanges carry on until the drain deadline."""
        self.begin_drain()
        self.accepting = False
        for scope in list(self._idle_scopes):
            scope.cancel()

    def idle(self, deadline: float) -> IdleScope:
        """A scope for a connection waiting for a request, until ``deadline``
        (trio time). The end of accepting cancels it. A class, not
        @contextmanager: it is on every request's path."""
        return IdleScope(self, deadline)

    @contextmanager
    def drainable(self, conn: Drainable) -> Iterator[None]:
        """``conn.begin_drain()`` runs when the drain starts. A connection
        accepted during the drain grace decides itself when to say goodbye
        (after its first request, as HTTP/1.1's `connection: close` does)."""
        self._drainables.add(conn)
        try:
            yield
        finally:
            self._drainables.discard(conn)

    @contextmanager
    def connection(self, protocol: Http) -> Iterator[None]:
        self.connections[protocol] += 1
        try:
            yield
        finally:
            self.connections[protocol] -= 1
            if self._none_left is not None and not self.total_connections:
                self._none_left.set()

    async def until_no_connections(self) -> None:
        """Returns once no client connection is open (at once if none is)."""
        while self.total_connections:
            self._none_left = trio.Event()
            await self._none_left.wait()

    def exchange(self, protocol: Http) -> InFlight:
        return InFlight(self.active, protocol)


class ConnContext:
    """One client connection's view of the server."""

    __slots__ = ("limits", "peer", "shared", "timeouts")

    def __init__(self, shared: Listening, peer: str) -> None:
        self.shared = shared
        self.peer = peer
        cfg = shared.config  # the connection keeps the settings it started with
        self.limits: Limits = cfg.limits
        self.timeouts: Timeouts = cfg.timeouts


class IdleScope:
    __slots__ = ("_shared", "scope")

    def __init__(self, shared: Listening, deadline: float) -> None:
        self._shared = shared
        self.scope = trio.CancelScope(deadline=deadline)
        if not shared.accepting:
            self.scope.cancel()

    def __enter__(self) -> trio.CancelScope:
        self._shared._idle_scopes.add(self.scope)
        return self.scope.__enter__()

    def __exit__(self, *exc: object) -> bool:
        self._shared._idle_scopes.discard(self.scope)
        return bool(self.scope.__exit__(*exc))  # type: ignore[arg-type]


class InFlight:
    __slots__ = ("_active", "_protocol")

    def __init__(self, active: dict[str, int], protocol: Http) -> None:
        self._active = active
        self._protocol = protocol

    def __enter__(self) -> None:
        self._active[self._protocol] += 1

    def __exit__(self, *exc: object) -> None:
        self._active[self._protocol] -= 1
