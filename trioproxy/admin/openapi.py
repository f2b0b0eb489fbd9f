"""GET /openapi.json: the proxy's own endpoints, described for humans and
tools (OpenAPI 3.1, whose schemas are JSON Schema 2020-12). The tests
validate live responses against these schemas, so a field added to a
snapshot without a line here fails them (``additionalProperties: false``
where the shape is ours)."""

from __future__ import annotations

from typing import Any

from trioproxy import __version__

Schema = dict[str, Any]


def _obj(
    props: dict[str, Schema], *, closed: bool = True, optional: tuple[str, ...] = ()
) -> Schema:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": not closed,
    }


INT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number"}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
COUNTS: Schema = {"type": "object", "additionalProperties": INT}
NULLABLE_NUM: Schema = {"type": ["number", "null"]}

HISTOGRAM = _obj(
    {
        "count": INT,
        "sum": NUM,
        "p50_le": NULLABLE_NUM,
        "p99_le": NULLABLE_NUM,
        "buckets": {
            "type": "array",
            "description": "[upper bound in seconds, cumulative count]",
            "items": {"type": "array", "prefixItems": [NUM, INT], "minItems": 2, "maxItems": 2},
        },
    }
)

PROVIDER = _obj(
    {
        "name": STR,
        "base_url": STR,
        "family": STR,
        "priority": {"type": "integer"},
        "enabled": BOOL,
        "state": {
            "enum": [
                "healthy",
                "degraded",
                "half-open",
                "open",
                "cooldown",
                "over_quota",
                "unavailable",
            ]
        },
        "breaker": {"enum": ["closed", "half-open", "open"]},
        "cooldown_until": {**NULLABLE_NUM, "description": "Unix time"},
        "open_until": {**NULLABLE_NUM, "description": "Unix time"},
        "consecutive_failures": {
            **INT,
            "description": "consecutive failed requests (each counted once, retries included)",
        },
        "window_requests": {**INT, "description": "requests in the breaker's sliding window"},
        "window_failures": {
            **INT,
            "description": "of those, failed (5xx, 529, connection, timeout)",
        },
        "credentials_cooling": {
            **INT,
            "description": "credentials (or the whole provider) in cooldown after a 429",
        },
        "in_flight": INT,
        "latency_avg_s": NULLABLE_NUM,
        "last_error": STR,
        "quota": {
            "oneOf": [
                {"type": "null"},
                _obj(
                    {
                        "used": INT,
                        "limit": INT,
                        "threshold": NUM,
                        "over": BOOL,
                        "reset_at": NUM,
                    }
                ),
            ]
        },
        "retries": INT,
        "failovers": INT,
    }
)

ROUTING = _obj(
    {
        "mode": {"enum": ["failover", "single"]},
        "provider": {"type": ["string", "null"]},
        "providers": {"type": "array", "items": PROVIDER},
        "state_store": {
            "oneOf": [{"type": "null"}, _obj({"up": BOOL, "name": STR})],
            "description": "where routing state is shared, and whether it answers",
        },
    }
)

NULLABLE_INT: Schema = {"type": ["integer", "null"], "minimum": 1}
CALLER = _obj(
    {
        "name": STR,
        "source": {
            "enum": ["file", "config", "auth.secrets"],
            "description": "where it is defined: only the callers file's are changed through /admin/callers",
        },
        "models": {"type": "array", "items": STR, "description": "allowlist (globs); empty: all"},
        "rpm": NULLABLE_INT,
        "tpm": NULLABLE_INT,
        "max_concurrent": NULLABLE_INT,
        "budget": {
            "oneOf": [
                {"type": "null"},
                _obj(
                    {
                        "window": {"enum": ["daily", "weekly", "monthly"]},
                        "usd": NULLABLE_NUM,
                        "tokens": {"type": ["integer", "null"]},
                    }
                ),
            ]
        },
        "expires": {**NULLABLE_NUM, "description": "Unix time"},
        "upstream_credential": {"enum": ["provider", "own"]},
        "secrets": {**INT, "description": "how many secrets it has (never the secrets)"},
        "requests_last_minute": INT,
        "tokens_last_minute": INT,
        "in_flight": INT,
        "spend_usd": {**NUM, "description": "in the budget window (monthly without a budget)"},
        "spend_tokens": INT,
        "budget_window": {"enum": ["daily", "weekly", "monthly"]},
        "budget_remaining": {
            **NULLABLE_NUM,
            "description": "in the budget's unit (USD or tokens)",
        },
    }
)
CALLER_SETTINGS = _obj(
    {
        "name": STR,
        "models": {"type": ["array", "null"], "items": STR},
        "rpm": NULLABLE_INT,
        "tpm": NULLABLE_INT,
        "max_concurrent": NULLABLE_INT,
        "budget": {"type": ["object", "null"]},
        "budget_usd": NULLABLE_NUM,
        "budget_tokens": NULLABLE_INT,
        "budget_window": {"enum": ["daily", "weekly", "monthly", None]},
        "expires": {"type": ["string", "null"], "description": "RFC 3339"},
        "upstream_credential": {"enum": ["provider", "own", None]},
        "rotate": {**BOOL, "description": "PATCH only: a new secret replaces the old ones"},
    },
    optional=(
        "name",
        "models",
        "rpm",
        "tpm",
        "max_concurrent",
        "budget",
        "budget_usd",
        "budget_tokens",
        "budget_window",
        "expires",
        "upstream_credential",
        "rotate",
    ),
)
CALLERS_LIST = _obj(
    {"callers_file": {"type": ["string", "null"]}, "callers": {"type": "array", "items": CALLER}}
)
CALLER_ANSWER = _obj(
    {"caller": CALLER, "secret": {**STR, "description": "a new secret: shown this once"}},
    optional=("secret",),
)

