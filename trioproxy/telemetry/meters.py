"""Metrics over OTLP (the OpenTelemetry SDK): OpenTelemetry's GenAI
client metrics, recorded when a request ends, and trioproxy's own
request, error and in-flight counts, read from the same counters as
``/metrics`` when the SDK's reader thread collects them (nothing on the
request path for those). Exported by the SDK's periodic reader thread
(``OTEL_METRIC_EXPORT_INTERVAL``, default 60 s) with its OTLP/HTTP
exporter. Prometheus's ``/metrics`` stays as it is."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from trioproxy import __version__
from trioproxy.accounting.metrics import Metrics
from trioproxy.accounting.record import RequestRecord
from trioproxy.config.model import TelemetryConfig

EXPORT_TIMEOUT_S = 10.0
MAX_ATTRIBUTE_SETS = 256  # models come from clients: the cache is bounded
TOKEN_BOUNDS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class Meters:
    def __init__(
        self,
        cfg: TelemetryConfig,
        resource: Resource,
        metrics: Metrics,
        in_flight: Callable[[], int],
        systems: Mapping[str, str],
    ) -> None:
        """``systems``: each provider's gen_ai.system, by name."""
        exporter = OTLPMetricExporter(
            endpoint=cfg.endpoint.rstrip("/") + "/v1/metrics",
            headers=dict(cfg.headers),
            timeout=EXPORT_TIMEOUT_S,
        )
        self.provider = MeterProvider(
            resource=resource,
            metric_readers=[PeriodicExportingMetricReader(exporter)],
            shutdown_on_exit=False,  # the server shuts it down, once
        )
        meter = self.provider.get_meter("trioproxy", __version__)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens of each request, by type (input, output)",
            explicit_bucket_boundaries_advisory=TOKEN_BOUNDS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="How long each request to a model took, to its last byte",
        )
        self._first = meter.create_histogram(
            "trioproxy.time_to_first_token",
            unit="s",
            description="Time to the first response byte of successful Messages answers",
        )
        self._metrics = metrics
        self._in_flight = in_flight
        self._systems = dict(systems)
        # Attribute sets by (system, model, failed), made once: a bounded few.
        self._attributes: dict[tuple[str, str, bool], dict[str, str]] = {}
        self._tokens_attributes: dict[
            tuple[str, str, bool], tuple[dict[str, str], dict[str, str]]
        ] = {}
        meter.create_observable_counter(
            "trioproxy.requests",
            [self._requests],
            unit="{request}",
            description="Requests answered, by status class and provider",
        )
        meter.create_observable_counter(
            "trioproxy.errors",
            [self._errors],
            unit="{request}",
            description="Requests answered with a 5xx or 429, by origin (upstream, proxy)",
        )
        meter.create_observable_up_down_counter(
            "trioproxy.requests.in_flight",
            [self._flying],
            unit="{request}",
            description="Requests in flight now",
        )

    def record(self, record: RequestRecord) -> None:
        """A finished request's GenAI figures (those served by a provider).
        The SDK hashes every attribute set on each record: the few the
        conventions require, so the request path pays little."""
        if not record.provider:
            return
        u = record.usage
        system = self._systems.get(record.provider, "anthropic")
        key = (system, record.model_requested, record.status >= 400)
        attributes = self._attributes.get(key)
        if attributes is None:
            if len(self._attributes) >= MAX_ATTRIBUTE_SETS:
                self._attributes.clear()
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": system,
                "gen_ai.request.model": record.model_requested,
            }
            if record.status >= 400:
                attributes["error.type"] = "http"
            self._attributes[key] = attributes
            self._tokens_attributes[key] = (
                {**attributes, "gen_ai.token.type": "input"},
                {**attributes, "gen_ai.token.type": "output"},
            )
        if u.input_tokens or u.output_tokens:
            inputs, outputs = self._tokens_attributes[key]
            self._tokens.record(u.input_tokens, inputs)
            self._tokens.record(u.output_tokens, outputs)
        self._duration.record(record.duration_s, attributes)
        if record.time_to_first_byte_s is not None and 200 <= record.status < 300 and u.model:
            self._first.record(record.time_to_first_byte_s, attributes)

    # The reader thread's callbacks: copies of the loop's counters (a dict
    # copy is one step under the GIL).
    def _requests(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[str, str], int] = {}
        for (code, _caller, _model, _stream, provider, _origin), n in dict(
            self._metrics.requests
        ).items():
            key = (code[:1] + "xx", provider)
            totals[key] = totals.get(key, 0) + n
        return [
            Observation(n, {"http.response.status_code_class": c, "trioproxy.provider": p})
            for (c, p), n in totals.items()
        ]

    def _errors(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[str, int] = {}
        for (code, _caller, _model, _stream, _provider, origin), n in dict(
            self._metrics.requests
        ).items():
            if code.startswith("5") or code == "429":
                totals[origin] = totals.get(origin, 0) + n
        return [Observation(n, {"trioproxy.origin": o}) for o, n in totals.items()]

    def _flying(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._in_flight())]

    def shutdown(self) -> None:
        """Blocking (a thread): the last collection goes out."""
        self.provider.shutdown()
