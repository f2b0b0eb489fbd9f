"""Configuration: one table of settings, read from defaults < TOML < env < flags,
validated once into frozen dataclasses.

Every setting has one TOML key, one ``TRIOPROXY_*`` variable, a type, a default
and a line of documentation; the README table and ``check-config`` are generated
from the same table, so they cannot drift apart. Any problem is a ``ConfigError``
whose one-line message names the key; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trioproxy.accounting.pricing import DEFAULT_PRICES, Price, parse_pricing
from trioproxy.pipeline.auth import Secret, parse_secrets
from trioproxy.pipeline.binding import is_loopback
from trioproxy.routing.config import (
    ProviderConfig,
    RoutingConfig,
    breaker_policy,
    build_routing,
    provider_key_envs,
)
from trioproxy.upstream.settings import Credential, Origin, UpstreamConfig, parse_origin


class ConfigError(Exception):
    """A bad setting; the message is one line and names the key."""


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _parse_seconds(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number of seconds")
    value = float(raw)  # type: ignore[arg-type]
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return value


def _parse_nonneg_seconds(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number of seconds")
    value = float(raw)  # type: ignore[arg-type]
    if not value >= 0 or value == float("inf"):
        raise ValueError("expected a number of seconds >= 0")
    return value


def _parse_positive_int(raw: object) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("expected a positive whole number")
    value: int = int(raw)  # type: ignore[call-overload]
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


def _parse_count(raw: object) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError("expected a whole number")
    value: int = int(raw)  # type: ignore[call-overload]
    if value < 0:
        raise ValueError("expected a whole number >= 0")
    return value


def _parse_fraction(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a fraction in (0, 1]")
    value = float(raw)  # type: ignore[arg-type]
    if not 0 < value <= 1:
        raise ValueError("expected a fraction in (0, 1]")
    return value


def _choice(*values: str) -> Callable[[object], str]:
    """A parser for one of ``values`` (case-insensitive)."""

    def parse(raw: object) -> str:
        value = _parse_str(raw).lower()
        if value not in values:
            raise ValueError("expected " + " or ".join(values))
        return value

    return parse


def _list_of(entry: Callable[[str], str]) -> Callable[[object], tuple[str, ...]]:
    """A parser for a TOML list of strings, or one comma-separated string
    (as an environment variable gives it); each item is lower-cased, blank
    ones are dropped, and ``entry`` checks (and may normalize) the rest."""

    def parse(raw: object) -> tuple[str, ...]:
        items = raw if isinstance(raw, list) else _parse_str(raw).split(",")
        if not all(isinstance(item, str) for item in items):
            raise ValueError("expected a list of strings")
        return tuple(entry(item.strip().lower()) for item in items if item.strip())

    return parse


def _origin_entry(origin: str) -> str:
    origin = origin.rstrip("/")
    scheme, sep, rest = origin.partition("://")
    if origin != "*" and (scheme not in ("http", "https") or not sep or not rest or "/" in rest):
        raise ValueError(f"{origin!r} is not an origin such as https://app.example or *")
    return origin


def _allow_entry(entry: str) -> str:
    if "." not in entry.rpartition("@")[2] or any(c in entry for c in ' ,/<>"\\'):
        raise ValueError(f"{entry!r} is not an e-mail address or a domain")
    return entry


_parse_stream_failure = _choice("cut", "error_event")
_parse_mode = _choice("failover", "single")
_parse_scrub_mode = _choice("off", "pseudonymize")
_parse_log_format = _choice("json", "logfmt")
_parse_origins = _list_of(_origin_entry)
_parse_allow = _list_of(_allow_entry)


def _parse_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _parse_secret_list(raw: object) -> str:
    """TOML may give a list of "name:secret" strings; env gives one string."""
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return ",".join(raw)
    return _parse_str(raw)


def _parse_log_level(raw: object) -> str:
    value = _parse_str(raw).lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError("expected one of debug, info, warning, error")
    return value


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
        _parse_str,
        "127.0.0.1:8787",
        "address the proxy listens on (HOST:PORT; [v6]:PORT)",
    ),
    Setting(
        "log_level",
        "TRIOPROXY_LOG_LEVEL",
        _parse_log_level,
        "info",
        "debug, info, warning or error",
    ),
    Setting(
        "log_format",
        "TRIOPROXY_LOG_FORMAT",
        _parse_log_format,
        "json",
        "the per-request access line: json or logfmt",
    ),
    Setting(
        "log_slow_seconds",
        "TRIOPROXY_LOG_SLOW_SECONDS",
        _parse_seconds,
        60.0,
        "requests whose response headers take longer than this are logged at warning",
    ),
    Setting(
        "state_dir",
        "TRIOPROXY_STATE_DIR",
        _parse_str,
        None,
        "persistent state (quotas, ledger, routing mode); default $STATE_DIRECTORY or ~/.local/state/trioproxy",
    ),
    Setting(
        "auth.secrets",
        "TRIOPROXY_AUTH_SECRETS",
        _parse_secret_list,
        "",
        "caller secrets, `name:secret` pairs separated by commas (several at once: rotation); empty: auth off (loopback only)",
        secret=True,
    ),
    Setting(
        "auth.secrets_file",
        "TRIOPROXY_AUTH_SECRETS_FILE",
        _parse_str,
        "",
        "file with one `name:secret` (or bare secret) per line, `#` comments; added to auth.secrets",
    ),
    Setting(
        "admin.token",
        "TRIOPROXY_ADMIN_TOKEN",
        _parse_str,
        "",
        "token for /admin/* (distinct from caller secrets); required for admin when the listener is not loopback",
        secret=True,
    ),
    Setting(
        "admin.listen",
        "TRIOPROXY_ADMIN_LISTEN",
        _parse_str,
        "",
        "a separate HOST:PORT for /admin/* (and /health, /livez), e.g. to firewall it to admin networks; empty: on the main port",
    ),
    Setting(
        "trust_front_proxy",
        "TRIOPROXY_TRUST_FRONT_PROXY",
        _parse_bool,
        False,
        "allow a non-loopback listener without caller auth (a front proxy authenticates for us)",
    ),
    Setting(
        "tls.cert",
        "TRIOPROXY_TLS_CERT",
        _parse_str,
        "",
        "PEM certificate chain; with tls.key, the listener speaks TLS with ALPN h2/http1.1",
    ),
    Setting("tls.key", "TRIOPROXY_TLS_KEY", _parse_str, "", "PEM private key for tls.cert"),
    Setting(
        "upstream.url",
        "TRIOPROXY_UPSTREAM",
        _parse_str,
        "https://api.anthropic.com",
        "base URL of the upstream API (https:// or http://)",
    ),
    Setting(
        "upstream.api_key",
        "TRIOPROXY_UPSTREAM_API_KEY",
        _parse_str,
        "",
        "provider key injected upstream (inject mode); empty: the caller's own credential passes through (loopback only)",
        secret=True,
    ),
    Setting(
        "upstream.api_key_file",
        "TRIOPROXY_UPSTREAM_API_KEY_FILE",
        _parse_str,
        "",
        "file holding the provider key (keeps it out of the environment)",
    ),
    Setting(
        "upstream.auth_header",
        "TRIOPROXY_UPSTREAM_AUTH_HEADER",
        _parse_str,
        "x-api-key",
        "header that carries the provider key (x-api-key for Anthropic; e.g. authorization)",
    ),
    Setting(
        "upstream.auth_scheme",
        "TRIOPROXY_UPSTREAM_AUTH_SCHEME",
        _parse_str,
        "",
        "scheme before the key, e.g. Bearer (for Authorization: Bearer KEY); empty: the bare key",
    ),
    Setting(
        "upstream.ca_bundle",
        "TRIOPROXY_UPSTREAM_CA_BUNDLE",
        _parse_str,
        "",
        "PEM CA bundle to verify the upstream with, instead of the system store",
    ),
    Setting(
        "upstream.http2",
        "TRIOPROXY_UPSTREAM_HTTP2",
        _parse_bool,
        True,
        "offer h2 by ALPN to https upstreams (falls back to HTTP/1.1)",
    ),
    Setting(
        "upstream.h2_prior_knowledge",
        "TRIOPROXY_UPSTREAM_H2_PRIOR_KNOWLEDGE",
        _parse_bool,
        False,
        "speak HTTP/2 without negotiation to an http:// upstream (h2c)",
    ),
    Setting(
        "upstream.max_connections",
        "TRIOPROXY_UPSTREAM_MAX_CONNECTIONS",
        _parse_positive_int,
        256,
        "connections per upstream origin, in use or idle",
    ),
    Setting(
        "upstream.idle_timeout",
        "TRIOPROXY_UPSTREAM_IDLE_TIMEOUT",
        _parse_seconds,
        60.0,
        "seconds an idle pooled upstream connection is kept",
    ),
    Setting(
        "routing.mode",
        "TRIOPROXY_ROUTING_MODE",
        _parse_mode,
        "failover",
        "failover (providers by priority, skipping unavailable ones) or single (routing.provider only); `trioproxy switch` changes it at runtime",
    ),
    Setting(
        "routing.provider",
        "TRIOPROXY_ROUTING_PROVIDER",
        _parse_str,
        "",
        "the provider of single mode",
    ),
    Setting(
        "routing.allow_pin",
        "TRIOPROXY_ROUTING_ALLOW_PIN",
        _parse_bool,
        False,
        "let callers pin a request to a provider with `x-trioproxy-provider: NAME`",
    ),
    Setting(
        "routing.retries",
        "TRIOPROXY_ROUTING_RETRIES",
        _parse_count,
        2,
        "retries on the same provider for connection errors, and for 503 while another provider could serve",
    ),
    Setting(
        "routing.retry_budget",
        "TRIOPROXY_ROUTING_RETRY_BUDGET",
        _parse_fraction,
        0.2,
        "same-provider retries in flight at most this fraction of requests in flight (at least 3)",
    ),
    Setting(
        "routing.retry_after_cap",
        "TRIOPROXY_ROUTING_RETRY_AFTER_CAP",
        _parse_seconds,
        10.0,
        "longest `retry-after` the proxy waits out; a longer one fails over instead",
    ),
    Setting(
        "routing.backoff",
        "TRIOPROXY_ROUTING_BACKOFF",
        _parse_seconds,
        0.5,
        "first retry delay, doubled per retry, with jitter",
    ),
    Setting(
        "routing.cooldown_s",
        "TRIOPROXY_ROUTING_COOLDOWN",
        _parse_seconds,
        10.0,
        "seconds a provider key (or, passing through, the caller's credential) sits out after a 429 without `retry-after`",
    ),
    Setting(
        "routing.breaker_failure_rate",
        "TRIOPROXY_ROUTING_BREAKER_FAILURE_RATE",
        _parse_fraction,
        0.5,
        "the circuit breaker opens when this fraction of requests in the window failed (5xx, 529, connection errors, header timeouts)",
    ),
    Setting(
        "routing.breaker_min_requests",
        "TRIOPROXY_ROUTING_BREAKER_MIN_REQUESTS",
        _parse_positive_int,
        10,
        "distinct requests in the window before the breaker's failure rate counts",
    ),
    Setting(
        "routing.breaker_window_s",
        "TRIOPROXY_ROUTING_BREAKER_WINDOW",
        _parse_seconds,
        30.0,
        "the breaker's sliding window, seconds",
    ),
    Setting(
        "routing.open_s",
        "TRIOPROXY_ROUTING_BREAKER_OPEN",
        _parse_seconds,
        30.0,
        "seconds the circuit breaker stays open before one trial request may close it",
    ),
    Setting(
        "cors.allow_origins",
        "TRIOPROXY_CORS_ALLOW_ORIGINS",
        _parse_origins,
        (),
        "browser origins (`https://app.example`, comma-separated; `*` for any) whose CORS preflights the proxy answers itself, before auth, and whose answers it marks readable; empty: preflights pass through",
    ),
    Setting(
        "scrub.mode",
        "TRIOPROXY_SCRUB_MODE",
        _parse_scrub_mode,
        "off",
        "off, or pseudonymize: credentials and identifiers in request text are replaced by placeholders before they leave",
    ),
    Setting(
        "scrub.restore",
        "TRIOPROXY_SCRUB_RESTORE",
        _parse_bool,
        True,
        "put a request's placeholders back into its response (JSON and SSE)",
    ),
    Setting(
        "scrub.hmac_key",
        "TRIOPROXY_SCRUB_HMAC_KEY",
        _parse_str,
        "",
        "64 hex characters; keys the identifier placeholders (<EMAIL_HMAC:...>); required with pseudonymize",
        secret=True,
    ),
    Setting(
        "scrub.max_body_bytes",
        "TRIOPROXY_SCRUB_MAX_BODY_BYTES",
        _parse_positive_int,
        10 * 1024 * 1024,
        "bodies larger than this pass unscrubbed (counted, logged once)",
    ),
    Setting(
        "scrub.allow",
        "TRIOPROXY_SCRUB_ALLOW",
        _parse_allow,
        ("noreply@anthropic.com",),
        "e-mail addresses and domains (a domain covers its subdomains) never scrubbed, comma-separated; the default keeps Claude Code's own Co-Authored-By line; setting it replaces the list",
    ),
    Setting(
        "usage.ledger",
        "TRIOPROXY_USAGE_LEDGER",
        _parse_bool,
        True,
        "append a summary row per request (no bodies) to STATE_DIR/usage.sqlite3 for `trioproxy usage`",
    ),
    Setting(
        "usage.retention_days",
        "TRIOPROXY_USAGE_RETENTION_DAYS",
        _parse_positive_int,
        90,
        "ledger rows older than this are deleted (at start and hourly)",
    ),
    Setting(
        "stream_failure",
        "TRIOPROXY_STREAM_FAILURE",
        _parse_stream_failure,
        "cut",
        "when the upstream breaks a stream mid-response: cut (the client's stream ends the same way, so it retries as it would direct) or error_event (a final SSE `event: error`)",
    ),
    Setting(
        "timeouts.connect",
        "TRIOPROXY_CONNECT_TIMEOUT",
        _parse_seconds,
        10.0,
        "upstream connect + TLS handshake (then 502)",
    ),
    Setting(
        "timeouts.response_headers",
        "TRIOPROXY_RESPONSE_HEADERS_TIMEOUT",
        _parse_seconds,
        600.0,
        "upstream response headers after the request was sent (then 504)",
    ),
    Setting(
        "timeouts.upstream_body_idle",
        "TRIOPROXY_UPSTREAM_BODY_IDLE_TIMEOUT",
        _parse_seconds,
        600.0,
        "no upstream body byte for this long ends the response as `stream_failure` says",
    ),
    Setting(
        "timeouts.client_head",
        "TRIOPROXY_CLIENT_HEAD_TIMEOUT",
        _parse_seconds,
        30.0,
        "a client's request head must complete within this (then 408; slowloris)",
    ),
    Setting(
        "timeouts.client_body_idle",
        "TRIOPROXY_CLIENT_BODY_IDLE_TIMEOUT",
        _parse_seconds,
        60.0,
        "no request body byte for this long (then 408)",
    ),
    Setting(
        "timeouts.keepalive_idle",
        "TRIOPROXY_KEEPALIVE_TIMEOUT",
        _parse_seconds,
        75.0,
        "idle keep-alive client connections are closed quietly after this",
    ),
    Setting(
        "timeouts.drain_grace",
        "TRIOPROXY_DRAIN_GRACE",
        _parse_nonneg_seconds,
        10.0,
        "on SIGTERM, /health answers 503 at once while both listeners keep accepting and serving for this long (0: stop accepting at once)",
    ),
    Setting(
        "timeouts.drain",
        "TRIOPROXY_DRAIN_TIMEOUT",
        _parse_seconds,
        600.0,
        "after the drain grace, in-flight requests may finish for this long",
    ),
    Setting(
        "limits.max_body_bytes",
        "TRIOPROXY_MAX_BODY_BYTES",
        _parse_positive_int,
        32 * 1024 * 1024,
        "request body limit (then 413)",
    ),
    Setting(
        "limits.max_head_bytes",
        "TRIOPROXY_MAX_HEAD_BYTES",
        _parse_positive_int,
        64 * 1024,
        "request line + headers limit (then 431)",
    ),
    Setting(
        "limits.max_headers",
        "TRIOPROXY_MAX_HEADERS",
        _parse_positive_int,
        100,
        "header fields per request (then 431)",
    ),
    Setting(
        "limits.h2_max_concurrent_streams",
        "TRIOPROXY_H2_MAX_CONCURRENT_STREAMS",
        _parse_positive_int,
        100,
        "HTTP/2 streams a client may open at once",
    ),
    Setting(
        "limits.h2_max_resets_per_second",
        "TRIOPROXY_H2_MAX_RESETS_PER_SECOND",
        _parse_positive_int,
        100,
        "HTTP/2 stream resets a client may send per second (burst 2x) before GOAWAY ENHANCE_YOUR_CALM (rapid reset)",
    ),
    Setting(
        "limits.h2_stream_window",
        "TRIOPROXY_H2_STREAM_WINDOW",
        _parse_positive_int,
        256 * 1024,
        "HTTP/2 receive window per stream, bytes (bounds buffered request body)",
    ),
)
_BY_KEY = {s.key: s for s in SETTINGS}


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_hostport(raw: str, key: str) -> Endpoint:
    host, sep, port_s = raw.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: expected HOST:PORT, got {raw!r}")
    host = host.removeprefix("[").removesuffix("]")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"{key}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} out of range")
    return Endpoint(host, port)


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


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_head_bytes: int
    max_headers: int
    h2_max_concurrent_streams: int
    h2_stream_window: int
    h2_max_resets_per_second: int


@dataclass(frozen=True, slots=True)
class AuthConfig:
    secrets: tuple[Secret, ...]
    admin_token: bytes = field(repr=False)
    trust_front_proxy: bool

    @property
    def enabled(self) -> bool:
        return bool(self.secrets)


@dataclass(frozen=True, slots=True)
class ScrubConfig:
    restore: bool
    hmac_key: bytes = field(repr=False)
    max_body_bytes: int
    allow: tuple[str, ...] = ()  # e-mail addresses and domains never scrubbed, lower case


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
    cors_allow_origins: tuple[str, ...] = ()
    usage_ledger: bool = True
    usage_retention_days: int = 90
    pricing: tuple[Price, ...] = DEFAULT_PRICES  # [pricing] entries first, then the defaults
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def upstream(self) -> UpstreamConfig:
        """The first provider's upstream (the only one without [[providers]])."""
        return self.routing.providers[0].upstream


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective Config. ``overrides`` are command-line flags by TOML key."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    structured: dict[str, Any] = {}  # [[providers]] and [aliases]: not flat settings
    if path:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"--config: file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None
        for name in ("providers", "aliases", "pricing"):
            if name in doc:
                structured[name] = doc.pop(name)
        for key, value in _flatten(doc).items():
            if key not in _BY_KEY:
                raise ConfigError(f"{key}: unknown setting in {path}")
            values[key] = (value, f"{key} (in {path})")
    for name in ("providers", "aliases", "pricing"):
        if overrides and overrides.get(name) is not None:
            structured[name] = overrides[name]
    known_env = {s.env for s in SETTINGS} | provider_key_envs(structured.get("providers"))
    for name in env:
        if name.startswith("TRIOPROXY_") and name not in known_env and name not in _FOREIGN_ENV:
            raise ConfigError(f"{name}: unknown setting")
    for s in SETTINGS:
        if s.env in env:
            values[s.key] = (env[s.env], s.env)
    for key, value in (overrides or {}).items():
        if key not in _BY_KEY and key not in ("providers", "aliases", "pricing"):
            raise ConfigError(f"{key}: unknown setting (override)")
        if value is not None and key not in ("providers", "aliases", "pricing"):
            values[key] = (value, "--" + key.split(".")[-1])
    parsed: dict[str, Any] = {}
    for s in SETTINGS:
        if s.key in values:
            raw, where = values[s.key]
            try:
                parsed[s.key] = s.parse(raw)
            except (ValueError, TypeError) as exc:
                shown = "<redacted>" if s.secret else repr(raw)
                raise ConfigError(f"{where}: bad value {shown}: {exc}") from None
        else:
            parsed[s.key] = s.default
    return _build(parsed, structured, env, explicit=set(values))


