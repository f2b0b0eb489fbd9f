"""`trioproxy switch`: change a running proxy's routing through its admin
API (POST /admin/route), then show the providers (GET /admin/providers).

It runs beside the server, often as another user, without the provider
keys: so it reads only what it needs to find the admin endpoint (listen,
admin.listen, admin.token, TLS) from the TOML file, the environment and an
optional systemd EnvironmentFile, without validating the whole
configuration. Synchronous on purpose: a one-shot command, no event loop.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from trioproxy.config import envfile
from trioproxy.config.partial import Partial
from trioproxy.config.source import ConfigError


class SwitchError(Exception):
    pass


def read_env_file(path: str) -> dict[str, str]:
    """config.envfile's, with its error as the admin commands report them."""
    try:
        return envfile.read_env_file(path)
    except envfile.EnvFileError as exc:
        raise SwitchError(str(exc)) from None


def admin_target(config_path: str | None, env: Mapping[str, str]) -> tuple[str, str]:
    """(base URL, admin token) of the running proxy's admin API."""
    try:
        where = Partial(config_path, env)
        listen = str(where.get("admin.listen") or where.get("listen"))
        tls = bool(where.get("tls.cert"))
        token = str(where.get("admin.token"))
    except ConfigError as exc:
        raise SwitchError(str(exc)) from None
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{port}"
    return url, token


def call(
    url: str,
    token: str,
    method: str,
    path: str,
    body: bytes | None,
    ctx: ssl.SSLContext | None = None,
) -> Any:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise SwitchError(f"{method} {path}: HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SwitchError(f"cannot reach the proxy at {url}: {reason}") from None


def switch(
    url: str, token: str, provider: str | None, *, cafile: str | None = None, insecure: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Switch to ``provider`` (single mode) or back to failover (None).
    Returns (the new mode, the providers snapshot)."""
    ctx: ssl.SSLContext | None = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=cafile)
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    doc = {"mode": "single", "provider": provider} if provider else {"mode": "failover"}
    mode = call(url, token, "POST", "/admin/route", json.dumps(doc).encode(), ctx)
    providers = call(url, token, "GET", "/admin/providers", None, ctx)
    return mode, providers


def format_providers(snapshot: dict[str, Any]) -> str:
    """A table for people: the state of each provider."""
    lines = [f"{'provider':<16} {'state':<12} {'failures':>8} {'in flight':>9}  quota"]
    for p in snapshot.get("providers", []):
        quota = p.get("quota")
        q = f"{quota['used']}/{quota['limit']}" if quota else "-"
        lines.append(
            f"{p['name']:<16} {p['state']:<12} {p['consecutive_failures']:>8} "
            f"{p['in_flight']:>9}  {q}"
        )
    return "\n".join(lines)
