"""The providers table: parsed and validated once, at start (and on reload).

A provider is an Anthropic-compatible base URL with its own key, pool,
model map and health policy. ``[[providers]]`` in the TOML file lists them;
with none, the ``upstream.*`` settings make the single provider ``default``.
Every problem is a ``ValueError`` whose message names the offending key
(``providers[minimax].models``); the loader turns it into a ConfigError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trioproxy.config.model import (
    BreakerPolicy,
    Credential,
    Origin,
    ProviderConfig,
    QuotaConfig,
    RoutingConfig,
    UpstreamConfig,
)
from trioproxy.config.oauth import read_oauth_file


def vertex_base_url(region: str) -> str:
    """Vertex AI's endpoint for a region (``global`` has no prefix)."""
    return (
        "https://aiplatform.googleapis.com"
        if region == "global"
        else f"https://{region}-aiplatform.googleapis.com"
    )


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
WINDOWS = ("weekly", "daily", "rolling")
# Body fields the router itself reads or edits: dropping them is a mistake.
_UNDROPPABLE = frozenset({"model", "messages"})
KINDS = ("anthropic", "openai", "bedrock", "vertex")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_GCP_REGION = re.compile(r"^(global|[a-z]+-[a-z]+\d+)$")
_TOP_FIELD = re.compile(r"^[A-Za-z0-9_]+$")
_TOOL_FIELD = re.compile(r"^tools\[\]\.[A-Za-z0-9_]+$")


# Keys a [[providers]] entry may carry, with their meaning (for the documentation).
PROVIDER_KEYS: dict[str, str] = {
    "name": "unique name (letters, digits, `_.-`), used in logs, metrics, pins and `switch`",
    "base_url": 'the provider\'s Anthropic-compatible base URL, e.g. `https://api.minimax.io/anthropic` (`kind = "bedrock"`: optional, default `https://bedrock-runtime.{region}.amazonaws.com`)',
    "api_key_env": "environment variable holding the provider's key",
    "api_key_file": "file holding the provider's key (one of the two; neither: the caller's own credential passes through, loopback only)",
    "auth": '`"x-api-key"` (default), `"bearer"` (`Authorization: Bearer KEY`) or `"oauth_file"` (a Claude subscription: the access token of `oauth_credentials_file`)',
    "oauth_credentials_file": 'with `auth = "oauth_file"`: Claude Code\'s credentials file (`~/.claude/.credentials.json`), re-read when it changes; never refreshed by the proxy',
    "family": 'providers of one family accept each other\'s thinking signatures; default `anthropic` for `*.anthropic.com` and `kind = "bedrock"`, else the name',
    "priority": "lower is tried first (default 100; ties keep file order)",
    "enabled": "false takes the provider out of routing (default true)",
    "models": 'table from requested model (exact or glob such as `"claude-*"`) to the provider\'s model, plus optional `default`',
    "drop_fields": 'top-level request fields removed for this provider, e.g. `["context_management"]` (`kind = "bedrock"` or `"vertex"`: also a tool field, `"tools[].strict"`, added to the fields the cloud rejects)',
    "drop_betas": '`anthropic-beta` values removed for this provider (`kind = "bedrock"` or `"vertex"`: globs such as `"effort-*"`, added to the betas the cloud rejects)',
    "retries": "same-provider retries on connection errors, and on 503 while another provider could serve (default `routing.retries`)",
    "cooldown_s": "seconds out of rotation after a 429 without `retry-after` (default `routing.cooldown_s`)",
    "open_s": "seconds the circuit breaker stays open (default `routing.open_s`)",
    "connect_timeout": "overrides `timeouts.connect` for this provider",
    "response_headers_timeout": "overrides `timeouts.response_headers` for this provider",
    "max_connections": "overrides `upstream.max_connections`",
    "idle_timeout": "overrides `upstream.idle_timeout`",
    "http2": "overrides `upstream.http2`",
    "h2_prior_knowledge": "overrides `upstream.h2_prior_knowledge` (http:// only)",
    "ca_bundle": "overrides `upstream.ca_bundle`",
    "demote_nonstreaming": "overrides `demote_nonstreaming` for this provider",
    "kind": '`"anthropic"` (default), `"openai"`: a Chat Completions API (OpenAI, DeepSeek, OpenRouter, Groq, Ollama, vLLM, LiteLLM ...), `base_url` as OpenAI clients take it (`https://api.openai.com/v1`), requests and answers translated; `"bedrock"`: Claude on Amazon Bedrock, signed with AWS credentials; or `"vertex"`: Claude on Google Cloud Vertex AI, with Google credentials',
    "region": '`kind = "bedrock"`: the AWS region (required), e.g. `us-east-1`; `kind = "vertex"`: the Google Cloud region (required), e.g. `us-east5`, or `global`',
    "aws_profile": '`kind = "bedrock"`: a profile of the shared AWS config and credentials files (default: the standard chain, `AWS_PROFILE` included)',
    "project": '`kind = "vertex"`: the Google Cloud project ID (required)',
    "credentials_file": "`kind = \"vertex\"`: a service account's JSON key (default: Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's login, the metadata server)",
    "reasoning": '`kind = "openai"` only: send `thinking` as `reasoning_effort` (low/medium/high by budget); otherwise it is dropped',
    "quota": 'token budget: `{ tokens = N, window = "weekly" | "daily" | "rolling", hours = N (rolling), threshold = 0.9 }`',
}