SNAPSHOT = _obj(
    {
        "time": {**NUM, "description": "Unix time of the snapshot"},
        "pid": {**INT, "description": "the worker process that took it (merged: the one asked)"},
        "requests": {
            "type": "array",
            "items": _obj(
                {
                    "code": STR,
                    "caller": STR,
                    "model": STR,
                    "stream": BOOL,
                    "provider": STR,
                    "origin": {
                        "enum": ["upstream", "proxy"],
                        "description": "who answered: the provider, or the proxy itself",
                    },
                    "count": INT,
                }
            ),
        },
        "tokens": {
            "type": "array",
            "items": _obj(
                {
                    "class": {
                        "enum": ["input", "cache_creation_input", "cache_read_input", "output"]
                    },
                    "caller": STR,
                    "model": STR,
                    "provider": STR,
                    "count": INT,
                }
            ),
        },
        "bytes": _obj({"in": INT, "out": INT}),
        "stream_errors": INT,
        "stream_pings": {**INT, "description": "keep-alive pings written to silent streams"},
        "demoted": {**INT, "description": "non-streaming requests sent upstream as streams"},
        "client_disconnects": INT,
        "retries": INT,
        "scrub_hits": COUNTS,
        "scrub_skipped": COUNTS,
        "caller_limited": {
            "type": "array",
            "items": _obj({"caller": STR, "reason": STR, "count": INT}),
            "description": "requests refused by a caller's own limit",
        },
        "caller_spend_usd": {
            "type": "object",
            "additionalProperties": NUM,
            "description": "estimated spend by caller",
        },
        "callers": {"type": "array", "items": CALLER},
        "routes": {**COUNTS, "description": "requests that matched each [[routes]] rule"},
        "process": _obj(
            {
                "cpu_seconds": NUM,
                "resident_memory_bytes": INT,
                "open_fds": INT,
                "max_fds": INT,
                "start_time_seconds": NUM,
            }
        ),
        "duration_s": HISTOGRAM,
        "time_to_headers_s": HISTOGRAM,
        "time_to_first_token_s": {
            "type": "array",
            "items": _obj({"provider": STR, "model": STR, "histogram": HISTOGRAM}),
            "description": "until the first byte of a successful Messages answer reached the client",
        },
        "in_flight": INT,
        "active": {**COUNTS, "description": "requests being handled, by client protocol"},
        "watchers": {**INT, "description": "of those, /metrics/stream readers"},
        "connections": {**COUNTS, "description": "client connections by protocol"},
        "pools": {
            "type": "object",
            "additionalProperties": _obj(
                {"h1_idle": INT, "h1_active": INT, "h2": INT, "opening": INT, "h2_streams": INT}
            ),
        },
        "draining": BOOL,
        "uptime_s": NUM,
        "routing": {"oneOf": [{"type": "null"}, ROUTING]},
        "workers": {**INT, "description": "worker processes merged into this view"},
        "by_worker": {
            "type": "array",
            "items": _obj({"pid": INT, "requests": INT, "in_flight": INT, "draining": BOOL}),
            "description": "per live worker: requests it counted, in flight now, draining",
        },
    },
    optional=("workers", "by_worker"),
)

ERROR = _obj(
    {
        "type": {"const": "error"},
        "error": _obj({"type": STR, "message": STR}),
        "request_id": STR,
    },
    optional=("request_id",),
)

