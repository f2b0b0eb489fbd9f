"""Traces (and, through meters.py, metrics) out (the OpenTelemetry SDK):
each finished request's spans go to the SDK's BatchSpanProcessor, whose
own thread sends them with the SDK's OTLP/HTTP exporter. Its queue is
bounded: when the collector is down or slow and the queue is full, spans
are dropped and counted (``trioproxy_telemetry_dropped_total``), never
waited for. Sampling is the SDK's own samplers, as
``OTEL_TRACES_SAMPLER`` names them; a request that is not sampled costs
the sampler's decision, a trace id and its ``traceparent``: no span is
built for it."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from trioproxy import __version__
from trioproxy.accounting.metrics import Metrics
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.trace_note import TraceNote
from trioproxy.config.model import TelemetryConfig
from trioproxy.proto.events import RequestHead
from trioproxy.proto.tracecontext import new_trace_id, parse_traceparent
from trioproxy.telemetry.meters import Meters
from trioproxy.telemetry.spans import build

log = logging.getLogger("trioproxy.telemetry")

MAX_QUEUE = 2048  # spans waiting for the exporter thread (OTEL_BSP_MAX_QUEUE_SIZE's default)
EXPORT_TIMEOUT_S = 10.0


class HashedOnce(Resource):
    """A resource whose hash is computed once: the SDK's span encoder
    groups spans by resource, hashing each span's (a JSON dump of its
    attributes every time), which was a tenth of the export thread's work."""

    def __init__(self, attributes: Mapping[str, Any], schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def sampler_for(cfg: TelemetryConfig) -> Sampler:
    ratio = TraceIdRatioBased(cfg.sampler_arg)
    root = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF, "traceidratio": ratio}
    name = cfg.sampler.removeprefix("parentbased_")
    chosen = root[name]
    return ParentBased(chosen) if cfg.sampler.startswith("parentbased_") else chosen


class Telemetry:
    def __init__(
        self,
        cfg: TelemetryConfig,
        metrics: Metrics,
        *,
        in_flight: Callable[[], int] = lambda: 0,
        systems: Mapping[str, str] | None = None,
        instance: str = "",
    ) -> None:
        """``metrics``: /metrics' counters (the dropped spans are counted
        there; OTLP metrics are read from them). ``systems``: each
        provider's gen_ai.system, by name."""
        created = Resource.create(
            {
                "service.name": cfg.service_name,
                "service.version": __version__,
                "service.instance.id": instance or f"{socket.gethostname()}:{os.getpid()}",
                **dict(cfg.resource),
            }
        )
        self.resource = HashedOnce(dict(created.attributes), created.schema_url)
        exporter = OTLPSpanExporter(
            endpoint=cfg.endpoint.rstrip("/") + "/v1/traces",
            headers=dict(cfg.headers),
            timeout=EXPORT_TIMEOUT_S,
        )
        # Its queue and batch sizes, and its delay, are the SDK's standard
        # OTEL_BSP_* variables (default: 2048 spans queued, sent every 5 s).
        self.processor = BatchSpanProcessor(exporter)
        self._exporter = exporter
        self._sampler = sampler_for(cfg)
        self._metrics = metrics
        self.meters = Meters(cfg, self.resource, metrics, in_flight, systems or {})

    def begin(self, head: RequestHead) -> TraceNote:
        """A request's trace: the client's, if it sent a valid traceparent."""
        parent = parse_traceparent(head.header(b"traceparent"))
        if parent is None:
            trace_id, parent_id, context = new_trace_id(), None, None
        else:
            trace_id, parent_id, sampled = parent
            flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
            span = NonRecordingSpan(
                SpanContext(trace_id, parent_id, is_remote=True, trace_flags=flags)
            )
            context = set_span_in_context(span, Context())
        result = self._sampler.should_sample(context, trace_id, "request")
        return TraceNote(trace_id, parent_id, result.decision is Decision.RECORD_AND_SAMPLE)

    def emit(self, record: RequestRecord) -> None:
        self.meters.record(record)
        note = record.trace
        if note is None or not note.sampled:
            return
        spans = build(record, note, self.resource)
        if self._full(len(spans)):
            self._metrics.telemetry_dropped += len(spans)
            return
        for span in spans:
            self.processor.on_end(span)

    def _full(self, n: int) -> bool:
        """Whether the processor's queue cannot take ``n`` more (its own
        check would log a warning per span and drop the oldest instead)."""
        inner = getattr(self.processor, "_batch_processor", None)
        queue = getattr(inner, "_queue", None)
        limit = getattr(inner, "_max_queue_size", MAX_QUEUE)
        return queue is not None and len(queue) + n > limit

    def shutdown(self, grace_s: float = 2.0) -> None:
        """Blocking (a thread): what is queued is sent, for ``grace_s`` at
        most; then the exporters stop retrying a collector that does not
        answer, so no export thread outlives the server (the SDK's own
        shutdown would retry for its whole timeout)."""
        abort = threading.Timer(grace_s, self._abort)
        abort.start()
        try:
            self.processor.shutdown()  # type: ignore[no-untyped-call]
            self.meters.shutdown()
        finally:
            abort.cancel()

    def _abort(self) -> None:
        """Interrupt the exporters' retries (the processor's own shutdown
        then finds its exporter shut, and says so in a warning)."""
        self._exporter.shutdown()  # type: ignore[no-untyped-call]
        self.meters.abort()
