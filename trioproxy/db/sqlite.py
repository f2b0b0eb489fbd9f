"""The SQLite backend: a file in the state directory (WAL, so
``trioproxy usage`` and the viewer read while the proxy writes, and the
workers of one machine share it)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from trioproxy.db.base import Database, Row, StorageError

BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's


class SQLiteDB(Database):
    dialect = "sqlite"
    like = "LIKE"  # case-insensitive for ASCII
    day = "date(ts, 'unixepoch')"
    bucket = "CAST(ts / ? AS INTEGER)"  # ts is positive: truncation is floor

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.where = path
        try:
            if readonly:
                self._db = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False
                )
            else:
                self._db = sqlite3.connect(
                    path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: {exc}") from None
        self._depth = 0

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StorageError(f"{self.where}: {exc}") from None

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.where}: {exc}") from None

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self._db.execute(sql, params)
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        except sqlite3.Error as exc:
            raise StorageError(f"{self.where}: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE: the write lock at once, so two workers migrating or
        # writing wait for each other instead of failing to upgrade a read.
        self._run("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.rollback()
            raise
        self._run("COMMIT")

    def close(self) -> None:
        self._db.close()