HEALTH = _obj({"status": {"enum": ["ok", "draining"]}})
LIVEZ = _obj(
    {
        "status": {"enum": ["ok", "draining"]},
        "in_flight": INT,
        "draining": BOOL,
        "uptime_s": NUM,
        "connections": INT,
        "workers": {**INT, "description": "worker processes counted"},
        "state_store": {
            "enum": ["ok", "unreachable", "none"],
            "description": "the shared state store: answering, not (serving on the local view), or none",
        },
    }
)
ROUTE_REQUEST = _obj(
    {"mode": {"enum": ["failover", "single"]}, "provider": STR}, optional=("provider",)
)
ROUTE_ANSWER = _obj(
    {"mode": {"enum": ["failover", "single"]}, "provider": {"type": ["string", "null"]}}
)


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "bad request",
        401: "admin token missing or wrong",
        403: "admin endpoints closed on this listener",
        404: "not on this listener",
        405: "method not allowed",
        409: "conflict",
    }
    return {
        str(c): {"$ref": f"#/components/responses/E{c}", "description": words[c]} for c in codes
    }


ADMIN: tuple[dict[str, list[str]], ...] = ({"adminToken": []}, {"adminBasic": []})


def _op(summary: str, responses: dict[str, Any], *, admin: bool, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if admin:
        op["security"] = list(ADMIN)
        op["responses"].update(_errors(401, 403, 404))
    return op


def _body(schema: Schema) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": STR}}}


def spec() -> dict[str, Any]:
    """The document (a fresh dict each call; pages.py keeps its encoding)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trioproxy own endpoints",
            "version": __version__,
            "description": (
                "Everything else is forwarded to the provider. Admin endpoints need the "
                "admin token whenever one is configured, and always on a listener reachable "
                "beyond loopback."
            ),
        },
        "paths": {
            "/health": {
                "get": _op(
                    "Readiness: 503 while draining",
                    {
                        "200": _json(HEALTH, "serving"),
                        "503": _json(HEALTH, "draining: take it out of rotation"),
                    },
                    admin=False,
                )
            },
            "/livez": {
                "get": _op("Liveness, with counts", {"200": _json(LIVEZ, "alive")}, admin=False)
            },
            "/metrics": {
                "get": _op(
                    "Prometheus text exposition 0.0.4",
                    {"200": _text("counters, histograms and gauges")},
                    admin=True,
                )
            },
            "/metrics.json": {
                "get": _op("The snapshot, as JSON", {"200": _json(SNAPSHOT, "now")}, admin=True)
            },
            "/metrics/stream": {
                "get": _op(
                    "The snapshot once a second, as server-sent events (event: snapshot)",
                    {
                        "200": {
                            "description": "each event's data is a /metrics.json snapshot",
                            "content": {"text/event-stream": {"schema": STR}},
                        }
                    },
                    admin=True,
                )
            },
            "/dashboard": {
                "get": _op(
                    "The live dashboard (one self-contained page fed by /metrics/stream)",
                    {"200": {"description": "HTML", "content": {"text/html": {"schema": STR}}}},
                    admin=True,
                )
            },
            "/openapi.json": {
                "get": _op(
                    "This document",
                    {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                    admin=False,
                )
            },
            "/admin/providers": {
                "get": _op(
                    "Providers, their health and quota, and the routing mode",
                    {"200": _json(ROUTING, "now")},
                    admin=True,
                )
            },
            "/admin/route": {
                "post": _op(
                    "Switch routing: failover, or every request to one provider (persisted)",
                    {"200": _json(ROUTE_ANSWER, "applied"), **_errors(400, 405)},
                    admin=True,
                    requestBody=_body(ROUTE_REQUEST),
                )
            },
            "/admin/callers": {
                "get": _op(
                    "Callers, their limits and their use of them now",
                    {"200": _json(CALLERS_LIST, "now")},
                    admin=True,
                ),
                "post": _op(
                    "Add a caller to the callers file (applied at once); the answer holds its secret, shown this once",
                    {"201": _json(CALLER_ANSWER, "added"), **_errors(400, 405, 409)},
                    admin=True,
                    requestBody=_body(CALLER_SETTINGS),
                ),
            },
            "/admin/callers/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": STR}],
                "get": _op("One caller", {"200": _json(CALLER_ANSWER, "now")}, admin=True),
                "patch": _op(
                    "Change a caller's limits (null removes one), or rotate its secret",
                    {"200": _json(CALLER_ANSWER, "applied"), **_errors(400, 409)},
                    admin=True,
                    requestBody=_body(CALLER_SETTINGS),
                ),
                "delete": _op(
                    "Revoke a caller (applied at once)",
                    {"200": _json(_obj({"revoked": STR}), "revoked"), **_errors(409)},
                    admin=True,
                ),
            },
        },
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "adminBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "browsers: any user name, the admin token as password",
                },
            },
            "schemas": {"Error": ERROR, "Snapshot": SNAPSHOT, "Routing": ROUTING},
            "responses": {
                f"E{code}": _json(ERROR, "an error in Anthropic's shape")
                for code in (400, 401, 403, 404, 405, 409)
            },
        },
    }
