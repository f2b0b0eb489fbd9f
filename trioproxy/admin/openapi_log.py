"""/openapi.json's schemas for the conversation log's API
(/admin/api/requests...)."""

from __future__ import annotations

from typing import Any

from trioproxy.admin.schema import (
    INT,
    NULLABLE_NUM,
    NUM,
    STR,
    Schema,
    errors,
    json_response,
    obj,
    op,
)

ANY: Schema = {}
FLAG: Schema = {"enum": [0, 1]}
TOKENS = obj(
    {
        "input_tokens": INT,
        "cache_creation_input_tokens": INT,
        "cache_read_input_tokens": INT,
        "output_tokens": INT,
    }
)
ENTRY_PROPS: dict[str, Schema] = {
    "request_id": {**STR, "description": "the proxy's id (its access line's)"},
    "ts": {**NUM, "description": "Unix time the request arrived"},
    "caller": STR,
    "provider": {**STR, "description": "the provider that answered (or was tried last)"},
    "providers_tried": {**STR, "description": "comma-separated, in order"},
    "model": {**STR, "description": "as served, else as requested"},
    "model_requested": STR,
    "method": STR,
    "path": {**STR, "description": "with the query string (credential-like values redacted)"},
    "status": INT,
    "origin": {"enum": ["upstream", "proxy"]},
    "error": FLAG,
    "error_text": STR,
    "stream": FLAG,
    "session": {**STR, "description": "x-claude-code-session-id"},
    "route": STR,
    "request_class": {**STR, "description": "Claude Code's x-claude-code-request-class"},
    "agent_type": {**STR, "description": "x-claude-code-agent-type"},
    "agent_id": {**STR, "description": "x-claude-code-agent-id"},
    "prompt_id": {**STR, "description": "x-claude-code-prompt-id: the user prompt served"},
    "upstream_request_id": STR,
    "retries": INT,
    "failovers": INT,
    "time_to_headers_s": NULLABLE_NUM,
    "time_to_first_token_s": NULLABLE_NUM,
    "duration_s": NUM,
    **TOKENS["properties"],
    "cost_usd": {
        **NUM,
        "description": "estimated when the request ended (genai-prices, [pricing])",
    },
    "request_bytes": INT,
    "request_truncated": FLAG,
    "response_bytes": INT,
    "response_truncated": FLAG,
}
ENTRY = obj(ENTRY_PROPS)
HEADERS: Schema = {
    "type": "array",
    "items": {"type": "array", "prefixItems": [STR, STR], "minItems": 2, "maxItems": 2},
    "description": "[name, value] pairs in order; credentials' values are <redacted>",
}
DETAIL = obj(
    {
        **ENTRY_PROPS,
        "request_headers": HEADERS,
        "response_headers": HEADERS,
        "request_body": {
            **ANY,
            "description": "as sent upstream (scrubbed when scrubbing is on): JSON, or text",
        },
        "response_body": {
            **ANY,
            "description": "as received: JSON, or the text of an event stream",
        },
        "message": {
            "type": ["object", "null"],
            "description": "an event stream rebuilt into its Message (null: not a stream, or cut short)",
        },
    }
)
LIST = obj(
    {
        "log_bodies": {"enum": ["off", "errors", "all"]},
        "requests": {"type": "array", "items": ENTRY},
        "next_before": {
            **NULLABLE_NUM,
            "description": "pass as before= for the next page (null: no more)",
        },
    }
)
TURN = obj(
    {
        "request_id": STR,
        "ts": NUM,
        "model": STR,
        "status": INT,
        "caller": STR,
        "new_thread": {
            "type": "boolean",
            "description": "its history does not continue the previous request's (a subagent, /clear)",
        },
        "system": {**ANY, "description": "the system prompt, when it is new or changed"},
        "messages": {"type": "array", "description": "the messages this request added"},
        "answer": {"type": ["object", "null"], "description": "the Message it got"},
        "error": ANY,
        "tokens": TOKENS,
        "cost_usd": NUM,
        "duration_s": NULLABLE_NUM,
        "request_class": {**STR, "description": "x-claude-code-request-class"},
        "agent_type": {**STR, "description": "x-claude-code-agent-type"},
        "prompt_id": {**STR, "description": "x-claude-code-prompt-id: the viewer groups by it"},
    }
)
CONVERSATION = obj(
    {"session": STR, "turns": {"type": "array", "items": TURN}, "tokens": TOKENS, "cost_usd": NUM}
)


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": STR,
        "description": description,
    }


LIST_PARAMETERS = [
    _query("caller", "exactly this caller"),
    _query("model", "served or requested"),
    _query("provider", "the provider that answered"),
    _query("status", "a code (429), a class (5xx), error or ok"),
    _query("session", "x-claude-code-session-id"),
    _query("route", "the [[routes]] rule matched"),
    _query("since", "7d, 24h, 30m, 2026-11-01 or Unix time"),
    _query("until", "as since"),
    _query("q", "text searched in the system prompt, the last user turn and the answer"),
    _query("before", "a page: entries older than this ts (next_before)"),
    _query("limit", "1 to 500 (default 50)"),
]


