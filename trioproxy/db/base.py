"""The storage interface both backends implement: a few primitives per
backend (sqlite.py, postgres.py) and every query written once, here.

Synchronous and for one thread at a time: the journal's writer thread
owns one, each reader (the viewer, ``trioproxy usage``, ``log export``)
opens its own.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from trioproxy.db.schema import (
    AUDIT_COLUMNS,
    LATEST,
    LOG_COLUMNS,
    LOG_SUMMARY,
    MIGRATIONS,
    USAGE_COLUMNS,
    statements,
)

Row = dict[str, Any]


class StorageError(Exception):
    """The database cannot be reached or refused a statement (a full disk,
    a lost connection, a bad URL); the message says which database."""


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters of the conversation log's list; empty means any."""

    caller: str = ""
    model: str = ""  # as served, or as requested
    provider: str = ""
    status: str = ""  # "429", "4xx", "error" (any failure), "ok"
    session: str = ""
    route: str = ""
    since: float | None = None
    until: float | None = None
    text: str = ""  # searched in the prompts and answers
    before: float | None = None  # the page: rows older than this ts
    limit: int = 50


class Database(abc.ABC):
    """Backend primitives: ``_run``, ``_many``, ``_fetch``, ``_transaction``,
    ``close``; ``dialect`` and ``like`` (the case-insensitive LIKE)."""

    dialect = ""
    like = "LIKE"
    day = ""  # the UTC date of ``ts`` as YYYY-MM-DD
    bucket = ""  # ``ts`` divided by a parameter, rounded down to a whole number
    where = ""  # what the database is, for messages (a path; never a password)

    # -- primitives (per backend) ---------------------------------------------
    @abc.abstractmethod
    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement; the rows it changed."""

    @abc.abstractmethod
    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for each of ``rows``."""

    @abc.abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """The rows of a query, as dicts by column name."""

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """A block whose statements commit together (or roll back on error)."""

    def _lock_migrations(self) -> None:
        """Inside the migration transaction: other instances wait. Nothing
        by default: SQLite's BEGIN IMMEDIATE already takes the write lock."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Closes the connection."""

    # -- schema ----------------------------------------------------------------
    def migrate(self) -> int:
        """Apply what is missing, each migration in its own transaction;
        the version now in place."""
        self._run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for version, sql in MIGRATIONS:
            with self._transaction():
                self._lock_migrations()
                if version <= self.version():
                    continue
                for statement in statements(sql, self.dialect):
                    self._run(statement)
                self._run("DELETE FROM schema_version")
                self._run("INSERT INTO schema_version VALUES (?)", (version,))
        return self.version()

    def version(self) -> int:
        rows = self._fetch("SELECT MAX(version) AS v FROM schema_version")
        return int(rows[0]["v"] or 0) if rows else 0

    @property
    def current(self) -> bool:
        return self.version() >= LATEST

    # -- the usage ledger -------------------------------------------------------
    def insert_usage(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows in USAGE_COLUMNS order, in one transaction."""
        with self._transaction():
            self._many(_INSERT_USAGE, rows)

    def prune_usage(self, before: float) -> int:
        with self._transaction():
            return self._run("DELETE FROM requests WHERE ts < ?", (before,))

    def usage_rows(self, since: float) -> list[Row]:
        return self._fetch("SELECT * FROM requests WHERE ts >= ? ORDER BY ts", (since,))

    def usage_sums(self, column: str, since: float) -> list[Row]:
        """Requests, errors, tokens and cost by (``column``, model,
        provider) since then; ``column`` is one of the ledger's, or "day".
        The tokens of rows without a cost (``u_`` + the class) are given
        apart, for the report to price now if it can."""
        key = self.day if column == "day" else _GROUP[column]
        return self._fetch(
            f"SELECT {key} AS k, model, provider, COUNT(*) AS n, SUM(error) AS errors, "
            + ", ".join(f"SUM({t}) AS {t}" for t in _TOKENS)
            + ", SUM(cost_usd) AS cost, "
            + ", ".join(
                f"SUM(CASE WHEN cost_usd IS NULL THEN {t} ELSE 0 END) AS u_{t}" for t in _TOKENS
            )
            + " FROM requests WHERE ts >= ? GROUP BY 1, 2, 3",
            (since,),
        )

    def history(self, since: float, step: int, bounds: Sequence[float]) -> list[Row]:
        """Ledger rows since then in buckets of ``step`` seconds (``b``: the
        bucket's number, ts // step): requests, errors (5xx, 429, stream
        errors), the proxy's own errors, tokens, and for each duration bound
        how many took at most that long (``le_0``...: a histogram)."""
        les = ", ".join(
            f"SUM(CASE WHEN duration_s <= {float(b)!r} THEN 1 ELSE 0 END) AS le_{i}"
            for i, b in enumerate(bounds)
        )
        return self._fetch(
            f"SELECT {self.bucket} AS b, COUNT(*) AS n, SUM({_FAILED}) AS errors, "
            f"SUM(CASE WHEN origin = 'proxy' AND {_FAILED} = 1 THEN 1 ELSE 0 END) AS proxy_errors, "
            "SUM(input_tokens + cache_creation_input_tokens + cache_read_input_tokens) AS tin, "
            "SUM(output_tokens) AS tout, SUM(cache_read_input_tokens) AS cache_read, "
            f"{les} FROM requests WHERE ts >= ? GROUP BY 1 ORDER BY 1",
            (step, since),
        )

    def status_counts(self, since: float) -> list[Row]:
        """Requests by status and origin since then."""
        return self._fetch(
            "SELECT status, origin, COUNT(*) AS count FROM requests WHERE ts >= ? "
            "GROUP BY status, origin ORDER BY status, origin",
            (since,),
        )

    def recent_errors(self, since: float, limit: int) -> list[Row]:
        """The last failed requests since then, newest first."""
        return self._fetch(
            "SELECT ts, request_id, status, origin, caller, model, provider FROM requests "
            "WHERE ts >= ? AND error = 1 ORDER BY ts DESC LIMIT ?",
            (since, limit),
        )

    # -- the conversation log ---------------------------------------------------
    def insert_log(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows in LOG_COLUMNS order, in one transaction; a request id seen
        before (a replayed batch) is kept as first written."""
        with self._transaction():
            self._many(_INSERT_LOG, rows)

    def prune_log(self, before: float) -> int:
        with self._transaction():
            return self._run("DELETE FROM exchanges WHERE ts < ?", (before,))

    # -- the audit trail ------------------------------------------------------------
    def insert_audit(self, rows: Sequence[Sequence[Any]]) -> None:
        """Rows in AUDIT_COLUMNS order."""
        with self._transaction():
            self._many(_INSERT_AUDIT, rows)

    def audit_rows(self, since: float, limit: int = 1000) -> list[Row]:
        """Newest first."""
        return self._fetch(
            "SELECT * FROM audit WHERE ts >= ? ORDER BY ts DESC LIMIT ?",
            (since, max(1, min(limit, 10_000))),
        )

    def prune_audit(self, before: float) -> int:
        with self._transaction():
            return self._run("DELETE FROM audit WHERE ts < ?", (before,))

    def list_log(self, q: LogQuery) -> list[Row]:
        """Newest first, without bodies."""
        where, params = self._where(q)
        sql = f"SELECT {', '.join(LOG_SUMMARY)} FROM exchanges"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC LIMIT ?"
        return self._fetch(sql, (*params, max(1, min(q.limit, 500))))

    def get_log(self, request_id: str) -> Row | None:
        rows = self._fetch("SELECT * FROM exchanges WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def session_log(self, session: str, limit: int = 200) -> list[Row]:
        """A session's requests, oldest first (the last ``limit``)."""
        rows = self._fetch(
            "SELECT * FROM exchanges WHERE session = ? ORDER BY ts DESC LIMIT ?",
            (session, limit),
        )
        rows.reverse()
        return rows

    def export_log(self, since: float, batch: int = 200) -> Iterator[Row]:
        """Every row since then, oldest first, a batch in memory at a time."""
        after, last = since, ""
        while True:
            rows = self._fetch(
                "SELECT * FROM exchanges WHERE (ts > ?) OR (ts = ? AND request_id > ?) "
                "ORDER BY ts, request_id LIMIT ?",
                (after, after, last, batch),
            )
            if not rows:
                return
            yield from rows
            after, last = rows[-1]["ts"], rows[-1]["request_id"]

    def _where(self, q: LogQuery) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        for column in ("caller", "provider", "session", "route"):
            value = getattr(q, column)
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if q.model:
            where.append("(model = ? OR model_requested = ?)")
            params += [q.model, q.model]
        status = q.status.strip().lower()
        if status == "error":
            where.append("error = 1")
        elif status == "ok":
            where.append("error = 0")
        elif len(status) == 3 and status.endswith("xx") and status[0].isdigit():
            base = int(status[0]) * 100
            where.append("status >= ? AND status < ?")
            params += [base, base + 100]
        elif status.isdigit():
            where.append("status = ?")
            params.append(int(status))
        for bound, op in ((q.since, ">="), (q.until, "<"), (q.before, "<")):
            if bound is not None:
                where.append(f"ts {op} ?")
                params.append(bound)
        if q.text:
            where.append(f"search {self.like} ? ESCAPE '\\'")
            params.append("%" + _escape_like(q.text) + "%")
        return where, params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_TOKENS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)
# What the dashboard counts as an error: 5xx, 429, an error event in a 200 stream.
_FAILED = (
    "(CASE WHEN status >= 500 OR status = 429 OR (error = 1 AND status < 400) THEN 1 ELSE 0 END)"
)
_GROUP = {
    "caller": "caller",
    "model": "model",
    "provider": "provider",
    "request_class": "request_class",
    "agent_type": "agent_type",
}
_INSERT_AUDIT = (
    f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})"
)
_INSERT_USAGE = f"INSERT INTO requests ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' * len(USAGE_COLUMNS))})"
_INSERT_LOG = (
    f"INSERT INTO exchanges ({', '.join(LOG_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(LOG_COLUMNS))}) ON CONFLICT (request_id) DO NOTHING"
)
