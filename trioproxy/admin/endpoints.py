"""/health and /livez."""

from __future__ import annotations

import orjson

from trioproxy.errors import MethodNotAllowed, NotFound, ProxyError, error_response
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.pipeline.access import check_admin
from trioproxy.pipeline.binding import is_loopback
from trioproxy.proto.events import RequestHead, ResponseHead
from trioproxy.state import ServerState

RESERVED_EXACT: frozenset[bytes] = frozenset({b"/health", b"/livez", b"/metrics", b"/metrics.json"})
ADMIN_EXACT: frozenset[bytes] = frozenset(
    {b"/metrics", b"/metrics.json"}
)  # admin rules, like /admin/*
RESERVED_PREFIXES: tuple[bytes, ...] = (b"/admin/",)


def is_own(head: RequestHead) -> bool:
    path = head.path
    return path in RESERVED_EXACT or path.startswith(RESERVED_PREFIXES)


def _json(status: int, doc: object) -> tuple[ResponseHead, bytes]:
    body = orjson.dumps(doc)
    return (
        ResponseHead(
            status,
            [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        ),
        body,
    )


def route(
    head: RequestHead, state: ServerState, *, admin_listener: bool = False
) -> tuple[ResponseHead, bytes]:
    """Answer an own endpoint: a pure function of the head and the state.
    /health and /livez are open to all; /admin/* needs the admin token, and
    lives only on the admin listener when one is configured."""
    path = head.path
    cfg = state.config
    if path in ADMIN_EXACT or path.startswith(RESERVED_PREFIXES):
        if cfg.admin_listen is not None and not admin_listener:
            raise NotFound(
                "admin endpoints are served on the admin listener (admin.listen), not here"
            )
        host = cfg.admin_listen.host if (admin_listener and cfg.admin_listen) else cfg.listen.host
        check_admin(head, cfg.auth, loopback_only=is_loopback(host))
    if path not in RESERVED_EXACT:
        raise NotFound(f"{path.decode('latin-1')} is reserved by trioproxy and does not exist")
    if head.method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed(f"{path.decode('latin-1')} accepts GET and HEAD")
    if path == b"/metrics":
        body = state.metrics.prometheus(_gauges(state))
        return ResponseHead(
            200,
            [
                (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        ), body
    if path == b"/metrics.json":
        return _json(
            200,
            {
                **state.metrics.snapshot(),
                "in_flight": state.in_flight,
                "connections": dict(state.connections),
                "draining": state.draining,
                "uptime_s": round(state.uptime_s, 3),
            },
        )
    if path == b"/health":
        if state.draining:
            return _json(503, {"status": "draining"})
        return _json(200, {"status": "ok"})
    return _json(
        200,
        {
            "status": "draining" if state.draining else "ok",
            "in_flight": state.in_flight,
            "draining": state.draining,
            "uptime_s": round(state.uptime_s, 3),
            "connections": state.total_connections,
        },
    )


async def serve_own(
    ex: ClientExchange, state: ServerState, *, admin_listener: bool = False
) -> None:
    try:
        head, body = route(ex.head, state, admin_listener=admin_listener)
    except ProxyError as exc:
        head, body = error_response(exc, ex.request_id)
    await respond(ex, head, body)


class AdminApp:
    """The application of the separate admin listener: own endpoints only,
    nothing is ever forwarded from it."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def __call__(self, ex: ClientExchange) -> None:
        if is_own(ex.head):
            await serve_own(ex, self.state, admin_listener=True)
            return
        exc = NotFound("the admin listener serves only /health, /livez and /admin/*")
        head, body = error_response(exc, ex.request_id)
        await respond(ex, head, body)


def _gauges(state: ServerState) -> dict[str, tuple[str, list[tuple[dict[str, str], float]]]]:
    return {
        "trioproxy_requests_in_flight": ("Requests being handled now", [({}, state.in_flight)]),
        "trioproxy_client_connections": (
            "Open client connections by protocol",
            [({"protocol": p}, n) for p, n in sorted(state.connections.items())],
        ),
        "trioproxy_draining": ("1 while draining", [({}, 1 if state.draining else 0)]),
        "trioproxy_uptime_seconds": ("Seconds since start", [({}, round(state.uptime_s, 3))]),
    }