HISTORY_POINT = obj(
    {
        "t": {**NUM, "description": "the bucket's end, Unix time"},
        "requests": INT,
        "rps": NUM,
        "errors": {**INT, "description": "5xx, 429 and stream errors"},
        "proxy_errors": {**INT, "description": "of those, the proxy's own"},
        "input_tokens_per_s": NUM,
        "output_tokens_per_s": NUM,
        "cache_read_tokens": INT,
        "input_tokens": INT,
        "p50": NULLABLE_NUM,
        "p99": NULLABLE_NUM,
    }
)
HISTORY = obj(
    {
        "window": {"enum": ["15m", "1h", "24h"]},
        "step_s": INT,
        "now": NUM,
        "log_bodies": {"enum": ["off", "errors", "all"]},
        "points": {"type": "array", "items": HISTORY_POINT, "description": "buckets with requests"},
        "codes": {
            "type": "array",
            "items": obj({"status": INT, "origin": {"enum": ["upstream", "proxy"]}, "count": INT}),
        },
        "errors": {
            "type": "array",
            "items": obj(
                {
                    "ts": NUM,
                    "request_id": STR,
                    "status": INT,
                    "origin": {"enum": ["upstream", "proxy"]},
                    "caller": STR,
                    "model": STR,
                    "provider": STR,
                }
            ),
            "description": "the window's last failed requests, newest first",
        },
    }
)
USAGE_LINE = obj(
    {
        "key": STR,
        "requests": INT,
        "errors": INT,
        "input_tokens": INT,
        "cache_creation_input_tokens": INT,
        "cache_read_input_tokens": INT,
        "output_tokens": INT,
        "cost_usd": NUM,
        "unpriced_models": {"type": "array", "items": STR},
    }
)
USAGE = obj(
    {
        "window": {"enum": ["15m", "1h", "24h"]},
        "by": {"enum": ["caller", "model", "provider", "request_class", "agent_type"]},
        "lines": {"type": "array", "items": USAGE_LINE},
        "total": USAGE_LINE,
    }
)
WINDOW_PARAMETERS = [_query("window", "15m (default), 1h or 24h")]
AUDIT_ENTRY = obj(
    {
        "ts": NUM,
        "who": STR,
        "action": STR,
        "subject": STR,
        "before": ANY,
        "after": ANY,
        "source": {"enum": ["api", "cli", "signal"]},
    }
)
AUDIT = obj({"since": NUM, "entries": {"type": "array", "items": AUDIT_ENTRY}})

ID_PARAMETER: Schema = {"name": "id", "in": "path", "required": True, "schema": STR}

# The paths, as /openapi.json lists them.
LOG_PATHS: dict[str, Any] = {
    "/admin/requests": {
        "get": op(
            "The conversation log's viewer (one self-contained page)",
            {"200": {"description": "HTML", "content": {"text/html": {"schema": STR}}}},
            admin=True,
        )
    },
    "/admin/api/requests": {
        "get": op(
            "Logged requests, newest first, without bodies (log_bodies)",
            {"200": json_response(LIST, "a page"), **errors(400, 503)},
            admin=True,
            parameters=LIST_PARAMETERS,
        )
    },
    "/admin/api/requests/{id}": {
        "parameters": [ID_PARAMETER],
        "get": op(
            "One logged request: headers, timing, tokens, cost, bodies",
            {"200": json_response(DETAIL, "stored"), **errors(404, 503)},
            admin=True,
        ),
    },
    "/admin/api/requests/{id}/conversation": {
        "parameters": [ID_PARAMETER],
        "get": op(
            "The request's session (x-claude-code-session-id) as turns",
            {"200": json_response(CONVERSATION, "stored"), **errors(404, 503)},
            admin=True,
        ),
    },
    "/admin/api/history": {
        "get": op(
            "The dashboard's history from the usage ledger: buckets, status codes, last errors",
            {"200": json_response(HISTORY, "the window"), **errors(400, 404, 503)},
            admin=True,
            parameters=WINDOW_PARAMETERS,
        )
    },
    "/admin/api/audit": {
        "get": op(
            "Administrative changes, newest first: when, who (an admin token's name, the OS user"
            " of the CLI, reload), what, and the value before and after (secrets as SHA-256)",
            {"200": json_response(AUDIT, "the trail"), **errors(400, 503)},
            admin=True,
            parameters=[
                _query("since", "7d (default), 24h, 30m, 2w or a date 2026-11-01"),
                _query("limit", "at most this many (default 1000)"),
            ],
        )
    },
    "/admin/api/usage": {
        "get": op(
            "Requests, errors, tokens and estimated cost in the window, by caller, model, provider,"
            " request class or agent type (Claude Code's hint headers)",
            {"200": json_response(USAGE, "the window"), **errors(400, 404, 503)},
            admin=True,
            parameters=[
                *WINDOW_PARAMETERS,
                {
                    "name": "by",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "enum": ["caller", "model", "provider", "request_class", "agent_type"]
                    },
                },
            ],
        )
    },
}
