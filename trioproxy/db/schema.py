"""The schema, as numbered migrations applied in order when a database is
opened; ``schema_version`` records the last one applied.

A migration is written once, with the column types that differ between
SQLite and Postgres as placeholders ({REAL}, {BLOB}, {INT}). Migration 1 is
the ledger as it was before versioning (``IF NOT EXISTS``), so an existing
usage.sqlite3 is taken over as it is; 2 adds the conversation log; 3 says
who answered each ledger row (the dashboard keeps the proxy's own errors
apart); 4 indexes the failed rows (the dashboard's last errors, found
without reading a day of successes); 5 keeps what Claude Code's hint
headers say each request is (class, agent type and id, prompt); 6 keeps
each request's cost as it was priced when it ended (NULL: it could not be,
or the row is older than the column); 7 is the audit trail of
administrative changes.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE TABLE IF NOT EXISTS requests (
    ts {REAL} NOT NULL,
    request_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    model_requested TEXT NOT NULL,
    status INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    input_tokens {INT} NOT NULL,
    cache_creation_input_tokens {INT} NOT NULL,
    cache_read_input_tokens {INT} NOT NULL,
    output_tokens {INT} NOT NULL,
    duration_s {REAL} NOT NULL,
    complete INTEGER NOT NULL,
    error INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
""",
    ),
    (
        2,
        """
CREATE TABLE exchanges (
    request_id TEXT PRIMARY KEY,
    ts {REAL} NOT NULL,
    caller TEXT NOT NULL,
    provider TEXT NOT NULL,
    providers_tried TEXT NOT NULL,
    model TEXT NOT NULL,
    model_requested TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    origin TEXT NOT NULL,
    error INTEGER NOT NULL,
    error_text TEXT NOT NULL,
    stream INTEGER NOT NULL,
    session TEXT NOT NULL,
    route TEXT NOT NULL,
    upstream_request_id TEXT NOT NULL,
    retries INTEGER NOT NULL,
    failovers INTEGER NOT NULL,
    time_to_headers_s {REAL},
    time_to_first_token_s {REAL},
    duration_s {REAL} NOT NULL,
    input_tokens {INT} NOT NULL,
    cache_creation_input_tokens {INT} NOT NULL,
    cache_read_input_tokens {INT} NOT NULL,
    output_tokens {INT} NOT NULL,
    cost_usd {REAL} NOT NULL,
    request_headers TEXT NOT NULL,
    response_headers TEXT NOT NULL,
    request_bytes {INT} NOT NULL,
    request_truncated INTEGER NOT NULL,
    request_body {BLOB},
    response_bytes {INT} NOT NULL,
    response_truncated INTEGER NOT NULL,
    response_body {BLOB},
    message {BLOB},
    search TEXT NOT NULL
);
CREATE INDEX exchanges_ts ON exchanges (ts);
CREATE INDEX exchanges_session ON exchanges (session, ts);
CREATE INDEX exchanges_caller ON exchanges (caller, ts);
""",
    ),
    (
        3,
        """
ALTER TABLE requests ADD COLUMN origin TEXT NOT NULL DEFAULT 'upstream';
""",
    ),
    (
        4,
        """
CREATE INDEX requests_errors ON requests (ts) WHERE error = 1;
""",
    ),
    (
        5,
        """
ALTER TABLE requests ADD COLUMN request_class TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN agent_type TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN agent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN prompt_id TEXT NOT NULL DEFAULT '';
ALTER TABLE exchanges ADD COLUMN request_class TEXT NOT NULL DEFAULT '';
ALTER TABLE exchanges ADD COLUMN agent_type TEXT NOT NULL DEFAULT '';
ALTER TABLE exchanges ADD COLUMN agent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE exchanges ADD COLUMN prompt_id TEXT NOT NULL DEFAULT '';
""",
    ),
    (
        6,
        """
ALTER TABLE requests ADD COLUMN cost_usd {REAL};
""",
    ),
    (
        7,
        """
CREATE TABLE audit (
    ts {REAL} NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    old_value TEXT NOT NULL,
    new_value TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit (ts);
""",
    ),
)

AUDIT_COLUMNS = ("ts", "who", "action", "subject", "old_value", "new_value", "source")

LATEST = MIGRATIONS[-1][0]

TYPES = {
    "sqlite": {"REAL": "REAL", "BLOB": "BLOB", "INT": "INTEGER"},
    "postgres": {"REAL": "DOUBLE PRECISION", "BLOB": "BYTEA", "INT": "BIGINT"},
}

USAGE_COLUMNS = (
    "ts",
    "request_id",
    "caller",
    "provider",
    "model",
    "model_requested",
    "status",
    "stream",
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "duration_s",
    "complete",
    "error",
    "origin",
    "request_class",
    "agent_type",
    "agent_id",
    "prompt_id",
    "cost_usd",
)

LOG_COLUMNS = (
    "request_id",
    "ts",
    "caller",
    "provider",
    "providers_tried",
    "model",
    "model_requested",
    "method",
    "path",
    "status",
    "origin",
    "error",
    "error_text",
    "stream",
    "session",
    "route",
    "upstream_request_id",
    "retries",
    "failovers",
    "time_to_headers_s",
    "time_to_first_token_s",
    "duration_s",
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "cost_usd",
    "request_headers",
    "response_headers",
    "request_bytes",
    "request_truncated",
    "request_body",
    "response_bytes",
    "response_truncated",
    "response_body",
    "message",
    "search",
    "request_class",
    "agent_type",
    "agent_id",
    "prompt_id",
)
# What a list of the log shows: everything but the bodies.
LOG_SUMMARY = tuple(
    c
    for c in LOG_COLUMNS
    if c not in ("request_headers", "response_headers", "request_body", "response_body")
    and c not in ("message", "search")
)


def statements(version_sql: str, dialect: str) -> list[str]:
    """One migration's statements, typed for ``dialect``."""
    sql = version_sql.format(**TYPES[dialect])
    return [s.strip() for s in sql.split(";") if s.strip()]