def _typed(value: object, kind: type | tuple[type, ...], key: str, what: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass: `priority = true` must not pass as 1
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"{key}: expected {what}")
    return value


def _flag(raw: Mapping[str, Any], name: str, default: bool, key: str) -> bool:
    return bool(_typed(raw.get(name, default), bool, f"{key}.{name}", "true/false"))


def _seconds(value: object, key: str) -> float:
    v = float(_typed(value, (int, float), key, "a number of seconds"))
    if not v > 0 or v == float("inf"):
        raise ValueError(f"{key}: expected a positive number of seconds")
    return v


def _count(value: object, key: str, *, minimum: int = 0) -> int:
    v = _typed(value, int, key, "a whole number")
    if v < minimum:
        raise ValueError(f"{key}: expected a whole number >= {minimum}")
    return int(v)


def _str_list(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{key}: expected a list of strings")
    return list(value)


def _quota(raw: object, key: str) -> QuotaConfig:
    if not isinstance(raw, dict):
        raise ValueError(f"{key}: expected a table {{ tokens = N, window = ... }}")
    unknown = set(raw) - {"tokens", "window", "hours", "threshold"}
    if unknown:
        raise ValueError(f"{key}.{sorted(unknown)[0]}: unknown quota setting")
    if "tokens" not in raw:
        raise ValueError(f"{key}.tokens: required")
    tokens = _count(raw["tokens"], f"{key}.tokens", minimum=1)
    window = raw.get("window", "weekly")
    if window not in WINDOWS:
        raise ValueError(f"{key}.window: expected one of {', '.join(WINDOWS)}")
    hours = _count(raw.get("hours", 5), f"{key}.hours", minimum=1)
    threshold = float(_typed(raw.get("threshold", 0.9), (int, float), f"{key}.threshold", "0..1"))
    if not 0 < threshold <= 1:
        raise ValueError(f"{key}.threshold: expected a fraction in (0, 1]")
    return QuotaConfig(tokens, window, hours, threshold)


def _oauth_file(raw: dict[str, Any], key: str) -> str:
    """The subscription's credentials file, checked for its shape now (an
    expired token is not an error here: the file may be refreshed later)."""
    if raw.get("auth") != "oauth_file":
        if "oauth_credentials_file" in raw:
            raise ValueError(f'{key}.oauth_credentials_file: only with auth = "oauth_file"')
        return ""
    if "api_key_env" in raw or "api_key_file" in raw:
        raise ValueError(f'{key}: auth = "oauth_file" takes no api_key_env or api_key_file')
    path = raw.get("oauth_credentials_file")
    if not isinstance(path, str) or not path:
        raise ValueError(f'{key}.oauth_credentials_file: required with auth = "oauth_file"')
    try:
        read_oauth_file(path)
    except ValueError as exc:
        raise ValueError(f"{key}.oauth_credentials_file: {exc}") from None
    return path


def _credential(raw: dict[str, Any], key: str, env: Mapping[str, str]) -> Credential | None:
    if raw.get("auth") == "oauth_file":
        return None
    if "api_key_env" in raw and "api_key_file" in raw:
        raise ValueError(f"{key}: set api_key_env or api_key_file, not both")
    if "api_key_env" in raw:
        var = _typed(raw["api_key_env"], str, f"{key}.api_key_env", "a variable name")
        secret = env.get(var, "").strip()
        if not secret:
            raise ValueError(f"{key}.api_key_env: the environment variable {var} is not set")
    elif "api_key_file" in raw:
        path = _typed(raw["api_key_file"], str, f"{key}.api_key_file", "a path")
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"{key}.api_key_file: cannot read {path}: {exc.strerror or exc}"
            ) from None
        if not secret:
            raise ValueError(f"{key}.api_key_file: {path} is empty")
    else:
        return None
    if any(c in secret for c in "\r\n\0"):
        raise ValueError(f"{key}: the key contains a line break or NUL")
    style = raw.get("auth", "x-api-key")
    if style == "x-api-key":
        return Credential(b"x-api-key", secret.encode())
    if style == "bearer":
        return Credential(b"authorization", b"Bearer " + secret.encode())
    raise ValueError(f'{key}.auth: expected "x-api-key", "bearer" or "oauth_file"')


