"""The per-request journal: the access line, the usage-ledger row and the
conversation-log row (``log_bodies``) of every finished request, written
off the event loop in batches.

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
* Conversation-log rows are built in the thread (bodies joined, zstd,
  an SSE answer rebuilt: convlog/rows.py). Their bodies are held by
  reference until then, and counted until their batch is written (not
  only until it is handed to the thread: while one batch is written, the
  next one fills). Each counts its bodies plus CAPTURE_OVERHEAD for what
  else a row holds. Past ``log.max_pending_bytes`` held, a request's log
  row is dropped and counted (``log_dropped``), its line and ledger row
  are not: a burst costs log rows, never requests, and the worker's memory
  for the log stays within that bound.
* On shutdown what is queued is written, within a bounded shield.
* Rows older than their retention (usage.retention_days,
  log.retention_days, audit.retention_days) are deleted at start and hourly.
* The database (db/) is opened in a thread; when it cannot be (Postgres
  down, a read-only disk), requests are served anyway, their rows are
  counted lost, and opening is tried again every REOPEN_EVERY.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from trioproxy.accounting.ledger import Row
from trioproxy.accounting.record import RequestRecord
from trioproxy.config.model import Config
from trioproxy.db.base import Database, StorageError

log = logging.getLogger("trioproxy.ledger")
access = logging.getLogger("trioproxy.access")

MAX_PENDING = 20_000  # requests queued for the writer; beyond: dropped and counted
FLUSH_EVERY = 0.2  # seconds: a line or row is written at most about this late
EARLY_FRACTION = 4  # log captures holding 1/4 of their bound start the writer early
PRUNE_EVERY = 3600.0  # seconds between ledger retention sweeps
CLOSE_GRACE = 5.0  # seconds to write what is queued at shutdown
SLICE = 16  # requests rendered between checkpoints (about 0.15 ms of work)
MAX_LOG_BYTES = 64 * 1024 * 1024  # log.max_pending_bytes: held for log rows not yet written
# Bytes a pending log row holds besides its bodies: the record, the copied
# headers of both messages, the capture's lists (measured: 2.5 to 3.5 KiB
# for a Claude Code request with tracemalloc), rounded up.
CAPTURE_OVERHEAD = 4096
REOPEN_EVERY = 30.0  # seconds between attempts to open a database that failed


# The config the request ran under (format, slow), and its bodies when logged.
class Capture(Protocol):
    """A request's bodies for the conversation log (convlog.capture)."""

    @property
    def held(self) -> int:
        """Bytes it keeps alive until written."""
        ...


class LogRows(Protocol):
    """Builds conversation-log rows, in the writer thread (convlog.rows):
    handed in by the server, so accounting needs nothing of the log."""

    def row(self, record: RequestRecord, capture: Any) -> tuple[object, ...]: ...


Entry = tuple[RequestRecord, Config, Capture | None]


@dataclass(frozen=True, slots=True)
class Keeping:
    """What the journal writes down besides the access lines."""

    ledger: bool = False  # usage.ledger
    ledger_days: float = 90.0
    log: bool = False  # log_bodies is not off
    log_days: float = 14.0
    log_pending_bytes: int = MAX_LOG_BYTES  # log.max_pending_bytes
    audit_days: float = 400.0  # audit.retention_days

    @property
    def database(self) -> bool:
        return self.ledger or self.log

    @classmethod
    def of(cls, cfg: Config) -> Keeping:
        """From the settings: at start, and again on every reload."""
        return cls(
            ledger=cfg.usage_ledger,
            ledger_days=cfg.usage_retention_days,
            log=cfg.log_bodies != "off",
            log_days=cfg.log_retention_days,
            log_pending_bytes=cfg.log_max_pending_bytes,
            audit_days=cfg.audit_retention_days,
        )


