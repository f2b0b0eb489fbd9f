"""One task that keeps every connection's deadlines.

A relayed body moves its idle deadline on every chunk. As a cancel scope's
deadline that is a re-sort of Trio's deadline heap per chunk; here it is a
float stored in a ``Guard``, and one watchdog task per server looks at the
guards only when the earliest of them can have expired. Guards are entered
like cancel scopes (``with watchdog.guard(seconds) as g:``); ``g.expired``
tells afterwards whether the watchdog cancelled it.

The watchdog also notices clients that went away while their exchange waits
on the upstream (``watch``): it peeks at the client's socket (a zero-byte,
non-blocking ``MSG_PEEK``), first soon, then less and less often, so a
long-held stream costs a syscall every few seconds and no task of its own.
A client that left cancels its exchange, which cancels the upstream request.

Rules: a guard's deadline may only move later without telling the watchdog
(``extend``); an earlier one wakes it (``guard``, ``arm``). The watchdog
never awaits anything but its own sleep, so a cancel lands within one
scheduler pass of the deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

PEEK_FIRST = 0.25  # seconds of waiting before a client is first peeked at
PEEK_MAX = 4.0  # seconds between peeks once a wait is long (doubling up to this)


class Guard:
    """A cancel scope whose deadline (``at``, trio time) the watchdog keeps."""

    __slots__ = ("_wd", "at", "expired", "scope")

    def __init__(self, wd: Watchdog, at: float) -> None:
        self._wd = wd
        self.at = at
        self.scope = trio.CancelScope()
        self.expired = False

    def __enter__(self) -> Guard:
        self.scope.__enter__()
        self._wd._add(self)
        return self

    def __exit__(self, *exc: object) -> bool:
        self._wd._guards.discard(self)
        return bool(self.scope.__exit__(*exc))  # type: ignore[arg-type]

    def extend(self, seconds: float) -> None:
        """Push the deadline to ``seconds`` from now (later only: no wake-up)."""
        self.at = trio.current_time() + seconds

    def arm(self, seconds: float) -> None:
        """Set the deadline to ``seconds`` from now, earlier or later."""
        self.at = trio.current_time() + seconds
        self._wd._poke(self.at)

    def disarm(self) -> None:
        self.at = math.inf


class Watch:
    """A client to peek at while its exchange waits (see ``Watchdog.watch``)."""

    __slots__ = ("cancel", "due", "gone", "interval")

    def __init__(self, gone: Callable[[], bool | None], cancel: Callable[[], None], now: float):
        self.gone = gone
        self.cancel = cancel
        self.interval = PEEK_FIRST
        self.due = now + PEEK_FIRST


class Watchdog:
    def __init__(self) -> None:
        self._guards: set[Guard] = set()
        self._watches: set[Watch] = set()
        self._next = math.inf  # when the task wakes next
        self._wake = trio.Event()

    def __repr__(self) -> str:
        return f"<Watchdog guards={len(self._guards)} watches={len(self._watches)}>"

    def guard(self, seconds: float) -> Guard:
        return Guard(self, trio.current_time() + seconds)

    def watch(self, gone: Callable[[], bool | None], cancel: Callable[[], None]) -> Watch:
        """Peek with ``gone()`` until ``unwatch``; when it says True, call
        ``cancel()`` once."""
        w = Watch(gone, cancel, trio.current_time())
        self._watches.add(w)
        self._poke(w.due)
        return w

    def unwatch(self, w: Watch) -> None:
        self._watches.discard(w)

    def _add(self, g: Guard) -> None:
        self._guards.add(g)
        self._poke(g.at)

    def _poke(self, at: float) -> None:
        if at < self._next:
            self._next = at
            self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs until cancelled."""
        task_status.started()
        while True:
            now = trio.current_time()
            nxt = math.inf
            for g in list(self._guards):
                if g.at <= now:
                    g.expired = True
                    g.scope.cancel()
                    self._guards.discard(g)
                elif g.at < nxt:
                    nxt = g.at
            for w in list(self._watches):
                if w.due <= now:
                    if w.gone():
                        self._watches.discard(w)
                        w.cancel()
                        continue
                    w.interval = min(w.interval * 2, PEEK_MAX)
                    w.due = now + w.interval
                nxt = min(nxt, w.due)
            self._next = nxt
            self._wake = trio.Event()
            with trio.move_on_at(nxt):
                await self._wake.wait()
