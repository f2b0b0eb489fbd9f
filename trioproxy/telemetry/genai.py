"""OpenTelemetry's GenAI client metrics, aggregated on the event loop by
trioproxy itself (a dictionary lookup and a bisection per figure), and read
as the SDK's metric data points in the exporter's thread.

Why not the SDK's instruments: each ``Histogram.record`` cleans and hashes
its attributes again (~20 µs, four a request), which measured as several
per cent of a request's CPU on the event loop. The attribute sets here are
made once per (provider, model, outcome), so a request only adds to
buckets; the SDK's data classes and OTLP exporter still carry them out.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
)

from trioproxy.accounting.record import RequestRecord

MAX_SETS = 256  # attribute sets kept; models come from clients, the rest count as "other"
# The bucket bounds OpenTelemetry's GenAI conventions advise.
TOKEN_BOUNDS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
DURATION_BOUNDS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
FIRST_TOKEN_BOUNDS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
# (name, unit, description, bounds) of each histogram, in Figures' order.
HISTOGRAMS = (
    (
        "gen_ai.client.token.usage",
        "{token}",
        "Tokens of each request, by type (input, output)",
        TOKEN_BOUNDS,
    ),
    ("gen_ai.client.token.usage", "{token}", "", TOKEN_BOUNDS),
    (
        "gen_ai.client.operation.duration",
        "s",
        "How long each request to a model took, to its last byte",
        DURATION_BOUNDS,
    ),
    (
        "trioproxy.time_to_first_token",
        "s",
        "Time to the first response byte of successful Messages answers",
        FIRST_TOKEN_BOUNDS,
    ),
)

Snapshot = tuple[tuple[int, ...], float, float, float]  # bucket counts, sum, min, max
Key = tuple[str, str, bool]  # (gen_ai.system, requested model, failed)
Figures = tuple[Key, dict[str, str], tuple[Snapshot, ...]]


class Buckets:
    """One histogram's running figures (cumulative)."""

    __slots__ = ("bounds", "counts", "max", "min", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def snapshot(self) -> Snapshot:
        """Read in the exporter's thread: a copy of each figure (the count
        is the buckets' total, so a point is consistent with its buckets)."""
        return tuple(self.counts), self.sum, self.min, self.max


class GenAIFigures:
    """Input tokens, output tokens, duration and time to first token of one
    attribute set."""

    __slots__ = ("attributes", "histograms")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        self.histograms = tuple(Buckets(bounds) for *_, bounds in HISTOGRAMS)


class GenAIAggregates:
    def __init__(self, systems: Mapping[str, str]) -> None:
        """``systems``: each provider's gen_ai.system, by name."""
        self._systems = dict(systems)
        self._figures: dict[Key, GenAIFigures] = {}

    def record(self, record: RequestRecord) -> None:
        """A finished request's figures (those served by a provider)."""
        if not record.provider:
            return
        figures = self._figures_for(record)
        tokens_in, tokens_out, duration, first = figures.histograms
        u = record.usage
        if u.input_tokens or u.output_tokens:
            tokens_in.observe(u.input_tokens)
            tokens_out.observe(u.output_tokens)
        duration.observe(record.duration_s)
        if record.time_to_first_byte_s is not None and 200 <= record.status < 300 and u.model:
            first.observe(record.time_to_first_byte_s)

    def _figures_for(self, record: RequestRecord) -> GenAIFigures:
        system = self._systems.get(record.provider, "anthropic")
        failed = record.status >= 400
        key = (system, record.model_requested, failed)
        figures = self._figures.get(key)
        if figures is None:
            if len(self._figures) >= MAX_SETS:
                key = (system, "other", failed)
                figures = self._figures.get(key)
            if figures is None:
                attributes = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": system,
                    "gen_ai.request.model": key[1],
                }
                if failed:
                    attributes["error.type"] = "http"
                figures = self._figures[key] = GenAIFigures(attributes)
        return figures

    def snapshot(self) -> list[Figures]:
        """Every attribute set's figures, copied (in the exporter's thread;
        a list of a dict's items is taken in one step under the GIL)."""
        return [
            (key, f.attributes, tuple(h.snapshot() for h in f.histograms))
            for key, f in list(self._figures.items())
        ]


def histograms(
    now: list[Figures],
    before: Mapping[tuple[int, Key], Snapshot],
    start_ns: int,
    now_ns: int,
    temporality: AggregationTemporality,
) -> list[Metric]:
    """The snapshot as the SDK's metrics: cumulative since ``start_ns``, or
    (delta) what was added since ``before`` (the last export's snapshot, by
    histogram index and key). A delta point has no min or max: only the
    cumulative ones are kept, and OTLP makes them optional."""
    points: list[list[HistogramDataPoint]] = [[] for _ in HISTOGRAMS]
    delta = temporality is AggregationTemporality.DELTA
    for key, attributes, snaps in now:
        for i, snap in enumerate(snaps):
            counts, total, low, high = snap
            prior = before.get((i, key)) if delta else None
            if prior is not None:
                counts = tuple(a - b for a, b in zip(counts, prior[0], strict=True))
                total -= prior[1]
            if not sum(counts):
                continue
            extra = {"gen_ai.token.type": "input" if i == 0 else "output"} if i < 2 else {}
            points[i].append(
                HistogramDataPoint(
                    attributes={**attributes, **extra},
                    start_time_unix_nano=start_ns,
                    time_unix_nano=now_ns,
                    count=sum(counts),
                    sum=total,
                    bucket_counts=counts,
                    explicit_bounds=HISTOGRAMS[i][3],
                    min=None if delta else low,  # type: ignore[arg-type]
                    max=None if delta else high,  # type: ignore[arg-type]
                )
            )
    # Input and output tokens are one metric (two token types).
    merged = [points[0] + points[1], points[2], points[3]]
    specs = [HISTOGRAMS[0], HISTOGRAMS[2], HISTOGRAMS[3]]
    return [
        Metric(name, description, unit, Histogram(p, temporality))
        for (name, unit, description, _), p in zip(specs, merged, strict=True)
        if p
    ]
