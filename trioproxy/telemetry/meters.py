"""Metrics over OTLP: OpenTelemetry's GenAI client metrics (aggregated by
genai.py as each request ends), and trioproxy's own request, error and
in-flight counts, read from the same counters as ``/metrics``. A thread of
this module's own builds them as the SDK's metric data every
``OTEL_METRIC_EXPORT_INTERVAL`` ms (60,000 by default, as in the SDK) and
sends them with the SDK's OTLP/HTTP exporter; nothing of it runs on the
event loop. ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` is
honoured (cumulative, delta, lowmemory). Prometheus's ``/metrics`` stays
as it is."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from trioproxy import __version__
from trioproxy.accounting.metrics import Metrics
from trioproxy.accounting.record import RequestRecord
from trioproxy.config.model import TelemetryConfig
from trioproxy.telemetry.genai import GenAIAggregates, Key, Snapshot, histograms

log = logging.getLogger("trioproxy.telemetry")

EXPORT_TIMEOUT_S = 10.0
DEFAULT_INTERVAL_MS = 60_000
SCOPE = InstrumentationScope("trioproxy", __version__)
CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
Counts = dict[tuple[tuple[str, str], ...], int]


def interval_s(environ: Mapping[str, str]) -> float:
    """``OTEL_METRIC_EXPORT_INTERVAL`` (ms), as the SDK reads it: an invalid
    value is logged and the default used."""
    raw = environ.get("OTEL_METRIC_EXPORT_INTERVAL", "")
    try:
        ms = float(raw) if raw else DEFAULT_INTERVAL_MS
        if ms <= 0:
            raise ValueError(raw)
    except ValueError:
        log.warning("OTEL_METRIC_EXPORT_INTERVAL=%r is not a positive number: 60000 ms", raw)
        ms = DEFAULT_INTERVAL_MS
    return ms / 1000


def temporalities(
    environ: Mapping[str, str],
) -> tuple[AggregationTemporality, AggregationTemporality]:
    """(histograms', counters') temporality from
    ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``, as the
    specification defines its values (the counters here are observable)."""
    pref = environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").lower()
    if pref == "delta":
        return DELTA, DELTA
    if pref == "lowmemory":
        return DELTA, CUMULATIVE
    if pref != "cumulative":
        log.warning("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=%r: cumulative", pref)
    return CUMULATIVE, CUMULATIVE


class Meters:
    def __init__(
        self,
        cfg: TelemetryConfig,
        resource: Resource,
        metrics: Metrics,
        in_flight: Callable[[], int],
        systems: Mapping[str, str],
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        """``systems``: each provider's gen_ai.system, by name."""
        self._exporter = OTLPMetricExporter(
            endpoint=cfg.endpoint.rstrip("/") + "/v1/metrics",
            headers=dict(cfg.headers),
            timeout=EXPORT_TIMEOUT_S,
        )
        self._resource = resource
        self._metrics = metrics
        self._in_flight = in_flight
        self.genai = GenAIAggregates(systems)
        self._interval = interval_s(environ)
        self._histograms, self._counters = temporalities(environ)
        self._start_ns = self._last_ns = time.time_ns()
        self._before: dict[tuple[int, Key], Snapshot] = {}
        self._counted: dict[str, Counts] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # shutdown and abort (a timer's thread)
        self._aborted = False
        self._thread = threading.Thread(
            target=self._run, name="trioproxy-otlp-metrics", daemon=True
        )
        self._thread.start()

    def record(self, record: RequestRecord) -> None:
        """On the event loop: a finished request's GenAI figures."""
        self.genai.record(record)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._export()

    def _export(self) -> None:
        try:
            self._exporter.export(self.collect(), timeout_millis=EXPORT_TIMEOUT_S * 1000)
        except Exception:  # the exporter logs its own failures; this is anything else
            log.exception("exporting metrics failed")

    def collect(self) -> MetricsData:
        """Now's figures as the SDK's metric data (the exporter's thread)."""
        now_ns = time.time_ns()
        snap = self.genai.snapshot()
        start = self._last_ns if self._histograms is DELTA else self._start_ns
        out = histograms(snap, self._before, start, now_ns, self._histograms)
        if self._histograms is DELTA:
            self._before = {(i, key): s for key, _, snaps in snap for i, s in enumerate(snaps)}
        requests, errors = self._counts()
        out.append(
            self._sum(
                "trioproxy.requests",
                "{request}",
                "Requests answered, by status class and provider",
                requests,
                now_ns,
            )
        )
        out.append(
            self._sum(
                "trioproxy.errors",
                "{request}",
                "Requests answered with a 5xx or 429, by origin (upstream, proxy)",
                errors,
                now_ns,
            )
        )
        flying = NumberDataPoint({}, self._start_ns, now_ns, self._in_flight())
        out.append(
            Metric(
                "trioproxy.requests.in_flight",
                "Requests in flight now",
                "{request}",
                Sum([flying], CUMULATIVE, False),
            )
        )
        self._last_ns = now_ns
        scope = ScopeMetrics(SCOPE, [m for m in out if _points(m)], "")
        return MetricsData([ResourceMetrics(self._resource, [scope], "")])

    def _counts(self) -> tuple[Counts, Counts]:
        """Requests by (status class, provider) and errors by origin, from
        /metrics' own counters (a dict copy is one step under the GIL)."""
        requests: Counts = {}
        errors: Counts = {}
        for (code, _caller, _model, _stream, provider, origin), n in dict(
            self._metrics.requests
        ).items():
            key = (
                ("http.response.status_code_class", code[:1] + "xx"),
                ("trioproxy.provider", provider),
            )
            requests[key] = requests.get(key, 0) + n
            if code.startswith("5") or code == "429":
                e = (("trioproxy.origin", origin),)
                errors[e] = errors.get(e, 0) + n
        return requests, errors

    def _sum(self, name: str, unit: str, description: str, counts: Counts, now_ns: int) -> Metric:
        delta = self._counters is DELTA
        before = self._counted.get(name, {})
        points = [
            NumberDataPoint(
                dict(key),
                self._last_ns if delta else self._start_ns,
                now_ns,
                n - before.get(key, 0) if delta else n,
            )
            for key, n in counts.items()
        ]
        self._counted[name] = counts
        return Metric(name, description, unit, Sum(points, self._counters, True))

    def shutdown(self) -> None:
        """Blocking (a thread): the last figures go out (unless aborted)."""
        self._stop.set()
        self._thread.join(EXPORT_TIMEOUT_S + 1)
        with self._lock:
            aborted = self._aborted
        if not aborted:
            self._export()
        self.abort()

    def abort(self) -> None:
        """Stop: an export under way stops retrying, none follows."""
        self._stop.set()
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
        self._exporter.shutdown()


def _points(metric: Metric) -> Iterable[object]:
    return metric.data.data_points
