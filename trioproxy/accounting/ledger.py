"""The usage ledger: one summary row per finished request (never a body or a
credential; callers by their secret's configured name) in SQLite in the state
directory, for ``trioproxy usage``.

Its own file (usage.sqlite3, WAL): the routing store's writes never wait on a
ledger batch, and ``trioproxy usage`` can read while the proxy runs. The
server writes rows in batches from a worker thread (journal.py); the event
loop never touches the database.
"""

from __future__ import annotations

import operator
import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from trioproxy.accounting.record import RequestRecord

FILENAME = "usage.sqlite3"

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

    def values(self) -> tuple[object, ...]:
        """The columns in table order (``dataclasses.astuple`` deep-copies)."""
        return _VALUES(self)

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
        self.insert_values([r.values() for r in rows])

    def insert_values(self, values: list[tuple[object, ...]]) -> None:
        """Rows as ``Row.values()`` tuples, in one transaction."""
        with self._db:
            self._db.executemany(_INSERT, values)

    def prune(self, before: float) -> int:
        with self._db:
            return self._db.execute("DELETE FROM requests WHERE ts < ?", (before,)).rowcount

    def rows(self, since: float) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT * FROM requests WHERE ts >= ? ORDER BY ts", (since,))
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def close(self) -> None:
        self._db.close()


_VALUES = operator.attrgetter(*(f.name for f in fields(Row)))
_INSERT = f"INSERT INTO requests VALUES ({', '.join('?' * len(fields(Row)))})"