# Variables other parts of the system read, which the strict check must not reject.
_FOREIGN_ENV: frozenset[str] = frozenset()


def _build(
    p: dict[str, Any], structured: Mapping[str, Any], env: Mapping[str, str], explicit: set[str]
) -> Config:
    tls_cert, tls_key = p["tls.cert"], p["tls.key"]
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError(
            "tls.cert / tls.key: set both or neither (TRIOPROXY_TLS_CERT, TRIOPROXY_TLS_KEY)"
        )
    for key in ("tls.cert", "tls.key", "upstream.ca_bundle"):
        if p[key] and not Path(p[key]).is_file():
            raise ConfigError(f"{key}: file not found: {p[key]}")
    if tls_cert:
        _check_tls(tls_cert, tls_key)
    listen = parse_hostport(p["listen"], "listen")
    admin_listen = parse_hostport(p["admin.listen"], "admin.listen") if p["admin.listen"] else None
    if admin_listen is not None and _same_port(listen, admin_listen):
        raise ConfigError(
            f"admin.listen {admin_listen}: the same address as listen {listen}; "
            "the admin listener needs a port of its own"
        )
    auth = _build_auth(p)
    routing = _build_routing(p, structured, env, explicit)
    if auth.enabled:
        for prov in routing.providers:
            if prov.upstream.credential is None and prov.name == "default":
                raise ConfigError(
                    "auth.secrets: caller secrets need a provider key to send upstream instead "
                    "(TRIOPROXY_UPSTREAM_API_KEY or TRIOPROXY_UPSTREAM_API_KEY_FILE)"
                )
            if prov.upstream.credential is None:
                raise ConfigError(
                    f"providers[{prov.name}]: with caller auth on, every provider needs its key "
                    "(api_key_env or api_key_file)"
                )
    return Config(
        listen=listen,
        admin_listen=admin_listen,
        auth=auth,
        routing=routing,
        scrub=_build_scrub(p),
        timeouts=Timeouts(
            connect=p["timeouts.connect"],
            response_headers=p["timeouts.response_headers"],
            upstream_body_idle=p["timeouts.upstream_body_idle"],
            client_head=p["timeouts.client_head"],
            client_body_idle=p["timeouts.client_body_idle"],
            keepalive_idle=p["timeouts.keepalive_idle"],
            drain=p["timeouts.drain"],
            drain_grace=p["timeouts.drain_grace"],
        ),
        limits=Limits(
            max_body_bytes=p["limits.max_body_bytes"],
            max_head_bytes=p["limits.max_head_bytes"],
            max_headers=p["limits.max_headers"],
            h2_max_concurrent_streams=p["limits.h2_max_concurrent_streams"],
            h2_stream_window=p["limits.h2_stream_window"],
            h2_max_resets_per_second=p["limits.h2_max_resets_per_second"],
        ),
        tls_cert=tls_cert,
        tls_key=tls_key,
        state_dir=p["state_dir"] or default_state_dir(),
        log_level=p["log_level"],
        log_format=p["log_format"],
        log_slow_seconds=p["log_slow_seconds"],
        stream_failure=p["stream_failure"],
        cors_allow_origins=p["cors.allow_origins"],
        usage_ledger=p["usage.ledger"],
        usage_retention_days=p["usage.retention_days"],
        pricing=_build_pricing(structured.get("pricing")),
        raw=dict(p),
    )


