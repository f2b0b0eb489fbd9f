"""Many workers, one view: merging the snapshots behind /metrics.json (pure).

Each worker counts what it served; the supervisor asks them all and merges
(``merge``). Counters are summed, histograms merged bucket by bucket, gauges
of traffic (in flight, connections, pools) summed. The routing part is still
learned per worker: the first worker's view of each provider is kept, with
its request counts (in flight, retries, failovers) summed over all.

A worker that exits takes its counters with it; the supervisor keeps what
its last report said (``counters``) and adds it to every merge, so that the
totals never go down across a reload (Prometheus would read a drop as a
counter reset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

Snapshot = dict[str, Any]

_REQUEST_KEY = ("code", "caller", "model", "stream", "provider", "origin")
_TOKEN_KEY = ("class", "caller", "model", "provider")
_SUMMED = (
    "stream_errors",
    "stream_pings",
    "demoted",
    "body_retention_skipped",
    "client_disconnects",
    "retries",
    "in_flight",
    "watchers",
    "telemetry_dropped",
)
_SUMMED_DICTS = (
    "bytes",
    "scrub_hits",
    "scrub_skipped",
    "active",
    "connections",
    "caller_spend_usd",
    "alerts",
    "telemetry_relay",
    "routes",
    "log_rows",
)
_LIMITED_KEY = ("caller", "reason")
_HISTOGRAMS = ("duration_s", "time_to_headers_s")
_PROVIDER_SUMS = ("in_flight", "retries", "failovers")


def counters(snap: Snapshot) -> Snapshot:
    """Only what keeps counting up (what outlives a worker): requests,
    tokens, bytes, errors, scrub counts and the histograms."""
    keep = (
        "requests",
        "tokens",
        "bytes",
        "stream_errors",
        "stream_pings",
        "demoted",
        "body_retention_skipped",
        "client_disconnects",
        "retries",
        "telemetry_dropped",
    )
    extra = (
        "scrub_hits",
        "scrub_skipped",
        "caller_limited",
        "caller_spend_usd",
        "routes",
        "alerts",
        "telemetry_relay",
        "time_to_first_token_s",
        "log_rows",
    )
    out = {k: snap[k] for k in (*keep, *extra, *_HISTOGRAMS) if k in snap}
    return out


def merge(snaps: Sequence[Snapshot]) -> Snapshot:
    """One snapshot of several; ``snaps[0]`` should be a live worker's (its
    routing view and gauges are the base). Parts a snapshot lacks count as
    zero."""
    if not snaps:
        raise ValueError("nothing to merge")
    base = snaps[0]
    out: Snapshot = dict(base)
    out["requests"] = _sum_rows((s.get("requests", ()) for s in snaps), _REQUEST_KEY)
    out["tokens"] = _sum_rows((s.get("tokens", ()) for s in snaps), _TOKEN_KEY)
    out["caller_limited"] = _sum_rows((s.get("caller_limited", ()) for s in snaps), _LIMITED_KEY)
    out["time_to_first_token_s"] = _merge_labelled(
        s.get("time_to_first_token_s", ()) for s in snaps
    )
    for key in _SUMMED:
        out[key] = sum(s.get(key, 0) for s in snaps)
    for key in _SUMMED_DICTS:
        total: Counter[str] = Counter()
        for s in snaps:
            total.update(s.get(key, {}))
        out[key] = {k: round(v, 6) if isinstance(v, float) else v for k, v in sorted(total.items())}
    for key in _HISTOGRAMS:
        hists = [s[key] for s in snaps if key in s]
        out[key] = merge_histograms(hists) if hists else base.get(key)
    live = [s for s in snaps if "pools" in s]
    pools: dict[str, Counter[str]] = {}
    for s in live:
        for name, counts in s["pools"].items():
            pools.setdefault(name, Counter()).update(counts)
    out["pools"] = {name: dict(c) for name, c in sorted(pools.items())}
    out["draining"] = bool(live) and all(s.get("draining") for s in live)
    out["uptime_s"] = max((s.get("uptime_s", 0) for s in snaps), default=0)
    out["time"] = max((s.get("time", 0) for s in snaps), default=0)
    out["workers"] = len(live)
    out["by_worker"] = [
        {
            "pid": s.get("pid"),
            "requests": sum(r["count"] for r in s.get("requests", ())),
            "in_flight": s.get("in_flight", 0),
            "draining": bool(s.get("draining")),
        }
        for s in live
    ]
    out["routing"] = _merge_routing([s.get("routing") for s in live])
    procs = [s["process"] for s in live if "process" in s]
    if procs:
        out["process"] = {
            **{
                k: sum(p[k] for p in procs)
                for k in ("cpu_seconds", "resident_memory_bytes", "open_fds")
            },
            "max_fds": procs[0]["max_fds"],
            "start_time_seconds": min(p["start_time_seconds"] for p in procs),
        }
    return out


def merge_histograms(hists: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Histogram snapshots with the same buckets (cumulative counts), added."""
    bounds = [b for b, _ in hists[0]["buckets"]]
    running = [0] * len(bounds)
    for h in hists:
        if [b for b, _ in h["buckets"]] != bounds:
            raise ValueError("histograms with different buckets")
        for i, (_, n) in enumerate(h["buckets"]):
            running[i] += n
    count = sum(h["count"] for h in hists)
    return {
        "count": count,
        "sum": round(sum(h["sum"] for h in hists), 6),
        "p50_le": _quantile(bounds, running, count, 0.5),
        "p99_le": _quantile(bounds, running, count, 0.99),
        "buckets": [[b, n] for b, n in zip(bounds, running, strict=True)],
    }


def _quantile(bounds: list[float], cumulative: list[int], count: int, q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile, as Histogram does
    (``inf`` when it lies past the last bucket)."""
    if not count:
        return None
    for bound, seen in zip(bounds, cumulative, strict=True):
        if seen >= q * count:
            return bound
    return float("inf")


def _merge_labelled(tables: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Histograms by (provider, model), merged per label set."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rows in tables:
        for row in rows:
            by.setdefault((row["provider"], row["model"]), []).append(row["histogram"])
    return [
        {"provider": p, "model": m, "histogram": merge_histograms(hists)}
        for (p, m), hists in sorted(by.items())
    ]


def _sum_rows(
    tables: Iterable[Iterable[dict[str, Any]]], key: tuple[str, ...]
) -> list[dict[str, Any]]:
    total: dict[tuple[Any, ...], int] = {}
    for rows in tables:
        for row in rows:
            k = tuple(row[f] for f in key)
            total[k] = total.get(k, 0) + row["count"]
    return [{**dict(zip(key, k, strict=True)), "count": n} for k, n in sorted(total.items())]


def _merge_routing(views: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    present = [v for v in views if v is not None]
    if not present:
        return None
    out = dict(present[0])
    sums: dict[str, Counter[str]] = {}
    for view in present:
        for row in view.get("providers", ()):
            sums.setdefault(row["name"], Counter()).update(
                {k: row.get(k) or 0 for k in _PROVIDER_SUMS}
            )
    out["providers"] = [
        {**row, **sums.get(row["name"], {})} for row in present[0].get("providers", ())
    ]
    return out
