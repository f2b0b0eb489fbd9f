"""Parsers for the ``[telemetry]`` settings, which are OpenTelemetry's own
standard variables (``OTEL_*``): the values mean what they mean to every
OpenTelemetry SDK."""

from __future__ import annotations

import urllib.parse

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
