"""The supervisor's bookkeeping of what the workers counted: each worker's
last report (a heartbeat every second, or an answer), the counters of the
workers that have exited (so totals never go down across a reload), and the
gathers in progress. Synchronous: the supervisor does the I/O."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from typing import Any

import trio

from trioproxy.accounting.merge import counters, merge

Snapshot = dict[str, Any]


class Round:
    """One gather: the workers asked, and what each has answered."""

    __slots__ = ("answers", "asked", "done")

    def __init__(self, asked: Iterable[Hashable]) -> None:
        self.asked = set(asked)
        self.answers: dict[Hashable, Snapshot] = {}
        self.done = trio.Event()

    def answer(self, worker: Hashable, snap: Snapshot) -> None:
        self.answers[worker] = snap
        if self.asked <= self.answers.keys():
            self.done.set()

    def forget(self, worker: Hashable) -> None:
        """``worker`` will not answer (it exited, or could not be asked)."""
        self.asked.discard(worker)
        if self.asked <= self.answers.keys():
            self.done.set()


class Tally:
    def __init__(self) -> None:
        self.last: dict[Hashable, Snapshot] = {}
        self.departed: Snapshot | None = None  # counters of the workers gone
        self.rounds: dict[int, Round] = {}
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Tally workers={len(self.last)} rounds={len(self.rounds)} departed={self.departed is not None}>"

    def open_round(self, asked: Iterable[Hashable]) -> tuple[int, Round]:
        rid = next(self._ids)
        r = self.rounds[rid] = Round(asked)
        return rid, r

    def reported(self, worker: Hashable, rid: int | None, snap: Snapshot) -> None:
        self.last[worker] = snap
        r = self.rounds.get(rid) if rid is not None else None
        if r is not None:
            r.answer(worker, snap)

    def gone(self, worker: Hashable) -> None:
        """``worker`` exited: its last counts join the departed's."""
        for r in self.rounds.values():
            r.forget(worker)
        snap = self.last.pop(worker, None)
        if snap is not None:
            parts = [snap] if self.departed is None else [snap, self.departed]
            self.departed = counters(merge(parts))

    def result(self, rid: int, first: Hashable) -> Snapshot | None:
        """Close round ``rid``: every live worker's freshest snapshot
        (``first``'s leading) merged with the departed's counters."""
        del self.rounds[rid]  # its answers are in ``last`` already (``reported``)
        ordered = sorted(self.last.items(), key=lambda kv: kv[0] is not first)
        snaps = [snap for _, snap in ordered]
        if not snaps:
            return None
        if self.departed is not None:
            snaps.append(self.departed)
        return merge(snaps)