_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def _same_port(a: Endpoint, b: Endpoint) -> bool:
    """Would both listeners need the same socket? (Port 0 picks a free one.)"""
    if a.port != b.port or a.port == 0:
        return False
    return a.host == b.host or a.host in _WILDCARDS or b.host in _WILDCARDS


def _check_tls(cert: str, key: str) -> None:
    """Load the certificate and key the way the listener will, so that a file
    that is not PEM, a key that does not match, or one that cannot be read is
    a one-line error naming the setting, at check-config and at start."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for key_name, path in (("tls.cert", cert), ("tls.key", key)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{key_name}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        ctx.load_verify_locations(cafile=cert)
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"tls.cert: {cert} holds no PEM certificate") from None
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = (
            "does not match tls.cert"
            if "KEY_VALUES_MISMATCH" in str(exc)
            else "is not a PEM private key"
        )
        raise ConfigError(f"tls.key: {key} {why}") from None


def _build_routing(
    p: dict[str, Any], structured: Mapping[str, Any], env: Mapping[str, str], explicit: set[str]
) -> RoutingConfig:
    providers_raw = structured.get("providers")
    if providers_raw is not None:
        clash = sorted(explicit & {"upstream.url", "upstream.api_key", "upstream.api_key_file"})
        if clash:
            raise ConfigError(
                f"{clash[0]}: with [[providers]] configured, each provider has its own "
                "base_url and key; remove the upstream.* setting"
            )
        default = None
    else:
        origin = _origin(p["upstream.url"], "upstream.url")
        if p["upstream.h2_prior_knowledge"] and origin.scheme != "http":
            raise ConfigError(
                "upstream.h2_prior_knowledge: only for http:// upstreams (https negotiates by ALPN)"
            )
        default = ProviderConfig(
            name="default",
            upstream=UpstreamConfig(
                origin=origin,
                credential=_build_credential(p),
                ca_bundle=p["upstream.ca_bundle"],
                http2=p["upstream.http2"],
                h2_prior_knowledge=p["upstream.h2_prior_knowledge"],
                max_connections=p["upstream.max_connections"],
                idle_timeout=p["upstream.idle_timeout"],
            ),
            family="anthropic" if origin.host.endswith("anthropic.com") else "default",
            priority=0,
            enabled=True,
            models=(),
            default_model=None,
            drop_fields=frozenset(),
            drop_betas=frozenset(),
            retries=p["routing.retries"],
            cooldown_s=p["routing.cooldown_s"],
            breaker=breaker_policy(p, p["routing.open_s"]),
            connect_timeout=None,
            response_headers_timeout=None,
            quota=None,
        )
    try:
        return build_routing(providers_raw, structured.get("aliases"), p, env, default)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _build_pricing(raw: object) -> tuple[Price, ...]:
    try:
        return parse_pricing(raw) + DEFAULT_PRICES
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _build_scrub(p: dict[str, Any]) -> ScrubConfig | None:
    if p["scrub.mode"] == "off":
        return None
    raw = p["scrub.hmac_key"].strip()
    if not raw:
        raise ConfigError(
            "scrub.hmac_key: required when scrub.mode is pseudonymize "
            "(TRIOPROXY_SCRUB_HMAC_KEY; make one with: openssl rand -hex 32)"
        )
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError("scrub.hmac_key: expected 64 hex characters (TRIOPROXY_SCRUB_HMAC_KEY)")
    return ScrubConfig(p["scrub.restore"], key, p["scrub.max_body_bytes"], p["scrub.allow"])


def _origin(raw: str, key: str) -> Origin:
    try:
        return parse_origin(raw, key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _read_secret_file(path: str, key: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def _build_auth(p: dict[str, Any]) -> AuthConfig:
    text = p["auth.secrets"]
    if p["auth.secrets_file"]:
        text += "\n" + _read_secret_file(p["auth.secrets_file"], "auth.secrets_file")
    try:
        secrets = parse_secrets(text, "auth.secrets")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return AuthConfig(secrets, p["admin.token"].encode(), p["trust_front_proxy"])


def _build_credential(p: dict[str, Any]) -> Credential | None:
    key = p["upstream.api_key"]
    if p["upstream.api_key_file"]:
        if key:
            raise ConfigError("upstream.api_key_file: set the key or the file, not both")
        key = _read_secret_file(p["upstream.api_key_file"], "upstream.api_key_file").strip()
    if not key:
        return None
    header = p["upstream.auth_header"].strip().lower()
    if not header or any(c in header for c in " :\r\n"):
        raise ConfigError("upstream.auth_header: expected a header name such as x-api-key")
    scheme = p["upstream.auth_scheme"].strip()
    value = f"{scheme} {key}" if scheme else key
    if any(c in value for c in "\r\n\0"):
        raise ConfigError("upstream.api_key: the key contains a line break or NUL")
    return Credential(header.encode(), value.encode())


def binding_problem(config: Config) -> str | None:
    """Why the proxy must not start listening where configured, or None."""
    host = config.listen.host
    if is_loopback(host) or config.auth.enabled or config.auth.trust_front_proxy:
        return None
    return (
        f"listen {config.listen}: refusing to listen beyond loopback without caller auth; "
        "set TRIOPROXY_AUTH_SECRETS (or TRIOPROXY_AUTH_SECRETS_FILE) and "
        "TRIOPROXY_UPSTREAM_API_KEY, or TRIOPROXY_TRUST_FRONT_PROXY=1 behind a proxy that authenticates"
    )


def effective_settings(config: Config) -> list[tuple[str, str, str]]:
    """(key, env, shown value) for check-config; secrets redacted."""
    rows = []
    for s in SETTINGS:
        value = config.raw.get(s.key, s.default)
        if s.key == "state_dir":
            value = config.state_dir
        if s.key == "auth.secrets":
            shown = (
                ", ".join(f"{sec.name}:<redacted>" for sec in config.auth.secrets)
                or "(none: auth off)"
            )
        else:
            shown = "<redacted>" if (s.secret and value) else _shown(value)
        rows.append((s.key, s.env, shown))
    return rows


def _shown(value: object) -> str:
    """A value as a user writes it (lists comma-separated, as in the environment)."""
    return ", ".join(value) if isinstance(value, tuple) else str(value)


def settings_markdown() -> str:
    """The README's settings table (a test checks the README carries it)."""
    lines = ["| TOML key | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = (
            "see meaning"
            if s.default is None
            else ("(unset)" if s.default in ("", ()) else _shown(s.default))
        )
        lines.append(f"| `{s.key}` | `{s.env}` | `{default}` | {s.doc} |")
    return "\n".join(lines) + "\n"
