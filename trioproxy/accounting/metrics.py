"""Counters and histograms for /metrics (Prometheus text format 0.0.4) and
/metrics.json. One registry per server, no global state.

Label sets are bounded: callers are the configured secret names; models are
whatever clients send, so at most MAX_MODELS distinct values are kept and the
rest count as "other".
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from trioproxy.accounting.families import FAMILIES
from trioproxy.accounting.record import RequestRecord
from trioproxy.accounting.usage import TOKEN_CLASSES

MAX_MODELS = 32  # distinct model label values kept
MAX_CALLERS = 1000  # distinct caller label values kept (users signed in through an IdP are many)
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)  # seconds


class Histogram:
    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        i = bisect_left(self.buckets, value)  # the first bound >= value
        if i < len(self.counts):
            self.counts[i] += 1

    def snapshot(self) -> dict[str, Any]:
        """Cumulative bucket counts too: a dashboard takes quantiles of the
        difference between two snapshots (the last minute, not all time)."""
        running, buckets = 0, []
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            buckets.append([bound, running])
        return {
            "count": self.count,
            "sum": round(self.sum, 6),
            "p50_le": self.quantile(0.5),
            "p99_le": self.quantile(0.99),
            "buckets": buckets,
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> Histogram:
        """The inverse of ``snapshot`` (its cumulative counts undone)."""
        h = cls(tuple(b for b, _ in snap["buckets"]))
        previous = 0
        for i, (_, running) in enumerate(snap["buckets"]):
            h.counts[i] = running - previous
            previous = running
        h.count, h.sum = snap["count"], snap["sum"]
        return h

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (for the JSON view)."""
        if not self.count:
            return None
        target, seen = q * self.count, 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            seen += n
            if seen >= target:
                return bound
        return math.inf


