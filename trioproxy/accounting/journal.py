"""The per-request journal: the access line and the usage-ledger row of
every finished request, written off the event loop in batches.

Why this shape: the loop's share of a request's bookkeeping is one list
append. Rendering a line, building a row, the logging machinery and the
SQLite transaction all happen in a worker thread, once per batch
(FLUSH_EVERY), so their fixed costs (a log record, a queue hand-off, a
write to stderr, a transaction) are paid per batch, not per request.

* The loop renders a batch in slices, yielding between them; a worker
  thread writes it.
* A batch's normal access lines leave as one log record on
  ``trioproxy.access`` (lines joined by newlines): the formatter prints
  access records bare, so the output is one line per request, as before.
  A slow request's line (headers later than log.slow_seconds) is its own
  record at WARNING, so it survives a log level of warning.
* Bounded: if the thread falls behind long enough to queue MAX_PENDING
  requests, further ones are dropped and counted (``dropped``, logged once
  a batch) rather than holding up requests or growing without limit.
* On shutdown what is queued is written, within a bounded shield.
* Ledger rows older than the retention are deleted at start and hourly;
  the ledger has its own file (ledger.py) so ``trioproxy usage`` can read
  while the proxy runs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time

import trio

from trioproxy.accounting.ledger import FILENAME, LedgerDB, Row
from trioproxy.accounting.record import RequestRecord
from trioproxy.config.model import Config

log = logging.getLogger("trioproxy.ledger")
access = logging.getLogger("trioproxy.access")

MAX_PENDING = 20_000  # requests queued for the writer; beyond: dropped and counted
FLUSH_EVERY = 0.2  # seconds: a line or row is written at most about this late
PRUNE_EVERY = 3600.0  # seconds between ledger retention sweeps
CLOSE_GRACE = 5.0  # seconds to write what is queued at shutdown
SLICE = 16  # requests rendered between checkpoints (about 0.15 ms of work)

Entry = tuple[RequestRecord, Config]  # the config the request ran under (format, slow)


class Journal:
    """``add`` from the request path; ``serve`` in the server's background
    nursery. ``ledger_dir`` None: access lines only (usage.ledger off)."""

    def __init__(self, *, ledger_dir: str | None = None, retention_days: float = 90.0) -> None:
        self.ledger_path = os.path.join(ledger_dir, FILENAME) if ledger_dir else None
        self.retention_s = retention_days * 86400
        self._pending: list[Entry] = []
        self.dropped = 0  # requests neither logged nor recorded (writer behind)
        self._dropped_logged = 0
        self.written = 0  # requests written (lines logged and rows committed)
        self.rows_lost = 0  # ledger rows a database error lost

    def add(self, record: RequestRecord, cfg: Config) -> None:
        """On the loop: never blocks, never renders."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending.append((record, cfg))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs until cancelled; then writes what is queued (bounded by
        CLOSE_GRACE) and closes the ledger."""
        db: LedgerDB | None = None
        if self.ledger_path is not None:
            os.makedirs(os.path.dirname(self.ledger_path), exist_ok=True)
            db = await trio.to_thread.run_sync(LedgerDB, self.ledger_path)
        try:
            await self._prune(db)
            task_status.started()
            next_prune = trio.current_time() + PRUNE_EVERY
            while True:
                await trio.sleep(FLUSH_EVERY)  # the batching window, not a timeout
                await self._flush(db)
                if trio.current_time() >= next_prune:
                    await self._prune(db)
                    next_prune = trio.current_time() + PRUNE_EVERY
        finally:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                await self._flush(db)
                if db is not None:
                    await trio.to_thread.run_sync(db.close)

    async def _flush(self, db: LedgerDB | None) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        lines: list[str] = []
        rows: list[tuple[object, ...]] = []
        info = access.isEnabledFor(logging.INFO)
        # Rendered here, a slice at a time with a checkpoint in between:
        # requests wait for one slice at most. (In a thread the same work
        # would hold the GIL for milliseconds at a time, and the loop would
        # wait that long to get it back: the p99 of every request.)
        for start in range(0, len(batch), SLICE):
            for record, cfg in batch[start : start + SLICE]:
                if (record.time_to_headers_s or 0.0) > cfg.log_slow_seconds:
                    access.warning(record.render(cfg.log_format))
                elif info:
                    lines.append(record.render(cfg.log_format))
                if db is not None:
                    rows.append(Row.of(record).values())
            await trio.lowlevel.checkpoint()
        # A thread is not abandoned on cancel: once handed over, the batch
        # is written.
        await trio.to_thread.run_sync(self._write, lines, rows, db)
        self.written += len(batch)
        if self.dropped != self._dropped_logged:
            self._dropped_logged = self.dropped
            log.warning("journal: %d requests not logged so far (writer fell behind)", self.dropped)

    def _write(self, lines: list[str], rows: list[tuple[object, ...]], db: LedgerDB | None) -> None:
        """In a worker thread: the lines as one log record, the rows as one
        transaction (sqlite3 releases the GIL while it works)."""
        if lines:
            access.info("\n".join(lines))
        if db is None or not rows:
            return
        try:
            db.insert_values(rows)
        except sqlite3.Error as exc:
            # A full or read-only disk must not take the proxy down.
            self.rows_lost += len(rows)
            log.error("usage ledger: %d rows not written (%s)", len(rows), exc)

    async def _prune(self, db: LedgerDB | None) -> None:
        if db is None:
            return
        before = time.time() - self.retention_s
        try:
            gone = await trio.to_thread.run_sync(db.prune, before)
        except sqlite3.Error as exc:
            log.error("usage ledger: retention sweep failed (%s)", exc)
            return
        if gone:
            log.info("usage ledger: %d rows past the retention deleted", gone)
