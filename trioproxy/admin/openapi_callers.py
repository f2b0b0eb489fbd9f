"""/openapi.json's schemas for callers: the rows of GET /admin/callers (and
of the snapshot), and what POST and PATCH take."""

from __future__ import annotations

from trioproxy.admin.schema import BOOL, INT, NULLABLE_NUM, NUM, STR, Schema, obj

NULLABLE_INT: Schema = {"type": ["integer", "null"], "minimum": 1}
CALLER = obj(
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
                obj(
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
CALLER_SETTINGS = obj(
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
CALLERS_LIST = obj(
    {"callers_file": {"type": ["string", "null"]}, "callers": {"type": "array", "items": CALLER}}
)
CALLER_ANSWER = obj(
    {"caller": CALLER, "secret": {**STR, "description": "a new secret: shown this once"}},
    optional=("secret",),
)