class Metrics:
    def __init__(self) -> None:
        # (code, caller, model, stream, provider) -> count
        # (code, caller, model, stream, provider, origin) -> count; origin: who
        # answered, "upstream" or "proxy" (its own errors and refusals)
        self.requests: defaultdict[tuple[str, str, str, str, str, str], int] = defaultdict(int)
        self.tokens: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.bytes = {"in": 0, "out": 0}
        self.stream_errors = 0
        self.pings = 0  # keep-alive events written to silent streams
        self.demoted = 0  # non-streaming requests sent upstream as streams
        self.retention_skipped = 0  # bodies streamed without a copy (retention budget)
        self.client_disconnects = 0
        self.retries = 0
        self.scrub_hits: defaultdict[str, int] = defaultdict(int)  # by detector
        self.unscrubbed: defaultdict[str, int] = defaultdict(int)  # by reason
        self.duration = Histogram(DURATION_BUCKETS)
        self.time_to_headers = Histogram(DURATION_BUCKETS)
        # (provider, model) -> time to the first response byte of 2xx Messages answers
        self.first_token: dict[tuple[str, str], Histogram] = {}
        self.limited: defaultdict[tuple[str, str], int] = defaultdict(int)  # (caller, reason)
        self.spend: defaultdict[str, float] = defaultdict(float)  # caller -> USD
        self.routes: defaultdict[str, int] = defaultdict(int)  # [[routes]] rule -> requests
        self.alerts: defaultdict[tuple[str, str], int] = defaultdict(int)  # (kind, outcome)
        self.telemetry_dropped = 0  # spans the full export queue could not take
        self.relayed: defaultdict[tuple[str, str], int] = defaultdict(int)  # (signal, outcome)
        self._models: set[str] = set()
        self._callers: set[str] = set()

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> Metrics:
        """Counters back from ``snapshot()`` (one worker's, or several
        merged), to render them in Prometheus's format."""
        m = cls()
        for r in snap["requests"]:
            key = (r["code"], r["caller"], r["model"], "true" if r["stream"] else "false")
            m.requests[(*key, r["provider"], r.get("origin", "upstream"))] += r["count"]
        for t in snap["tokens"]:
            m.tokens[(t["class"], t["caller"], t["model"], t["provider"])] += t["count"]
        m.bytes = dict(snap["bytes"])
        m.stream_errors = snap["stream_errors"]
        m.pings = snap.get("stream_pings", 0)
        m.demoted = snap.get("demoted", 0)
        m.retention_skipped = snap.get("body_retention_skipped", 0)
        m.client_disconnects = snap["client_disconnects"]
        m.retries = snap["retries"]
        m.scrub_hits.update(snap["scrub_hits"])
        m.unscrubbed.update(snap["scrub_skipped"])
        for r in snap.get("caller_limited", ()):
            m.limited[(r["caller"], r["reason"])] += r["count"]
        m.spend.update(snap.get("caller_spend_usd", {}))
        m.routes.update(snap.get("routes", {}))
        m.telemetry_dropped = snap.get("telemetry_dropped", 0)
        for key, n in snap.get("telemetry_relay", {}).items():
            signal, _, outcome = key.partition(":")
            m.relayed[(signal, outcome)] += n
        for key, n in snap.get("alerts", {}).items():
            kind, _, outcome = key.partition(":")
            m.alerts[(kind, outcome)] += n
        m.duration = Histogram.from_snapshot(snap["duration_s"])
        m.time_to_headers = Histogram.from_snapshot(snap["time_to_headers_s"])
        for row in snap.get("time_to_first_token_s", ()):
            m.first_token[(row["provider"], row["model"])] = Histogram.from_snapshot(
                row["histogram"]
            )
        return m

    def _model(self, model: str) -> str:
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS and model:
            self._models.add(model)
            return model
        return "other" if model else "unknown"

    def _caller(self, caller: str) -> str:
        if caller in self._callers:
            return caller
        if len(self._callers) < MAX_CALLERS:
            self._callers.add(caller)
            return caller
        return "other"

    def observe(self, r: RequestRecord) -> None:
        model = self._model(r.usage.model or r.model_requested)
        caller = self._caller(r.caller or "-")
        stream = "true" if r.stream else "false"
        provider = r.provider or "-"
        self.requests[(str(r.status), caller, model, stream, provider, r.origin)] += 1
        for cls in TOKEN_CLASSES:
            value = getattr(r.usage, cls)
            if value:
                self.tokens[(cls.removesuffix("_tokens"), caller, model, provider)] += value
        self.bytes["in"] += r.bytes_in
        self.bytes["out"] += r.bytes_out
        self.stream_errors += r.usage.stream_errors
        self.pings += r.pings
        self.demoted += r.demoted
        self.retention_skipped += r.retention_skipped
        self.client_disconnects += int(r.client_disconnected)
        self.retries += r.retries
        for detector, n in r.scrub_detail.items():
            self.scrub_hits[detector] += n
        if r.unscrubbed:
            self.unscrubbed[r.unscrubbed] += 1
        if r.limited:
            self.limited[(caller, r.limited)] += 1
        if r.cost_usd:
            self.spend[caller] += r.cost_usd
        if r.route:
            self.routes[r.route] += 1
        self.duration.observe(r.duration_s)
        if r.time_to_headers_s is not None:
            self.time_to_headers.observe(r.time_to_headers_s)
        if r.time_to_first_byte_s is not None and 200 <= r.status < 300 and r.usage.model:
            key = (provider, model)
            h = self.first_token.get(key)
            if h is None:
                h = self.first_token[key] = Histogram(DURATION_BUCKETS)
            h.observe(r.time_to_first_byte_s)

    # -- exposition ------------------------------------------------------------
    def prometheus(self, extra: Mapping[str, Iterable[tuple[dict[str, str], float]]]) -> bytes:
        """``extra``: families kept elsewhere (gauges of the server state,
        the router's per-provider counts), name -> samples. Every family's
        type and help are families.py's."""
        out: list[str] = []

        def family(name: str, samples: Iterable[tuple[str, dict[str, str], float]]) -> None:
            declared = FAMILIES[name]
            out.append(f"# HELP {name} {declared.help}")
            out.append(f"# TYPE {name} {declared.kind}")
            for suffix, labels, value in samples:
                lbl = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(
                    f"{name}{suffix}{{{lbl}}} {_num(value)}"
                    if lbl
                    else f"{name}{suffix} {_num(value)}"
                )

        family(
            "trioproxy_requests_total",
            (
                (
                    "",
                    {
                        "class": c[:1] + "xx",
                        "code": c,
                        "caller": a,
                        "model": m,
                        "stream": s,
                        "provider": p,
                        "origin": o,
                    },
                    n,
                )
                for (c, a, m, s, p, o), n in sorted(self.requests.items())
            ),
        )
        family(
            "trioproxy_tokens_total",
            (
                # "type", not "class": on trioproxy_requests_total "class" is the status class.
                ("", {"type": c, "caller": a, "model": m, "provider": p}, n)
                for (c, a, m, p), n in sorted(self.tokens.items())
            ),
        )
        family(
            "trioproxy_body_bytes_total",
            (("", {"direction": d}, n) for d, n in self.bytes.items()),
        )
        family(
            "trioproxy_stream_errors_total",
            [("", {}, self.stream_errors)],
        )
        family(
            "trioproxy_stream_pings_total",
            [("", {}, self.pings)],
        )
        family(
            "trioproxy_demoted_total",
            [("", {}, self.demoted)],
        )
        family(
            "trioproxy_body_retention_skipped_total",
            [("", {}, self.retention_skipped)],
        )
        family(
            "trioproxy_client_disconnects_total",
            [("", {}, self.client_disconnects)],
        )
        family(
            "trioproxy_upstream_retries_total",
            [("", {}, self.retries)],
        )
        family(
            "trioproxy_scrub_hits_total",
            (("", {"detector": d}, n) for d, n in sorted(self.scrub_hits.items())),
        )
        family(
            "trioproxy_scrub_skipped_total",
            (("", {"reason": r}, n) for r, n in sorted(self.unscrubbed.items())),
        )
        family(
            "trioproxy_caller_limited_total",
            (("", {"caller": a, "reason": r}, n) for (a, r), n in sorted(self.limited.items())),
        )
        family(
            "trioproxy_telemetry_dropped_total",
            [("", {}, self.telemetry_dropped)],
        )
        family(
            "trioproxy_telemetry_relay_total",
            (("", {"signal": k, "outcome": o}, n) for (k, o), n in sorted(self.relayed.items())),
        )
        family(
            "trioproxy_alerts_total",
            (("", {"kind": k, "outcome": o}, n) for (k, o), n in sorted(self.alerts.items())),
        )
        family(
            "trioproxy_route_requests_total",
            (("", {"route": r}, n) for r, n in sorted(self.routes.items())),
        )
        family(
            "trioproxy_caller_spend_usd_total",
            (("", {"caller": a}, round(v, 6)) for a, v in sorted(self.spend.items())),
        )
        family("trioproxy_request_duration_seconds", _histogram_samples(self.duration, {}))
        family("trioproxy_time_to_headers_seconds", _histogram_samples(self.time_to_headers, {}))
        samples: list[tuple[str, dict[str, str], float]] = []
        for (p, m), hist in sorted(self.first_token.items()):
            samples += _histogram_samples(hist, {"provider": p, "model": m})
        family(
            "trioproxy_time_to_first_token_seconds",
            samples,
        )
        for name, values in extra.items():
            family(name, (("", labels, v) for labels, v in values))
        return ("\n".join(out) + "\n").encode()

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": [
                {
                    "code": c,
                    "caller": a,
                    "model": m,
                    "stream": s == "true",
                    "provider": p,
                    "origin": o,
                    "count": n,
                }
                for (c, a, m, s, p, o), n in sorted(self.requests.items())
            ],
            "tokens": [
                {"class": c, "caller": a, "model": m, "provider": p, "count": n}
                for (c, a, m, p), n in sorted(self.tokens.items())
            ],
            "bytes": dict(self.bytes),
            "stream_errors": self.stream_errors,
            "stream_pings": self.pings,
            "demoted": self.demoted,
            "body_retention_skipped": self.retention_skipped,
            "client_disconnects": self.client_disconnects,
            "retries": self.retries,
            "scrub_hits": dict(self.scrub_hits),
            "scrub_skipped": dict(self.unscrubbed),
            "caller_limited": [
                {"caller": a, "reason": r, "count": n} for (a, r), n in sorted(self.limited.items())
            ],
            "caller_spend_usd": {a: round(v, 6) for a, v in sorted(self.spend.items())},
            "routes": dict(sorted(self.routes.items())),
            "alerts": {f"{k}:{o}": n for (k, o), n in sorted(self.alerts.items())},
            "telemetry_dropped": self.telemetry_dropped,
            "telemetry_relay": {f"{k}:{o}": n for (k, o), n in sorted(self.relayed.items())},
            "duration_s": self.duration.snapshot(),
            "time_to_headers_s": self.time_to_headers.snapshot(),
            "time_to_first_token_s": [
                {"provider": p, "model": m, "histogram": h.snapshot()}
                for (p, m), h in sorted(self.first_token.items())
            ],
        }


def _histogram_samples(
    hist: Histogram, labels: dict[str, str]
) -> list[tuple[str, dict[str, str], float]]:
    out: list[tuple[str, dict[str, str], float]] = []
    running = 0
    for bound, n in zip(hist.buckets, hist.counts, strict=True):
        running += n
        out.append(("_bucket", {**labels, "le": _num(bound)}, running))
    out += [
        ("_bucket", {**labels, "le": "+Inf"}, hist.count),
        ("_sum", labels, hist.sum),
        ("_count", labels, hist.count),
    ]
    return out


def _num(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return (
        repr(float(value))
        if isinstance(value, float) and not float(value).is_integer()
        else str(int(value))
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
