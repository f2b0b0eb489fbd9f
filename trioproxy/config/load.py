"""Building the effective Config: defaults < TOML < environment < flags,
validated once. Any problem is a ``ConfigError`` whose one-line message names
the key; the CLI turns it into exit code 2."""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from trioproxy.config.callers import (
    build_oidc,
    check_unique,
    from_secrets,
    parse_caller_groups,
    parse_callers,
    read_callers_file,
)
from trioproxy.config.model import (
    AuthConfig,
    Config,
    Credential,
    Endpoint,
    Limits,
    Origin,
    Price,
    ProviderConfig,
    RelayConfig,
    RoutingConfig,
    ScrubConfig,
    Timeouts,
    UpstreamConfig,
)
from trioproxy.config.pricing import UNKNOWN_MODEL, parse_pricing
from trioproxy.config.providers import (
    breaker_policy,
    build_routing,
    parse_origin,
    provider_key_envs,
)
from trioproxy.config.routes import load_agents, parse_routes
from trioproxy.config.secrets import parse_secrets
from trioproxy.config.settings import _BY_KEY, SETTINGS, default_state_dir
from trioproxy.config.source import ConfigError, flatten, read_toml
from trioproxy.config.telemetry import build_telemetry


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
        doc = read_toml(path)
        for name in STRUCTURED:
            if name in doc:
                structured[name] = doc.pop(name)
        table = structured.get("pricing")
        if isinstance(table, dict) and UNKNOWN_MODEL in table:  # a setting among the globs
            values["pricing.unknown_model"] = (
                table[UNKNOWN_MODEL],
                f"pricing.unknown_model (in {path})",
            )
        for key, value in flatten(doc).items():
            if key not in _BY_KEY:
                raise ConfigError(f"{key}: unknown setting in {path}")
            values[key] = (value, f"{key} (in {path})")
    for name in STRUCTURED:
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
        if key not in _BY_KEY and key not in STRUCTURED:
            raise ConfigError(f"{key}: unknown setting (override)")
        if value is not None and key not in STRUCTURED:
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


# Tables of the TOML file that are not flat settings.
STRUCTURED = ("providers", "aliases", "pricing", "callers", "caller_groups", "routes")

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
    auth = _build_auth(p, structured.get("callers"), structured.get("caller_groups"))
    routing = _build_routing(p, structured, env, explicit)
    # Callers that bring their own upstream credential need no provider key;
    # the others are never routed to a provider without one (forward.py).
    own_possible = bool(auth.callers_file) or any(c.own_credential for c in auth.callers)
    if auth.enabled and not own_possible:
        for prov in routing.providers:
            if not prov.keyed and prov.name == "default":
                raise ConfigError(
                    "auth.secrets: caller secrets need a provider key to send upstream instead "
                    "(TRIOPROXY_UPSTREAM_API_KEY or TRIOPROXY_UPSTREAM_API_KEY_FILE)"
                )
            if not prov.keyed:
                raise ConfigError(
                    f"providers[{prov.name}]: with caller auth on, every provider needs its key "
                    '(api_key_env, api_key_file, or auth = "oauth_file")'
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
            pool=p["timeouts.pool"],
        ),
        limits=Limits(
            max_body_bytes=p["limits.max_body_bytes"],
            max_head_bytes=p["limits.max_head_bytes"],
            max_headers=p["limits.max_headers"],
            h2_max_concurrent_streams=p["limits.h2_max_concurrent_streams"],
            h2_stream_window=p["limits.h2_stream_window"],
            h2_max_resets_per_second=p["limits.h2_max_resets_per_second"],
            retained_body_bytes=p["limits.retained_body_bytes"],
        ),
        tls_cert=tls_cert,
        tls_key=tls_key,
        state_dir=p["state_dir"] or default_state_dir(),
        log_level=p["log_level"],
        log_format=p["log_format"],
        log_slow_seconds=p["log_slow_seconds"],
        stream_failure=p["stream_failure"],
        stream_keepalive_s=p["stream_keepalive_s"],
        cors_allow_origins=p["cors.allow_origins"],
        usage_ledger=p["usage.ledger"],
        usage_retention_days=p["usage.retention_days"],
        log_bodies=p["log_bodies"],
        log_max_body_bytes=p["log.max_body_bytes"],
        log_max_pending_bytes=p["log.max_pending_bytes"],
        log_retention_days=p["log.retention_days"],
        database_url=p["storage.database_url"],
        pricing=_build_pricing(structured.get("pricing")),
        pricing_unknown=p["pricing.unknown_model"],
        alert_urls=p["alerts.webhook_urls"],
        alert_thresholds=p["alerts.budget_thresholds"],
        audit_retention_days=p["audit.retention_days"],
        telemetry=build_telemetry(p),
        relay=RelayConfig(
            p["telemetry.relay_to"],
            p["telemetry.relay_max_body_bytes"],
            p["telemetry.relay_rpm"],
        )
        if p["telemetry.relay_to"]
        else None,
        workers=p["workers"],
        state_redis_url=p["state.redis_url"],
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
                h2_ping_interval=p["upstream.h2_ping_interval"],
                h2_ping_timeout=p["upstream.h2_ping_timeout"],
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
            demote_nonstreaming=p["demote_nonstreaming"],
        )
    try:
        routing = build_routing(providers_raw, structured.get("aliases"), p, env, default)
        raw_routes = structured.get("routes")
        agents = load_agents(p["routing.agents_dirs"]) if p["routing.agents_dirs"] else {}
        routes = parse_routes(raw_routes, routing.names, agents)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return replace(routing, routes=routes) if routes else routing


def _build_pricing(raw: object) -> tuple[Price, ...]:
    try:
        return parse_pricing(raw)
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


def _build_auth(p: dict[str, Any], callers_raw: object, groups_raw: object) -> AuthConfig:
    text = p["auth.secrets"]
    if p["auth.secrets_file"]:
        text += "\n" + _read_secret_file(p["auth.secrets_file"], "auth.secrets_file")
    path = p["auth.callers_file"]
    try:
        secrets = parse_secrets(text, "auth.secrets")
        callers = parse_callers(callers_raw, "[[callers]]")
        # The file is read here too, so that check-config and the start
        # refuse a broken one; the running server watches it (callers/).
        in_file = read_callers_file(path) if path else ()
        check_unique([*from_secrets(secrets), *callers, *in_file], "callers")
        groups = parse_caller_groups(groups_raw)
        admin_tokens = parse_secrets(p["admin.tokens"], "admin.tokens")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return AuthConfig(
        secrets,
        p["admin.token"].encode(),
        p["trust_front_proxy"],
        callers,
        path,
        build_oidc(p, groups),
        groups,
        admin_tokens,
    )


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


def load_checked(loader: Callable[[], Config]) -> Config:
    """``loader()``, refused (ConfigError) when the binding policy forbids
    the result: what a reload applies."""
    new = loader()
    problem = binding_problem(new)
    if problem:
        raise ConfigError(problem)
    return new


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


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` only; `0.0.0.0`, `::` and any other
    name count as reachable from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
