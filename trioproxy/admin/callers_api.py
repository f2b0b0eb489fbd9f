"""/admin/callers: list, add, change, rotate and revoke callers while the
proxy runs (admin token required, like every /admin/* path).

- ``GET /admin/callers``: every caller with its limits and its use of them;
- ``POST /admin/callers`` ``{"name": ..., "rpm": ..., ...}``: 201 with the
  new secret, shown this once;
- ``PATCH /admin/callers/NAME`` ``{"rpm": 20, "models": null, ...}`` (null
  removes a limit; ``{"rotate": true}`` replaces its secrets: the new one
  is in the answer);
- ``DELETE /admin/callers/NAME``.

Changes go to the callers file (callers/manage.py) and this worker applies
it before answering; the other workers see the file change within a
second. Callers defined in the TOML file or ``auth.secrets`` are listed but
changed only there.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson
import trio

from trioproxy.admin.snapshot import callers_view
from trioproxy.audit.changes import Change, redacted
from trioproxy.callers import manage
from trioproxy.errors import (
    ClientTimeout,
    Conflict,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ProxyError,
    RequestTooLarge,
)
from trioproxy.inbound.exchange import ClientExchange
from trioproxy.state import ServerState

PATH = b"/admin/callers"
BODY_MAX = 64 * 1024  # bytes; a caller's policy is small


def is_callers_path(path: bytes) -> bool:
    return path == PATH or path.startswith(PATH + b"/")


async def read_json(ex: ClientExchange, state: ServerState, limit: int) -> Any:
    """A small JSON request body, within the client body idle timeout."""
    parts: list[bytes] = []
    size = 0
    with trio.move_on_after(state.config.timeouts.client_body_idle) as scope:
        while (chunk := await ex.receive_body()) is not None:
            size += len(chunk.data)
            if size > limit:
                raise RequestTooLarge(
                    f"{ex.head.path.decode('latin-1')} takes at most {limit} bytes"
                )
            parts.append(chunk.data)
            ex.ack(chunk.flow_controlled_length)
    if scope.cancelled_caught:
        raise ClientTimeout("the request body did not arrive in time")
    try:
        return orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError:
        raise InvalidRequest("the request body is not JSON") from None


async def handle(
    ex: ClientExchange, state: ServerState, who: str = ""
) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer); access was checked by the caller (``who``:
    the admin token's name, for the audit trail)."""
    head = ex.head
    method, path = head.method, head.path
    name = unquote(path[len(PATH) + 1 :].decode("latin-1")) if path != PATH else ""
    if not name:
        if method in (b"GET", b"HEAD"):
            return 200, {"callers_file": state.callers.path or None, "callers": callers_view(state)}
        if method != b"POST":
            raise MethodNotAllowed(
                "/admin/callers accepts GET and POST; /admin/callers/NAME PATCH and DELETE"
            )
    elif method not in (b"PATCH", b"DELETE", b"GET"):
        raise MethodNotAllowed("/admin/callers/NAME accepts GET, PATCH and DELETE")
    if method == b"GET":
        return 200, {"caller": _row(state, name)}
    path_file = state.callers.path
    if not path_file:
        raise Conflict(
            "callers are managed in the callers file, and auth.callers_file "
            "(TRIOPROXY_AUTH_CALLERS_FILE) is not set on this proxy"
        )
    doc = await read_json(ex, state, BODY_MAX) if method != b"DELETE" else {}
    if not isinstance(doc, dict):
        raise InvalidRequest("expected a JSON object of caller settings")
    secret: str | None = None
    subject = doc.get("name") if method == b"POST" else name
    before = await trio.to_thread.run_sync(manage.entry_of, path_file, str(subject))
    action = "caller.update"
    try:
        if method == b"POST":
            fields = dict(doc)
            new_name = fields.pop("name", None)
            if not isinstance(new_name, str):
                raise InvalidRequest('expected {"name": "...", ...}')
            if new_name in state.callers.by_name and state.callers.source(new_name) != "file":
                raise Conflict(f"a caller named {new_name!r} is defined in the configuration")
            secret = await trio.to_thread.run_sync(manage.add, path_file, new_name, fields)
            name, action = new_name, "caller.add"
        elif method == b"DELETE":
            await trio.to_thread.run_sync(manage.revoke, path_file, name)
            action = "caller.revoke"
        else:
            fields = dict(doc)
            if fields.pop("rotate", False) is True:
                secret = await trio.to_thread.run_sync(manage.rotate, path_file, name)
                action = "caller.rotate"
            if fields:
                await trio.to_thread.run_sync(manage.update, path_file, name, fields)
    except manage.CallerChangeError as exc:
        raise _error(exc) from None
    after = await trio.to_thread.run_sync(manage.entry_of, path_file, name)
    state.audit.add([Change(who, action, name, redacted(before), redacted(after), "api")])
    await trio.to_thread.run_sync(state.callers.refresh)
    if method == b"DELETE":
        return 200, {"revoked": name}
    answer: dict[str, Any] = {"caller": _row(state, name)}
    if secret is not None:
        answer["secret"] = secret  # shown this once; only its SHA-256 is kept
    return (201 if method == b"POST" else 200), answer


def _row(state: ServerState, name: str) -> dict[str, Any]:
    for row in callers_view(state):
        if row["name"] == name:
            return row
    raise NotFound(f"no caller named {name!r}")


def _error(exc: manage.CallerChangeError) -> ProxyError:
    if exc.status == 404:
        return NotFound(str(exc))
    if exc.status == 409:
        return Conflict(str(exc))
    if exc.status >= 500:
        return ProxyError(str(exc))
    return InvalidRequest(str(exc))
