"""The configuration as frozen values: what every part of the proxy reads.

Nothing here imports the rest of the project (the loader in ``load`` builds
these from defaults, TOML, the environment and flags; everything else only
reads them), so any package may depend on it without a cycle.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Origin:
    """Where upstream requests go: one connection pool per origin."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    base_path: str  # prefix prepended to every forwarded path ("" or "/anthropic")

    @property
    def authority(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == default else f"{host}:{self.port}").encode()

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority.decode()}{self.base_path}"


@dataclass(frozen=True, slots=True)
class Credential:
    """A header carrying the provider key; never printed."""

    header: bytes
    value: bytes

    def __repr__(self) -> str:
        return f"Credential(header={self.header!r}, value=<redacted>)"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    origin: Origin
    credential: Credential | None
    ca_bundle: str
    http2: bool
    h2_prior_knowledge: bool
    max_connections: int
    idle_timeout: float
    h2_ping_interval: float = 10.0  # seconds of silence before a PING (0: never)
    h2_ping_timeout: float = 5.0  # seconds to answer it, else the connection is retired


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    value: bytes

    def __repr__(self) -> str:  # never the value, not even in a traceback
        return f"Secret(name={self.name!r})"


@dataclass(frozen=True, slots=True)
class Budget:
    """What a caller may spend per calendar window (UTC)."""

    window: str  # daily | weekly (from Monday) | monthly (from the 1st)
    usd: float | None = None  # priced by accounting/pricing.py (genai-prices, [pricing])
    tokens: int | None = None  # all four token classes together


@dataclass(frozen=True, slots=True)
class Caller:
    """A caller of the proxy and its policy. Only the SHA-256 digests of its
    secrets are kept: what the callers file stores and what a presented
    credential is hashed to for the lookup."""

    name: str
    digests: frozenset[bytes] = field(repr=False)
    models: tuple[str, ...] = ()  # globs; empty: every model
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # input + output tokens per minute
    max_concurrent: int | None = None
    budget: Budget | None = None
    expires: float | None = None  # epoch seconds
    upstream_credential: str = "provider"  # provider | own (the caller's key goes upstream)
    plaintext: bool = False  # some secret was given in plain text (warned at start)

    @property
    def own_credential(self) -> bool:
        return self.upstream_credential == "own"

    @property
    def limited(self) -> bool:
        """Whether any check beyond the secret applies (the hot path skips
        the book for a caller without limits)."""
        return bool(
            self.models
            or self.rpm is not None
            or self.tpm is not None
            or self.max_concurrent is not None
            or self.budget is not None
            or self.expires is not None
        )


