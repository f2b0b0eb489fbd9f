"""Parsers for the ``[telemetry]`` settings, which are OpenTelemetry's own
standard variables (``OTEL_*``): the values mean what they mean to every
OpenTelemetry SDK."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from trioproxy.config.model import TelemetryConfig
from trioproxy.config.parsers import parse_str

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def pairs(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` with URL-encoded values (the OTEL_* list format)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs, comma-separated")
        out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


def parse_otlp_headers(raw: object) -> str:
    if isinstance(raw, dict):
        raw = ",".join(f"{k}={urllib.parse.quote(str(v))}" for k, v in raw.items())
    text = parse_str(raw)
    pairs(text)  # checked here; kept as written
    return text


def parse_resource_attributes(raw: object) -> str:
    return parse_otlp_headers(raw)


def parse_otlp_protocol(raw: object) -> str:
    value = parse_str(raw).strip().lower()
    if value == "grpc":
        raise ValueError(
            "grpc needs opentelemetry-exporter-otlp-proto-grpc, which trioproxy does not ship: "
            "use http/protobuf (collectors take both)"
        )
    if value != "http/protobuf":
        raise ValueError("expected http/protobuf")
    return value


def parse_sampler(raw: object) -> str:
    value = parse_str(raw).strip().lower()
    if value not in SAMPLERS:
        raise ValueError(f"expected one of {', '.join(SAMPLERS)}")
    return value


def parse_relay_to(raw: object) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Collectors the callers' own telemetry is relayed to: a list of URLs
    or of ``{ url = "...", headers = "k=v,..." }`` tables (in the
    environment: URLs, comma-separated)."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ValueError('expected a list of URLs or { url = "...", headers = "k=v" } tables')
    out = []
    for item in items:
        if isinstance(item, str):
            url, headers = item.strip(), ""
        elif isinstance(item, dict) and isinstance(item.get("url"), str):
            url, headers = item["url"].strip(), parse_otlp_headers(item.get("headers", ""))
            unknown = sorted(set(item) - {"url", "headers"})
            if unknown:
                raise ValueError(f"{unknown[0]}: unknown key (url, headers)")
        else:
            raise ValueError('expected a list of URLs or { url = "...", headers = "k=v" } tables')
        if not url:
            continue
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"{url!r}: expected an https:// URL")
        out.append((url.rstrip("/"), tuple(pairs(headers).items())))
    return tuple(out)


def build_telemetry(p: Mapping[str, Any]) -> TelemetryConfig | None:
    """[telemetry] from the parsed settings: off (None) unless an endpoint is set."""
    if not p["telemetry.endpoint"]:
        return None
    return TelemetryConfig(
        endpoint=p["telemetry.endpoint"],
        headers=tuple(pairs(p["telemetry.headers"]).items()),
        service_name=p["telemetry.service_name"] or "trioproxy",
        resource=tuple(pairs(p["telemetry.resource_attributes"]).items()),
        sampler=p["telemetry.traces_sampler"],
        sampler_arg=p["telemetry.traces_sampler_arg"],
    )