_CLOUD_KEYS = {
    "bedrock": ("region", "aws_profile"),
    "vertex": ("region", "project", "credentials_file"),
}


def _cloud_keys(raw: dict[str, Any], key: str, kind: str) -> str:
    """A cloud provider's own keys, checked; its region ("" for other kinds)."""
    own = _CLOUD_KEYS.get(kind, ())
    for name in sorted({n for keys in _CLOUD_KEYS.values() for n in keys} - set(own)):
        if name in raw:
            clouds = [k for k, keys in _CLOUD_KEYS.items() if name in keys]
            raise ValueError(
                f"{key}.{name}: only for kind = " + " or ".join(f'"{c}"' for c in clouds)
            )
    if not own:
        return ""
    for name in ("api_key_env", "api_key_file", "auth"):
        if name in raw:
            what = (
                "AWS credentials (the standard chain, or aws_profile)"
                if kind == "bedrock"
                else ("Google credentials (credentials_file, or Application Default Credentials)")
            )
            raise ValueError(f"{key}.{name}: a {kind} provider signs with {what}, not a key")
    region = raw.get("region")
    pattern, example = (_REGION, "us-east-1") if kind == "bedrock" else (_GCP_REGION, "us-east5")
    if not isinstance(region, str) or not pattern.match(region):
        raise ValueError(f'{key}.region: required for kind = "{kind}", e.g. "{example}"')
    if kind == "bedrock":
        if not isinstance(raw.get("aws_profile", ""), str):
            raise ValueError(f"{key}.aws_profile: expected a profile name")
        return region
    project = raw.get("project")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise ValueError(
            f'{key}.project: required for kind = "vertex": the project ID, e.g. "my-project-123"'
        )
    path = raw.get("credentials_file", "")
    if not isinstance(path, str):
        raise ValueError(f"{key}.credentials_file: expected a path")
    if path and not Path(path).is_file():
        raise ValueError(f"{key}.credentials_file: file not found: {path}")
    return region


def breaker_policy(defaults: Mapping[str, Any], open_s: float) -> BreakerPolicy:
    """A provider's breaker: the global rate, minimum and window, its own open_s."""
    return BreakerPolicy(
        failure_rate=defaults["routing.breaker_failure_rate"],
        min_requests=defaults["routing.breaker_min_requests"],
        window_s=defaults["routing.breaker_window_s"],
        open_s=open_s,
    )