@dataclass(frozen=True, slots=True)
class Price:
    pattern: str  # fnmatch glob on the served model name
    input: float  # USD per million tokens
    output: float
    cache_write: float  # 5-minute cache writes (cache_creation_input_tokens)
    cache_read: float

    def cost(self, tokens: Mapping[str, int]) -> float:
        return (
            tokens.get("input_tokens", 0) * self.input
            + tokens.get("output_tokens", 0) * self.output
            + tokens.get("cache_creation_input_tokens", 0) * self.cache_write
            + tokens.get("cache_read_input_tokens", 0) * self.cache_read
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_rate: float = 0.5  # failed requests / requests in the window that open it
    min_requests: int = 10  # distinct requests in the window before the rate counts
    window_s: float = 30.0  # the sliding window, seconds
    open_s: float = 30.0  # how long it stays open before the half-open trial
    degraded_after: int = 3  # consecutive failed requests: tried after healthy providers


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    tokens: int  # budget per window (all four token classes together)
    window: str  # weekly (from Monday 00:00 UTC), daily (00:00 UTC) or rolling
    hours: int  # the rolling window's length
    threshold: float  # fraction of the budget at which the provider is skipped


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    upstream: UpstreamConfig
    family: str  # thinking signatures are valid only within one family
    priority: int
    enabled: bool
    models: tuple[tuple[str, str], ...]  # (requested model or glob, provider's model)
    default_model: str | None
    drop_fields: frozenset[str]
    drop_betas: frozenset[bytes]
    retries: int
    cooldown_s: float
    breaker: BreakerPolicy  # open_s is per provider; rate, window and minimum are global
    connect_timeout: float | None
    response_headers_timeout: float | None
    quota: QuotaConfig | None
    oauth_file: str = ""  # a Claude subscription: its token is read from this file
    demote_nonstreaming: bool = False  # send non-streaming Messages requests as streams
    kind: str = "anthropic"  # anthropic | openai (Chat Completions) | bedrock | vertex
    reasoning: bool = False  # openai: thinking is sent as reasoning_effort
    region: str = ""  # bedrock: the AWS region requests are signed for
    aws_profile: str = ""  # bedrock: the profile of the shared AWS files ("" the default chain)
    project: str = ""  # vertex: the Google Cloud project
    credentials_file: str = ""  # vertex: a service account key ("" Application Default Credentials)

    @property
    def keyed(self) -> bool:
        """Whether the proxy sends a credential of its own (a key, a
        subscription's token, a cloud's signature), so a caller's secret is
        never sent in its place."""
        return self.upstream.credential is not None or bool(self.oauth_file) or self.cloud

    @property
    def cloud(self) -> bool:
        """Claude on a cloud: requests carry the cloud's own credentials."""
        return self.kind in ("bedrock", "vertex")

    @property
    def messages_only(self) -> bool:
        """The provider speaks another dialect: only the Messages API
        (and, for a cloud, its token counting) is translated for it."""
        return self.kind != "anthropic"

    @property
    def open_s(self) -> float:
        return self.breaker.open_s

    def map_model(self, requested: str) -> str:
        """The model this provider is asked for: an exact entry, else the
        first glob that matches, else ``default``, else unchanged."""
        for pattern, target in self.models:
            if pattern == requested:
                return target
        for pattern, target in self.models:
            if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(requested, pattern):
                return target
        return self.default_model or requested

    @property
    def edits_body(self) -> bool:
        return bool(self.models or self.default_model or self.drop_fields)


@dataclass(frozen=True, slots=True)
class Route:
    """A ``[[routes]]`` rule: every matcher given must hold; the first
    rule that matches sends the request to ``provider`` (then
    ``fallbacks``), asking for ``model`` when set."""

    name: str
    provider: str
    model: str | None = None
    fallbacks: tuple[str, ...] = ()
    subagent: str | None = None
    # The agent's prompt as (length in characters, keyed digest): Claude Code
    # sends it at the start of a system block, with its own text after it.
    subagent_prompt: tuple[int, bytes] | None = field(default=None, repr=False)
    match_model: str | None = None  # a glob on the requested model
    thinking: bool | None = None
    min_input_tokens: int | None = None
    tools_include: str | None = None  # a glob on the request's tool names
    caller: str | None = None
    header: tuple[bytes, bytes | None] | None = None  # (name, value); None: present
    request_class: str | None = None  # a glob on x-claude-code-request-class
    agent_type: str | None = None  # a glob on x-claude-code-agent-type

    def describe(self) -> str:
        """For check-config: the rule on one line."""
        parts = [
            f"{k}={v}"
            for k, v in (
                ("subagent", self.subagent),
                ("model", self.match_model),
                ("thinking", self.thinking),
                ("min_input_tokens", self.min_input_tokens),
                ("tools_include", self.tools_include),
                ("caller", self.caller),
                ("request_class", self.request_class),
                ("agent_type", self.agent_type),
                (
                    "header",
                    None
                    if self.header is None
                    else b"=".join(x for x in self.header if x is not None).decode("latin-1"),
                ),
            )
            if v is not None
        ]
        action = self.provider + (f" (model {self.model})" if self.model else "")
        if self.fallbacks:
            action += ", then " + ", ".join(self.fallbacks)
        return f"{' and '.join(parts) or 'always'} -> {action}"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    providers: tuple[ProviderConfig, ...]  # in priority order
    aliases: tuple[tuple[str, str], ...]
    mode: str  # failover | single
    single: str | None  # the provider of single mode
    allow_pin: bool  # honour x-trioproxy-provider
    retry_after_cap: float
    backoff: float
    retry_budget: float = 0.2  # same-provider retries in flight / requests in flight
    routes: tuple[Route, ...] = ()  # [[routes]], in order: the first match wins
    credentials_check_s: float = 30.0  # between checks of cloud providers' credentials

    def get(self, name: str) -> ProviderConfig | None:
        for p in self.providers:
            if p.name == name:
                return p
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.providers)

    def resolve_alias(self, model: str) -> str:
        for short, full in self.aliases:
            if short == model:
                return full
        return model

    # Derived once (the routing is frozen) and read on every request.
    passthrough: bool = field(init=False, repr=False, compare=False)
    """Some provider gets the caller's own credential (no key of its own)."""
    demotes: bool = field(init=False, repr=False, compare=False)
    """Some provider gets non-streaming requests as streams."""
    needs_body: bool = field(init=False, repr=False, compare=False)
    """Whether routing must read the request body before choosing: a
    session id in metadata, a model to map, fields to drop, thinking
    blocks to strip on a family change."""

    def __post_init__(self) -> None:
        enabled = [p for p in self.providers if p.enabled]
        set_ = object.__setattr__  # frozen: set once, here
        set_(self, "passthrough", any(not p.keyed for p in self.providers))
        set_(self, "demotes", any(p.demote_nonstreaming for p in enabled))
        set_(
            self,
            "needs_body",
            bool(self.aliases)
            or bool(self.routes)
            or len(enabled) > 1
            or any(p.edits_body or p.kind != "anthropic" for p in enabled),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    response_headers: float
    upstream_body_idle: float
    client_head: float
    client_body_idle: float
    keepalive_idle: float
    drain: float
    drain_grace: float = 10.0
    pool: float = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_head_bytes: int
    max_headers: int
    h2_max_concurrent_streams: int
    h2_stream_window: int
    h2_max_resets_per_second: int
    retained_body_bytes: int = 256 * 1024 * 1024  # all kept request bodies of a worker


@dataclass(frozen=True, slots=True)
class OIDCConfig:
    """``[auth.oidc]``: callers are users of this identity provider."""

    issuer: str
    audience: str
    user_claim: str = "email"
    groups_claim: str = "groups"
    allowed_domains: tuple[str, ...] = ()
    leeway_s: float = 30.0


@dataclass(frozen=True, slots=True)
class CallerGroup:
    """``[[caller_groups]]``: the policy of the users in a group of the IdP
    (``match``: a group name or glob). ``policy`` is a caller without
    secrets, named after the group."""

    name: str
    match: str
    policy: Caller


@dataclass(frozen=True, slots=True)
class AuthConfig:
    secrets: tuple[Secret, ...]  # auth.secrets: callers without limits
    admin_token: bytes = field(repr=False)
    trust_front_proxy: bool
    callers: tuple[Caller, ...] = ()  # [[callers]] in the TOML file
    callers_file: str = ""  # auth.callers_file: read at start, watched while running
    oidc: OIDCConfig | None = None  # [auth.oidc]: users of an identity provider
    groups: tuple[CallerGroup, ...] = ()  # [[caller_groups]]: their policies
    admin_tokens: tuple[Secret, ...] = field(default=(), repr=False)  # admin.tokens: named

    @property
    def enabled(self) -> bool:
        """A callers file turns auth on even while it is empty: revoking the
        last caller must not open the proxy."""
        return bool(self.secrets or self.callers or self.callers_file or self.oidc)


@dataclass(frozen=True, slots=True)
class ScrubConfig:
    restore: bool
    hmac_key: bytes = field(repr=False)
    max_body_bytes: int
    allow: tuple[str, ...] = ()  # e-mail addresses and domains never scrubbed, lower case


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """``[telemetry]`` (OpenTelemetry's OTEL_* variables): traces to an
    OTLP/HTTP collector."""

    endpoint: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # secret
    service_name: str = "trioproxy"
    resource: tuple[tuple[str, str], ...] = ()
    sampler: str = "parentbased_always_on"
    sampler_arg: float = 1.0


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Where callers' own OTLP telemetry goes (``telemetry.relay_to``)."""

    targets: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = field(repr=False)
    max_body_bytes: int = 4 * 1024 * 1024
    rpm: int = 600


@dataclass(frozen=True, slots=True)
class Config:
    listen: Endpoint
    admin_listen: Endpoint | None
    routing: RoutingConfig
    auth: AuthConfig
    scrub: ScrubConfig | None  # None: scrubbing off
    timeouts: Timeouts
    limits: Limits
    tls_cert: str
    tls_key: str
    state_dir: str
    log_level: str
    log_format: str
    log_slow_seconds: float
    stream_failure: str = "cut"  # cut | error_event
    stream_keepalive_s: float = 0.0  # 0: no pings
    cors_allow_origins: tuple[str, ...] = ()
    usage_ledger: bool = True
    usage_retention_days: int = 90
    log_bodies: str = "off"  # off | errors | all: the conversation log
    log_max_body_bytes: int = 4 * 1024 * 1024
    log_max_pending_bytes: int = 64 * 1024 * 1024  # all pending log rows of a worker
    log_retention_days: int = 14
    database_url: str = field(default="", repr=False)  # Postgres; may hold a password
    pricing: tuple[Price, ...] = ()  # [pricing]: overrides the price database, checked first
    pricing_unknown: str | Price = "refuse"  # pricing.unknown_model: "refuse", "free" or a price
    alert_urls: tuple[str, ...] = field(default=(), repr=False)  # alerts.webhook_urls (secret)
    alert_thresholds: tuple[float, ...] = (0.8, 1.0)  # alerts.budget_thresholds
    audit_retention_days: int = 400  # audit.retention_days
    telemetry: TelemetryConfig | None = None  # [telemetry]: off without an endpoint
    relay: RelayConfig | None = None  # telemetry.relay_to: callers' own telemetry relayed
    workers: int = 1  # 0: one per CPU
    state_redis_url: str = field(default="", repr=False)  # may hold a password
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def upstream(self) -> UpstreamConfig:
        """The first provider's upstream (the only one without [[providers]])."""
        return self.routing.providers[0].upstream