class Journal:
    """``add`` from the request path; ``serve`` in the server's background
    nursery. ``opener`` opens (and migrates) the database, blocking; None:
    access lines only."""

    def __init__(
        self,
        *,
        opener: Callable[[], Database] | None = None,
        keeping: Keeping | None = None,
        log_rows: LogRows | None = None,
        max_log_bytes: int | None = None,
        reopen_every: float = REOPEN_EVERY,
    ) -> None:
        self._opener = opener
        self._reopen_every = reopen_every
        self._max_log_bytes = max_log_bytes
        self.keeping = keeping or Keeping()
        self._pending: list[Entry] = []
        self._log_held = 0  # bytes the pending captures keep alive
        # Set when the captures waiting hold a quarter of the bound: the writer
        # starts at once rather than at the end of its window, so a burst of
        # large answers is written, not dropped, while the writer keeps up.
        self._early = trio.Event()
        self.dropped = 0  # requests neither logged nor recorded (writer behind)
        self._dropped_logged = 0
        self.log_dropped = 0  # conversation-log rows dropped (too much held)
        self.written = 0  # requests written (lines logged and rows committed)
        self.rows_lost = 0  # ledger rows a database error lost
        self.log_rows_lost = 0  # conversation-log rows a database error lost
        self.log_written = 0  # conversation-log rows committed
        self._log_rows = log_rows
        self._db: Database | None = None
        self._reopen_at = 0.0

    @property
    def queued(self) -> tuple[RequestRecord, ...]:
        """The records waiting for the writer (for tests and diagnostics)."""
        return tuple(record for record, _, _ in self._pending)

    def log_counts(self) -> dict[str, int]:
        return {
            "written": self.log_written,
            "dropped": self.log_dropped,
            "lost": self.log_rows_lost,
        }

    def add(self, record: RequestRecord, cfg: Config, capture: Capture | None = None) -> None:
        """On the loop: never blocks, never renders."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        if capture is not None and self._log_rows is None:
            capture = None  # no log here (a journal without one)
        if capture is not None:
            held = capture.held + CAPTURE_OVERHEAD
            limit = self._max_log_bytes or self.keeping.log_pending_bytes
            if self._log_held + held > limit:
                self.log_dropped += 1
                capture = None
            else:
                self._log_held += held
                if self._log_held > limit // EARLY_FRACTION:
                    self._early.set()
        self._pending.append((record, cfg, capture))

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Runs until cancelled; then writes what is queued (bounded by
        CLOSE_GRACE) and closes the database."""
        try:
            await self._open()
            await self._prune()
            task_status.started()
            next_prune = trio.current_time() + PRUNE_EVERY
            while True:
                with trio.move_on_after(FLUSH_EVERY):  # the batching window, not a timeout
                    await self._early.wait()
                self._early = trio.Event()
                if self._db is None and trio.current_time() >= self._reopen_at:
                    await self._open()
                # Shielded: a batch taken from the queue is written, even when
                # the cancel comes while it is rendered (its thread is never
                # abandoned anyway); the close below writes what came after.
                with trio.CancelScope(shield=True):
                    await self._flush()
                if trio.current_time() >= next_prune:
                    await self._prune()
                    next_prune = trio.current_time() + PRUNE_EVERY
        finally:
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                await self._flush()
                if self._db is not None:
                    await trio.to_thread.run_sync(self._db.close)
                    self._db = None

    async def _open(self) -> None:
        if self._opener is None or not self.keeping.database:
            return
        try:
            self._db = await trio.to_thread.run_sync(self._opener)
        except StorageError as exc:
            self._reopen_at = trio.current_time() + self._reopen_every
            log.error(
                "database: %s; requests are served, their ledger and log rows are lost "
                "until it can be opened (tried again every %g s)",
                exc,
                self._reopen_every,
            )

    async def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        # Still held until written: given back below, once the thread is done.
        held = sum(c.held + CAPTURE_OVERHEAD for _, _, c in batch if c is not None)
        db = self._db
        lines: list[str] = []
        rows: list[tuple[object, ...]] = []
        logged: list[tuple[RequestRecord, Capture, Config]] = []
        info = access.isEnabledFor(logging.INFO)
        ledger = db is not None and self.keeping.ledger
        # Rendered here, a slice at a time with a checkpoint in between:
        # requests wait for one slice at most. (In a thread the same work
        # would hold the GIL for milliseconds at a time, and the loop would
        # wait that long to get it back: the p99 of every request.)
        for start in range(0, len(batch), SLICE):
            for record, cfg, capture in batch[start : start + SLICE]:
                if (record.time_to_headers_s or 0.0) > cfg.log_slow_seconds:
                    access.warning(record.render(cfg.log_format))
                elif info:
                    lines.append(record.render(cfg.log_format))
                if ledger:
                    rows.append(Row.of(record).values())
                if capture is not None:
                    logged.append((record, capture, cfg))
            await trio.lowlevel.checkpoint()
        if db is None:
            self.rows_lost += len(batch) if self.keeping.ledger else 0
            self.log_rows_lost += len(logged)
            logged = []
        # A thread is not abandoned on cancel: once handed over, the batch
        # is written.
        try:
            await trio.to_thread.run_sync(self._write, lines, rows, logged, db)
        finally:
            self._log_held -= held
        self.written += len(batch)
        if self.dropped != self._dropped_logged:
            self._dropped_logged = self.dropped
            log.warning("journal: %d requests not logged so far (writer fell behind)", self.dropped)

    def _write(
        self,
        lines: list[str],
        rows: list[tuple[object, ...]],
        logged: list[tuple[RequestRecord, Capture, Config]],
        db: Database | None,
    ) -> None:
        """In a worker thread: the lines as one log record, the ledger rows
        and the log rows as a transaction each (the databases release the
        GIL while they work; building log rows holds it, a row at a time)."""
        if lines:
            access.info("\n".join(lines))
        if db is None:
            return
        if rows:
            try:
                db.insert_usage(rows)
            except StorageError as exc:
                # A full or read-only disk, a lost connection: never the proxy down.
                self.rows_lost += len(rows)
                self.log_rows_lost += len(logged)  # the same database: not tried
                log.error("usage ledger: %d rows not written (%s)", len(rows), exc)
                self._lost(db)
                return
        if logged:
            assert self._log_rows is not None  # add() keeps no capture without it
            make = self._log_rows.row
            entries = [make(r, capture) for r, capture, _ in logged]
            try:
                db.insert_log(entries)
            except StorageError as exc:
                self.log_rows_lost += len(entries)
                log.error("conversation log: %d rows not written (%s)", len(entries), exc)
                self._lost(db)
                return
            self.log_written += len(entries)

    def _lost(self, db: Database) -> None:
        """After a failed write: a connection that may be broken is closed
        and opened again later (the loop does; this is the writer thread,
        and the loop is not touching ``_db`` while it waits for it)."""
        if self._opener is not None and db.dialect == "postgres":
            db.close()
            self._db = None

    async def _prune(self) -> None:
        db = self._db
        if db is None:
            return
        now = time.time()
        sweeps = []
        if self.keeping.ledger:
            sweeps.append(("usage ledger", db.prune_usage, now - self.keeping.ledger_days * 86400))
        # Always: log_bodies may have been turned on by a reload.
        sweeps.append(("conversation log", db.prune_log, now - self.keeping.log_days * 86400))
        sweeps.append(("audit trail", db.prune_audit, now - self.keeping.audit_days * 86400))
        for what, prune, before in sweeps:
            try:
                gone = await trio.to_thread.run_sync(prune, before)
            except StorageError as exc:
                log.error("%s: retention sweep failed (%s)", what, exc)
                continue
            if gone:
                log.info("%s: %d rows past the retention deleted", what, gone)
