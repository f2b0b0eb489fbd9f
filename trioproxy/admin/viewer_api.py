"""The conversation log's viewer: the page at /admin/requests and its JSON
API under /admin/api/requests (described in /openapi.json), under the
admin rules like every /admin/ path.

    GET /admin/api/requests                     newest first; filters below
    GET /admin/api/requests/{id}                one request, bodies decoded
    GET /admin/api/requests/{id}/conversation   its session, as turns

List filters (query string): caller, model, provider, status (429, 5xx,
error, ok), session, route, since and until (7d, 24h, 30m, 2026-11-01 or
seconds since the epoch), q (searched in prompts and answers), before (a
page: entries older than this ts), limit (1..500).
"""

from __future__ import annotations

import functools
import time
import urllib.parse
from importlib import resources
from typing import Any

import zstandard

from trioproxy.accounting.report import UsageError, parse_since
from trioproxy.convlog.views import conversation, detail, summary
from trioproxy.db.base import Database, LogQuery, StorageError
from trioproxy.errors import InvalidRequest, MethodNotAllowed, NotFound, Unavailable
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.state import ServerState

PAGE = b"/admin/requests"
API = b"/admin/api/requests"
SESSION_TURNS = 200  # requests of a session shown as one conversation (the last ones)


def is_viewer_path(path: bytes) -> bool:
    return path in (PAGE, API) or path.startswith(API + b"/")


@functools.cache
def viewer_html() -> bytes:
    return resources.files("trioproxy.admin").joinpath("viewer.html").read_bytes()


async def handle(ex: ClientExchange, state: ServerState) -> tuple[int, Any]:
    """(status, JSON document) for the API; the page is answered by the caller."""
    head = ex.head
    if head.method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed(f"{head.path.decode('latin-1')} accepts GET and HEAD")
    reader = state.log_reader
    cfg = state.config
    if reader is None or (cfg.log_bodies == "off" and not cfg.usage_ledger):
        raise NotFound("this server keeps no conversation log (log_bodies is off)")
    rest = head.path[len(API) :].strip(b"/").decode("utf-8", errors="replace")
    logging_on = state.config.log_bodies
    try:
        if not rest:
            query = parse_query(head.target, time.time())
            rows = await reader.run(lambda db: db.list_log(query))
            return 200, {
                "log_bodies": logging_on,
                "requests": [summary(r) for r in rows],
                "next_before": rows[-1]["ts"] if len(rows) == query.limit else None,
            }
        request_id, _, what = rest.partition("/")
        request_id = urllib.parse.unquote(request_id)
        if what == "":
            return 200, await reader.run(lambda db: _detail(db, request_id))
        if what == "conversation":
            return 200, await reader.run(lambda db: _conversation(db, request_id))
    except StorageError as exc:
        raise Unavailable(f"the conversation log cannot be read: {exc}") from None
    raise NotFound(f"{head.path.decode('latin-1')} does not exist")


def _detail(db: Database, request_id: str) -> dict[str, Any]:
    """In the reader's thread: bodies of up to log.max_body_bytes each are
    decompressed and parsed there, never on the event loop."""
    row = db.get_log(request_id)
    if row is None:
        raise NotFound(f"no logged request {request_id}")
    return detail(row, zstandard.ZstdDecompressor())


def _conversation(db: Database, request_id: str) -> dict[str, Any]:
    """In the reader's thread: the session's rows decoded and threaded."""
    row = db.get_log(request_id)
    if row is None:
        raise NotFound(f"no logged request {request_id}")
    unzstd = zstandard.ZstdDecompressor()
    rows = db.session_log(row["session"], SESSION_TURNS) if row["session"] else [row]
    return conversation([detail(r, unzstd) for r in rows])


def parse_query(target: bytes, now: float) -> LogQuery:
    """The list's filters from a query string; a bad value is a 400 that
    names it."""
    _, _, qs = target.partition(b"?")
    params = urllib.parse.parse_qs(qs.decode("utf-8", errors="replace"), keep_blank_values=False)
    known = {"caller", "model", "provider", "status", "session", "route", "since", "until"}
    known |= {"q", "before", "limit"}
    for name in params:
        if name not in known:
            raise InvalidRequest(f"unknown filter {name!r} (known: {', '.join(sorted(known))})")
    one = {k: v[-1].strip() for k, v in params.items()}
    fields: dict[str, Any] = {
        k: one[k][:200]
        for k in ("caller", "model", "provider", "status", "session", "route")
        if k in one
    }
    status = fields.get("status", "").lower()
    if status and not (
        status in ("error", "ok")
        or (status.isdigit() and len(status) == 3)
        or (len(status) == 3 and status[0] in "12345" and status[1:] == "xx")
    ):
        raise InvalidRequest("status: a code (429), a class (5xx), error or ok")
    for name in ("since", "until"):
        if name in one:
            fields[name] = _when(name, one[name], now)
    if "before" in one:
        fields["before"] = _number("before", one["before"])
    if "limit" in one:
        limit = _number("limit", one["limit"])
        if not limit.is_integer() or not 1 <= limit <= 500:
            raise InvalidRequest("limit: a whole number from 1 to 500")
        fields["limit"] = int(limit)
    if "q" in one:
        fields["text"] = one["q"][:500]
    return LogQuery(**fields)


def _when(name: str, raw: str, now: float) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return parse_since(raw, now, name)
    except UsageError as exc:
        raise InvalidRequest(str(exc)) from None


def _number(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: expected a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidRequest(f"{name}: expected a number")
    return value