def parse_provider(
    raw: object, index: int, env: Mapping[str, str], defaults: Mapping[str, Any]
) -> ProviderConfig:
    """One ``[[providers]]`` entry. ``defaults`` are the parsed global settings
    (``upstream.*``, ``routing.*``) a provider inherits."""
    if not isinstance(raw, dict):
        raise ValueError(f"providers[{index}]: expected a table")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"providers[{index}].name: required, letters, digits and _.- (got {name!r})"
        )
    key = f"providers[{name}]"
    unknown = set(raw) - set(PROVIDER_KEYS)
    if unknown:
        raise ValueError(f"{key}.{sorted(unknown)[0]}: unknown provider setting")
    kind = raw.get("kind", "anthropic")
    if kind not in KINDS:
        raise ValueError(f"{key}.kind: expected one of {', '.join(KINDS)}")
    region = _cloud_keys(raw, key, kind)
    if "base_url" in raw:
        base_url = _typed(raw["base_url"], str, f"{key}.base_url", "a URL")
    elif kind == "bedrock":
        base_url = f"https://bedrock-runtime.{region}.amazonaws.com"
    elif kind == "vertex":
        base_url = vertex_base_url(region)
    else:
        raise ValueError(f"{key}.base_url: required")
    origin = parse_origin(base_url, f"{key}.base_url")
    prior = _flag(raw, "h2_prior_knowledge", defaults["upstream.h2_prior_knowledge"], key)
    if prior and origin.scheme != "http":
        raise ValueError(f"{key}.h2_prior_knowledge: only for http:// base URLs")
    ca_bundle = _typed(
        raw.get("ca_bundle", defaults["upstream.ca_bundle"]), str, f"{key}.ca_bundle", "a path"
    )
    if ca_bundle and not Path(ca_bundle).is_file():
        raise ValueError(f"{key}.ca_bundle: file not found: {ca_bundle}")
    oauth_file = _oauth_file(raw, key)
    upstream = UpstreamConfig(
        origin=origin,
        credential=_credential(raw, key, env),
        ca_bundle=ca_bundle,
        http2=bool(
            _typed(raw.get("http2", defaults["upstream.http2"]), bool, f"{key}.http2", "true/false")
        ),
        h2_prior_knowledge=prior,
        max_connections=_count(
            raw.get("max_connections", defaults["upstream.max_connections"]),
            f"{key}.max_connections",
            minimum=1,
        ),
        idle_timeout=_seconds(
            raw.get("idle_timeout", defaults["upstream.idle_timeout"]), f"{key}.idle_timeout"
        ),
        h2_ping_interval=defaults["upstream.h2_ping_interval"],
        h2_ping_timeout=defaults["upstream.h2_ping_timeout"],
    )
    models_raw = raw.get("models", {})
    if not isinstance(models_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in models_raw.items()
    ):
        raise ValueError(
            f'{key}.models: expected a table of model names, e.g. {{ default = "..." }}'
        )
    models = tuple((k, v) for k, v in models_raw.items() if k != "default")
    drop_fields = frozenset(_str_list(raw.get("drop_fields", []), f"{key}.drop_fields"))
    if drop_fields & _UNDROPPABLE:
        raise ValueError(
            f"{key}.drop_fields: {sorted(drop_fields & _UNDROPPABLE)[0]} cannot be dropped"
        )
    nested = sorted(f for f in drop_fields if not _TOP_FIELD.match(f))
    cloud = kind in ("bedrock", "vertex")
    if nested and (not cloud or not all(_TOOL_FIELD.match(f) for f in nested)):
        raise ValueError(
            f"{key}.drop_fields: {nested[0]!r}: a top-level field name"
            + (' or "tools[].NAME"' if cloud else "")
        )
    # Claude on a cloud signs its thinking as the Anthropic API does.
    claude = cloud or origin.host.endswith("anthropic.com")
    family = raw.get("family") or ("anthropic" if claude else name)
    if kind != "anthropic" and oauth_file:
        raise ValueError(
            f'{key}: a Claude subscription (auth = "oauth_file") is of kind "anthropic"'
        )
    if "reasoning" in raw and kind != "openai":
        raise ValueError(f'{key}.reasoning: only for kind = "openai"')
    return ProviderConfig(
        kind=kind,
        region=region,
        aws_profile=str(raw.get("aws_profile", "")),
        project=str(raw.get("project", "")),
        credentials_file=str(raw.get("credentials_file", "")),
        reasoning=_flag(raw, "reasoning", False, key),
        oauth_file=oauth_file,
        demote_nonstreaming=_flag(raw, "demote_nonstreaming", defaults["demote_nonstreaming"], key),
        name=name,
        upstream=upstream,
        family=_typed(family, str, f"{key}.family", "a string"),
        priority=_count(raw.get("priority", 100), f"{key}.priority"),
        enabled=bool(_typed(raw.get("enabled", True), bool, f"{key}.enabled", "true/false")),
        models=models,
        default_model=models_raw.get("default"),
        drop_fields=drop_fields,
        drop_betas=frozenset(
            b.strip().encode() for b in _str_list(raw.get("drop_betas", []), f"{key}.drop_betas")
        ),
        retries=_count(raw.get("retries", defaults["routing.retries"]), f"{key}.retries"),
        cooldown_s=_seconds(
            raw.get("cooldown_s", defaults["routing.cooldown_s"]), f"{key}.cooldown_s"
        ),
        breaker=breaker_policy(
            defaults, _seconds(raw.get("open_s", defaults["routing.open_s"]), f"{key}.open_s")
        ),
        connect_timeout=_seconds(raw["connect_timeout"], f"{key}.connect_timeout")
        if "connect_timeout" in raw
        else None,
        response_headers_timeout=_seconds(
            raw["response_headers_timeout"], f"{key}.response_headers_timeout"
        )
        if "response_headers_timeout" in raw
        else None,
        quota=_quota(raw["quota"], f"{key}.quota") if "quota" in raw else None,
    )


