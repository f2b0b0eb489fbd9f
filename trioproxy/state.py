"""Per-server runtime state, passed explicitly (no module-level singletons)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import trio

from trioproxy.accounting.ledger import Ledger
from trioproxy.accounting.metrics import Metrics
from trioproxy.config import Config
from trioproxy.inbound.exchange import RequestIds
from trioproxy.routing.router import Router
from trioproxy.upstream.pool import UpstreamPool


class Drainable(Protocol):
    def begin_drain(self) -> None: ...


@dataclass(eq=False)
class ServerState:
    config: Config
    started_monotonic: float = field(default_factory=time.monotonic)
    draining: bool = False  # SIGTERM came: /health says 503, responses say goodbye
    accepting: bool = True  # listeners open (false once the drain grace is over)
    active: dict[str, int] = field(default_factory=lambda: {"h1": 0, "h2": 0})  # requests
    watchers: int = 0  # of those, /metrics/stream readers (not traffic)
    connections: dict[str, int] = field(default_factory=lambda: {"h1": 0, "h2": 0})
    request_ids: RequestIds = field(default_factory=RequestIds)
    metrics: Metrics = field(default_factory=Metrics)
    router: Router | None = None  # set by the proxy server (admin endpoints read it)
    pools: dict[str, UpstreamPool] = field(default_factory=dict)  # by provider, while serving
    ledger: Ledger | None = None  # the usage ledger, while serving (usage.ledger)
    _idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    _drainables: set[Drainable] = field(default_factory=set)
    drain_started: trio.Event = field(default_factory=trio.Event)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def in_flight(self) -> int:
        return sum(self.active.values())

    @property
    def total_connections(self) -> int:
        return sum(self.connections.values())

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

    def idle(self, deadline: float) -> _IdleScope:
        """A scope for a connection waiting for a request, until ``deadline``
        (trio time). The end of accepting cancels it. A class, not
        @contextmanager: it is on every request's path."""
        return _IdleScope(self, deadline)

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
    def connection(self, protocol: str) -> Iterator[None]:
        self.connections[protocol] += 1
        try:
            yield
        finally:
            self.connections[protocol] -= 1

    def exchange(self, protocol: str) -> _InFlight:
        return _InFlight(self.active, protocol)


class _IdleScope:
    __slots__ = ("_state", "scope")

    def __init__(self, state: ServerState, deadline: float) -> None:
        self._state = state
        self.scope = trio.CancelScope(deadline=deadline)
        if not state.accepting:
            self.scope.cancel()

    def __enter__(self) -> trio.CancelScope:
        self._state._idle_scopes.add(self.scope)
        return self.scope.__enter__()

    def __exit__(self, *exc: object) -> bool:
        self._state._idle_scopes.discard(self.scope)
        return bool(self.scope.__exit__(*exc))  # type: ignore[arg-type]


class _InFlight:
    __slots__ = ("_active", "_protocol")

    def __init__(self, active: dict[str, int], protocol: str) -> None:
        self._active = active
        self._protocol = protocol

    def __enter__(self) -> None:
        self._active[self._protocol] += 1

    def __exit__(self, *exc: object) -> None:
        self._active[self._protocol] -= 1
