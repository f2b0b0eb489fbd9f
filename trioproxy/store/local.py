"""The local StateStore: a SQLite file in the state directory, shared by the
workers of one machine.

Each ``sync`` is one short transaction, run in a thread (one at a time per
process) so the event loop never waits on the disk: quota increments are
added (``tokens = tokens + ?``, so workers never overwrite each other),
events appended, and what changed since this process's last sync read back.
WAL mode lets readers (``trioproxy usage``, an operator's sqlite3 shell)
and the other workers' transactions proceed; a writer waits for another
for up to BUSY_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import trio

from trioproxy.store.base import Event, Inbox, Outbox, StoreUnavailable, origin

DB_NAME = "trioproxy.sqlite3"
BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's
EVENTS_KEPT = 3600.0  # seconds; older events are pruned (every view has long caught up)
PRUNE_EVERY = 60.0  # seconds between prunes

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS quota_buckets (
        provider TEXT NOT NULL,
        hour INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        updated INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (provider, hour)
    )""",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, until REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        origin TEXT NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_at ON events (at)",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS counters (
        series TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        until INTEGER NOT NULL,
        n INTEGER NOT NULL,
        updated INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (series, bucket)
    )""",
)
ROUTE_KEY = "route"


class LocalFile:
    """The synchronous part: one connection, used from one thread at a time."""

    def __init__(self, state_dir: str, origin: str) -> None:
        path = Path(state_dir)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path / DB_NAME
        self.origin = origin
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
        )
        self._wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._create()
        self._seen_version: int | None = None  # the quota version last read (None: read all)
        # Events written before we started are history: the views start from
        # the quota totals and the saved mode, not from a replay.
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        self._last_event = int(row[0])
        self._last_prune = 0.0

    def _wal(self) -> None:
        """Switch to WAL. Another worker switching the same new file at the
        same moment makes SQLite answer "locked" at once, without its busy
        timeout: try again for up to BUSY_TIMEOUT (this runs in a thread)."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _create(self) -> None:
        """The tables, under the write lock: every worker opens the file at
        the same moment, and only one may create or upgrade them."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(quota_buckets)")}
            if "updated" not in columns:  # a file from before the store was shared
                db.execute(
                    "ALTER TABLE quota_buckets ADD COLUMN updated INTEGER NOT NULL DEFAULT 0"
                )
            if db.execute("INSERT OR IGNORE INTO meta VALUES ('version', 0)").rowcount:
                db.execute("UPDATE quota_buckets SET updated = 0")  # versions start here
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def sync(self, out: Outbox, since_hour: int, now: float) -> Inbox:
        db = self._db
        inbox = Inbox()
        db.execute("BEGIN IMMEDIATE")
        try:
            if out.quota or out.counters:
                # A version, not a time: bumped inside the write lock, so it
                # follows commit order however long a writer took to get here,
                # and a reader that saw version v has seen every row up to v.
                db.execute("UPDATE meta SET v = v + 1 WHERE k = 'version'")
            if out.counters:
                db.executemany(
                    "INSERT INTO counters (series, bucket, until, n, updated) "
                    "VALUES (?, ?, ?, ?, (SELECT v FROM meta WHERE k = 'version')) "
                    "ON CONFLICT (series, bucket) DO UPDATE "
                    "SET n = n + excluded.n, updated = excluded.updated",
                    [(s, b, u, n) for (s, b, u), n in out.counters.items()],
                )
            if out.quota:
                db.executemany(
                    "INSERT INTO quota_buckets (provider, hour, tokens, updated) "
                    "VALUES (?, ?, ?, (SELECT v FROM meta WHERE k = 'version')) "
                    "ON CONFLICT (provider, hour) DO UPDATE "
                    "SET tokens = tokens + excluded.tokens, updated = excluded.updated",
                    [(p, h, n) for (p, h), n in out.quota.items()],
                )
            if out.events:
                db.executemany(
                    "INSERT INTO events (origin, at, kind, key, value) VALUES (?, ?, ?, ?, ?)",
                    [(self.origin, now, e.kind, e.key, orjson.dumps(e.value)) for e in out.events],
                )
            rows = db.execute(
                "SELECT provider, hour, tokens FROM quota_buckets WHERE hour >= ? AND updated > ?",
                (since_hour, -1 if self._seen_version is None else self._seen_version),
            )
            inbox.quota = {(str(p), int(h)): int(n) for p, h, n in rows}
            rows = db.execute(
                "SELECT series, bucket, until, n FROM counters WHERE until >= ? AND updated > ?",
                (now, -1 if self._seen_version is None else self._seen_version),
            )
            inbox.counters = {(str(s), int(b), int(u)): int(n) for s, b, u, n in rows}
            version = db.execute("SELECT v FROM meta WHERE k = 'version'").fetchone()[0]
            for eid, kind, key, value in db.execute(
                "SELECT id, kind, key, value FROM events WHERE id > ? AND origin != ? ORDER BY id",
                (self._last_event, self.origin),
            ):
                inbox.events.append(Event(kind, key, orjson.loads(value)))
                self._last_event = max(self._last_event, int(eid))
            top = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            self._last_event = max(self._last_event, int(top))
            if now - self._last_prune > PRUNE_EVERY:
                db.execute("DELETE FROM events WHERE at < ?", (now - EVENTS_KEPT,))
                db.execute("DELETE FROM quota_buckets WHERE hour < ?", (since_hour,))
                db.execute("DELETE FROM counters WHERE until < ?", (now,))
                self._last_prune = now
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._seen_version = int(version)
        return inbox

    def get(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def put(self, key: str, value: object) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, orjson.dumps(value)),
        )

    def claim(self, key: str, ttl: float, now: float) -> bool:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM claims WHERE until < ?", (now,))
            won = db.execute(
                "INSERT OR IGNORE INTO claims (key, until) VALUES (?, ?)", (key, now + ttl)
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return bool(won)

    def close(self) -> None:
        self._db.close()


class LocalStore:
    """The StateStore over LocalFile, for Trio."""

    def __init__(self, file: LocalFile, *, wall: Callable[[], float] = time.time) -> None:
        self._file = file
        self._lock = trio.Lock()  # one call at a time on the connection
        self._wall = wall

    def __repr__(self) -> str:
        return f"<LocalStore {self._file.path}>"

    @property
    def path(self) -> Path:
        return self._file.path

    @classmethod
    async def open(cls, state_dir: str, *, wall: Callable[[], float] = time.time) -> LocalStore:
        """Raises StoreUnavailable when the directory is unusable."""
        try:
            file = await trio.to_thread.run_sync(LocalFile, state_dir, origin())
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"state directory {state_dir}: {exc}") from exc
        return cls(file, wall=wall)

    async def _run(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(fn, *args)
            except (OSError, sqlite3.Error) as exc:
                raise StoreUnavailable(f"{self._file.path}: {exc}") from exc

    async def sync(self, out: Outbox, *, since_hour: int) -> Inbox:
        inbox: Inbox = await self._run(self._file.sync, out, since_hour, self._wall())
        return inbox

    async def load_mode(self) -> dict[str, Any] | None:
        value = await self._run(self._file.get, ROUTE_KEY)
        return value if isinstance(value, dict) else None

    async def save_mode(self, value: dict[str, Any]) -> None:
        await self._run(self._file.put, ROUTE_KEY, value)

    async def claim(self, key: str, ttl: float) -> bool:
        won: bool = await self._run(self._file.claim, key, ttl, self._wall())
        return won

    async def aclose(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._run(self._file.close)
