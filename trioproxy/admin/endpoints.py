"""The proxy's own endpoints: /health, /livez, /metrics, /metrics.json,
/metrics/stream, /dashboard, /openapi.json and /admin/* (providers, routing
switch, callers, the conversation log's viewer and its API)."""

from __future__ import annotations

from typing import Any

import orjson

from trioproxy.accounting.metrics import Metrics
from trioproxy.admin import audit_api
from trioproxy.admin import history_api as history
from trioproxy.admin import viewer_api as viewer
from trioproxy.admin.callers_api import handle as handle_callers
from trioproxy.admin.callers_api import is_callers_path, read_json
from trioproxy.admin.pages import dashboard_html, openapi_json
from trioproxy.admin.snapshot import current_view, gauges, snapshot
from trioproxy.admin.stream import serve_metrics_stream
from trioproxy.audit.changes import Change
from trioproxy.config import is_loopback
from trioproxy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ProxyError,
    error_response,
)
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.proto.events import RequestHead, ResponseHead
from trioproxy.rules.access import check_admin
from trioproxy.state import ServerState

RESERVED_EXACT: frozenset[bytes] = frozenset(
    {
        b"/health",
        b"/livez",
        b"/metrics",
        b"/metrics.json",
        b"/metrics/stream",
        b"/dashboard",
        b"/openapi.json",
        b"/admin/providers",
        b"/admin/route",
        b"/admin/callers",
        b"/admin/requests",
        b"/admin/api/requests",
        b"/admin/api/history",
        b"/admin/api/usage",
        b"/admin/api/audit",
    }
)
ROUTE_BODY_MAX = 16 * 1024  # bytes; {"mode": ..., "provider": ...} is tiny
# Admin rules, like /admin/*. /openapi.json holds no data: open, like /health.
ADMIN_EXACT: frozenset[bytes] = frozenset(
    {b"/metrics", b"/metrics.json", b"/metrics/stream", b"/dashboard"}
)
# Opened by browsers: a 401 there asks for the token (as a Basic password).
BROWSER_PATHS: frozenset[bytes] = frozenset({b"/dashboard", b"/metrics/stream", viewer.PAGE})
RESERVED_PREFIXES: tuple[bytes, ...] = (b"/admin/",)
# Answered from the whole server's view: every worker's counts merged.
VIEWED: frozenset[bytes] = frozenset(
    {b"/livez", b"/metrics", b"/metrics.json", b"/admin/providers"}
)


def is_own(head: RequestHead) -> bool:
    path = head.path
    return path in RESERVED_EXACT or path.startswith(RESERVED_PREFIXES)


