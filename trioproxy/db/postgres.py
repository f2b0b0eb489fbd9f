"""The Postgres backend (``storage.database_url``): one ledger and one
conversation log for every instance.

psycopg 3, synchronous, in the journal's writer thread: its async API
needs asyncio, and writes come in batches, so a thread hop per batch is
the cheap, simple choice. Queries are written with ``?`` (base.py) and
turned into psycopg's ``%s`` here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from trioproxy.db.base import Database, Row, StorageError

CONNECT_TIMEOUT = 10  # seconds
MIGRATION_LOCK = 0x7472696F  # pg_advisory_xact_lock key: one instance migrates at a time


class PostgresDB(Database):
    dialect = "postgres"
    like = "ILIKE"
    day = "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    bucket = "CAST(FLOOR(ts / ?) AS BIGINT)"  # a plain cast would round

    def __init__(self, url: str) -> None:
        self.where = _without_password(url)
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {_first_line(exc)}") from None

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._db.execute(_pg(sql), params).rowcount
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {_first_line(exc)}") from None

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            with self._db.cursor() as cur:
                cur.executemany(_pg(sql), [_ints(r) for r in rows])
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {_first_line(exc)}") from None

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self._db.execute(_pg(sql), params)
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {_first_line(exc)}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._db.transaction():
                yield
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {_first_line(exc)}") from None

    def _lock_migrations(self) -> None:
        self._run("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    def close(self) -> None:
        self._db.close()


def _ints(row: Sequence[Any]) -> tuple[Any, ...]:
    """Flags as the INTEGER columns hold them (SQLite takes a bool as 0/1;
    Postgres will not cast one)."""
    return tuple(int(v) if isinstance(v, bool) else v for v in row)


def _pg(sql: str) -> str:
    """``?`` placeholders as psycopg's; a literal % doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.partition(":")[0]
    return f"{scheme}{sep}{user}@{host}"
