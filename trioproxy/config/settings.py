"""The settings table: every setting's TOML key, its ``TRIOPROXY_*`` variable,
its parser, its default and a line of documentation. The README table and
``check-config`` are generated from it, so they cannot drift apart. Parsers
are pure: a bad value raises ValueError, which the loader turns into a
one-line ConfigError naming the key."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trioproxy.config.parsers import (
    parse_allow,
    parse_bool,
    parse_count,
    parse_fraction,
    parse_log_format,
    parse_log_level,
    parse_mode,
    parse_nonneg_seconds,
    parse_origins,
    parse_paths,
    parse_positive_int,
    parse_redis_url,
    parse_scrub_mode,
    parse_seconds,
    parse_secret_list,
    parse_str,
    parse_stream_failure,
    parse_workers,
)


@dataclass(frozen=True, slots=True)
class Setting:
    key: str  # dotted TOML key
    env: str
    parse: Callable[[object], Any]
    default: Any
    doc: str
    secret: bool = False


def default_state_dir(env: Mapping[str, str] = os.environ) -> str:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (possibly a colon list).
    sd = env.get("STATE_DIRECTORY")
    if sd:
        return sd.split(":")[0]
    return str(Path.home() / ".local" / "state" / "trioproxy")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "listen",
        "TRIOPROXY_LISTEN",
        parse_str,
        "127.0.0.1:8787",
        "address the proxy listens on (HOST:PORT; [v6]:PORT)",
    ),
    Setting(
        "workers",
        "TRIOPROXY_WORKERS",
        parse_workers,
        1,
        "worker processes accepting on the same listeners (auto: one per CPU); a supervisor restarts them and replaces them one by one on reload",
    ),
    Setting(
        "log_level",
        "TRIOPROXY_LOG_LEVEL",
        parse_log_level,
        "info",
        "debug, info, warning or error",
    ),
    Setting(
        "log_format",
        "TRIOPROXY_LOG_FORMAT",
        parse_log_format,
        "json",
        "the per-request access line: json or logfmt",
    ),
    Setting(
        "log_slow_seconds",
        "TRIOPROXY_LOG_SLOW_SECONDS",
        parse_seconds,
        60.0,
        "requests whose response headers take longer than this are logged at warning",
    ),
    Setting(
        "state_dir",
        "TRIOPROXY_STATE_DIR",
        parse_str,
        None,
        "persistent state (quotas, ledger, routing mode); default $STATE_DIRECTORY or ~/.local/state/trioproxy",
    ),
    Setting(
        "state.redis_url",
        "TRIOPROXY_STATE_REDIS_URL",
        parse_redis_url,
        "",
        "share breakers, cooldowns, quotas, session affinity and the routing mode between instances through this Redis (redis://, rediss:// or unix://); empty: the SQLite file in state_dir, shared by this machine's workers",
        secret=True,
    ),
    Setting(
        "auth.secrets",
        "TRIOPROXY_AUTH_SECRETS",
        parse_secret_list,
        "",
        "caller secrets, `name:secret` pairs separated by commas (several at once: rotation); empty: auth off (loopback only)",
        secret=True,
    ),
    Setting(
        "auth.secrets_file",
        "TRIOPROXY_AUTH_SECRETS_FILE",
        parse_str,
        "",
        "file with one `name:secret` (or bare secret) per line, `#` comments; added to auth.secrets",
    ),
    Setting(
        "auth.callers_file",
        "TRIOPROXY_AUTH_CALLERS_FILE",
        parse_str,
        "",
        "TOML file of `[[callers]]` with their limits, written by `trioproxy callers` and /admin/callers; watched: changes apply within 2 s, no restart. Set, it turns caller auth on even while empty",
    ),
    Setting(
        "admin.token",
        "TRIOPROXY_ADMIN_TOKEN",
        parse_str,
        "",
        "token for /admin/* (distinct from caller secrets); required for admin when the listener is not loopback",
        secret=True,
    ),
    Setting(
        "admin.listen",
        "TRIOPROXY_ADMIN_LISTEN",
        parse_str,
        "",
        "a separate HOST:PORT for /admin/* (and /health, /livez), e.g. to firewall it to admin networks; empty: on the main port",
    ),
    Setting(
        "trust_front_proxy",
        "TRIOPROXY_TRUST_FRONT_PROXY",
        parse_bool,
        False,
        "allow a non-loopback listener without caller auth (a front proxy authenticates for us)",
    ),
    Setting(
        "tls.cert",
        "TRIOPROXY_TLS_CERT",
        parse_str,
        "",
        "PEM certificate chain; with tls.key, the listener speaks TLS with ALPN h2/http1.1",
    ),
    Setting("tls.key", "TRIOPROXY_TLS_KEY", parse_str, "", "PEM private key for tls.cert"),
    Setting(
        "upstream.url",
        "TRIOPROXY_UPSTREAM",
        parse_str,
        "https://api.anthropic.com",
        "base URL of the upstream API (https:// or http://)",
    ),
    Setting(
        "upstream.api_key",
        "TRIOPROXY_UPSTREAM_API_KEY",
        parse_str,
        "",
        "provider key injected upstream (inject mode); empty: the caller's own credential passes through (loopback only)",
        secret=True,
    ),
    Setting(
        "upstream.api_key_file",
        "TRIOPROXY_UPSTREAM_API_KEY_FILE",
        parse_str,
        "",
        "file holding the provider key (keeps it out of the environment)",
    ),
    Setting(
        "upstream.auth_header",
        "TRIOPROXY_UPSTREAM_AUTH_HEADER",
        parse_str,
        "x-api-key",
        "header that carries the provider key (x-api-key for Anthropic; e.g. authorization)",
    ),
    Setting(
        "upstream.auth_scheme",
        "TRIOPROXY_UPSTREAM_AUTH_SCHEME",
        parse_str,
        "",
        "scheme before the key, e.g. Bearer (for Authorization: Bearer KEY); empty: the bare key",
    ),
    Setting(
        "upstream.ca_bundle",
        "TRIOPROXY_UPSTREAM_CA_BUNDLE",
        parse_str,
        "",
        "PEM CA bundle to verify the upstream with, instead of the system store",
    ),
    Setting(
        "upstream.http2",
        "TRIOPROXY_UPSTREAM_HTTP2",
        parse_bool,
        True,
        "offer h2 by ALPN to https upstreams (falls back to HTTP/1.1)",
    ),
    Setting(
        "upstream.h2_prior_knowledge",
        "TRIOPROXY_UPSTREAM_H2_PRIOR_KNOWLEDGE",
        parse_bool,
        False,
        "speak HTTP/2 without negotiation to an http:// upstream (h2c)",
    ),
    Setting(
        "upstream.max_connections",
        "TRIOPROXY_UPSTREAM_MAX_CONNECTIONS",
        parse_positive_int,
        4096,
        "HTTP/1.1 connections per upstream origin, in use or idle (HTTP/2 multiplexes on a few)",
    ),
    Setting(
        "upstream.idle_timeout",
        "TRIOPROXY_UPSTREAM_IDLE_TIMEOUT",
        parse_seconds,
        60.0,
        "seconds an idle pooled upstream connection is kept",
    ),
    Setting(
        "routing.mode",
        "TRIOPROXY_ROUTING_MODE",
        parse_mode,
        "failover",
        "failover (providers by priority, skipping unavailable ones) or single (routing.provider only); `trioproxy switch` changes it at runtime",
    ),
    Setting(
        "routing.provider",
        "TRIOPROXY_ROUTING_PROVIDER",
        parse_str,
        "",
        "the provider of single mode",
    ),
    Setting(
        "routing.agents_dirs",
        "TRIOPROXY_ROUTING_AGENTS_DIRS",
        parse_paths,
        (),
        "directories of Claude Code agent definitions (`<name>.md`, as in `.claude/agents`) that `[[routes]]` match by `subagent`; read at start and on reload",
    ),
    Setting(
        "routing.allow_pin",
        "TRIOPROXY_ROUTING_ALLOW_PIN",
        parse_bool,
        False,
        "let callers pin a request to a provider with `x-trioproxy-provider: NAME`",
    ),
    Setting(
        "routing.retries",
        "TRIOPROXY_ROUTING_RETRIES",
        parse_count,
        2,
        "retries on the same provider for connection errors, and for 503 while another provider could serve",
    ),
    Setting(
        "routing.retry_budget",
        "TRIOPROXY_ROUTING_RETRY_BUDGET",
        parse_fraction,
        0.2,
        "same-provider retries in flight at most this fraction of requests in flight (at least 3)",
    ),
    Setting(
        "routing.retry_after_cap",
        "TRIOPROXY_ROUTING_RETRY_AFTER_CAP",
        parse_seconds,
        10.0,
        "longest `retry-after` the proxy waits out; a longer one fails over instead",
    ),
    Setting(
        "routing.backoff",
        "TRIOPROXY_ROUTING_BACKOFF",
        parse_seconds,
        0.5,
        "first retry delay, doubled per retry, with jitter",
    ),
    Setting(
        "routing.cooldown_s",
        "TRIOPROXY_ROUTING_COOLDOWN",
        parse_seconds,
        10.0,
        "seconds a provider key (or, passing through, the caller's credential) sits out after a 429 without `retry-after`",
    ),
    Setting(
        "routing.breaker_failure_rate",
        "TRIOPROXY_ROUTING_BREAKER_FAILURE_RATE",
        parse_fraction,
        0.5,
        "the circuit breaker opens when this fraction of requests in the window failed (5xx, 529, connection errors, header timeouts)",
    ),
    Setting(
        "routing.breaker_min_requests",
        "TRIOPROXY_ROUTING_BREAKER_MIN_REQUESTS",
        parse_positive_int,
        10,
        "distinct requests in the window before the breaker's failure rate counts",
    ),
    Setting(
        "routing.breaker_window_s",
        "TRIOPROXY_ROUTING_BREAKER_WINDOW",
        parse_seconds,
        30.0,
        "the breaker's sliding window, seconds",
    ),
    Setting(
        "routing.open_s",
        "TRIOPROXY_ROUTING_BREAKER_OPEN",
        parse_seconds,
        30.0,
        "seconds the circuit breaker stays open before one trial request may close it",
    ),
    Setting(
        "cors.allow_origins",
        "TRIOPROXY_CORS_ALLOW_ORIGINS",
        parse_origins,
        (),
        "browser origins (`https://app.example`, comma-separated; `*` for any) whose CORS preflights the proxy answers itself, before auth, and whose answers it marks readable; empty: preflights pass through",
    ),
    Setting(
        "scrub.mode",
        "TRIOPROXY_SCRUB_MODE",
        parse_scrub_mode,
        "off",
        "off, or pseudonymize: credentials and identifiers in request text are replaced by placeholders before they leave",
    ),
    Setting(
        "scrub.restore",
        "TRIOPROXY_SCRUB_RESTORE",
        parse_bool,
        True,
        "put a request's placeholders back into its response (JSON and SSE)",
    ),
    Setting(
        "scrub.hmac_key",
        "TRIOPROXY_SCRUB_HMAC_KEY",
        parse_str,
        "",
        "64 hex characters; keys the identifier placeholders (<EMAIL_HMAC:...>); required with pseudonymize",
        secret=True,
    ),
    Setting(
        "scrub.max_body_bytes",
        "TRIOPROXY_SCRUB_MAX_BODY_BYTES",
        parse_positive_int,
        10 * 1024 * 1024,
        "bodies larger than this pass unscrubbed (counted, logged once)",
    ),
    Setting(
        "scrub.allow",
        "TRIOPROXY_SCRUB_ALLOW",
        parse_allow,
        ("noreply@anthropic.com",),
        "e-mail addresses and domains (a domain covers its subdomains) never scrubbed, comma-separated; the default keeps Claude Code's own Co-Authored-By line; setting it replaces the list",
    ),
    Setting(
        "usage.ledger",
        "TRIOPROXY_USAGE_LEDGER",
        parse_bool,
        True,
        "append a summary row per request (no bodies) to STATE_DIR/usage.sqlite3 for `trioproxy usage`",
    ),
    Setting(
        "usage.retention_days",
        "TRIOPROXY_USAGE_RETENTION_DAYS",
        parse_positive_int,
        90,
        "ledger rows older than this are deleted (at start and hourly)",
    ),
    Setting(
        "stream_failure",
        "TRIOPROXY_STREAM_FAILURE",
        parse_stream_failure,
        "cut",
        "when the upstream breaks a stream mid-response: cut (the client's stream ends the same way, so it retries as it would direct) or error_event (a final SSE `event: error`)",
    ),
    Setting(
        "demote_nonstreaming",
        "TRIOPROXY_DEMOTE_NONSTREAMING",
        parse_bool,
        False,
        "send non-streaming Messages requests upstream as streams and rebuild the JSON answer, so no header timeout on the way fires during a long generation (per provider: `demote_nonstreaming`)",
    ),
    Setting(
        "stream_keepalive_s",
        "TRIOPROXY_STREAM_KEEPALIVE",
        parse_nonneg_seconds,
        0.0,
        "after this many seconds without a byte from the upstream, an SSE response gets an `event: ping` at an event boundary (15 behind Cloudflare or Traefik); 0: off",
    ),
    Setting(
        "timeouts.connect",
        "TRIOPROXY_CONNECT_TIMEOUT",
        parse_seconds,
        10.0,
        "upstream connect + TLS handshake (then 502)",
    ),
    Setting(
        "timeouts.pool",
        "TRIOPROXY_POOL_TIMEOUT",
        parse_seconds,
        10.0,
        "a request waiting this long for a free upstream connection (all max_connections busy) gets 503 overloaded_error",
    ),
    Setting(
        "timeouts.response_headers",
        "TRIOPROXY_RESPONSE_HEADERS_TIMEOUT",
        parse_seconds,
        600.0,
        "upstream response headers after the request was sent (then 504)",
    ),
    Setting(
        "timeouts.upstream_body_idle",
        "TRIOPROXY_UPSTREAM_BODY_IDLE_TIMEOUT",
        parse_seconds,
        600.0,
        "no upstream body byte for this long ends the response as `stream_failure` says",
    ),
    Setting(
        "timeouts.client_head",
        "TRIOPROXY_CLIENT_HEAD_TIMEOUT",
        parse_seconds,
        30.0,
        "a client's request head must complete within this (then 408; slowloris)",
    ),
    Setting(
        "timeouts.client_body_idle",
        "TRIOPROXY_CLIENT_BODY_IDLE_TIMEOUT",
        parse_seconds,
        60.0,
        "no request body byte for this long (then 408)",
    ),
    Setting(
        "timeouts.keepalive_idle",
        "TRIOPROXY_KEEPALIVE_TIMEOUT",
        parse_seconds,
        75.0,
        "idle keep-alive client connections are closed quietly after this",
    ),
    Setting(
        "timeouts.drain_grace",
        "TRIOPROXY_DRAIN_GRACE",
        parse_nonneg_seconds,
        10.0,
        "on SIGTERM, /health answers 503 at once while both listeners keep accepting and serving for this long (0: stop accepting at once)",
    ),
    Setting(
        "timeouts.drain",
        "TRIOPROXY_DRAIN_TIMEOUT",
        parse_seconds,
        600.0,
        "after the drain grace, in-flight requests may finish for this long",
    ),
    Setting(
        "limits.max_body_bytes",
        "TRIOPROXY_MAX_BODY_BYTES",
        parse_positive_int,
        32 * 1024 * 1024,
        "request body limit (then 413)",
    ),
    Setting(
        "limits.max_head_bytes",
        "TRIOPROXY_MAX_HEAD_BYTES",
        parse_positive_int,
        64 * 1024,
        "request line + headers limit (then 431)",
    ),
    Setting(
        "limits.max_headers",
        "TRIOPROXY_MAX_HEADERS",
        parse_positive_int,
        100,
        "header fields per request (then 431)",
    ),
    Setting(
        "limits.h2_max_concurrent_streams",
        "TRIOPROXY_H2_MAX_CONCURRENT_STREAMS",
        parse_positive_int,
        100,
        "HTTP/2 streams a client may open at once",
    ),
    Setting(
        "limits.h2_max_resets_per_second",
        "TRIOPROXY_H2_MAX_RESETS_PER_SECOND",
        parse_positive_int,
        100,
        "HTTP/2 stream resets a client may send per second (burst 2x) before GOAWAY ENHANCE_YOUR_CALM (rapid reset)",
    ),
    Setting(
        "limits.h2_stream_window",
        "TRIOPROXY_H2_STREAM_WINDOW",
        parse_positive_int,
        256 * 1024,
        "HTTP/2 receive window per stream, bytes (bounds buffered request body)",
    ),
)
_BY_KEY = {s.key: s for s in SETTINGS}
