"""Callers' own OTLP telemetry, stamped with who sent it (pure, on the
protobuf classes of opentelemetry-proto): every resource gets
``enduser.id`` and ``trioproxy.caller`` set to the caller the proxy
authenticated, replacing whatever identity the client claimed for them.
OTLP/HTTP JSON is read too; what goes on to the collectors is protobuf."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

STAMPED = ("enduser.id", "trioproxy.caller")


@dataclass(frozen=True, slots=True)
class Signal:
    name: str  # metrics, logs, traces
    request: Any  # the Export*ServiceRequest class
    response: Any
    field: str  # resource_metrics, resource_logs, resource_spans


SIGNALS = {
    b"/v1/metrics": Signal(
        "metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse, "resource_metrics"
    ),
    b"/v1/logs": Signal(
        "logs", ExportLogsServiceRequest, ExportLogsServiceResponse, "resource_logs"
    ),
    b"/v1/traces": Signal(
        "traces", ExportTraceServiceRequest, ExportTraceServiceResponse, "resource_spans"
    ),
}


def is_relay(method: bytes, path: bytes) -> bool:
    return method == b"POST" and path in SIGNALS


def stamp(signal: Signal, body: bytes, json: bool, caller: str) -> bytes:
    """The export as protobuf, each resource stamped with ``caller``;
    ValueError when it is not an OTLP export of that signal."""
    message: Message = signal.request()
    try:
        if json:
            json_format.Parse(body.decode("utf-8"), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an OTLP {signal.name} export: {exc}") from None
    for resourced in getattr(message, signal.field):
        attributes = resourced.resource.attributes
        kept = [kv for kv in attributes if kv.key not in STAMPED]
        del attributes[:]
        attributes.extend(kept)
        for key in STAMPED:
            attributes.append(KeyValue(key=key, value=AnyValue(string_value=caller)))
    return bytes(message.SerializeToString())


def answer(signal: Signal, json: bool) -> tuple[bytes, bytes]:
    """(content-type, body) of a full success, in the client's encoding."""
    if json:
        return b"application/json", b"{}"
    return b"application/x-protobuf", bytes(signal.response().SerializeToString())
