"""Per-server runtime state, passed explicitly (no module-level singletons)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import trio

from trioproxy.config import Config
from trioproxy.inbound.exchange import RequestIds


class Drainable(Protocol):
    def begin_drain(self) -> None: ...


@dataclass(eq=False)
class ServerState:
    config: Config
    started_monotonic: float = field(default_factory=time.monotonic)
    draining: bool = False
    in_flight: int = 0
    connections: dict[str, int] = field(default_factory=lambda: {"h1": 0, "h2": 0})
    request_ids: RequestIds = field(default_factory=RequestIds)
    _idle_scopes: set[trio.CancelScope] = field(default_factory=set)
    _drainables: set[Drainable] = field(default_factory=set)
    drain_started: trio.Event = field(default_factory=trio.Event)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    @property
    def total_connections(self) -> int:
        return sum(self.connections.values())

    def begin_drain(self) -> None:
        """Stop being idle-tolerant: idle keep-alive connections close at once and
        HTTP/2 connections send GOAWAY. In-flight exchanges carry on."""
        if self.draining:
            return
        self.draining = True
        self.drain_started.set()
        for scope in list(self._idle_scopes):
            scope.cancel()
        for d in list(self._drainables):
            d.begin_drain()

    @contextmanager
    def idle(self) -> Iterator[trio.CancelScope]:
        """A scope for a connection waiting between requests: drain cancels it."""
        scope = trio.CancelScope()
        if self.draining:
            scope.cancel()
        self._idle_scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._idle_scopes.discard(scope)

    @contextmanager
    def drainable(self, conn: Drainable) -> Iterator[None]:
        self._drainables.add(conn)
        try:
            if self.draining:
                conn.begin_drain()
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

    @contextmanager
    def exchange(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
