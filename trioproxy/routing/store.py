"""Routing state that survives a restart, in an embedded SQLite file in the
state directory: quota buckets and the runtime routing mode.

The methods are synchronous and do file I/O: the router calls them through
``trio.to_thread.run_sync``, one call at a time (a lock in the router), so the
event loop never waits on the disk. WAL mode keeps a reader (``trioproxy
usage``, an operator's sqlite3 shell) from blocking the writer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

DB_NAME = "trioproxy.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_buckets (
    provider TEXT NOT NULL,
    hour INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (provider, hour)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class StateStore:
    def __init__(self, state_dir: str) -> None:
        path = Path(state_dir)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path / DB_NAME
        # One connection, used from worker threads one call at a time.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"<StateStore {self.path}>"

    def load_buckets(self, since_hour: int) -> list[tuple[str, int, int]]:
        rows = self._db.execute(
            "SELECT provider, hour, tokens FROM quota_buckets WHERE hour >= ?", (since_hour,)
        ).fetchall()
        return [(str(p), int(h), int(t)) for p, h, t in rows]

    def save_buckets(self, buckets: dict[tuple[str, int], int], prune_before: int) -> None:
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO quota_buckets (provider, hour, tokens) VALUES (?, ?, ?) "
                "ON CONFLICT (provider, hour) DO UPDATE SET tokens = excluded.tokens",
                [(p, h, t) for (p, h), t in buckets.items()],
            )
            self._db.execute("DELETE FROM quota_buckets WHERE hour < ?", (prune_before,))

    def get(self, key: str) -> object:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def put(self, key: str, value: object) -> None:
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, orjson.dumps(value)),
        )

    def close(self) -> None:
        self._db.close()