def build_routing(
    providers_raw: object,
    aliases_raw: object,
    defaults: Mapping[str, Any],
    env: Mapping[str, str],
    default_provider: ProviderConfig | None,
) -> RoutingConfig:
    """The routing table. ``default_provider`` (built from ``upstream.*``)
    is used when no ``[[providers]]`` are configured."""
    if providers_raw is None:
        assert default_provider is not None
        providers = [default_provider]
    else:
        if not isinstance(providers_raw, list) or not providers_raw:
            raise ValueError("providers: expected one or more [[providers]] tables")
        providers = [parse_provider(r, i, env, defaults) for i, r in enumerate(providers_raw)]
    seen: set[str] = set()
    for p in providers:
        if p.name in seen:
            raise ValueError(f"providers[{p.name}].name: defined twice")
        seen.add(p.name)
    if not any(p.enabled for p in providers):
        raise ValueError("providers: every provider is disabled (enabled = false)")
    ordered = tuple(sorted(providers, key=lambda p: p.priority))  # stable: file order breaks ties
    if aliases_raw is None:
        aliases_raw = {}
    if not isinstance(aliases_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in aliases_raw.items()
    ):
        raise ValueError('aliases: expected a table of short name = "model"')
    mode = defaults["routing.mode"]
    single = defaults["routing.provider"] or None
    if single is not None and single not in seen:
        raise ValueError(
            f"routing.provider: no provider named {single!r} ({', '.join(sorted(seen))})"
        )
    if mode == "single" and single is None:
        raise ValueError("routing.provider: single mode needs the provider's name")
    return RoutingConfig(
        providers=ordered,
        aliases=tuple(aliases_raw.items()),
        mode=mode,
        single=single,
        allow_pin=defaults["routing.allow_pin"],
        retry_after_cap=defaults["routing.retry_after_cap"],
        backoff=defaults["routing.backoff"],
        retry_budget=defaults["routing.retry_budget"],
        credentials_check_s=defaults["upstream.credentials_check_s"],
    )


def provider_key_envs(providers_raw: object) -> set[str]:
    """The variables providers read their keys from (the strict check on
    unknown TRIOPROXY_* variables must let them through)."""
    if not isinstance(providers_raw, list):
        return set()
    return {
        r["api_key_env"]
        for r in providers_raw
        if isinstance(r, dict) and isinstance(r.get("api_key_env"), str)
    }


def parse_origin(raw: str, key: str) -> Origin:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{key}: expected an http:// or https:// URL, got {raw!r}")
    if not parts.hostname:
        raise ValueError(f"{key}: no host in {raw!r}")
    if parts.query or parts.fragment or parts.username:
        raise ValueError(f"{key}: a base URL has no query, fragment or credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{key}: bad port in {raw!r}") from None
    return Origin(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))
