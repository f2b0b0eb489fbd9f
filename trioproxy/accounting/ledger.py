"""The usage ledger: one summary row per finished request (never a body or a
credential; callers by their secret's name) in SQLite in the state
directory, for ``trioproxy usage``.

Rules, and why:

* The event loop never touches the database: rows go into a bounded memory
  channel (``add`` never waits) and a background task writes them in
  batches from a worker thread, once a second or every BATCH rows.
* Bounded: if the disk stalls long enough to fill the channel, rows are
  dropped and counted (``dropped``, logged once a batch) rather than
  holding up requests or growing without limit.
* On shutdown the rows still queued are written, within a bounded shield.
* Rows older than the retention are deleted at start and once an hour.
* Its own file (usage.sqlite3, WAL): the routing store's writes never wait
  on a ledger batch, and ``trioproxy usage`` can read while the proxy runs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import astuple, dataclass
from typing import Any

import trio

from trioproxy.accounting.record import RequestRecord

log = logging.getLogger("trioproxy.ledger")

FILENAME = "usage.sqlite3"
MAX_PENDING = 10_000  # rows queued for the writer; beyond: dropped and counted
BATCH = 500  # rows per transaction at most
FLUSH_EVERY = 1.0  # seconds: a row is on disk at most about this late
PRUNE_EVERY = 3600.0  # seconds between retention sweeps
CLOSE_GRACE = 5.0  # seconds to write what is queued at shutdown

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    model_requested TEXT NOT NULL,
    status INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    complete INTEGER NOT NULL,
    error INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""


@dataclass(frozen=True, slots=True)
class Row:
    ts: float
    request_id: str
    caller: str
    provider: str
    model: str  # as served (the response's model), else as requested
    model_requested: str
    status: int
    stream: bool
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    output_tokens: int
    duration_s: float
    complete: bool  # usage seen to the end (an abandoned stream: False)
    error: bool  # a status >= 400 or an error event inside a 200 stream

    @classmethod
    def of(cls, r: RequestRecord) -> Row:
        u = r.usage
        return cls(
            ts=r.started,
            request_id=r.request_id,
            caller=r.caller or "-",
            provider=r.provider or "-",
            model=u.model or r.model_requested or "-",
            model_requested=r.model_requested or "-",
            status=r.status,
            stream=r.stream,
            input_tokens=u.input_tokens,
            cache_creation_input_tokens=u.cache_creation_input_tokens,
            cache_read_input_tokens=u.cache_read_input_tokens,
            output_tokens=u.output_tokens,
            duration_s=round(r.duration_s, 4),
            complete=u.complete,
            error=r.status >= 400 or u.stream_errors > 0,
        )


class LedgerDB:
    """The SQLite side, synchronous: used from a worker thread by the server
    and directly by the CLI."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def insert(self, rows: list[Row]) -> None:
        placeholders = ", ".join("?" * len(Row.__slots__))
        with self._db:
            self._db.executemany(
                f"INSERT INTO requests VALUES ({placeholders})",
                [astuple(r) for r in rows],
            )

    def prune(self, before: float) -> int:
        with self._db:
            return self._db.execute("DELETE FROM requests WHERE ts < ?", (before,)).rowcount

    def rows(self, since: float) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT * FROM requests WHERE ts >= ? ORDER BY ts", (since,))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def close(self) -> None:
        self._db.close()


class Ledger:
    """The server side: ``add`` from the request path, ``serve`` in the
    server's background nursery."""

    def __init__(self, state_dir: str, *, retention_days: float) -> None:
        self.path = os.path.join(state_dir, FILENAME)
        self.retention_s = retention_days * 86400
        self._send, self._receive = trio.open_memory_channel[Row](MAX_PENDING)
        self.dropped = 0
        self._dropped_logged = 0
        self.written = 0

    def add(self, record: RequestRecord) -> None:
        try:
            self._send.send_nowait(Row.of(record))
        except trio.WouldBlock:
            self.dropped += 1

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs until cancelled; then writes what is queued (bounded by
        CLOSE_GRACE) and closes the database."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        db = await trio.to_thread.run_sync(LedgerDB, self.path)
        pending: list[Row] = []  # taken off the channel, not yet written
        try:
            await self._prune(db)
            task_status.started()
            next_prune = trio.current_time() + PRUNE_EVERY
            while True:
                pending.append(await self._receive.receive())
                with trio.move_on_after(FLUSH_EVERY):
                    while len(pending) < BATCH:
                        pending.append(await self._receive.receive())
                # A thread is not abandoned on cancel: once handed over, the
                # batch is written, so it leaves ``pending`` first.
                batch, pending = pending, []
                await self._write(db, batch)
                if trio.current_time() >= next_prune:
                    await self._prune(db)
                    next_prune = trio.current_time() + PRUNE_EVERY
        finally:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                while True:
                    try:
                        pending.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                if pending:
                    await self._write(db, pending)
            await trio.to_thread.run_sync(db.close)

    async def _write(self, db: LedgerDB, batch: list[Row]) -> None:
        try:
            await trio.to_thread.run_sync(db.insert, batch)
        except sqlite3.Error as exc:
            # A full or read-only disk must not take the proxy down.
            self.dropped += len(batch)
            log.error("usage ledger: %d rows not written (%s)", len(batch), exc)
            return
        self.written += len(batch)
        if self.dropped != self._dropped_logged:
            self._dropped_logged = self.dropped
            log.warning("usage ledger: %d rows dropped so far (writer fell behind)", self.dropped)

    async def _prune(self, db: LedgerDB) -> None:
        before = time.time() - self.retention_s
        try:
            gone = await trio.to_thread.run_sync(db.prune, before)
        except sqlite3.Error as exc:
            log.error("usage ledger: retention sweep failed (%s)", exc)
            return
        if gone:
            log.info("usage ledger: %d rows past the retention deleted", gone)
