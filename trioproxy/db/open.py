"""Which database a process writes to or reads from: Postgres when
``storage.database_url`` is set, else SQLite in the state directory."""

from __future__ import annotations

import os

from trioproxy.db.base import Database, StorageError

FILENAME = "usage.sqlite3"  # the name from before the conversation log: existing ledgers stay


def open_database(url: str, state_dir: str, *, readonly: bool = False) -> Database:
    """Opened and migrated (a reader opens and checks only). Blocking: call
    from a worker thread on a serving process. StorageError if it cannot."""
    if url:
        from trioproxy.db.postgres import PostgresDB  # psycopg only when used

        db: Database = PostgresDB(url)
    else:
        from trioproxy.db.sqlite import SQLiteDB

        path = os.path.join(state_dir, FILENAME)
        if readonly and not os.path.exists(path):
            raise StorageError(
                f"no database at {path} (has the proxy run here with this state_dir?)"
            )
        if not readonly:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
        db = SQLiteDB(path, readonly=readonly)
    try:
        if not readonly:
            db.migrate()
    except BaseException:
        db.close()
        raise
    return db
