"""The viewer's way into the database: one read connection per process,
opened on first use in a worker thread, one query at a time (a lock), so
the event loop never waits on the disk or the network."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from trioproxy.db.base import Database, StorageError

T = TypeVar("T")


class LogReader:
    def __init__(self, opener: Callable[[], Database]) -> None:
        self._opener = opener
        self._db: Database | None = None
        self._lock = trio.Lock()

    async def run(self, query: Callable[[Database], T]) -> T:
        """``query(db)`` in a worker thread. StorageError when the database
        cannot be opened or the query fails (a broken connection is dropped
        and opened again next time)."""
        async with self._lock:
            if self._db is None:
                self._db = await trio.to_thread.run_sync(self._opener)
            db = self._db
            try:
                return await trio.to_thread.run_sync(query, db)
            except StorageError:
                self._db = None
                await trio.to_thread.run_sync(db.close)
                raise

    async def aclose(self) -> None:
        """Closes the connection, within a bounded shield (it runs as the
        server stops, cancelled or not)."""
        with trio.move_on_after(5, shield=True):
            async with self._lock:
                if self._db is not None:
                    db, self._db = self._db, None
                    await trio.to_thread.run_sync(db.close)
