"""Where and how to reach one upstream: its origin, its credential and pool
settings. Plain frozen values, shared by the configuration, the router and
the pool (no imports back into them)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


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
