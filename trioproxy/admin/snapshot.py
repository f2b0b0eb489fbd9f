"""What the proxy knows about itself right now: the JSON snapshot behind
/metrics.json, /metrics/stream and the dashboard, and the gauge families
/metrics adds to the counters."""

from __future__ import annotations

import os
import time
from typing import Any

from trioproxy import __version__
from trioproxy.admin.process import process_figures
from trioproxy.callers.policy import remaining
from trioproxy.config.callers import policy_dict
from trioproxy.state import ServerState


async def current_view(state: ServerState) -> dict[str, Any]:
    """The whole server's snapshot: every worker's merged when this is one
    of several (its own alone if the supervisor does not answer in time)."""
    if state.peers is not None and (merged := await state.peers.gather()) is not None:
        return merged
    return snapshot(state)


def snapshot(state: ServerState) -> dict[str, Any]:
    """Cumulative counters plus current gauges. Rates (requests/s, tokens/s)
    are differences between two snapshots, taken by whoever reads them."""
    return {
        "time": round(time.time(), 3),
        "pid": os.getpid(),
        **state.metrics.snapshot(),
        "in_flight": state.in_flight,
        "active": dict(state.active),
        "watchers": state.listening.watchers,
        "connections": dict(state.connections),
        "pools": {name: pool.state.counts() for name, pool in state.pools.items()},
        "draining": state.draining,
        "uptime_s": round(state.uptime_s, 3),
        "routing": None if state.router is None else state.router.snapshot(),
        "callers": callers_view(state),
        "process": process_figures(),
        "log_rows": state.journal.log_counts(),
    }


def callers_view(state: ServerState) -> list[dict[str, Any]]:
    """Each caller's policy and use against it (the shared counts: the same
    in every worker to within a second). Never a secret or its digest."""
    book, now = state.book, state.book.wall()
    rows = []
    for c in state.callers.callers():
        use = book.usage(c, now)
        budget = c.budget
        rows.append(
            {
                "name": c.name,
                "source": state.callers.source(c.name),
                **policy_dict(c),
                "expires": c.expires,
                "secrets": len(c.digests),
                **use,
                "budget_remaining": None
                if budget is None
                else round(remaining(budget, book.spend(c, now)), 6),
            }
        )
    return rows


Samples = list[
    tuple[dict[str, str], float]
]  # a family's (labels, value); its type and help: families.py

# The standard process_* series: (name, snapshot key).
_PROCESS = (
    ("process_cpu_seconds_total", "cpu_seconds"),
    ("process_resident_memory_bytes", "resident_memory_bytes"),
    ("process_open_fds", "open_fds"),
    ("process_max_fds", "max_fds"),
    ("process_start_time_seconds", "start_time_seconds"),
)


def gauges(snap: dict[str, Any]) -> dict[str, Samples]:
    """The gauge families of a snapshot (one worker's, or all merged)."""
    families: dict[str, Samples] = {
        "trioproxy_requests_in_flight": [
            ({"protocol": p}, n) for p, n in sorted(snap["active"].items())
        ],
        "trioproxy_client_connections": [
            ({"protocol": p}, n) for p, n in sorted(snap["connections"].items())
        ],
        "trioproxy_draining": [({}, 1 if snap["draining"] else 0)],
        "trioproxy_uptime_seconds": [({}, snap["uptime_s"])],
        "trioproxy_workers": [({}, snap.get("workers", 1))],
        "trioproxy_log_rows_total": [
            ({"outcome": k}, v) for k, v in sorted(snap.get("log_rows", {}).items())
        ],
    }
    pools = snap["pools"]
    families["trioproxy_upstream_connections"] = [
        ({"provider": name, "state": k}, v)
        for name, c in sorted(pools.items())
        for k, v in c.items()
        if k != "h2_streams"
    ]
    families["trioproxy_upstream_h2_streams"] = [
        ({"provider": name}, c["h2_streams"]) for name, c in sorted(pools.items())
    ]
    proc = snap.get("process")
    if proc is not None:
        for name, key in _PROCESS:
            families[name] = [({}, proc[key])]
    families["trioproxy_build_info"] = [({"version": __version__}, 1)]
    families["trioproxy_caller_budget_remaining"] = [
        (
            {
                "caller": c["name"],
                "unit": "usd" if c["budget"]["usd"] is not None else "tokens",
            },
            c["budget_remaining"],
        )
        for c in snap.get("callers", ())
        if c["budget"] is not None
    ]
    routing = snap.get("routing")
    if routing is not None:
        families.update(_provider_families(routing))
        store = routing.get("state_store")
        families["trioproxy_state_store_up"] = (
            [] if store is None else [({}, 1 if store["up"] else 0)]
        )
    return families


_BREAKER = {"closed": 0, "half-open": 1, "open": 2}


def _provider_families(snap: dict[str, object]) -> dict[str, Samples]:
    rows = snap["providers"]
    assert isinstance(rows, list)

    def each(fn: object) -> list[tuple[dict[str, str], float]]:
        assert callable(fn)
        return [({"provider": r["name"]}, float(fn(r))) for r in rows]

    return {
        "trioproxy_provider_available": each(
            lambda r: r["state"] in ("healthy", "degraded", "half-open")
        ),
        "trioproxy_provider_breaker_state": each(lambda r: _BREAKER[r["breaker"]]),
        "trioproxy_provider_consecutive_failures": each(lambda r: r["consecutive_failures"]),
        "trioproxy_provider_in_flight": each(lambda r: r["in_flight"]),
        "trioproxy_provider_quota_used_tokens": [
            ({"provider": r["name"]}, r["quota"]["used"]) for r in rows if r["quota"]
        ],
        "trioproxy_provider_quota_limit_tokens": [
            ({"provider": r["name"]}, r["quota"]["limit"]) for r in rows if r["quota"]
        ],
        "trioproxy_provider_retries_total": each(lambda r: r["retries"]),
        "trioproxy_provider_failovers_total": each(lambda r: r["failovers"]),
    }