def _answer(status: int, body: bytes, content_type: bytes) -> tuple[ResponseHead, bytes]:
    return (
        ResponseHead(
            status,
            [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        ),
        body,
    )


def _json(status: int, doc: object) -> tuple[ResponseHead, bytes]:
    return _answer(status, orjson.dumps(doc), b"application/json")


def route(
    head: RequestHead,
    state: ServerState,
    *,
    view: dict[str, Any] | None = None,
    admin_listener: bool = False,
) -> tuple[ResponseHead, bytes]:
    """Answer an own endpoint: a pure function of the head, the state and
    ``view``, the whole server's snapshot (every worker's merged) for the
    paths in VIEWED. /health and /livez are open to all; /admin/* needs the
    admin token, and lives only on the admin listener when one is
    configured."""
    path = head.path
    _check_access(head, state, admin_listener)
    if path not in RESERVED_EXACT:
        raise NotFound(f"{path.decode('latin-1')} is reserved by trioproxy and does not exist")
    if path == b"/admin/route":
        raise MethodNotAllowed("/admin/route accepts POST")
    if path == b"/metrics/stream":
        raise MethodNotAllowed("/metrics/stream accepts GET")
    if head.method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed(f"{path.decode('latin-1')} accepts GET and HEAD")
    if path in VIEWED:
        view = view if view is not None else snapshot(state)
    if path == b"/admin/providers":
        if view is None or view["routing"] is None:
            raise NotFound("this server does not route to providers")
        return _json(200, view["routing"])
    if path == b"/metrics":
        assert view is not None
        body = Metrics.from_snapshot(view).prometheus(gauges(view))
        return _answer(200, body, b"text/plain; version=0.0.4; charset=utf-8")
    if path == b"/metrics.json":
        return _json(200, view)
    if path == b"/dashboard":
        return _answer(200, dashboard_html(), b"text/html; charset=utf-8")
    if path == b"/openapi.json":
        return _answer(200, openapi_json(), b"application/json")
    if path == b"/health":
        if state.draining and not state.listening.retiring:
            return _json(503, {"status": "draining"})
        return _json(200, {"status": "ok"})
    assert view is not None  # /livez
    return _json(
        200,
        {
            "status": "draining" if view["draining"] else "ok",
            "in_flight": view["in_flight"],
            "draining": view["draining"],
            "uptime_s": view["uptime_s"],
            "connections": sum(view["connections"].values()),
            "workers": view.get("workers", 1),
            "state_store": _store_state(view.get("routing")),
        },
    )


def _store_state(routing: dict[str, Any] | None) -> str:
    store = None if routing is None else routing.get("state_store")
    if store is None:
        return "none"
    return "ok" if store["up"] else "unreachable"


def _check_access(head: RequestHead, state: ServerState, admin_listener: bool) -> str:
    """Who is asking (the admin token's name; see check_admin), else the
    proxy's own refusal."""
    path = head.path
    cfg = state.config
    if not (path in ADMIN_EXACT or path.startswith(RESERVED_PREFIXES)):
        return ""
    if cfg.admin_listen is not None and not admin_listener:
        raise NotFound("admin endpoints are served on the admin listener (admin.listen), not here")
    host = cfg.admin_listen.host if (admin_listener and cfg.admin_listen) else cfg.listen.host
    return check_admin(head, cfg.auth, loopback_only=is_loopback(host))


async def serve_own(
    ex: ClientExchange, state: ServerState, *, admin_listener: bool = False
) -> None:
    path, method = ex.head.path, ex.head.method
    try:
        if path == b"/admin/route" and method == b"POST":
            head, body = await _switch_route(ex, state, admin_listener)
        elif is_callers_path(path):
            who = _check_access(ex.head, state, admin_listener)
            head, body = _json(*await handle_callers(ex, state, who))
        elif path == audit_api.PATH:
            _check_access(ex.head, state, admin_listener)
            head, body = _json(*await audit_api.handle(ex, state))
        elif history.is_history_path(path):
            _check_access(ex.head, state, admin_listener)
            head, body = _json(*await history.handle(ex, state))
        elif viewer.is_viewer_path(path):
            _check_access(ex.head, state, admin_listener)
            if path == viewer.PAGE:
                if method not in (b"GET", b"HEAD"):
                    raise MethodNotAllowed("/admin/requests accepts GET and HEAD")
                head, body = _answer(200, viewer.viewer_html(), b"text/html; charset=utf-8")
            else:
                head, body = _json(*await viewer.handle(ex, state))
        elif path == b"/metrics/stream" and method == b"GET":
            _check_access(ex.head, state, admin_listener)
            await serve_metrics_stream(ex, state)
            return
        else:
            view = None
            if path in VIEWED and method in (b"GET", b"HEAD"):
                _check_access(ex.head, state, admin_listener)  # before asking every worker
                view = await current_view(state)
            head, body = route(ex.head, state, view=view, admin_listener=admin_listener)
    except ProxyError as exc:
        head, body = error_response(exc, ex.request_id)
        if isinstance(exc, AuthenticationFailed) and path in BROWSER_PATHS:
            head.headers.append((b"www-authenticate", b'Basic realm="trioproxy admin"'))
    await respond(ex, head, body)


async def _switch_route(
    ex: ClientExchange, state: ServerState, admin_listener: bool
) -> tuple[ResponseHead, bytes]:
    """POST /admin/route {"mode": "failover"} or {"mode": "single",
    "provider": NAME}: applied at once, persisted before the answer."""
    who = _check_access(ex.head, state, admin_listener)
    router = state.router
    if router is None:
        raise NotFound("this server does not route to providers")
    before = {"mode": router.mode.mode, "provider": router.mode.provider}
    try:
        doc = await read_json(ex, state, ROUTE_BODY_MAX)
    except InvalidRequest:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("mode"), str):
        raise InvalidRequest(
            'expected JSON {"mode": "failover"} or {"mode": "single", "provider": "NAME"}'
        )
    provider = doc.get("provider")
    try:
        router.switch(doc["mode"], provider if isinstance(provider, str) else None)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    await router.save_mode()
    if state.peers is not None:
        await state.peers.tell_others(
            {"route": {"mode": router.mode.mode, "provider": router.mode.provider}}
        )
    after = {"mode": router.mode.mode, "provider": router.mode.provider}
    state.audit.add([Change(who, "route.switch", "", before, after, "api")])
    return _json(200, after)


class AdminApp:
    """The application of the separate admin listener: own endpoints only,
    nothing is ever forwarded from it."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def __call__(self, ex: ClientExchange) -> None:
        if is_own(ex.head):
            await serve_own(ex, self.state, admin_listener=True)
            return
        exc = NotFound(
            "the admin listener serves only /health, /livez, /metrics*, /dashboard, /openapi.json and /admin/*"
        )
        head, body = error_response(exc, ex.request_id)
        await respond(ex, head, body)
