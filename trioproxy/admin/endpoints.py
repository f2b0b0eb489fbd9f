"""The proxy's own endpoints: /health, /livez, /metrics, /metrics.json and
/admin/* (providers, routing switch)."""

from __future__ import annotations

import orjson
import trio

from trioproxy.errors import (
    ClientTimeout,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ProxyError,
    RequestTooLarge,
    error_response,
)
from trioproxy.inbound.exchange import ClientExchange, respond
from trioproxy.pipeline.access import check_admin
from trioproxy.pipeline.binding import is_loopback
from trioproxy.proto.events import RequestHead, ResponseHead
from trioproxy.state import ServerState

RESERVED_EXACT: frozenset[bytes] = frozenset(
    {b"/health", b"/livez", b"/metrics", b"/metrics.json", b"/admin/providers", b"/admin/route"}
)
ROUTE_BODY_MAX = 16 * 1024  # bytes; {"mode": ..., "provider": ...} is tiny
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
    _check_access(head, state, admin_listener)
    if path not in RESERVED_EXACT:
        raise NotFound(f"{path.decode('latin-1')} is reserved by trioproxy and does not exist")
    if path == b"/admin/route":
        raise MethodNotAllowed("/admin/route accepts POST")
    if head.method not in (b"GET", b"HEAD"):
        raise MethodNotAllowed(f"{path.decode('latin-1')} accepts GET and HEAD")
    if path == b"/admin/providers":
        if state.router is None:
            raise NotFound("this server does not route to providers")
        return _json(200, state.router.snapshot())
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
                "routing": None if state.router is None else state.router.snapshot(),
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


def _check_access(head: RequestHead, state: ServerState, admin_listener: bool) -> None:
    path = head.path
    cfg = state.config
    if path in ADMIN_EXACT or path.startswith(RESERVED_PREFIXES):
        if cfg.admin_listen is not None and not admin_listener:
            raise NotFound(
                "admin endpoints are served on the admin listener (admin.listen), not here"
            )
        host = cfg.admin_listen.host if (admin_listener and cfg.admin_listen) else cfg.listen.host
        check_admin(head, cfg.auth, loopback_only=is_loopback(host))


async def serve_own(
    ex: ClientExchange, state: ServerState, *, admin_listener: bool = False
) -> None:
    try:
        if ex.head.path == b"/admin/route" and ex.head.method == b"POST":
            head, body = await _switch_route(ex, state, admin_listener)
        else:
            head, body = route(ex.head, state, admin_listener=admin_listener)
    except ProxyError as exc:
        head, body = error_response(exc, ex.request_id)
    await respond(ex, head, body)


async def _switch_route(
    ex: ClientExchange, state: ServerState, admin_listener: bool
) -> tuple[ResponseHead, bytes]:
    """POST /admin/route {"mode": "failover"} or {"mode": "single",
    "provider": NAME}: applied at once, persisted before the answer."""
    _check_access(ex.head, state, admin_listener)
    router = state.router
    if router is None:
        raise NotFound("this server does not route to providers")
    parts: list[bytes] = []
    size = 0
    with trio.move_on_after(state.config.timeouts.client_body_idle) as scope:
        while (chunk := await ex.receive_body()) is not None:
            size += len(chunk.data)
            if size > ROUTE_BODY_MAX:
                raise RequestTooLarge(f"/admin/route takes at most {ROUTE_BODY_MAX} bytes")
            parts.append(chunk.data)
            ex.ack(chunk.flow_controlled_length)
    if scope.cancelled_caught:
        raise ClientTimeout("the request body did not arrive in time")
    try:
        doc = orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError:
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
    return _json(200, {"mode": router.mode.mode, "provider": router.mode.provider})


class AdminApp:
    """The application of the separate admin listener: own endpoints only,
    nothing is ever forwarded from it."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def __call__(self, ex: ClientExchange) -> None:
        if is_own(ex.head):
            await serve_own(ex, self.state, admin_listener=True)
            return
        exc = NotFound("the admin listener serves only /health, /livez, /metrics and /admin/*")
        head, body = error_response(exc, ex.request_id)
        await respond(ex, head, body)


Family = tuple[str, str, list[tuple[dict[str, str], float]]]


def _gauges(state: ServerState) -> dict[str, Family]:
    families: dict[str, Family] = {
        "trioproxy_requests_in_flight": (
            "gauge",
            "Requests being handled now",
            [({}, state.in_flight)],
        ),
        "trioproxy_client_connections": (
            "gauge",
            "Open client connections by protocol",
            [({"protocol": p}, n) for p, n in sorted(state.connections.items())],
        ),
        "trioproxy_draining": ("gauge", "1 while draining", [({}, 1 if state.draining else 0)]),
        "trioproxy_uptime_seconds": (
            "gauge",
            "Seconds since start",
            [({}, round(state.uptime_s, 3))],
        ),
    }
    if state.router is not None:
        families.update(_provider_families(state.router.snapshot()))
    return families


_BREAKER = {"closed": 0, "half-open": 1, "open": 2}


def _provider_families(snap: dict[str, object]) -> dict[str, Family]:
    rows = snap["providers"]
    assert isinstance(rows, list)

    def each(fn: object) -> list[tuple[dict[str, str], float]]:
        assert callable(fn)
        return [({"provider": r["name"]}, float(fn(r))) for r in rows]

    return {
        "trioproxy_provider_available": (
            "gauge",
            "1 when the provider can be tried now (not open, cooling down or over quota)",
            each(lambda r: r["state"] in ("healthy", "degraded", "half-open")),
        ),
        "trioproxy_provider_breaker_state": (
            "gauge",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            each(lambda r: _BREAKER[r["breaker"]]),
        ),
        "trioproxy_provider_consecutive_failures": (
            "gauge",
            "Consecutive failed attempts",
            each(lambda r: r["consecutive_failures"]),
        ),
        "trioproxy_provider_in_flight": (
            "gauge",
            "Requests on the provider now",
            each(lambda r: r["in_flight"]),
        ),
        "trioproxy_provider_quota_used_tokens": (
            "gauge",
            "Tokens counted in the current quota window (providers with a quota)",
            [({"provider": r["name"]}, r["quota"]["used"]) for r in rows if r["quota"]],
        ),
        "trioproxy_provider_quota_limit_tokens": (
            "gauge",
            "Token budget of the quota window",
            [({"provider": r["name"]}, r["quota"]["limit"]) for r in rows if r["quota"]],
        ),
        "trioproxy_provider_retries_total": (
            "counter",
            "Attempts retried on the same provider (503, 529, connection errors)",
            each(lambda r: r["retries"]),
        ),
        "trioproxy_provider_failovers_total": (
            "counter",
            "Requests that failed over away from the provider",
            each(lambda r: r["failovers"]),
        ),
    }
