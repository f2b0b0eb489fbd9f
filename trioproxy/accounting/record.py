"""The one structured line per request: what happened, never a body or a
credential (callers appear by their secret's configured name)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields

import orjson

from trioproxy.accounting.trace_note import TraceNote
from trioproxy.accounting.usage import Usage
from trioproxy.rules.traits import BodyTraits

NO_CALLER = "-"  # the caller when auth is off: the same in the log, metrics and ledger


@dataclass(slots=True)  # slots: one is held per open request (F: 10,000 idle streams)
class RequestRecord:
    request_id: str  # the proxy's own id
    method: str
    path: str  # without the query string
    protocol: str
    peer: str = ""  # the client's address (HOST:PORT)
    started: float = field(default_factory=time.time)  # wall clock, for the log line
    started_monotonic: float = field(default_factory=time.monotonic)  # for durations
    caller: str = NO_CALLER
    client_addr: str = ""  # the client's IP (X-Forwarded-For's only with trust_front_proxy)
    user_agent: str = ""
    session_id: str = ""  # x-claude-code-session-id
    # What Claude Code says each request is (CLAUDE_CODE_GATEWAY_HINT_HEADERS=1):
    request_class: str = ""  # x-claude-code-request-class: main, subagent, compaction ...
    agent_type: str = ""  # x-claude-code-agent-type
    agent_id: str = ""  # x-claude-code-agent-id
    prompt_id: str = ""  # x-claude-code-prompt-id: the user prompt a request serves
    limited: str = ""  # the caller's limit that refused the request (metrics: reason)
    cost_usd: float | None = 0.0  # accounting/pricing.py; None: the model could not be priced
    demoted: bool = False  # sent upstream as a stream, answered as JSON
    pings: int = 0  # keep-alive events written during the upstream's silence
    dropped: str = ""  # features dropped translating for a Chat Completions provider
    route: str = ""  # the [[routes]] rule the request matched
    origin: str = "upstream"  # who answered: upstream, or proxy (its own errors and refusals)
    status: int = 0
    upstream_request_id: str = ""
    model_requested: str = ""
    stream: bool = False
    time_to_headers_s: float | None = None
    time_to_first_byte_s: float | None = None  # the first response body byte sent to the client
    duration_s: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    retries: int = 0
    provider: str = ""  # the provider that served (or was tried last)
    providers_tried: str = ""  # comma-separated, in order
    failovers: int = 0
    scrub_hits: int = 0  # placeholders put in the request body
    unscrubbed: str = ""  # why a body was not scrubbed (too_large, not_json)
    scrub_detail: dict[str, int] = field(default_factory=dict)  # detector -> hits (metrics only)
    client_disconnected: bool = False
    retention_skipped: bool = False  # body streamed without a copy: no retry, no failover
    error: str = ""
    # For the diagnostic line of a failed forward (not in the access line).
    forward_failed: bool = False  # broken mid-response (a 5xx status is one too)
    query: str = ""
    anthropic_beta: str = ""
    body_complete: bool = False  # the whole body was read (else the traits are unknown)
    traits: BodyTraits | None = None  # looked at only for the diagnostic line
    usage: Usage = field(default_factory=Usage)
    trace: TraceNote | None = None  # [telemetry]: what the request's trace will say

    def fields(self) -> dict[str, object]:
        u = self.usage
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            # shallow: asdict() would deep-copy the usage and the traits, then drop them
            **{name: getattr(self, name) for name in _LOGGED},
            "model": u.model,
            **u.as_dict(),
            "usage_complete": u.complete,
            "stream_errors": u.stream_errors,
        }
        if self.time_to_headers_s is not None:
            doc["time_to_headers_s"] = round(self.time_to_headers_s, 4)
        if self.time_to_first_byte_s is not None:
            doc["time_to_first_byte_s"] = round(self.time_to_first_byte_s, 4)
        doc["duration_s"] = round(self.duration_s, 4)
        return doc

    def diagnostic(self) -> str:
        """The one extra line when a forward failed: what was asked of the
        upstream, to tell a bad request shape from a provider outage."""
        traits = self.traits if self.body_complete else None
        return orjson.dumps(
            {
                "event": "forward_failed",
                "request_id": self.request_id,
                "model": self.usage.model or self.model_requested,
                "stream": traits.stream if traits else None,
                "body_bytes": self.bytes_in,
                "has_thinking": traits.thinking if traits else None,
                "anthropic_beta": self.anthropic_beta,
                "query": redacted_query(self.query),
                "elapsed_s": round(self.duration_s, 4),
                "status": self.status,
                "provider": self.provider,
                "providers_tried": self.providers_tried,
                "error": self.error,
            }
        ).decode()

    def render(self, fmt: str) -> str:
        doc = self.fields()
        if fmt == "logfmt":
            return " ".join(f"{k}={_logfmt(v)}" for k, v in doc.items() if v not in ("", None))
        return orjson.dumps(doc).decode()


def _logfmt(value: object) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not text or any(c in text for c in ' "=\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


_NOT_LOGGED = frozenset(
    {
        "usage",  # its fields are added one by one
        "started",
        "started_monotonic",
        "scrub_detail",  # metrics only
        # the diagnostic line's
        "forward_failed",
        "query",
        "anthropic_beta",
        "body_complete",
        "traits",
        "trace",
    }
)
_LOGGED = tuple(f.name for f in dataclass_fields(RequestRecord) if f.name not in _NOT_LOGGED)
_SECRET_PARAM = re.compile(r"key|token|secret|auth|sig|password", re.IGNORECASE)


def redacted_query(query: str) -> str:
    """A query string with the values of credential-like parameters hidden."""
    if not query:
        return ""
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        parts.append(f"{name}=<redacted>" if eq and _SECRET_PARAM.search(name) else item)
    return "&".join(parts)[:500]
