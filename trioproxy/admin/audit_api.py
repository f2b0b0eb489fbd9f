"""The audit trail over the admin API:

    GET /admin/api/audit?since=7d&limit=1000
        administrative changes since then, newest first: when, who (an
        admin token's name, the OS user of the CLI, ``reload``), the
        action, its subject, and the value before and after (secrets as
        their SHA-256)

The trail is in the database (every worker's and, on Postgres, every
instance's changes). Read in a worker thread.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import orjson
import trio

from trioproxy.accounting.report import UsageError, parse_since
from trioproxy.audit.trail import read
from trioproxy.db.base import StorageError
from trioproxy.errors import InvalidRequest, MethodNotAllowed, Unavailable
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.state import ServerState

PATH = b"/admin/api/audit"


async def handle(ex: ClientExchange, state: ServerState) -> tuple[int, Any]:
    head = ex.head
    if head.method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed("/admin/api/audit accepts GET and HEAD")
    query = dict(urllib.parse.parse_qsl(head.target.partition(b"?")[2].decode("latin-1")))
    now = time.time()
    try:
        since = parse_since(query.get("since", "7d"), now, "since")
        limit = int(query.get("limit", "1000"))
    except (UsageError, ValueError) as exc:
        raise InvalidRequest(
            f"{exc}" if isinstance(exc, UsageError) else "limit: a number"
        ) from None
    try:
        rows = await trio.to_thread.run_sync(read, state.open_database, since, limit)
    except (StorageError, OSError) as exc:
        raise Unavailable(f"the audit trail cannot be read: {exc}") from None
    return 200, {"since": round(since, 3), "entries": [entry(r) for r in rows]}


def entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "ts": row["ts"],
        "who": row["who"],
        "action": row["action"],
        "subject": row["subject"],
        "before": orjson.loads(row["old_value"]),
        "after": orjson.loads(row["new_value"]),
        "source": row["source"],
    }
