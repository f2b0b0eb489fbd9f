"""GET /openapi.json: the proxy's own endpoints, described for humans and
tools (OpenAPI 3.1, whose schemas are JSON Schema 2020-12). The tests
validate live responses against these schemas, so a field added to a
snapshot without a line here fails them (``additionalProperties: false``
where the shape is ours)."""

from __future__ import annotations

from typing import Any

from trioproxy import __version__
from trioproxy.admin.openapi_callers import CALLER, CALLER_ANSWER, CALLER_SETTINGS, CALLERS_LIST
from trioproxy.admin.openapi_log import LOG_PATHS
from trioproxy.admin.schema import (
    BOOL,
    COUNTS,
    INT,
    NULLABLE_NUM,
    NUM,
    STR,
    errors,
    json_body,
    json_response,
    obj,
    op,
    text_response,
)

HISTOGRAM = obj(
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

PROVIDER = obj(
    {
        "name": STR,
        "base_url": STR,
        "kind": {"enum": ["anthropic", "openai", "bedrock", "vertex"]},
        "region": {"type": ["string", "null"], "description": "a cloud provider's region"},
        "credentials": {
            "oneOf": [
                {"type": "null"},
                obj(
                    {
                        "valid": BOOL,
                        "expires_at": {**NULLABLE_NUM, "description": "Unix time; null: static"},
                        "refreshed_at": {**NULLABLE_NUM, "description": "Unix time"},
                        "problem": STR,
                        "failures": {**INT, "description": "refreshes failed in a row"},
                        "refused": {
                            **STR,
                            "description": "the cloud's last refusal of them (401, 403), if any",
                        },
                    }
                ),
            ],
            "description": "a cloud provider's credentials (never a key); null for the others",
        },
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
                obj(
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

ROUTING = obj(
    {
        "mode": {"enum": ["failover", "single"]},
        "provider": {"type": ["string", "null"]},
        "providers": {"type": "array", "items": PROVIDER},
        "state_store": {
            "oneOf": [{"type": "null"}, obj({"up": BOOL, "name": STR})],
            "description": "where routing state is shared, and whether it answers",
        },
    }
)

SNAPSHOT = obj(
    {
        "time": {**NUM, "description": "Unix time of the snapshot"},
        "pid": {**INT, "description": "the worker process that took it (merged: the one asked)"},
        "requests": {
            "type": "array",
            "items": obj(
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
            "items": obj(
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
        "bytes": obj({"in": INT, "out": INT}),
        "stream_errors": INT,
        "stream_pings": {**INT, "description": "keep-alive pings written to silent streams"},
        "demoted": {**INT, "description": "non-streaming requests sent upstream as streams"},
        "body_retention_skipped": {
            **INT,
            "description": "requests forwarded without a kept copy of their body",
        },
        "client_disconnects": INT,
        "retries": INT,
        "scrub_hits": COUNTS,
        "scrub_skipped": COUNTS,
        "caller_limited": {
            "type": "array",
            "items": obj({"caller": STR, "reason": STR, "count": INT}),
            "description": "requests refused by a caller's own limit",
        },
        "caller_spend_usd": {
            "type": "object",
            "additionalProperties": NUM,
            "description": "estimated spend by caller",
        },
        "callers": {"type": "array", "items": CALLER},
        "routes": {**COUNTS, "description": "requests that matched each [[routes]] rule"},
        "alerts": {**COUNTS, "description": 'alerts by "kind:outcome" (trioproxy_alerts_total)'},
        "telemetry_dropped": {**INT, "description": "spans dropped: the export queue was full"},
        "telemetry_relay": {**COUNTS, "description": 'relayed exports by "signal:outcome"'},
        "log_rows": {
            **COUNTS,
            "description": "conversation-log rows: written, dropped (writer behind), lost (database refused)",
        },
        "process": obj(
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
            "items": obj({"provider": STR, "model": STR, "histogram": HISTOGRAM}),
            "description": "until the first byte of a successful Messages answer reached the client",
        },
        "in_flight": INT,
        "active": {**COUNTS, "description": "requests being handled, by client protocol"},
        "watchers": {**INT, "description": "of those, /metrics/stream readers"},
        "connections": {**COUNTS, "description": "client connections by protocol"},
        "pools": {
            "type": "object",
            "additionalProperties": obj(
                {"h1_idle": INT, "h1_active": INT, "h2": INT, "opening": INT, "h2_streams": INT}
            ),
        },
        "draining": BOOL,
        "uptime_s": NUM,
        "routing": {"oneOf": [{"type": "null"}, ROUTING]},
        "workers": {**INT, "description": "worker processes merged into this view"},
        "by_worker": {
            "type": "array",
            "items": obj({"pid": INT, "requests": INT, "in_flight": INT, "draining": BOOL}),
            "description": "per live worker: requests it counted, in flight now, draining",
        },
    },
    optional=("workers", "by_worker"),
)

ERROR = obj(
    {
        "type": {"const": "error"},
        "error": obj({"type": STR, "message": STR}),
        "request_id": STR,
    },
    optional=("request_id",),
)

HEALTH = obj({"status": {"enum": ["ok", "draining"]}})
LIVEZ = obj(
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
ROUTE_REQUEST = obj(
    {"mode": {"enum": ["failover", "single"]}, "provider": STR}, optional=("provider",)
)
ROUTE_ANSWER = obj(
    {"mode": {"enum": ["failover", "single"]}, "provider": {"type": ["string", "null"]}}
)


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
                "get": op(
                    "Readiness: 503 while draining",
                    {
                        "200": json_response(HEALTH, "serving"),
                        "503": json_response(HEALTH, "draining: take it out of rotation"),
                    },
                    admin=False,
                )
            },
            "/livez": {
                "get": op(
                    "Liveness, with counts", {"200": json_response(LIVEZ, "alive")}, admin=False
                )
            },
            "/metrics": {
                "get": op(
                    "Prometheus text exposition 0.0.4",
                    {"200": text_response("counters, histograms and gauges")},
                    admin=True,
                )
            },
            "/metrics.json": {
                "get": op(
                    "The snapshot, as JSON", {"200": json_response(SNAPSHOT, "now")}, admin=True
                )
            },
            "/metrics/stream": {
                "get": op(
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
                "get": op(
                    "The live dashboard (one self-contained page fed by /metrics/stream)",
                    {"200": {"description": "HTML", "content": {"text/html": {"schema": STR}}}},
                    admin=True,
                )
            },
            "/openapi.json": {
                "get": op(
                    "This document",
                    {"200": json_response({"type": "object"}, "OpenAPI 3.1")},
                    admin=False,
                )
            },
            "/admin/providers": {
                "get": op(
                    "Providers, their health and quota, and the routing mode",
                    {"200": json_response(ROUTING, "now")},
                    admin=True,
                )
            },
            "/admin/route": {
                "post": op(
                    "Switch routing: failover, or every request to one provider (persisted)",
                    {"200": json_response(ROUTE_ANSWER, "applied"), **errors(400, 405)},
                    admin=True,
                    requestBody=json_body(ROUTE_REQUEST),
                )
            },
            "/admin/callers": {
                "get": op(
                    "Callers, their limits and their use of them now",
                    {"200": json_response(CALLERS_LIST, "now")},
                    admin=True,
                ),
                "post": op(
                    "Add a caller to the callers file (applied at once); the answer holds its secret, shown this once",
                    {"201": json_response(CALLER_ANSWER, "added"), **errors(400, 405, 409)},
                    admin=True,
                    requestBody=json_body(CALLER_SETTINGS),
                ),
            },
            **LOG_PATHS,
            "/admin/callers/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": STR}],
                "get": op("One caller", {"200": json_response(CALLER_ANSWER, "now")}, admin=True),
                "patch": op(
                    "Change a caller's limits (null removes one), or rotate its secret",
                    {"200": json_response(CALLER_ANSWER, "applied"), **errors(400, 409)},
                    admin=True,
                    requestBody=json_body(CALLER_SETTINGS),
                ),
                "delete": op(
                    "Revoke a caller (applied at once)",
                    {"200": json_response(obj({"revoked": STR}), "revoked"), **errors(409)},
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
                f"E{code}": json_response(ERROR, "an error in Anthropic's shape")
                for code in (400, 401, 403, 404, 405, 409, 503)
            },
        },
    }
